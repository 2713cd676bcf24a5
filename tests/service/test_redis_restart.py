"""Redis restarts under running uploads: workers carry on, uploads finish, nothing accepted is lost.

A private ``redis-server`` (its own port, started and killed by PID), a real uvicorn
gateway and a real ``Worker`` with the blob pipeline. Without persistence a restart
loses every key (status, jobs, results, tracker state, the consumer group): the worker
recreates its group, the gateway that holds the upload's file writes its status again
and runs it again from its first frame. With append-only persistence nothing is lost
and the upload resumes where it stopped, its tracks undisturbed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from service.pipeline import build_pipeline
from tests.service.clips import write_clip
from tests.service.conftest import ServerThread, WorkerThread
from tests.service.helpers import lane_ids
from tests.service.redis_server import PrivateRedis

FAST = dict(upload_lease_ms=1500, upload_lease_renew_ms=300, upload_resume_interval_s=0.3, batch_size=2)
N = 48


@pytest.fixture
def private_redis(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis", appendonly=request.param).start()
    yield server
    server.stop()


def _poll(client: httpx.Client, video_id: str, timeout: float) -> dict:
    """Status until done/failed; a 404 or a connection error (Redis down) is tolerated only for a while."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/v1/videos/{video_id}")
        if r.status_code == 200 and r.json()["status"] in ("done", "failed"):
            return r.json()
        assert time.monotonic() < deadline, f"video {video_id} did not finish: {r.status_code} {r.text}"
        time.sleep(0.05)


def _kill_redis_mid_upload(server: PrivateRedis, settings, tmp_path: Path) -> tuple[list[str], list[str], WorkerThread]:
    """Upload a clip, restart Redis (SIGKILL) once 10 frames are done; returns (lines, reference lines, worker)."""
    clip = write_clip(tmp_path / "clip.mp4", frames=N)
    slow = build_pipeline("blobs", "iou", debug_delay_ms=30)  # slow enough to restart Redis mid-way
    worker = WorkerThread(settings, slow)
    with worker, ServerThread(settings) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as client:

        def upload() -> str:
            with open(clip, "rb") as fh:
                r = client.post("/v1/videos", files={"file": ("clip.mp4", fh, "video/mp4")})
            assert r.status_code == 202, r.text
            return r.json()["id"]

        reference_id = upload()
        assert _poll(client, reference_id, 60)["frames_done"] == N
        reference = client.get(f"/v1/videos/{reference_id}/poses").text.splitlines()

        video_id = upload()
        deadline = time.monotonic() + 30
        while client.get(f"/v1/videos/{video_id}").json()["frames_done"] < 10:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server.kill()
        r = client.get(f"/v1/videos/{video_id}")  # Redis is down for a moment: a JSON 503, not a 500
        assert r.status_code == 503 and r.json()["error"]["code"] == "redis_unavailable", r.text
        time.sleep(0.5)
        server.start()
        status = _poll(client, video_id, 60)
        assert status == {"id": video_id, "status": "done", "frames_done": N, "frames_total": N, "error": None,
                          "warnings": []}, status  # fmt: skip
        lines = client.get(f"/v1/videos/{video_id}/poses").text.splitlines()

        # The worker (never restarted) still serves new uploads.
        after = upload()
        assert _poll(client, after, 60)["frames_done"] == N
        assert worker.thread.is_alive()
    return lines, reference, worker


@pytest.mark.parametrize("private_redis", [False], indirect=True, ids=["no-persistence"])
def test_a_redis_restart_without_persistence_loses_no_accepted_upload(
    private_redis: PrivateRedis, make_settings, tmp_path: Path
) -> None:
    settings = make_settings(redis_url=private_redis.url, **FAST)
    lines, reference, worker = _kill_redis_mid_upload(private_redis, settings, tmp_path)
    # Everything was lost, so the upload ran again from its first frame: complete, in order,
    # and its tracks are those of an uninterrupted run (one id per shape for the whole clip).
    assert [json.loads(line)["frame_index"] for line in lines] == list(range(N))
    assert lines == reference
    assert worker.worker.metrics.errors.labels("nogroup")._value.get() >= 1  # it met NOGROUP and recovered
    client = redis.Redis.from_url(private_redis.url)
    assert client.xlen(settings.redis_prefix + "jobs") == 0


@pytest.mark.parametrize("private_redis", [True], indirect=True, ids=["append-only"])
def test_a_redis_restart_with_append_only_persistence_loses_no_frame(
    private_redis: PrivateRedis, make_settings, tmp_path: Path
) -> None:
    settings = make_settings(redis_url=private_redis.url, **FAST)
    lines, reference, _ = _kill_redis_mid_upload(private_redis, settings, tmp_path)
    assert [json.loads(line)["frame_index"] for line in lines] == list(range(N))
    ids = lane_ids([json.loads(line) for line in lines])
    assert all(len(v) == 1 for v in ids.values()), ids  # the tracker state survived: no id switch
    assert lines == reference
