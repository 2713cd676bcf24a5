"""Fault and soak harness (issue 17): probe table, fault loops, ordered-stream soak, memory soak.

Starts a real gateway (``posestream serve`` subprocess) and real blob workers
(``posestream worker`` subprocesses) on a private Redis key prefix, then:

1. runs the stream fault probes as a table (case, expected, got, pass): abrupt and clean
   closes with ack resume, gateway SIGTERM and kill -9 mid-stream, kill -9 of a worker,
   old clients (no ack, no credit), dead peers, SIGTERM with open streams, another key's
   session, oversized hellos and corrupt frames, a job Redis lost;
2. soaks 16 and 64 concurrent ordered streams (clients within their credit, unpaced) for
   ``--seconds`` each: sent, answered, lost, closes by keepalive (1011), p50/p95/p99
   latency (frame sent -> its result received);
3. fault loops on a private ``redis-server``: kill -9 a worker, the gateway, or Redis (with
   append-only persistence fsynced always, and without) mid-upload and mid-stream, again and
   again for ``--fault-seconds`` each, counting accepted frames lost (uploads: every frame
   one line in ``poses.jsonl``, in order; ordered streams resumed with ``ack``);
4. a memory soak: ``--frames`` small frames (160x120) through the blobs pipeline on
   concurrent ordered streams, with the RSS of the gateway and each worker and Redis
   ``used_memory`` sampled every ``--sample-s`` seconds ("flat": the mean of the last
   samples within 10 % of the mean of the samples after warm-up).

    python benchmarks/reliability.py              # 60 s per soak level and fault, 100,000 frames
    python benchmarks/reliability.py --short      # CI-sized: 5 s per level, a round per fault, 3,000 frames
    python benchmarks/reliability.py --only faults,memory

Each part records its own section of benchmarks/RESULTS.md (``reliability``,
``reliability-faults``, ``reliability-memory``) when it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results import cpu_name, record_section  # noqa: E402
from posestream.service.stream_client import StreamRun, run_stream  # noqa: E402
from tests.service.clips import jpeg, shapes_frame  # noqa: E402

POSESTREAM = [sys.executable, "-c", "import sys; from posestream.service.cli import main; sys.exit(main())"]
HELLO = {"fps": 25, "width": 320, "height": 240, "mode": "ordered"}
IMAGES = [jpeg(shapes_frame(i)) for i in range(64)]
# Short takeover times so the fault cases finish in seconds (same values as the tests).
FAST = {"LEASE_MS": "2000", "CLAIM_IDLE_MS": "1500", "HEARTBEAT_INTERVAL_S": "0.5", "HEARTBEAT_TTL_S": "3",
        "SEQ_GAP_TIMEOUT_MS": "5000", "STREAM_LOCK_MS": "2000", "SESSION_TTL_S": "300"}  # fmt: skip


def image(i: int) -> bytes:
    return IMAGES[i % len(IMAGES)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """A gateway and workers as subprocesses sharing one private Redis prefix."""

    def __init__(self, redis_url: str, workers: int, **env: str) -> None:
        self.prefix = f"rel:{uuid.uuid4().hex[:8]}:"
        self.data = Path(tempfile.mkdtemp(prefix="posestream-rel-"))
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), POSESTREAM_REDIS_URL=redis_url,
                        POSESTREAM_REDIS_PREFIX=self.prefix, POSESTREAM_DATA_DIR=str(self.data),
                        POSESTREAM_MODEL="blobs", POSESTREAM_TRACKER="iou", POSESTREAM_WORKER_METRICS_PORT="0",
                        **{"POSESTREAM_" + k: v for k, v in {**FAST, **env}.items()})  # fmt: skip
        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.gateway: subprocess.Popen | None = None
        self.port = 0
        self.workers = [self.start_worker() for _ in range(workers)]
        self.start_gateway()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/streams"

    def start_worker(self) -> subprocess.Popen:
        return subprocess.Popen([*POSESTREAM, "worker"], cwd=ROOT, env=self.env, stderr=subprocess.DEVNULL)

    def start_gateway(self) -> None:
        self.port = free_port()
        self.gateway = subprocess.Popen([*POSESTREAM, "serve", "--port", str(self.port), "--log-level", "error"],
                                        cwd=ROOT, env=self.env, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                break
            if time.monotonic() > deadline or self.gateway.poll() is not None:
                raise SystemExit("the gateway did not start")
            time.sleep(0.1)
        while self.redis.zcard(self.prefix + "workers") < len([w for w in self.workers if w.poll() is None]):
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not come up")
            time.sleep(0.1)

    def stop_gateway(self, sig: int = signal.SIGTERM) -> float:
        """Signal the gateway; seconds until it exited."""
        assert self.gateway is not None
        t0 = time.monotonic()
        self.gateway.send_signal(sig)
        try:
            self.gateway.wait(60)
        except subprocess.TimeoutExpired:
            self.gateway.kill()
            self.gateway.wait()
        return time.monotonic() - t0

    def close(self) -> None:
        procs = [*self.workers, *([self.gateway] if self.gateway else [])]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        keys = list(self.redis.scan_iter(match=self.prefix + "*", count=1000))
        if keys:
            self.redis.delete(*keys)
        shutil.rmtree(self.data, ignore_errors=True)


@contextlib.contextmanager
def stack(redis_url: str, workers: int = 1, **env: str) -> Iterator[Stack]:
    s = Stack(redis_url, workers, **env)
    try:
        yield s
    finally:
        s.close()


async def resume(st: Stack, session: str, ack: int, count: int, **kw: object) -> StreamRun:
    """Resume, retrying while the previous connection's lock is held (4409), for up to 15 s."""
    end = time.monotonic() + 15
    while True:
        run = await run_stream(st.url, HELLO, image, count, session=session, ack=ack, **kw)  # type: ignore[arg-type]
        if run.close_code != 4409 or time.monotonic() > end:
            return run
        await asyncio.sleep(0.2)


