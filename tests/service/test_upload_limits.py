"""What one upload may cost: pixels per frame, bytes queued in Redis, jobs left after DELETE.

Real gateway (uvicorn), real Redis, real blob-pipeline workers; the 4000x4000 clip is
encoded by the test with PyAV.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest
import redis

from posestream.service.messages import FrameJob, RedisKeys
from tests.service.clips import write_clip
from tests.service.conftest import ServerThread, WorkerThread
from tests.service.helpers import wait_video

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 4000x4000 frames of smooth noise: about 6 MB each as a JPEG at quality 95 (the issue's case)."""
    path = tmp_path_factory.mktemp("big") / "big.mp4"
    rng = np.random.default_rng(0)
    base = cv2.resize(
        rng.integers(0, 255, (500, 500, 3), dtype=np.uint8), (4000, 4000), interpolation=cv2.INTER_LINEAR
    )
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(10))
        stream.width = stream.height = 4000
        stream.pix_fmt, stream.options = "yuv420p", {"preset": "ultrafast"}
        for i in range(6):
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.roll(base, 8 * i, axis=1), format="rgb24")
            ):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _upload(client: httpx.Client, path: Path) -> httpx.Response:
    with open(path, "rb") as fh:
        return client.post("/v1/videos", files={"file": (path.name, fh, "video/mp4")})


def _queued(client: redis.Redis, keys: RedisKeys, session: str | None = None) -> list[FrameJob]:
    jobs = [FrameJob.from_fields(f) for _, f in client.xrange(keys.jobs) if f]
    return [j for j in jobs if session is None or j.session == session]


@pytest.mark.slow
def test_a_4000x4000_upload_keeps_its_queued_bytes_bounded(
    make_settings, redis_client, big_clip: Path
) -> None:
    # Bound: the jobs stream holds at most upload_inflight_bytes of images, plus one frame
    # (a frame is queued once the ones before it leave room, or alone).
    limit = 16 * MIB  # two of its frames fit, not three
    settings = make_settings(upload_inflight_bytes=limit)
    keys = RedisKeys(settings.redis_prefix)
    with ServerThread(settings) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        r = _upload(client, big_clip)  # no worker yet: jobs pile up as far as the bounds let them
        assert r.status_code == 202, r.text
        video_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while len(_queued(redis_client, keys)) < 2:
            assert time.monotonic() < deadline, ("the upload queued nothing", redis_client.xlen(keys.jobs))
            time.sleep(0.1)
        time.sleep(3)  # time enough for the gateway to decode and queue all six frames if it were unbounded
        jobs = _queued(redis_client, keys)
        frame = max(len(j.image) for j in jobs)
        assert frame > 4 * MIB  # the frames are as large as in the issue
        assert sum(len(j.image) for j in jobs) <= limit + frame, [len(j.image) for j in jobs]
        stream_bytes = redis_client.memory_usage(keys.jobs, samples=0)
        assert stream_bytes <= limit + frame + MIB, stream_bytes
        with WorkerThread(settings):  # and nothing is lost: every frame is processed
            peak = 0
            deadline = time.monotonic() + 120
            while (status := client.get(f"/v1/videos/{video_id}").json())["status"] not in ("done", "failed"):
                peak = max(peak, sum(len(j.image) for j in _queued(redis_client, keys)))
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert status["status"] == "done" and status["frames_done"] == 6, status
        assert peak <= limit + frame


