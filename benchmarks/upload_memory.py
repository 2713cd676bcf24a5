"""Redis memory held by one large upload: queued jobs, their bytes, the jobs stream's size.

Encodes an N-frame 4000x4000 clip of smooth noise (about 6.5 MB per frame as a JPEG at the
default quality), starts a real gateway (uvicorn, in this process) on a private Redis key
prefix with no worker, uploads the clip and waits until the gateway stops queueing (the
bounds hold it back); records the queued jobs, their image bytes, ``MEMORY USAGE`` of the
jobs stream and Redis ``used_memory`` growth. Then starts a blob-pipeline worker, samples
the queued bytes until the upload is done and records the peak. Needs Redis.

    python benchmarks/upload_memory.py [--frames 12] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _clip(path: Path, frames: int, size: int) -> Path:
    import av
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8), (size, size))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(10))
        stream.width = stream.height = size
        stream.pix_fmt, stream.options = "yuv420p", {"preset": "ultrafast"}
        for i in range(frames):
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.roll(base, 8 * i, axis=1), format="rgb24")
            ):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=4000, help="frame width = height in pixels")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    import httpx
    import redis
    import uvicorn

    from posestream.service.gateway.app import create_app
    from posestream.service.gateway.http import uvicorn_options
    from posestream.service.messages import FrameJob, RedisKeys
    from posestream.service.pipeline import build_pipeline
    from posestream.service.settings import Settings
    from posestream.service.worker.worker import Worker

    tmp = Path(tempfile.mkdtemp(prefix="upload-memory-"))
    clip = _clip(tmp / "big.mp4", args.frames, args.size)
    prefix = f"bench-upload:{uuid.uuid4().hex[:8]}:"
    settings = Settings(
        redis_url=args.redis_url, redis_prefix=prefix, data_dir=tmp / "data", model="blobs", tracker="iou"
    )
    keys = RedisKeys(prefix)
    client = redis.Redis.from_url(args.redis_url)
    base_memory = int(client.info("memory")["used_memory"])
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning",
                                           **uvicorn_options(settings)))  # type: ignore[arg-type]  # fmt: skip
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]

    def queued() -> list[int]:
        return [len(FrameJob.from_fields(f).image) for _, f in client.xrange(keys.jobs) if f]

    rows = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http, open(clip, "rb") as fh:
            video_id = http.post("/v1/videos", files={"file": ("big.mp4", fh, "video/mp4")}).json()["id"]
            last, stable_since = -1, time.monotonic()
            while time.monotonic() - stable_since < 3:  # no new job for 3 s: the bounds hold the gateway back
                n = client.xlen(keys.jobs)
                if n != last:
                    last, stable_since = n, time.monotonic()
                time.sleep(0.1)
            sizes = queued()
            rows += [
                ("upload file", f"{clip.stat().st_size / 1e6:.2f} MB ({args.frames} frames {args.size}x{args.size})"),
                ("jobs queued with no worker", f"{len(sizes)}"),
                ("their image bytes", f"{sum(sizes) / 1e6:.1f} MB (largest frame {max(sizes) / 1e6:.2f} MB)"),
                ("MEMORY USAGE of the jobs stream", f"{client.memory_usage(keys.jobs, samples=0) / 1e6:.1f} MB"),
                ("Redis used_memory growth", f"{(int(client.info('memory')['used_memory']) - base_memory) / 1e6:.1f} MB"),
                ("bound (upload_inflight_bytes + one frame)",
                 f"{(settings.upload_inflight_bytes + max(sizes)) / 1e6:.1f} MB"),
            ]  # fmt: skip
            worker = Worker(settings, build_pipeline("blobs", "iou"))
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            peak = 0
            while http.get(f"/v1/videos/{video_id}").json()["status"] not in ("done", "failed"):
                peak = max(peak, sum(queued()))
                time.sleep(0.05)
            worker.stop()
            thread.join()
            rows.append(("peak image bytes queued while processing", f"{peak / 1e6:.1f} MB"))
            rows.append(("final status", str(http.get(f"/v1/videos/{video_id}").json()["status"])))
    finally:
        server.should_exit = True
        left = list(client.scan_iter(match=prefix + "*"))
        if left:
            client.delete(*left)
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