def _contiguous(results: list[dict]) -> str:
    seqs = [r["seq"] for r in results]
    idx = [r.get("frame_index") for r in results]
    ok = seqs == list(range(len(seqs))) and idx == list(range(len(idx)))
    return (
        f"{len(seqs)} results, seq and index 0..{len(seqs) - 1} once each"
        if ok
        else f"gaps/repeats: {seqs[:40]}"
    )


# ---- the probe cases ---------------------------------------------------------------------------
async def case_disconnects(st: Stack) -> tuple[str, bool]:
    every: list[dict] = []
    session = None
    for c in range(8):
        if session is None:
            run = await run_stream(st.url, HELLO, image, 40, stop_after=3, stop="abort")
        else:
            run = await resume(st, session, every[-1]["seq"] if every else -1, 40, stop_after=3 + c,
                               stop="abort" if c % 2 == 0 else "close")  # fmt: skip
        session = run.ready["session"]
        every += run.results
    last = await resume(st, session, every[-1]["seq"], 10, stop="end")
    every += last.results
    got = _contiguous(every)
    return got, got.endswith("once each") and last.close_code == 1000


async def case_gateway_fault(st: Stack, sig: int) -> tuple[str, bool]:
    first = await run_stream(st.url, HELLO, image, 10**6, stop_after=1, stop="abort", timeout_s=5)
    session = first.ready["session"]
    every = list(first.results)
    task = asyncio.create_task(resume(st, session, every[-1]["seq"], 10**6, timeout_s=5))
    await asyncio.sleep(1.5)
    took = await asyncio.to_thread(st.stop_gateway, sig)
    mid = await task
    every += mid.results
    await asyncio.to_thread(st.start_gateway)
    last = await resume(st, session, every[-1]["seq"], 20, stop="end")
    every += last.results
    got = _contiguous(every) + f"; mid-stream close {mid.close_code}, gateway exited in {took:.1f} s"
    return got, "once each" in got and last.close_code == 1000


async def case_worker_kill(st: Stack) -> tuple[str, bool]:
    async def kill_soon() -> None:
        await asyncio.sleep(1.0)
        st.workers[0].kill()

    killer = asyncio.create_task(kill_soon())
    run = await run_stream(st.url, HELLO, image, 150, stop="end", timeout_s=30)
    await killer
    got = _contiguous(run.results) + f"; close {run.close_code}"
    return got, "once each" in got and run.close_code == 1000 and len(run.results) == 150


async def case_old_client(st: Stack) -> tuple[str, bool]:
    session, nxt = None, 0
    for c in range(8):
        if session is None:
            run = await run_stream(st.url, HELLO, image, 30, honour_credit=False, stop_after=1, stop="abort")
        else:
            run = await resume(st, session, None, 30, start=nxt, honour_credit=False,  # type: ignore[arg-type]
                               stop_after=1 + c % 4, stop="abort", timeout_s=10)  # fmt: skip
        if not run.results:
            return f"resume {c}: no result in 10 s (close {run.close_code})", False
        session, nxt = run.ready["session"], max(run.sent) + 1
    last = await resume(st, session, None, 20, start=nxt, honour_credit=False, stop="end")  # type: ignore[arg-type]
    ok = [r["frame_index"] for r in last.results] == last.sent and last.close_code == 1000
    return f"last resume: {len(last.results)}/{len(last.sent)} answered, close {last.close_code}", ok


async def case_dead_peer(st: Stack) -> tuple[str, bool]:
    import websockets

    async with websockets.connect(st.url) as ws:
        await ws.send(json.dumps(HELLO))
        session = json.loads(await ws.recv())["session"]
        for i in range(60):  # past the credit: the server stops reading this client
            await ws.send(struct.pack(">Q", i) + image(i))
        await asyncio.sleep(0.3)
        ws.transport.abort()
    t0 = time.monotonic()
    while True:
        again = await run_stream(st.url, HELLO, image, 0, session=session, stop="end", timeout_s=5)
        if again.close_code != 4409 or time.monotonic() - t0 > 15:
            break
        await asyncio.sleep(0.1)
    took = time.monotonic() - t0
    return f"resumable after {took:.1f} s (close {again.close_code})", again.close_code == 1000 and took < 4


