"""End-to-end service benchmark: 1, 4 and 16 concurrent WebSocket streams on loopback.

Starts a real gateway (uvicorn, in this process) and real workers (``posestream worker``
subprocesses) on a private Redis key prefix, streams the same synthetic clip from N
concurrent clients and records, per N: end-to-end throughput (results per second over
all streams), per-frame latency (frame sent -> its result received; p50 and p95), and
frames dropped. Needs Redis (``--redis-url``).

    python benchmarks/service.py                          # blobs test pipeline, CPU
    python benchmarks/service.py --model movenet --device cuda --workers 1 --fps 30

``--fps 0`` sends as fast as backpressure allows (throughput); ``--fps 30`` paces each
stream like a camera (latency). Results are printed as a Markdown table and, with
``--out``, written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _frames(n: int, width: int, height: int, people: bool) -> list[bytes]:
    """JPEG frames: synthetic people (seed 7, 5 people) for the real models, moving shapes for blobs."""
    from tests.service.clips import jpeg, shapes_frame

    if not people:
        return [jpeg(shapes_frame(i, width, height)) for i in range(n)]
    from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig

    clip = SyntheticClip.from_config(SyntheticConfig(seed=7, frames=n, people=5, width=width, height=height))
    return [jpeg(clip.render(i)[0]) for i in range(n)]


async def _one_stream(url: str, images: list[bytes], args: argparse.Namespace) -> dict:
    import websockets

    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    # No client keepalive: under backpressure a slow worker legitimately leaves the socket quiet.
    async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
        await ws.send(
            json.dumps({"fps": args.fps or 30, "width": args.width, "height": args.height, "mode": args.mode})
        )
        await ws.recv()

        async def send() -> None:
            start = time.perf_counter()
            for i in range(args.frames):
                if args.fps:
                    await asyncio.sleep(max(0.0, start + i / args.fps - time.perf_counter()))
                sent_at[i] = time.perf_counter()
                await ws.send(struct.pack(">Q", i) + images[i % len(images)])
            await ws.send(json.dumps({"end": True}))

        sender = asyncio.create_task(send())
        end = {}
        async for msg in ws:
            obj = json.loads(msg)
            if "frame_index" in obj:
                latencies.append(time.perf_counter() - sent_at[obj["frame_index"]])
            elif "end" in obj:
                end = obj["end"]
        await sender
    return {"latencies": latencies, "dropped": end.get("dropped", 0)}


async def _run_level(url: str, images: list[bytes], n: int, args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    outs = await asyncio.gather(*(_one_stream(url, images, args) for _ in range(n)))
    wall = time.perf_counter() - t0
    lat = np.array([x for o in outs for x in o["latencies"]]) * 1000
    return {
        "streams": n,
        "frames": int(lat.size),
        "dropped": int(sum(o["dropped"] for o in outs)),
        "fps": round(lat.size / wall, 1),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
        "wall_s": round(wall, 2),
    }


def _stage_sums(port: int) -> dict[str, tuple[float, float]]:
    """(sum seconds, count) per stage of the gateway's latency histogram."""
    import httpx

    out: dict[str, list[float]] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        for suffix, slot in (("_sum", 0), ("_count", 1)):
            head = f'posestream_stage_latency_seconds{suffix}{{stage="'
            if line.startswith(head):
                stage = line[len(head) :].split('"', 1)[0]
                out.setdefault(stage, [0.0, 0.0])[slot] = float(line.rsplit(" ", 1)[1])
    return {k: (v[0], v[1]) for k, v in out.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--model", default="blobs", choices=("blobs", "movenet", "spatialnet"))
    p.add_argument("--tracker", default=None, help="default: iou for blobs, the service's default otherwise")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--streams", default="1,4,16")
    p.add_argument("--frames", type=int, default=150, help="frames per stream")
    p.add_argument("--fps", type=float, default=0.0, help="pace per stream; 0 = as fast as possible")
    p.add_argument("--mode", default="ordered", choices=("ordered", "live"))
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--no-record", action="store_true", help="print only, do not update benchmarks/RESULTS.md")
    args = p.parse_args()
    from posestream.service.settings import Settings as _Defaults

    tracker = args.tracker or ("iou" if args.model == "blobs" else _Defaults.model_fields["tracker"].default)

    import uvicorn

    from posestream.service.gateway.app import create_app
    from posestream.service.settings import Settings

    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    settings = Settings(
        redis_url=args.redis_url, redis_prefix=prefix, data_dir=Path("/tmp") / prefix.strip(":").replace(":", "-"),
        model=args.model, tracker=tracker, batch_size=args.batch_size,
    )  # fmt: skip
    env = dict(os.environ, POSESTREAM_REDIS_URL=args.redis_url, POSESTREAM_REDIS_PREFIX=prefix)
    cmd = [sys.executable, "-c", "import sys; from posestream.service.cli import main; sys.exit(main())", "worker",
           "--model", args.model, "--tracker", tracker, "--device", args.device, "--batch-size", str(args.batch_size)]  # fmt: skip
    workers = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL) for _ in range(args.workers)
    ]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    results = []
    try:
        import redis

        client = redis.Redis.from_url(args.redis_url)
        deadline = time.monotonic() + 120
        while client.zcard(prefix + "workers") < args.workers:
            if time.monotonic() > deadline:
                raise SystemExit("workers did not come up")
            time.sleep(0.2)
        images = _frames(min(args.frames, 60), args.width, args.height, people=args.model != "blobs")
        url = f"ws://127.0.0.1:{port}/v1/streams"
        asyncio.run(_run_level(url, images, 1, argparse.Namespace(**{**vars(args), "frames": 10})))  # warm-up
        for n in (int(x) for x in args.streams.split(",")):
            before = _stage_sums(port)
            results.append(asyncio.run(_run_level(url, images, n, args)))
            after = _stage_sums(port)
            results[-1]["stage_mean_ms"] = {
                stage: round(1000 * (after[stage][0] - before.get(stage, (0, 0))[0])
                             / max(after[stage][1] - before.get(stage, (0, 0))[1], 1), 2)
                for stage in after
            }  # fmt: skip
            print(json.dumps(results[-1]), flush=True)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
        try:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
        except Exception:
            pass
    meta = {
        "model": args.model, "tracker": tracker, "workers": args.workers, "batch_size": args.batch_size,
        "frames_per_stream": args.frames, "fps_per_stream": args.fps or "max", "mode": args.mode,
        "size": f"{args.width}x{args.height}", "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs",
    }  # fmt: skip
    print(f"\n{json.dumps(meta)}\n")
    stages = ("decode", "queue", "pipeline", "relay")
    table = [
        "| streams | frames | dropped | end-to-end fps | latency p50 (ms) | latency p95 (ms) | "
        + " | ".join(f"{s} mean (ms)" for s in stages)
        + " |",
        "|---:" * (6 + len(stages)) + "|",
    ]
    for r in results:
        means = " | ".join(str(r["stage_mean_ms"].get(s, "")) for s in stages)
        table.append(f"| {r['streams']} | {r['frames']} | {r['dropped']} | {r['fps']} | {r['latency_ms_p50']} | "
                     f"{r['latency_ms_p95']} | {means} |")  # fmt: skip
    print("\n".join(table))
    if not args.no_record:
        from benchmarks.results import record_section

        # The blobs run measures the service's own overhead; each model and device has its own section.
        section = "service" if args.model == "blobs" else f"service_{args.model}_{args.device}"
        body = [
            "## Service end to end: concurrent WebSocket streams on loopback (`benchmarks/service.py`)"
            + ("" if args.model == "blobs" else f", {args.model} on {args.device}"),
            "",
            f"- date: {time.strftime('%Y-%m-%d')}; command: `python {' '.join(sys.argv)}`",
            "- " + ", ".join(f"{k}: {v}" for k, v in meta.items()),
            "- latency: a frame sent -> its result received by the client; fps: results per second over all streams",
            "",
            *table,
        ]
        print(f"recorded in {record_section(section, chr(10).join(body))}")
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
