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

from posestream.service.pipeline import build_pipeline
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


def _kill_redis_mid_upload(
    server: PrivateRedis, settings, tmp_path: Path
) -> tuple[list[str], list[str], WorkerThread]:
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


def test_an_upload_resumes_when_redis_lost_the_workers_last_state_saves(
    make_settings, redis_client, tmp_path: Path
) -> None:
    # What a Redis host crash with appendfsync everysec can leave: the results of frames 2
    # and 3 reached the gateway (they are in poses.jsonl) but the worker's state saves after
    # them were lost, so the session waits for frame 2 while the upload resumes at frame 4.
    from posestream.models.data.video import iter_video_frames
    from posestream.service.messages import FrameJob, FrameResult, RedisKeys, VideoStatus
    from posestream.service.worker.worker import Worker
    from tests.service.clips import jpeg

    settings = make_settings(upload_lease_ms=1500, upload_lease_renew_ms=300, upload_resume_interval_s=0.3)
    keys = RedisKeys(settings.redis_prefix)
    video_id = "ef" * 16
    session = f"video:{video_id}"
    folder = Path(settings.data_dir) / "videos" / video_id
    folder.mkdir(parents=True)
    clip = write_clip(folder / "input.mp4", frames=12)
    clip.rename(folder / "input")
    frames = list(iter_video_frames(folder / "input"))
    worker = Worker(settings, build_pipeline("blobs", "iou"), worker_id="before")
    for seq in (0, 1):
        i, ts, rgb = frames[seq]
        job = FrameJob(
            session=session, seq=seq, frame_index=i, timestamp=ts, width=320, height=240, image=jpeg(rgb, 95)
        )
        redis_client.xadd(keys.jobs, job.to_fields())
    while redis_client.xlen(keys.results(session)) < 2:
        worker.run_once()
    results = [FrameResult.from_fields(f) for _, f in redis_client.xrange(keys.results(session))]
    for seq in (2, 3):  # published and collected, then the state save was lost
        forged = results[1].model_copy(update={"seq": seq})
        redis_client.xadd(keys.results(session), forged.to_fields())
    (folder / "poses.jsonl").write_text("".join(r.frame + "\n" for r in results) * 2)
    status = VideoStatus(
        id=video_id, status="running", frames_done=4, frames_total=12, created_at=time.time()
    )
    redis_client.hset(keys.video(video_id), mapping=status.to_fields())
    assert worker.store.load(session)[0].frame_index == 2  # the session is behind the upload

    with (
        WorkerThread(settings),
        ServerThread(settings) as gateway,
        httpx.Client(base_url=gateway.url, timeout=30) as c,
    ):
        status = _poll(c, video_id, 30)
        assert status["status"] == "done" and status["frames_done"] == 12, status
        lines = c.get(f"/v1/videos/{video_id}/poses").text.splitlines()
    assert [json.loads(line)["frame_index"] for line in lines] == [
        0,
        1,
        0,
        1,
        *range(4, 12),
    ]  # lines 2, 3 as forged