async def case_sigterm(st: Stack) -> tuple[str, bool]:
    import websockets

    socks = []
    for honours in (True, False, False):
        ws = await websockets.connect(st.url)
        await ws.send(json.dumps(HELLO))
        await ws.recv()
        for i in range(16 if honours else 60):
            await ws.send(struct.pack(">Q", i) + image(i))
        socks.append(ws)
    took = await asyncio.to_thread(st.stop_gateway, signal.SIGTERM)
    locks = list(st.redis.scan_iter(match=st.prefix + "conn:*"))
    for ws in socks:
        await ws.close()
    await asyncio.to_thread(st.start_gateway)
    return f"exited in {took:.1f} s, {len(locks)} locks left", took < 5 and not locks


async def case_other_key(st: Stack) -> tuple[str, bool]:
    k1, k2 = {"additional_headers": {"X-API-Key": "k1"}}, {"additional_headers": {"X-API-Key": "k2"}}
    first = await run_stream(st.url, HELLO, image, 3, **k1)
    other = await run_stream(st.url, HELLO, image, 3, session=first.ready["session"], **k2)
    return (
        f"close {other.close_code}, {len(other.results)} results",
        other.close_code == 4404 and not other.results,
    )


async def case_huge_hello(st: Stack) -> tuple[str, bool]:
    run = await run_stream(st.url, {**HELLO, "width": 16384, "height": 16384}, image, 1)
    return f"close {run.close_code}: {run.close_reason[:80]}", run.close_code == 4400


async def case_corrupt_body(st: Stack) -> tuple[str, bool]:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 240, 320, 1) + b"\x01\x11\x00"
    bad = b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9) + sof + b"\xff\xda" + bytes(64)
    run = await run_stream(st.url, HELLO, lambda i: bad if i == 1 else image(i), 3)
    codes = [r.get("error", {}).get("code", "ok") for r in run.results]
    return f"results {codes}, close {run.close_code}", codes == [
        "ok",
        "frame_failed",
        "ok",
    ] and run.close_code == 1000


async def case_lost_job(st: Stack) -> tuple[str, bool]:
    from posestream.service.messages import FrameJob, FrameResult, RedisKeys

    keys = RedisKeys(st.prefix)
    job = FrameJob(
        session="lost", seq=1, frame_index=1, timestamp=0.04, width=320, height=240, image=image(1)
    )
    st.redis.xadd(keys.jobs, job.to_fields())  # seq 0 "lost by Redis"
    t0 = time.monotonic()
    while st.redis.xlen(keys.results("lost")) < 2 and time.monotonic() - t0 < 20:
        await asyncio.sleep(0.1)
    res = [FrameResult.from_fields(f) for _, f in st.redis.xrange(keys.results("lost"))]
    got = [(r.seq, r.error.split(":")[0] or "ok") for r in res]
    return f"{got} after {time.monotonic() - t0:.1f} s", got == [(0, "frame_lost"), (1, "ok")]


CASES = [
    (
        "8 abrupt/clean closes mid-stream, resume with ack",
        "every seq and frame index once",
        case_disconnects,
        {},
    ),
    ("gateway SIGTERM mid-stream, restart, resume", "every seq once, exit < 5 s", "sigterm-restart", {}),
    ("gateway kill -9 mid-stream, restart, resume", "every seq once", "kill-restart", {}),
    (
        "worker kill -9 mid-stream (2 workers)",
        "150/150 answered once, close 1000",
        case_worker_kill,
        {"workers": 2},
    ),
    (
        "old client (no ack, no credit), 8 abrupt closes",
        "never stuck: every new frame answered",
        case_old_client,
        {},
    ),
    ("dead peer past its credit", "session resumable < 4 s (not 4409)", case_dead_peer, {}),
    ("SIGTERM with 3 open streams, no worker", "exit < 5 s, no lock left", case_sigterm, {"workers": 0}),
    ("another API key resumes the session", "4404, nothing sent", case_other_key, {"API_KEYS": "k1,k2"}),
    ("hello 16384x16384", "4400 (max_frame_pixels)", case_huge_hello, {}),
    ("corrupt JPEG body, valid header", "frame_failed result, stream goes on", case_corrupt_body, {}),
    ("a job lost in Redis (seq gap)", "frame_lost after SEQ_GAP_TIMEOUT_MS, then on", case_lost_job, {}),
]


def run_cases(redis_url: str) -> list[tuple[str, str, str, bool]]:
    rows = []
    for name, expected, fn, opts in CASES:
        opts = dict(opts)
        workers = int(opts.pop("workers", 1))
        with stack(redis_url, workers, **opts) as st:
            t0 = time.monotonic()
            try:
                if fn == "sigterm-restart":
                    got, ok = asyncio.run(case_gateway_fault(st, signal.SIGTERM))
                elif fn == "kill-restart":
                    got, ok = asyncio.run(case_gateway_fault(st, signal.SIGKILL))
                else:
                    got, ok = asyncio.run(fn(st))  # type: ignore[operator]
            except Exception as exc:  # a broken case is a failed row, not a crashed harness
                got, ok = f"{type(exc).__name__}: {exc}"[:120], False
        rows.append((name, expected, got, ok))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {got} ({time.monotonic() - t0:.1f} s)", flush=True)
    return rows


