"""Fault and soak harness for live streams (issue 17, stream half): a probe table and an ordered-stream soak.

Starts a real gateway (``posestream serve`` subprocess) and real blob workers
(``posestream worker`` subprocesses) on a private Redis key prefix, then:

1. runs the stream fault probes as a table (case, expected, got, pass): abrupt and clean
   closes with ack resume, gateway SIGTERM and kill -9 mid-stream, kill -9 of a worker,
   old clients (no ack, no credit), dead peers, SIGTERM with open streams, another key's
   session, oversized hellos and corrupt frames, a job Redis lost;
2. soaks 16 and 64 concurrent ordered streams (clients within their credit, unpaced) for
   ``--seconds`` each: sent, answered, lost, closes by keepalive (1011), p50/p95/p99
   latency (frame sent -> its result received).

    python benchmarks/reliability.py              # 60 s per soak level
    python benchmarks/reliability.py --short      # CI: 5 s per level, ~1 minute in all

Not yet here (issue 17's harness, other half): Redis kill with and without append-only
persistence, uploads, and the 100,000-frame memory soak.
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
from service.stream_client import StreamRun, run_stream  # noqa: E402
from tests.service.clips import jpeg, shapes_frame  # noqa: E402

POSESTREAM = [sys.executable, "-c", "import sys; from service.cli import main; sys.exit(main())"]
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
    return f"{len(seqs)} results, seq and index 0..{len(seqs) - 1} once each" if ok else f"gaps/repeats: {seqs[:40]}"


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
    return f"close {other.close_code}, {len(other.results)} results", other.close_code == 4404 and not other.results


async def case_huge_hello(st: Stack) -> tuple[str, bool]:
    run = await run_stream(st.url, {**HELLO, "width": 16384, "height": 16384}, image, 1)
    return f"close {run.close_code}: {run.close_reason[:80]}", run.close_code == 4400


async def case_corrupt_body(st: Stack) -> tuple[str, bool]:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 240, 320, 1) + b"\x01\x11\x00"
    bad = b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9) + sof + b"\xff\xda" + bytes(64)
    run = await run_stream(st.url, HELLO, lambda i: bad if i == 1 else image(i), 3)
    codes = [r.get("error", {}).get("code", "ok") for r in run.results]
    return f"results {codes}, close {run.close_code}", codes == ["ok", "frame_failed", "ok"] and run.close_code == 1000


async def case_lost_job(st: Stack) -> tuple[str, bool]:
    from service.messages import FrameJob, FrameResult, RedisKeys

    keys = RedisKeys(st.prefix)
    job = FrameJob(session="lost", seq=1, frame_index=1, timestamp=0.04, width=320, height=240, image=image(1))
    st.redis.xadd(keys.jobs, job.to_fields())  # seq 0 "lost by Redis"
    t0 = time.monotonic()
    while st.redis.xlen(keys.results("lost")) < 2 and time.monotonic() - t0 < 20:
        await asyncio.sleep(0.1)
    res = [FrameResult.from_fields(f) for _, f in st.redis.xrange(keys.results("lost"))]
    got = [(r.seq, r.error.split(":")[0] or "ok") for r in res]
    return f"{got} after {time.monotonic() - t0:.1f} s", got == [(0, "frame_lost"), (1, "ok")]


CASES = [
    ("8 abrupt/clean closes mid-stream, resume with ack", "every seq and frame index once", case_disconnects, {}),
    ("gateway SIGTERM mid-stream, restart, resume", "every seq once, exit < 5 s", "sigterm-restart", {}),
    ("gateway kill -9 mid-stream, restart, resume", "every seq once", "kill-restart", {}),
    ("worker kill -9 mid-stream (2 workers)", "150/150 answered once, close 1000", case_worker_kill, {"workers": 2}),
    ("old client (no ack, no credit), 8 abrupt closes", "never stuck: every new frame answered", case_old_client, {}),
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
    import websockets
    from websockets.exceptions import ConnectionClosed

    run = StreamRun()
    sent_at: dict[int, float] = {}
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps(HELLO))
        run.ready = json.loads(await ws.recv())
        credit = [int(run.ready["credit"])]
        more = asyncio.Event()

        async def sender() -> None:
            stop_at = time.perf_counter() + seconds
            i = 0
            while time.perf_counter() < stop_at:
                if len(run.sent) >= credit[0]:
                    more.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(more.wait(), max(0.01, stop_at - time.perf_counter()))
                    continue
                sent_at[i] = time.perf_counter()
                await ws.send(struct.pack(">Q", i) + image(i))
                run.sent.append(i)
                i += 1
            await ws.send(json.dumps({"end": True}))

        task = asyncio.create_task(sender())
        try:
            async for msg in ws:
                obj = json.loads(msg)
                if "credit" in obj:
                    credit[0] = max(credit[0], int(obj["credit"]))
                    run.probes += len(obj) == 1
                    more.set()
                if "end" in obj:
                    run.end = obj["end"]
                elif "frame_index" in obj:
                    run.results.append(obj)
                    run.latencies_s.append(time.perf_counter() - sent_at.pop(obj["frame_index"]))
        except ConnectionClosed:
            pass
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    run.close_code, run.close_reason = ws.close_code, ws.close_reason or ""
    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--short", action="store_true", help="CI mode: 5 s per soak level")
    p.add_argument("--seconds", type=float, default=None, help="seconds per soak level (default 60; 5 with --short)")
    p.add_argument("--streams", default="16,64", help="soak levels (concurrent ordered streams)")
    p.add_argument("--workers", type=int, default=2, help="blob workers for the soak")
    p.add_argument("--no-cases", action="store_true", help="skip the fault probes")
    p.add_argument("--no-record", action="store_true", help="print only, do not update benchmarks/RESULTS.md")
    args = p.parse_args()
    seconds = args.seconds or (5.0 if args.short else 60.0)
    rows = [] if args.no_cases else run_cases(args.redis_url)
    levels = []
    with stack(args.redis_url, args.workers) as st:
        for n in (int(x) for x in args.streams.split(",")):
            levels.append(asyncio.run(soak_level(st, n, seconds)))
            print(json.dumps(levels[-1]), flush=True)
    lines = [
        "## Reliability: stream faults and ordered-stream soak (`benchmarks/reliability.py`)", "",
        f"- date: {time.strftime('%Y-%m-%d')}; command: `python benchmarks/reliability.py"
        f"{' --short' if args.short else ''}{f' --seconds {args.seconds:g}' if args.seconds else ''}`",
        f"- blobs pipeline, tracker iou, gateway and workers as subprocesses on loopback; {cpu_name()}, "
        f"{os.cpu_count()} CPUs (shared with other jobs)", "",
    ]  # fmt: skip
    if rows:
        lines += ["| case | expected | got | pass |", "|---|---|---|---|"]
        lines += [f"| {c} | {e} | {g.replace('|', '/')} | {'yes' if ok else '**no**'} |" for c, e, g, ok in rows]
        lines.append("")
    lines += [
        f"Soak: N concurrent ordered streams, each sending within its credit (unpaced) for {seconds:g} s, then "
        f"`end`; {args.workers} blob workers; latency = frame sent -> its result received.", "",
        "| streams | sent | answered | lost | closed 1011 | other closes | paused-read probes | results/s "
        "| p50 (ms) | p95 (ms) | p99 (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    lines += [f"| {r['streams']} | {r['sent']} | {r['answered']} | {r['lost']} | {r['closed_1011']} | {r['closed_other']} "
              f"| {r['paused_reads']} | {r['results_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |" for r in levels]  # fmt: skip
    body = "\n".join(lines)
    print("\n" + body)
    if not args.no_record:
        record_section("reliability", body)
    failed = [c for c, _, _, ok in rows if not ok] + [str(r["streams"]) for r in levels if r["lost"] or r["closed_1011"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
