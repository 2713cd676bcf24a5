"""Truncated input is reported, not passed off as complete: uploads (status warnings) and ``posestream track``.

Both test videos are made from a real file (OpenCV's vtest.avi): a faststart MP4 of its
first frames cut in half (the header, at the front, still declares every frame), and the
first third of vtest.avi itself (its AVI header declares 795 frames).
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import httpx
import pytest

from posestream.client import Client, VideoFailed
from posestream.models.data.video import iter_video_frames
from posestream.service.cli_service import EXIT_TRUNCATED
from tests.service.conftest import ServerThread, WorkerThread
from tests.service.helpers import POSESTREAM, wait_video

ROOT = Path(__file__).resolve().parents[2]
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
needs_vtest = pytest.mark.skipif(not VTEST.is_file(), reason=f"{VTEST} (package opencv-doc) is not installed")


def faststart_half(tmp: Path, frames: int = 40) -> Path:
    """The first ``frames`` frames of vtest.avi as an H.264 MP4 with the index in front, cut in half."""
    whole = tmp / "faststart.mp4"
    with av.open(str(whole), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 768, 576, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "5"}
        for i, (_, _, rgb) in enumerate(iter_video_frames(VTEST)):
            if i == frames:
                break
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = whole.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: the header declares every frame up front
    cut = tmp / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def vtest_third(tmp: Path) -> Path:
    data = VTEST.read_bytes()
    cut = tmp / "third.avi"
    cut.write_bytes(data[: len(data) // 3])
    return cut


def _upload(client: httpx.Client, path: Path) -> str:
    with open(path, "rb") as fh:
        r = client.post("/v1/videos", files={"file": (path.name, fh, "application/octet-stream")})
    assert r.status_code == 202, r.text
    return r.json()["id"]


@needs_vtest
def test_truncated_uploads_are_done_with_a_truncated_input_warning(make_settings, tmp_path: Path) -> None:
    settings = make_settings(batch_size=16)
    cases = [(faststart_half(tmp_path), 40), (vtest_third(tmp_path), 795)]
    with (
        WorkerThread(settings),
        ServerThread(settings) as server,
        httpx.Client(base_url=server.url, timeout=60) as c,
    ):
        for path, declared in cases:
            video_id = _upload(c, path)
            status = wait_video(c, video_id, timeout=120)
            decoded = status["frames_done"]
            assert status["status"] == "done" and status["error"] is None, status
            assert 0 < decoded < declared and status["frames_total"] == decoded, status
            (warning,) = status["warnings"]
            assert warning["code"] == "truncated_input", warning
            assert warning["declared_frames"] == declared and warning["declared_by"] == "frame_count", warning
            assert warning["decoded_frames"] == decoded, warning
            assert str(declared) in warning["message"] and str(decoded) in warning["message"]
            assert len(c.get(f"/v1/videos/{video_id}/poses").text.splitlines()) == decoded
        # A whole video has no warning.
        whole = _upload(c, tmp_path / "faststart.mp4")
        status = wait_video(c, whole, timeout=60)
        assert status["status"] == "done" and status["frames_done"] == 40 and status["warnings"] == [], status


@needs_vtest
def test_fail_on_truncated_makes_a_truncated_upload_fail(make_settings, tmp_path: Path) -> None:
    settings = make_settings(fail_on_truncated=True)
    with WorkerThread(settings), ServerThread(settings) as server, Client(server.url) as client:
        video_id = client.upload(faststart_half(tmp_path))
        with pytest.raises(VideoFailed) as failed:  # posestream.client's wait says it failed
            client.wait(video_id, timeout_s=60)
        status = failed.value.status
        assert status["status"] == "failed" and status["error"]["code"] == "truncated_input", status
        assert "truncated_input" in str(failed.value)
        assert status["warnings"][0]["declared_frames"] == 40
        # What decoded is still there.
        assert len(client.poses(video_id)) == status["frames_done"] > 0


@needs_vtest
def test_track_exits_with_the_truncated_code_and_says_why(tmp_path: Path) -> None:
    for path, declared in ((faststart_half(tmp_path), 40), (vtest_third(tmp_path), 795)):
        out = tmp_path / (path.stem + ".jsonl")
        proc = subprocess.run(
            [*POSESTREAM, "track", str(path), "--model", "blobs", "--tracker", "iou", "--out", str(out), "-q"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == EXIT_TRUNCATED == 3, proc.stderr
        decoded = len(out.read_text().splitlines())
        assert 0 < decoded < declared
        assert "warning" in proc.stderr and "truncated" in proc.stderr
        assert f"declares {declared} frames" in proc.stderr and f"{decoded} decoded" in proc.stderr, (
            proc.stderr
        )
    proc = subprocess.run(
        [*POSESTREAM, "track", str(tmp_path / "faststart.mp4"), "--model", "blobs", "--out", str(tmp_path / "w.jsonl"), "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