# ---- the soak ------------------------------------------------------------------------------------
async def soak_level(st: Stack, streams: int, seconds: float) -> dict:
    # Bounded by time: each client sends within its credit until the time is up, then ends.
    t0 = time.perf_counter()
    runs = await asyncio.gather(*(_timed_stream(st.url, seconds) for _ in range(streams)))
    wall = time.perf_counter() - t0
    lat = np.array([x for r in runs for x in r.latencies_s]) * 1000
    sent = sum(len(r.sent) for r in runs)
    answered = sum(len(r.results) for r in runs)
    pct = {p: (round(float(np.percentile(lat, p)), 1) if lat.size else None) for p in (50, 95, 99)}
    return {
        "streams": streams, "seconds": seconds, "sent": sent, "answered": answered, "lost": sent - answered,
        "closed_1011": sum(r.close_code == 1011 for r in runs),
        "closed_other": sum(r.close_code not in (1000, 1011) for r in runs),
        "paused_reads": sum(r.probes for r in runs),
        "results_per_s": round(answered / wall, 1), "p50_ms": pct[50], "p95_ms": pct[95], "p99_ms": pct[99],
    }  # fmt: skip


async def _timed_stream(url: str, seconds: float) -> StreamRun:
    """One ordered stream that sends within its credit for ``seconds``, then ends and drains."""
    return await run_stream(url, HELLO, image, 1 << 40, duration_s=seconds, timeout_s=600.0)


# ---- the fault loops -----------------------------------------------------------------------------
FAULTS = ("worker", "gateway", "redis-aof", "redis-no-persistence")
FAULT_EXPECTED = {
    "worker": "0 lost (uploads and streams), nothing repeated",
    "gateway": "0 lost (uploads and streams), nothing repeated",
    "redis-aof": "0 lost (uploads and streams), nothing repeated",
    "redis-no-persistence": "uploads 0 lost (re-run from frame 0); stream sessions lost (4404) with their "
    "unanswered frames; new work served with no restart",
}
# Fast upload takeover so a killed gateway's upload resumes within seconds; a small per-batch delay keeps
# an upload and a stream in flight long enough to be hit by the fault.
FAULT_ENV = {"UPLOAD_LEASE_MS": "1500", "UPLOAD_LEASE_RENEW_MS": "300", "UPLOAD_RESUME_INTERVAL_S": "0.3",
             "DEBUG_DELAY_MS": "20", "BATCH_SIZE": "2"}  # fmt: skip
UPLOAD_FRAMES = 32
STREAM_FRAMES = 300
STREAM_INTERVAL_S = 0.025  # the stream is paced (25 fps) so that it is still running when the upload is hit


class FaultStack(Stack):
    """A Stack on a private ``redis-server`` (restartable by PID, with or without append-only persistence)."""

    def __init__(self, folder: Path, appendonly: bool, workers: int = 2, **env: str) -> None:
        from tests.service.redis_server import PrivateRedis

        self.server = PrivateRedis(folder / "redis", appendonly=appendonly).start()
        super().__init__(self.server.url, workers, **env)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.server.stop()

    def kill(self, target: str) -> None:
        """kill -9 ``target`` (a worker, the gateway or Redis), wait a moment, start it again."""
        if target == "worker":
            victim = self.workers.pop(0)
            victim.kill()
            victim.wait()
            time.sleep(0.5)
            self.workers.append(self.start_worker())
        elif target == "gateway":
            self.stop_gateway(signal.SIGKILL)
            time.sleep(0.5)
            self.start_gateway()
        else:
            self.server.kill()
            time.sleep(0.5)
            self.server.start()


async def _upload(st: Stack, clip: Path) -> str:
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"http://127.0.0.1:{st.port}/v1/videos",
                              files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")})  # fmt: skip
    if r.status_code != 202:
        raise RuntimeError(f"upload refused: {r.status_code} {r.text[:200]}")
    return str(r.json()["id"])


async def _upload_outcome(st: Stack, video_id: str, frames: int, timeout_s: float = 90) -> dict:
    """Poll (through whichever gateway runs now) until done/failed; the poses' frame indices vs 0..frames-1."""
    import httpx

    deadline = time.monotonic() + timeout_s
    t0 = time.monotonic()
    status: dict = {}
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < deadline:
            base = f"http://127.0.0.1:{st.port}/v1/videos/{video_id}"
            with contextlib.suppress(httpx.HTTPError):
                r = await client.get(base)
                if r.status_code == 200:
                    status = r.json()
                    if status["status"] in ("done", "failed"):
                        lines = (await client.get(base + "/poses")).text.splitlines()
                        idx = [json.loads(line)["frame_index"] for line in lines]
                        return {"status": status["status"], "lost": len(set(range(frames)) - set(idx)),
                                "in_order": idx == list(range(frames)), "took_s": time.monotonic() - t0}  # fmt: skip
            await asyncio.sleep(0.1)
    return {"status": f"stuck ({status.get('status', '404')})", "lost": frames, "in_order": False,
            "took_s": time.monotonic() - t0}  # fmt: skip