def test_queued_bytes_are_bounded_across_uploads_too(make_settings, redis_client, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    per_upload, total = 60_000, 90_000
    settings = make_settings(upload_inflight_bytes=per_upload, upload_inflight_bytes_total=total)
    keys = RedisKeys(settings.redis_prefix)
    with ServerThread(settings) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        ids = [_upload(client, clip).json()["id"] for _ in range(3)]
        time.sleep(2)
        jobs = _queued(redis_client, keys)
        frame = max(len(j.image) for j in jobs)
        assert frame < 20_000  # several frames fit in each bound
        per = {v: sum(len(j.image) for j in jobs if j.session == f"video:{v}") for v in ids}
        assert all(b <= per_upload + frame for b in per.values()), per
        assert sum(per.values()) <= total + frame, per
        with WorkerThread(settings):
            for v in ids:
                assert wait_video(client, v)["frames_done"] == 30


def test_a_frame_over_max_frame_pixels_is_refused_before_decoding(make_settings, tmp_path: Path) -> None:
    settings = make_settings(max_frame_pixels=320 * 240 - 1)
    clip = write_clip(tmp_path / "clip.mp4", frames=4)
    with ServerThread(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        r = _upload(client, clip)
        assert r.status_code == 413, r.text
        error = r.json()["error"]
        assert (
            error["code"] == "frame_too_large"
            and "320x240" in error["message"]
            and "max_frame_pixels" in error["message"]
        )
        assert list((Path(settings.data_dir) / "videos").iterdir()) == []
    with ServerThread(make_settings(max_frame_pixels=320 * 240)) as server:  # exactly at the limit: accepted
        assert _upload(httpx.Client(base_url=server.url, timeout=30), clip).status_code == 202


def test_delete_purges_the_videos_queued_jobs(make_settings, redis_client, tmp_path: Path) -> None:
    settings = make_settings(upload_inflight=8)
    keys = RedisKeys(settings.redis_prefix)
    clip = write_clip(tmp_path / "clip.mp4", frames=40)
    with ServerThread(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        doomed, kept = (_upload(client, clip).json()["id"] for _ in range(2))
        deadline = time.monotonic() + 20
        while (
            len(_queued(redis_client, keys, f"video:{doomed}")) < 8
            or len(_queued(redis_client, keys, f"video:{kept}")) < 8
        ):
            assert time.monotonic() < deadline, "the uploads did not fill their in-flight window"
            time.sleep(0.05)
        assert client.delete(f"/v1/videos/{doomed}").json() == {"id": doomed, "deleted": True}
        assert _queued(redis_client, keys, f"video:{doomed}") == []
        time.sleep(1.0)  # its task is gone: nothing of it is queued later either
        assert _queued(redis_client, keys, f"video:{doomed}") == []
        assert len(_queued(redis_client, keys, f"video:{kept}")) == 8  # the other upload is untouched
        with WorkerThread(settings):
            assert wait_video(client, kept)["frames_done"] == 40
        assert _queued(redis_client, keys) == []


def test_a_delete_through_another_gateway_removes_the_files_and_jobs_of_the_first(
    make_settings, redis_client, tmp_path: Path
) -> None:
    # Two gateways on one Redis with their own data folders: B deletes what A holds.
    a = make_settings(upload_inflight=4, upload_lease_ms=1500, upload_lease_renew_ms=300)
    b = a.model_copy(update={"data_dir": tmp_path / "other-data"})
    keys = RedisKeys(a.redis_prefix)
    clip = write_clip(tmp_path / "clip.mp4", frames=20)
    with ServerThread(a) as ga, ServerThread(b) as gb, httpx.Client(timeout=30) as client:
        with open(clip, "rb") as fh:
            video_id = client.post(ga.url + "/v1/videos", files={"file": ("c.mp4", fh, "video/mp4")}).json()[
                "id"
            ]
        deadline = time.monotonic() + 20
        while len(_queued(redis_client, keys, f"video:{video_id}")) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.delete(f"{gb.url}/v1/videos/{video_id}").json() == {"id": video_id, "deleted": True}
        folder = Path(a.data_dir) / "videos" / video_id
        deadline = time.monotonic() + 10
        while folder.exists():
            assert time.monotonic() < deadline, "gateway A kept the deleted video's files"
            time.sleep(0.05)
        assert _queued(redis_client, keys, f"video:{video_id}") == []
        assert client.get(f"{ga.url}/v1/videos/{video_id}").status_code == 404
