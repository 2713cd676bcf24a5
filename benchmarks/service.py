"""End-to-end service benchmark: 1, 2, 4, 8 and 16 concurrent WebSocket streams on loopback, live and ordered.

Starts a real gateway (uvicorn, in this process) and real workers (``posestream worker``
subprocesses) on a private Redis key prefix, streams the same synthetic clip from N
concurrent clients and records, per N: end-to-end throughput (results per second over
all streams), per-stream fps, per-frame latency (frame sent -> its result received; p50,
p95 and p99), and frames dropped, for each stream mode of ``--modes``; ``--plot`` draws
throughput and latency against the number of streams (matplotlib, ``pip install
matplotlib``). Needs Redis (``--redis-url``).

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


async def _one_stream(url: str, images: list[bytes], args: argparse.Namespace, mode: str) -> dict:
    import websockets

    pace = args.live_fps if mode == "live" else args.fps  # frames per second sent; 0 = as fast as possible
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    # No client keepalive: under backpressure a slow worker legitimately leaves the socket quiet.
    opened = time.perf_counter()
    async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
        await ws.send(
            json.dumps({"fps": pace or 30, "width": args.width, "height": args.height, "mode": mode})
        )
        await ws.recv()

        async def send() -> None:
            start = time.perf_counter()
            for i in range(args.frames):
                if pace:
                    await asyncio.sleep(max(0.0, start + i / pace - time.perf_counter()))
                sent_at[i] = time.perf_counter()
                await ws.send(struct.pack(">Q", i) + images[i % len(images)])
            await ws.send(json.dumps({"end": True}))

        sender = asyncio.create_task(send())
        end = {}
        expired = 0
        async for msg in ws:
            obj = json.loads(msg)
            if obj.get("error", {}).get("code") == "frame_expired":  # past the live budget: not served
                expired += 1
            elif "frame_index" in obj:
                latencies.append(time.perf_counter() - sent_at[obj["frame_index"]])
            elif "end" in obj:
                end = obj["end"]
        await sender
    return {"latencies": latencies, "dropped": end.get("dropped", 0), "expired": expired,
            "wall": time.perf_counter() - opened}  # fmt: skip


async def _run_level(
    url: str, images: list[bytes], n: int, args: argparse.Namespace, mode: str, budget_ms: int | None = None
) -> dict:
    t0 = time.perf_counter()
    outs = await asyncio.gather(*(_one_stream(url, images, args, mode) for _ in range(n)))
    wall = time.perf_counter() - t0
    lat = np.array([x for o in outs for x in o["latencies"]]) * 1000
    per_stream = [len(o["latencies"]) / max(o["wall"], 1e-9) for o in outs]
    return {
        "mode": mode,
        "budget_ms": budget_ms if mode == "live" else None,
        "streams": n,
        "expired": int(sum(o["expired"] for o in outs)),
        "stream_fps": round(float(np.mean(per_stream)), 2),
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
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
    p.add_argument("--streams", default="1,2,4,8,16")
    p.add_argument("--frames", type=int, default=150, help="frames per stream")
    p.add_argument(
        "--fps", type=float, default=0.0, help="pace per ordered stream; 0 = as fast as backpressure allows"
    )
    p.add_argument(
        "--live-fps", type=float, default=25.0, help="pace per live stream, like a camera; 0 = max"
    )
    p.add_argument(
        "--modes", default="ordered,live", help="comma-separated stream modes, each run at every level"
    )
    p.add_argument(
        "--live-budgets",
        default=None,
        help="comma-separated live_max_age_ms values, each live level run once per value behind its own gateway "
        "(0 = no budget, the per-session queues only); default: the service's default",
    )
    p.add_argument("--plot", default=None, help="write a PNG of fps and latency against streams here")
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
    budgets = ([int(b) for b in args.live_budgets.split(",") if b] if args.live_budgets
               else [_Defaults.model_fields["live_max_age_ms"].default])  # fmt: skip

    def gateway_settings(budget_ms: int) -> Settings:
        return Settings(
            redis_url=args.redis_url, redis_prefix=prefix, data_dir=Path("/tmp") / prefix.strip(":").replace(":", "-"),
            model=args.model, tracker=tracker, batch_size=args.batch_size, live_max_age_ms=budget_ms,
        )  # fmt: skip

    env = dict(os.environ, POSESTREAM_REDIS_URL=args.redis_url, POSESTREAM_REDIS_PREFIX=prefix)
    cmd = [sys.executable, "-c", "import sys; from posestream.service.cli import main; sys.exit(main())", "worker",
           "--model", args.model, "--tracker", tracker, "--device", args.device, "--batch-size", str(args.batch_size)]  # fmt: skip
    workers = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL) for _ in range(args.workers)
    ]
    import socket

    def start_gateway(budget_ms: int) -> tuple[uvicorn.Server, threading.Thread, int]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(gateway_settings(budget_ms)), host="127.0.0.1", port=port, log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        return server, thread, port

    gateways = {b: start_gateway(b) for b in budgets}  # the same workers behind every gateway
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
        modes = [m for m in args.modes.split(",") if m]
        bad = [m for m in modes if m not in ("ordered", "live")]
        if bad:
            raise SystemExit(f"--modes: unknown mode(s) {bad}; use ordered and/or live")
        warm = argparse.Namespace(**{**vars(args), "frames": 10})
        first_port = gateways[budgets[0]][2]
        asyncio.run(
            _run_level(f"ws://127.0.0.1:{first_port}/v1/streams", images, 1, warm, modes[0])
        )  # warm-up
        runs = [(m, b, int(x)) for m in modes for b in (budgets if m == "live" else budgets[:1])
                for x in args.streams.split(",")]  # fmt: skip
        for mode, budget, n in runs:
            port = gateways[budget][2]
            url = f"ws://127.0.0.1:{port}/v1/streams"
            before = _stage_sums(port)
            results.append(asyncio.run(_run_level(url, images, n, args, mode, budget)))
            after = _stage_sums(port)
            results[-1]["stage_mean_ms"] = {
                stage: round(1000 * (after[stage][0] - before.get(stage, (0, 0))[0])
                             / max(after[stage][1] - before.get(stage, (0, 0))[1], 1), 2)
                for stage in after
            }  # fmt: skip
            print(json.dumps(results[-1]), flush=True)
    finally:
        for server, thread, _ in gateways.values():
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
        "live_budgets_ms": ",".join(map(str, budgets)), "frames_per_stream": args.frames, "ordered_fps_per_stream": args.fps or "max", "live_fps_per_stream": args.live_fps or "max", "modes": args.modes,
        "size": f"{args.width}x{args.height}", "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs",
    }  # fmt: skip
    print(f"\n{json.dumps(meta)}\n")
    stages = ("decode", "queue", "pipeline", "relay")
    table = [
        "| mode | live budget (ms) | streams | frames | dropped | expired | total fps | per-stream fps | "
        "latency p50 (ms) | p95 (ms) | p99 (ms) | " + " | ".join(f"{s} mean (ms)" for s in stages) + " |",
        "|---|---:" + "|---:" * (9 + len(stages)) + "|",
    ]
    for r in results:
        means = " | ".join(str(r["stage_mean_ms"].get(s, "")) for s in stages)
        budget = "-" if r["budget_ms"] is None else ("none" if r["budget_ms"] == 0 else r["budget_ms"])
        table.append(f"| {r['mode']} | {budget} | {r['streams']} | {r['frames']} | {r['dropped']} | {r['expired']} | "
                     f"{r['fps']} | {r['stream_fps']} | {r['latency_ms_p50']} | {r['latency_ms_p95']} | "
                     f"{r['latency_ms_p99']} | {means} |")  # fmt: skip
    print("\n".join(table))
    if not args.no_record:
        from benchmarks.results import record_section

        # The blobs run measures the service's own overhead; each model and device has its own section.
        section = "service" if args.model == "blobs" else f"service_{args.model}_{args.device}"
        if args.modes != "ordered,live":  # a run of one mode keeps its own section beside the two-mode one
            section += "_" + args.modes.replace(",", "_")
        body = [
            "## Service end to end: concurrent WebSocket streams on loopback (`benchmarks/service.py`)"
            + ("" if args.model == "blobs" else f", {args.model} on {args.device}"),
            "",
            f"- date: {time.strftime('%Y-%m-%d')}; command: `python {' '.join(sys.argv)}`",
            "- " + ", ".join(f"{k}: {v}" for k, v in meta.items()),
            "- latency: a frame sent -> its result received by the client; fps: results per second over all streams; "
            "dropped: live frames dropped in the gateway (no result); expired: live frames answered `frame_expired` "
            "(past `live_max_age_ms`, not run; neither in fps nor latency)",
            "",
            *table,
        ]
        print(f"recorded in {record_section(section, chr(10).join(body))}")
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    if args.plot:
        plot(results, meta, Path(args.plot))
        print(f"plot: {args.plot}")
    return 0


def plot(results: list[dict], meta: dict, path: Path) -> None:
    """PNG: total fps (left) and latency p50 / p99 (right) against the number of streams, per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_fps, ax_lat) = plt.subplots(1, 2, figsize=(10, 4))

    def label(r: dict) -> str:
        if r["budget_ms"] is None:
            return r["mode"]
        return f"{r['mode']}, budget {r['budget_ms']} ms" if r["budget_ms"] else f"{r['mode']}, no budget"

    for mode in dict.fromkeys(label(r) for r in results):
        rows = [r for r in results if label(r) == mode]
        n = [r["streams"] for r in rows]
        ax_fps.plot(n, [r["fps"] for r in rows], "o-", label=f"{mode}: total")
        ax_fps.plot(n, [r["stream_fps"] for r in rows], "o--", label=f"{mode}: per stream")
        ax_lat.plot(n, [r["latency_ms_p50"] for r in rows], "o-", label=f"{mode}: p50")
        ax_lat.plot(n, [r["latency_ms_p99"] for r in rows], "o--", label=f"{mode}: p99")
    for ax, label in ((ax_fps, "results per second"), (ax_lat, "latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax_lat.set_yscale("log")
    fig.suptitle(
        f"posestream service, {meta['model']} ({meta['tracker']}), {meta['workers']} worker(s), {meta['machine']}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