async def _ordered_stream(st: Stack, frames: int, timeout_s: float = 120) -> dict:
    """Stream frames 0..frames-1 in ordered mode; after each disconnect resume with ``ack`` (retrying while
    the gateway or Redis is down or the old lock is held), sending again after the server's ``last_index``."""
    from websockets.exceptions import WebSocketException

    every: list[dict] = []
    session: str | None = None
    sent_max = -1
    closes: list[int | None] = []
    deadline = time.monotonic() + timeout_s
    gone = complete = False
    while time.monotonic() < deadline:
        try:
            ack = (every[-1]["seq"] if every else -1) if session else None
            run = await run_stream(st.url, HELLO, image, frames, session=session, ack=ack, last=frames - 1,
                                   stop="end", interval_s=STREAM_INTERVAL_S, timeout_s=5)  # fmt: skip
        except (OSError, TimeoutError, WebSocketException):  # the gateway is down: try again
            closes.append(None)
            await asyncio.sleep(0.2)
            continue
        if run.ready.get("session"):
            session = run.ready["session"]
        sent_max = max([sent_max, *run.sent])
        every += run.results
        closes.append(run.close_code)
        if run.close_code == 4404:  # the session is gone (Redis lost it)
            gone = True
            break
        queued = max([int(run.ready.get("last_index", -1)), *run.sent])
        if run.close_code == 1000 and run.end is not None and queued >= frames - 1:
            complete = True
            break
        await asyncio.sleep(0.2)
    ok = [r for r in every if "error" not in r]
    answered = {r["frame_index"] for r in ok}
    seqs = [r["seq"] for r in every]
    return {
        "session_lost": gone, "complete": complete, "sent": sent_max + 1, "answered": len(answered),
        "lost": (sent_max + 1) - len(answered), "frame_lost": len(every) - len(ok),
        "in_order": seqs == list(range(len(seqs))) and [r["frame_index"] for r in ok] == sorted(answered)
        and len(ok) == len(answered),
        "closes": closes,
    }  # fmt: skip


async def _frames_done(st: Stack, video_id: str) -> int:
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"http://127.0.0.1:{st.port}/v1/videos/{video_id}")
    return int(r.json()["frames_done"]) if r.status_code == 200 else -1


async def fault_round(st: FaultStack, target: str, clip: Path, rng: np.random.Generator) -> dict:
    """One upload and one ordered stream in flight, ``target`` killed -9 and restarted once the upload is
    20-70 % done, both followed to their end; then a fresh stream proves the service serves new work
    without any other restart. ``hit``: the upload and the stream were both unfinished at the kill."""
    stream = asyncio.create_task(_ordered_stream(st, STREAM_FRAMES))
    await asyncio.sleep(0.5)
    video_id = await _upload(st, clip)
    at = int(UPLOAD_FRAMES * rng.uniform(0.2, 0.7))
    deadline = time.monotonic() + 60
    while (done := await _frames_done(st, video_id)) < at and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    hit = 0 <= done < UPLOAD_FRAMES and not stream.done()
    await asyncio.to_thread(st.kill, target)
    fresh = await _fresh_stream(st)  # right after the restart, while the upload and the stream go on
    upload = await _upload_outcome(st, video_id, UPLOAD_FRAMES)
    streamed = await stream
    return {"upload": upload, "stream": streamed, "fresh_ok": fresh is not None, "recovery_s": fresh or 0.0,
            "hit": hit, "killed_at": done}  # fmt: skip


async def _fresh_stream(st: Stack, timeout_s: float = 60) -> float | None:
    """Seconds until a new 5-frame stream is served in full (None: not within ``timeout_s``)."""
    from websockets.exceptions import WebSocketException

    t0 = time.monotonic()
    while time.monotonic() < t0 + timeout_s:
        with contextlib.suppress(OSError, TimeoutError, WebSocketException):
            run = await run_stream(st.url, HELLO, image, 5, stop="end", timeout_s=10)
            if run.close_code == 1000 and len(run.results) == 5:
                return time.monotonic() - t0
        await asyncio.sleep(0.3)
    return None


def fault_loop(target: str, seconds: float, seed: int = 0) -> dict:
    """Rounds of :func:`fault_round` against ``target`` for ``seconds`` (at least one round)."""
    from tests.service.clips import write_clip

    rng = np.random.default_rng(seed)
    folder = Path(tempfile.mkdtemp(prefix="posestream-fault-"))
    clip = write_clip(folder / "clip.mp4", frames=UPLOAD_FRAMES)
    rounds: list[dict] = []
    try:
        with contextlib.closing(FaultStack(folder, appendonly=target == "redis-aof", **FAULT_ENV)) as st:
            end = time.monotonic() + seconds
            # At least one round, and (up to 3 rounds) until one kill fell mid-flight.
            while time.monotonic() < end or (len(rounds) < 3 and not any(r.get("hit") for r in rounds)):
                try:
                    rounds.append(asyncio.run(fault_round(st, target, clip, rng)))
                except Exception as exc:  # a broken round is a failed round, not a crashed harness
                    rounds.append({"error": f"{type(exc).__name__}: {exc}"[:160]})
                    break
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return summarise_faults(target, rounds)


