"""Uploads survive their gateway: a SIGKILLed gateway's upload is resumed by the next one.

The gateways are real ``posestream serve`` processes (so one can be killed with SIGKILL),
the worker is a real ``Worker`` with the blob pipeline, Redis is real.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from posestream.service.messages import RedisKeys, VideoStatus
from posestream.service.pipeline import build_pipeline
from posestream.service.settings import Settings
from tests.service.clips import write_clip
from tests.service.conftest import ServerThread, WorkerThread, free_port
from tests.service.helpers import POSESTREAM, lane_ids, settings_env, wait_video

ROOT = Path(__file__).resolve().parents[2]
# Short leases and scans so a takeover happens within about two seconds.
FAST_RESUME = dict(upload_lease_ms=1500, upload_lease_renew_ms=300, upload_resume_interval_s=0.3)


class GatewayProcess:
    """``posestream serve`` on a loopback port, its output in ``log``."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = settings_env(settings, "upload_lease_ms", "upload_lease_renew_ms", "upload_resume_interval_s",
                           "upload_inflight", "upload_inflight_bytes", "heartbeat_ttl_s", "heartbeat_interval_s")  # fmt: skip
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [*POSESTREAM, "serve", "--port", str(self.port), "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the gateway did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for g in started:
        g.close()


def _upload(client: httpx.Client, clip: Path, query: str = "") -> str:
    with open(clip, "rb") as fh:
        r = client.post(f"/v1/videos{query}", files={"file": ("clip.mp4", fh, "video/mp4")})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _track_ids(lines: list[str]) -> list[list[int]]:
    return [sorted(p["track_id"] for p in json.loads(line)["poses"]) for line in lines]


def test_a_killed_gateways_upload_is_resumed_by_the_next_gateway(
    make_settings, redis_client: redis.Redis, gateways: list[GatewayProcess], tmp_path: Path
) -> None:
    n = 60
    settings = make_settings(upload_inflight=8, batch_size=2, **FAST_RESUME)
    keys = RedisKeys(settings.redis_prefix)
    clip = write_clip(tmp_path / "clip.mp4", frames=n)
    slow = build_pipeline("blobs", "iou", debug_delay_ms=40)  # slow enough to kill the gateway mid-way
    with WorkerThread(settings, slow):
        gateways.append(first := GatewayProcess(settings, tmp_path / "gateway1.log"))
        with httpx.Client(base_url=first.url, timeout=30) as client:
            reference_id = _upload(client, clip)  # the same clip, uninterrupted
            assert wait_video(client, reference_id)["status"] == "done"
            reference = client.get(f"/v1/videos/{reference_id}/poses").text.splitlines()
            video_id = _upload(client, clip, "?render=true")
            deadline = time.monotonic() + 30
            while (done_at_kill := client.get(f"/v1/videos/{video_id}").json()["frames_done"]) < 10:
                assert time.monotonic() < deadline, "the upload made no progress"
                time.sleep(0.02)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        assert done_at_kill < n  # killed mid-way
        deadline = time.monotonic() + 10
        while redis_client.xlen(keys.jobs):  # the worker finishes the frames that were queued
            assert time.monotonic() < deadline
            time.sleep(0.05)
        poses = Path(settings.data_dir) / "videos" / video_id / "poses.jsonl"
        published = [int(f[b"seq"]) for _, f in redis_client.xrange(keys.results(f"video:{video_id}"))]
        assert max(published) >= len(poses.read_text().splitlines())  # results only the stream holds now
        with open(poses, "a") as fh:
            fh.write('{"frame_index": 99, "time')  # as if killed in the middle of a write

        gateways.append(second := GatewayProcess(settings, tmp_path / "gateway2.log"))
        with httpx.Client(base_url=second.url, timeout=30) as client:
            status = wait_video(client, video_id, timeout=30)
            assert status == {
                "id": video_id,
                "status": "done",
                "frames_done": n,
                "frames_total": n,
                "error": None,
                "warnings": [],
            }
            lines = client.get(f"/v1/videos/{video_id}/poses").text.splitlines()
            r = client.get(f"/v1/videos/{video_id}/render")
            assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"

    assert "resuming the upload" in second.log.read_text()
    assert [json.loads(line)["frame_index"] for line in lines] == list(range(n))
    assert _track_ids(lines) == _track_ids(reference)  # the takeover did not disturb the tracks
    ids = lane_ids([json.loads(line) for line in lines])
    assert all(len(v) == 1 for v in ids.values()), ids
    assert not redis_client.exists(keys.upload_lease(video_id), keys.results(f"video:{video_id}"))


def _orphan(settings: Settings, redis_client: redis.Redis, clip: Path, lines: list[str] = ()) -> str:
    """An upload as a gateway that died while running it leaves it: files, status, no lease."""
    video_id = "ab" * 16
    folder = Path(settings.data_dir) / "videos" / video_id
    folder.mkdir(parents=True)
    (folder / "input").write_bytes(clip.read_bytes())
    (folder / "poses.jsonl").write_text("".join(line + "\n" for line in lines))
    status = VideoStatus(
        id=video_id, status="running", frames_done=len(lines), frames_total=12, created_at=time.time()
    )
    redis_client.hset(RedisKeys(settings.redis_prefix).video(video_id), mapping=status.to_fields())
    return video_id


def test_deleting_a_resumed_upload_on_another_gateway_stops_it(
    make_settings, redis_client, tmp_path: Path
) -> None:
    settings = make_settings(**FAST_RESUME)  # no worker: the upload stays in progress
    keys = RedisKeys(settings.redis_prefix)
    video_id = _orphan(settings, redis_client, write_clip(tmp_path / "clip.mp4", frames=12))
    with ServerThread(settings) as a, ServerThread(settings) as b:
        managers = {s: s.server.config.app.state.ctx.uploads for s in (a, b)}
        deadline = time.monotonic() + 10
        while not (owner := redis_client.get(keys.upload_lease(video_id))):
            assert time.monotonic() < deadline, "no gateway resumed the orphaned upload"
            time.sleep(0.05)
        runner = next(s for s, m in managers.items() if m.owner == owner.decode())
        other = b if runner is a else a
        assert video_id in managers[runner].tasks
        with httpx.Client(base_url=other.url, timeout=30) as client:
            assert client.get(f"/v1/videos/{video_id}").json()["status"] == "running"
            assert client.delete(f"/v1/videos/{video_id}").json() == {"id": video_id, "deleted": True}
            deadline = time.monotonic() + 5
            while video_id in managers[runner].tasks:
                assert time.monotonic() < deadline, "the resumed task kept running after the delete"
                time.sleep(0.05)
            time.sleep(2 * settings.upload_resume_interval_s)  # and nobody resumes it again
            assert client.get(f"/v1/videos/{video_id}").status_code == 404
    assert not redis_client.exists(keys.video(video_id), keys.upload_lease(video_id))
    assert not (Path(settings.data_dir) / "videos" / video_id).exists()


def test_an_upload_whose_session_expired_meanwhile_starts_over(
    make_settings, redis_client, tmp_path: Path
) -> None:
    # Lines written, but no result stream left: the worker's session state expired too
    # (same TTL), so the tracker begins again at frame 0 and so does the upload.
    settings = make_settings(**FAST_RESUME)
    stale = ['{"frame_index":0,"timestamp":0.0,"width":320,"height":240,"poses":[]}'] * 4
    video_id = _orphan(settings, redis_client, write_clip(tmp_path / "clip.mp4", frames=12), stale)
    with (
        WorkerThread(settings),
        ServerThread(settings) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        status = wait_video(client, video_id, timeout=30)
        assert status["status"] == "done" and status["frames_done"] == status["frames_total"] == 12
        lines = client.get(f"/v1/videos/{video_id}/poses").text.splitlines()
    assert [json.loads(line)["frame_index"] for line in lines] == list(range(12))
    assert all(len(json.loads(line)["poses"]) == 3 for line in lines)


def test_a_resumed_uploads_replay_is_bounded_by_bytes_too(
    make_settings, redis_client: redis.Redis, gateways: list[GatewayProcess], tmp_path: Path
) -> None:
    """The frames a resumed upload queues again (for a worker whose last state saves were lost)
    count against UPLOAD_INFLIGHT_BYTES like fresh ones: with no worker running, the resumed
    upload holds at most about twice the bound in Redis, not UPLOAD_INFLIGHT frames of any size."""
    n, bound = 60, 40_000
    settings = make_settings(upload_inflight=32, upload_inflight_bytes=bound, batch_size=2, **FAST_RESUME)
    keys = RedisKeys(settings.redis_prefix)
    clip = write_clip(tmp_path / "clip.mp4", frames=n)
    slow = build_pipeline("blobs", "iou", debug_delay_ms=40)
    with WorkerThread(settings, slow):
        gateways.append(first := GatewayProcess(settings, tmp_path / "gateway1.log"))
        with httpx.Client(base_url=first.url, timeout=30) as client:
            video_id = _upload(client, clip)
            deadline = time.monotonic() + 30
            while client.get(f"/v1/videos/{video_id}").json()["frames_done"] < 25:
                assert time.monotonic() < deadline, "the upload made no progress"
                time.sleep(0.02)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while redis_client.xlen(keys.jobs):  # the worker finishes what was queued, then stops
            assert time.monotonic() < deadline
            time.sleep(0.05)
    poses = Path(settings.data_dir) / "videos" / video_id / "poses.jsonl"
    written = len(poses.read_text().splitlines())
    gateways.append(second := GatewayProcess(settings, tmp_path / "gateway2.log"))
    deadline = time.monotonic() + 15
    while "resuming the upload" not in second.log.read_text():
        assert time.monotonic() < deadline, second.log.read_text()[-2000:]
        time.sleep(0.1)
    time.sleep(1.5)  # let it queue all it may with no worker taking anything
    jobs = [f for _, f in redis_client.xrange(keys.jobs) if f[b"session"] == f"video:{video_id}".encode()]
    sizes = [len(f[b"image"]) for f in jobs]
    replayed = [int(f[b"seq"]) for f in jobs if int(f[b"seq"]) < written]
    assert replayed, "the resume queued no replay"
    assert sum(sizes) <= 2 * bound + 2 * max(sizes), (sum(sizes), len(sizes), written)
    with (
        WorkerThread(settings, build_pipeline("blobs", "iou")),
        httpx.Client(base_url=second.url, timeout=30) as client,
    ):
        assert wait_video(client, video_id, timeout=60)["frames_done"] == n
        lines = client.get(f"/v1/videos/{video_id}/poses").text.splitlines()
    assert [json.loads(line)["frame_index"] for line in lines] == list(range(n))
