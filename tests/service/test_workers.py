"""Two ``posestream worker`` processes on one stream; SIGKILL one mid-stream; ids stay continuous."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import redis
import websockets

from posestream.service.settings import Settings
from tests.service.conftest import ServerThread
from tests.service.helpers import POSESTREAM, frame_message, lane_ids

ROOT = Path(__file__).resolve().parents[2]


def _worker_process(settings: Settings, worker_id: str, delay_ms: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.update({
        "POSESTREAM_REDIS_URL": settings.redis_url, "POSESTREAM_REDIS_PREFIX": settings.redis_prefix,
        "POSESTREAM_LEASE_MS": str(settings.lease_ms), "POSESTREAM_CLAIM_IDLE_MS": str(settings.claim_idle_ms),
        "POSESTREAM_HEARTBEAT_INTERVAL_S": "0.5", "POSESTREAM_HEARTBEAT_TTL_S": "3",
        "POSESTREAM_BATCH_SIZE": "4",
        "POSESTREAM_WORKER_METRICS_PORT": "0",  # two workers on one host would share the default port
    })  # fmt: skip
    cmd = [*POSESTREAM, "worker", "--model", "blobs", "--tracker", "iou",
           "--id", worker_id, "--debug-delay-ms", str(delay_ms)]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_workers(client: redis.Redis, settings: Settings, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.zcount(settings.redis_prefix + "workers", time.time() - 3, "+inf") < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {n} workers came up")
        time.sleep(0.1)


def _busiest(client: redis.Redis, settings: Settings, session: str) -> tuple[str, int]:
    """(worker with the most pending jobs, that count); the session's lease holder if none has any."""
    info = client.xpending(settings.redis_prefix + "jobs", "workers")
    consumers = sorted(info["consumers"], key=lambda c: -int(c["pending"]))
    if consumers and int(consumers[0]["pending"]) > 0:
        name = consumers[0]["name"]
        return (name.decode() if isinstance(name, bytes) else name), int(consumers[0]["pending"])
    holder = client.get(settings.redis_prefix + f"lease:{session}")
    return (holder.decode() if holder else "wa"), 0


def test_killing_a_worker_mid_stream_keeps_track_ids_continuous(
    make_settings, redis_client: redis.Redis
) -> None:
    settings = make_settings(lease_ms=1000, claim_idle_ms=1200, max_inflight=8)
    procs = {wid: _worker_process(settings, wid, delay_ms=40) for wid in ("wa", "wb")}
    killed: list[str] = []
    victim_had_pending: list[int] = []
    try:
        _wait_workers(redis_client, settings, 2)
        with ServerThread(settings) as server:

            async def run() -> list[dict]:
                async with websockets.connect(server.ws_url + "/v1/streams") as ws:
                    await ws.send(json.dumps({"fps": 25, "width": 320, "height": 240, "mode": "ordered"}))
                    session = json.loads(await ws.recv())["session"]

                    async def send() -> None:
                        for i in range(120):
                            await ws.send(frame_message(i))
                        await ws.send(json.dumps({"end": True}))

                    sender = asyncio.create_task(send())
                    results: list[dict] = []
                    async for msg in ws:
                        obj = json.loads(msg)
                        if "poses" not in obj:
                            continue
                        results.append(obj)
                        if len(results) == 40:
                            # Kill the worker holding frames of the session right now (pending, unacked).
                            victim, had_pending = _busiest(redis_client, settings, session)
                            procs[victim].send_signal(signal.SIGKILL)
                            killed.append(victim)
                            victim_had_pending.append(had_pending)
                    await sender
                    return results

            results = asyncio.run(asyncio.wait_for(run(), 90))
        assert killed
        assert [r["frame_index"] for r in results] == list(range(120))
        ids = lane_ids(results)
        assert all(len(v) == 1 for v in ids.values()), ids  # no id switch across the takeover
        assert sorted(i for v in ids.values() for i in v) == [0, 1, 2]
        survivor = next(p for w, p in procs.items() if w not in killed)
        assert survivor.poll() is None
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for wid, p in procs.items():
            try:
                out, _ = p.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            if wid not in killed:
                assert p.returncode == 0, out[-3000:]  # graceful SIGTERM shutdown
                assert "stopped after" in out
                if victim_had_pending[0]:
                    assert "claimed" in out  # the survivor took over the dead worker's pending frames


def test_worker_shuts_down_gracefully_on_sigterm(make_settings, redis_client: redis.Redis) -> None:
    settings = make_settings()
    p = _worker_process(settings, "solo", delay_ms=0)
    try:
        _wait_workers(redis_client, settings, 1)
    finally:
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=15)
    assert p.returncode == 0, out
    assert redis_client.zcard(settings.redis_prefix + "workers") == 0  # deregistered