def summarise_faults(target: str, rounds: list[dict]) -> dict:
    good = [r for r in rounds if "error" not in r]
    ups = [r["upload"] for r in good]
    sts = [r["stream"] for r in good]
    row = {
        "fault": target, "rounds": len(rounds), "errors": [r["error"] for r in rounds if "error" in r],
        "upload_frames": UPLOAD_FRAMES * len(ups), "upload_lost": sum(u["lost"] for u in ups),
        "uploads_in_order": sum(u["in_order"] for u in ups), "uploads_done": sum(u["status"] == "done" for u in ups),
        "stream_sent": sum(s["sent"] for s in sts), "stream_answered": sum(s["answered"] for s in sts),
        "stream_lost": sum(s["lost"] for s in sts), "stream_frame_lost": sum(s["frame_lost"] for s in sts),
        "streams_in_order": sum(s["in_order"] for s in sts), "sessions_lost": sum(s["session_lost"] for s in sts),
        "streams_complete": sum(s["complete"] for s in sts),
        "recovered": sum(r["fresh_ok"] for r in good), "hits": sum(r["hit"] for r in good),
        "killed_at": [r["killed_at"] for r in good],
        "close_codes": sorted({c for s in sts for c in s["closes"] if c is not None}),
        "max_recovery_s": round(max((r["recovery_s"] for r in good), default=0.0), 1),
    }  # fmt: skip
    n = len(good)
    uploads_ok = row["upload_lost"] == 0 and row["uploads_in_order"] == n and row["uploads_done"] == n
    if target == "redis-no-persistence":
        # README: streams' sessions, queued jobs and uncollected results go with Redis; uploads re-run.
        streams_ok = row["streams_in_order"] == n
    else:
        streams_ok = (
            row["stream_lost"] == 0
            and row["streams_in_order"] == n
            and not row["sessions_lost"]
            and row["streams_complete"] == n
        )
    # Every round must be clean; a round whose kill came after its upload ended (a timing miss, shown in
    # the hit column) still checks the stream and the recovery.
    row["pass"] = bool(
        n and not row["errors"] and uploads_ok and streams_ok and row["recovered"] == n and row["hits"] >= 1
    )
    return row


def fault_lines(rows: list[dict], seconds: float) -> list[str]:
    lines = [
        f"Fault loops: each round uploads a {UPLOAD_FRAMES}-frame clip and streams {STREAM_FRAMES} frames in ordered "
        f"mode (paced at {1 / STREAM_INTERVAL_S:g} fps), kills the target with SIGKILL once the upload is 20-70 % done (hit = upload "
        f"and stream both unfinished at the kill), starts it again 0.5 s later, follows the "
        f"upload to its end and the stream through `ack` resumes, and meanwhile opens fresh 5-frame streams until "
        f"one is served in full (recovered; recovery = seconds from the restart, no other process restarted); "
        f"rounds repeat for {seconds:g} s per fault. 2 blob workers, private "
        "`redis-server` (append-only: `--appendonly yes --appendfsync always`).", "",
        "| fault (kill -9) | expected | rounds | upload frames (lost) | uploads in order | stream frames sent "
        "(answered, lost) | stream close codes seen | sessions lost (4404) | hit mid-flight | recovered | max recovery (s) | pass |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    for r in rows:
        err = f" ({'; '.join(r['errors'])})" if r["errors"] else ""
        lines.append(
            f"| {r['fault']} | {FAULT_EXPECTED[r['fault']]} | {r['rounds']} | {r['upload_frames']} ({r['upload_lost']}) "
            f"| {r['uploads_in_order']}/{r['rounds']} | {r['stream_sent']} ({r['stream_answered']}, {r['stream_lost']}) "
            f"| {', '.join(map(str, r['close_codes']))} | {r['sessions_lost']} | {r['hits']}/{r['rounds']} "
            f"| {r['recovered']}/{r['rounds']} | {r['max_recovery_s']} "
            f"| {'yes' if r['pass'] else '**no**'}{err.replace('|', '/')} |"
        )  # fmt: skip
    return lines


# ---- the memory soak -----------------------------------------------------------------------------
SMALL = {"fps": 25, "width": 160, "height": 120, "mode": "ordered"}
SMALL_IMAGES = [jpeg(shapes_frame(i, 160, 120)) for i in range(64)]


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (``VmRSS`` of ``/proc/PID/status``), in bytes; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def flatness(series: list[float], warm_frac: float = 0.25, tail: int = 3, tolerance: float = 0.10) -> dict:
    """Summary of one memory series: first, warm (the mean of the samples just after the first
    ``warm_frac`` of them), last (the mean of the last ``tail``), max; flat when |last / warm - 1| <= tolerance."""
    if len(series) < 2:
        return {
            "first": series[0] if series else 0,
            "warm": 0,
            "last": 0,
            "max": 0,
            "ratio": None,
            "flat": False,
        }
    start = min(int(len(series) * warm_frac), len(series) - 1)
    warm = float(np.mean(series[start : start + tail]))
    last = float(np.mean(series[-tail:]))
    ratio = last / warm if warm else float("inf")
    return {"first": series[0], "warm": warm, "last": last, "max": max(series), "ratio": round(ratio, 3),
            "flat": abs(ratio - 1) <= tolerance}  # fmt: skip


async def _memory_stream(url: str, frames: int, session: str | None, ack: int) -> StreamRun:
    return await run_stream(url, SMALL, lambda i: SMALL_IMAGES[i % len(SMALL_IMAGES)], frames, stop="end",
                            session=session, ack=ack if session else None, timeout_s=60)  # fmt: skip


def memory_soak(frames: int, streams: int, workers: int, sample_s: float, results_maxlen: int = 1000) -> dict:
    """``frames`` 160x120 frames over ``streams`` concurrent ordered streams (one session each, one
    connection per 5,000 frames, resumed with ``ack``); memory sampled every ``sample_s``.
    ``results_maxlen``: the ``RESULTS_MAXLEN`` bound of each session's results in Redis."""
    import redis

    folder = Path(tempfile.mkdtemp(prefix="posestream-mem-"))
    samples: dict[str, list[float]] = {}
    t0 = time.monotonic()
    try:
        env = {"RESULTS_MAXLEN": str(results_maxlen)}
        with contextlib.closing(FaultStack(folder, appendonly=False, workers=workers, **env)) as st:
            r = redis.Redis.from_url(st.server.url)
            procs = {"gateway": st.gateway, **{f"worker {i}": w for i, w in enumerate(st.workers)}}
            done = [0, 0, 0]  # answered, sent, other closes
            stop = asyncio.Event()

            async def sampler() -> None:
                while not stop.is_set():
                    for name, proc in procs.items():
                        samples.setdefault(name, []).append(rss_bytes(proc.pid))  # type: ignore[union-attr]
                    samples.setdefault("redis used_memory", []).append(float(r.info("memory")["used_memory"]))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), sample_s)

            async def lane(share: int) -> None:
                session, ack = None, -1
                while share > 0:
                    run = await _memory_stream(st.url, min(share, 5000), session, ack)
                    session, ack = run.ready.get("session"), run.last_seq if run.results else ack
                    done[0] += len(run.results)
                    done[1] += len(run.sent)
                    done[2] += run.close_code != 1000
                    share -= min(share, 5000)
                    if run.close_code != 1000:
                        return

            async def go() -> None:
                task = asyncio.create_task(sampler())
                shares = [frames // streams + (i < frames % streams) for i in range(streams)]
                await asyncio.gather(*(lane(s) for s in shares))
                stop.set()
                await task

            asyncio.run(go())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    wall = time.monotonic() - t0
    series = {name: flatness(vals) for name, vals in samples.items()}
    ok = done[0] == frames and done[1] == frames and not done[2] and all(s["flat"] for s in series.values())
    return {"frames": frames, "streams": streams, "workers": workers, "sample_s": sample_s, "answered": done[0],
            "sent": done[1], "bad_closes": done[2], "results_maxlen": results_maxlen, "samples": len(samples.get("gateway", [])),
            "wall_s": round(wall, 1), "series": series, "pass": ok}  # fmt: skip


def memory_lines(m: dict) -> list[str]:
    mb = 1 / 2**20
    lines = [
        f"Memory soak: {m['frames']:,} frames of 160x120 (JPEG) over {m['streams']} concurrent ordered streams "
        f"(one session each, a new connection resumed with `ack` every 5,000 frames), {m['workers']} blob "
        f"workers, `RESULTS_MAXLEN` {m['results_maxlen']}, private `redis-server`; "
        f"{m['answered']:,}/{m['sent']:,} answered, {m['bad_closes']} closes other than 1000, "
        f"{m['wall_s']:g} s ({m['frames'] / max(m['wall_s'], 1e-9):.0f} frames/s). RSS (`/proc/PID/status` VmRSS) "
        f"and Redis `used_memory` sampled every {m['sample_s']:g} s ({m['samples']} samples); warm = mean of the 3 "
        "samples after the first quarter, last = mean of the last 3; flat = last within 10 % of warm.", "",
        "| process | first (MiB) | warm (MiB) | last (MiB) | max (MiB) | last / warm | flat |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    for name, s in m["series"].items():
        lines.append(f"| {name} | {s['first'] * mb:.1f} | {s['warm'] * mb:.1f} | {s['last'] * mb:.1f} "
                     f"| {s['max'] * mb:.1f} | {s['ratio']} | {'yes' if s['flat'] else '**no**'} |")  # fmt: skip
    lines.append(f"\nMemory soak pass: {'yes' if m['pass'] else '**no**'}")
    return lines


PARTS = ("cases", "soak", "faults", "memory")


def header(args: argparse.Namespace, title: str) -> list[str]:
    return [
        f"## {title} (`benchmarks/reliability.py`)", "",
        f"- date: {time.strftime('%Y-%m-%d')}; command: `python benchmarks/reliability.py {' '.join(sys.argv[1:])}`",
        f"- blobs pipeline, tracker iou, gateway and workers as subprocesses on loopback; {cpu_name()}, "
        f"{os.cpu_count()} CPUs (shared with other jobs)", "",
    ]  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/0", help="Redis of the probe table and the soak"
    )
    p.add_argument("--short", action="store_true",
                   help="CI size: 5 s per soak level, one round per fault, 3,000 frames of memory soak")  # fmt: skip
    p.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts to run, of {', '.join(PARTS)}"
    )
    p.add_argument(
        "--seconds", type=float, default=None, help="seconds per soak level (default 60; 5 with --short)"
    )
    p.add_argument("--streams", default="16,64", help="soak levels (concurrent ordered streams)")
    p.add_argument("--workers", type=int, default=2, help="blob workers for the soaks")
    p.add_argument("--fault-seconds", type=float, default=None,
                   help="seconds of kill rounds per fault (default 90; 0 with --short: one round)")  # fmt: skip
    p.add_argument("--faults", default=",".join(FAULTS), help=f"faults to loop, of {', '.join(FAULTS)}")
    p.add_argument(
        "--frames", type=int, default=None, help="memory soak frames (default 100,000; 3,000 with --short)"
    )
    p.add_argument("--mem-streams", type=int, default=4, help="concurrent ordered streams of the memory soak")
    p.add_argument(
        "--sample-s", type=float, default=None, help="memory sample interval (default 10 s; 1 s with --short)"
    )
    p.add_argument(
        "--no-cases", action="store_true", help="skip the fault probes (same as leaving cases out of --only)"
    )
    p.add_argument("--no-record", action="store_true", help="print only, do not update benchmarks/RESULTS.md")
    args = p.parse_args()
    parts = {x.strip() for x in args.only.split(",") if x.strip()}
    if args.no_cases:
        parts.discard("cases")
    if parts - set(PARTS) or set(args.faults.split(",")) - set(FAULTS):
        print(
            f"reliability.py: --only takes {', '.join(PARTS)}; --faults takes {', '.join(FAULTS)}",
            file=sys.stderr,
        )
        return 2
    if {"faults", "memory"} & parts and shutil.which("redis-server") is None:
        print(
            "reliability.py: the fault loops and the memory soak need redis-server on PATH", file=sys.stderr
        )
        return 2
    seconds = args.seconds or (5.0 if args.short else 60.0)
    failed: list[str] = []
    if "cases" in parts or "soak" in parts:
        rows = run_cases(args.redis_url) if "cases" in parts else []
        levels = []
        if "soak" in parts:
            with stack(args.redis_url, args.workers) as st:
                for n in (int(x) for x in args.streams.split(",")):
                    levels.append(asyncio.run(soak_level(st, n, seconds)))
                    print(json.dumps(levels[-1]), flush=True)
        lines = header(args, "Reliability: stream faults and ordered-stream soak")
        if rows:
            lines += ["| case | expected | got | pass |", "|---|---|---|---|"]
            lines += [
                f"| {c} | {e} | {g.replace('|', '/')} | {'yes' if ok else '**no**'} |" for c, e, g, ok in rows
            ]
            lines.append("")
        if levels:
            lines += [
                f"Soak: N concurrent ordered streams, each sending within its credit (unpaced) for {seconds:g} s, "
                f"then `end`; {args.workers} blob workers; latency = frame sent -> its result received.", "",
                "| streams | sent | answered | lost | closed 1011 | other closes | paused-read probes | results/s "
                "| p50 (ms) | p95 (ms) | p99 (ms) |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]  # fmt: skip
            lines += [f"| {r['streams']} | {r['sent']} | {r['answered']} | {r['lost']} | {r['closed_1011']} "
                      f"| {r['closed_other']} | {r['paused_reads']} | {r['results_per_s']} | {r['p50_ms']} "
                      f"| {r['p95_ms']} | {r['p99_ms']} |" for r in levels]  # fmt: skip
        _emit("reliability", lines, args.no_record)
        failed += [c for c, _, _, ok in rows if not ok]
        failed += [str(r["streams"]) for r in levels if r["lost"] or r["closed_1011"]]
    if "faults" in parts:
        fault_s = args.fault_seconds if args.fault_seconds is not None else (0.0 if args.short else 90.0)
        frows = []
        for target in args.faults.split(","):
            t0 = time.monotonic()
            frows.append(fault_loop(target, fault_s))
            print(f"{'PASS' if frows[-1]['pass'] else 'FAIL'}  kill -9 {target}: {json.dumps(frows[-1])} "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)  # fmt: skip
        _emit("reliability-faults", header(args, "Reliability: kill -9 loops") + fault_lines(frows, fault_s),
              args.no_record)  # fmt: skip
        failed += [r["fault"] for r in frows if not r["pass"]]
    if "memory" in parts:
        frames = args.frames or (3000 if args.short else 100_000)
        sample_s = args.sample_s or (1.0 if args.short else 10.0)
        # --short: a smaller RESULTS_MAXLEN, so that the sessions' result streams are full (at their bound)
        # within the warm-up of a run of a few seconds, as they are after 1,000 frames a session in a full run.
        m = memory_soak(frames, args.mem_streams, args.workers, sample_s, 100 if args.short else 1000)
        print(json.dumps(m), flush=True)
        _emit(
            "reliability-memory", header(args, "Reliability: memory soak") + memory_lines(m), args.no_record
        )
        failed += [] if m["pass"] else ["memory"]
    return 1 if failed else 0


def _emit(section: str, lines: list[str], no_record: bool) -> None:
    body = "\n".join(lines)
    print("\n" + body, flush=True)
    if not no_record:
        record_section(section, body)


if __name__ == "__main__":
    raise SystemExit(main())
