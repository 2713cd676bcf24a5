"""Client helpers shared by the service tests (real httpx and websockets clients)."""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from typing import Any

import httpx

from posestream.service.settings import Settings
from tests.service.clips import jpeg, shapes_frame

# The console entry point (``python -m posestream.service.cli`` would load posestream.service.cli twice).
POSESTREAM = [sys.executable, "-c", "import sys; from posestream.service.cli import main; sys.exit(main())"]


def settings_env(settings: Settings, *names: str) -> dict[str, str]:
    """This process's environment plus ``POSESTREAM_*`` for Redis, the data folder and ``names``
    (the values of ``settings``), so a ``posestream`` subprocess shares the test's keys and files."""
    env = dict(os.environ)
    for name in ("redis_url", "redis_prefix", "data_dir", *names):
        value = getattr(settings, name)
        env["POSESTREAM_" + name.upper()] = json.dumps(value) if isinstance(value, list) else str(value)
    return env


def frame_message(index: int, width: int = 320, height: int = 240) -> bytes:
    return struct.pack(">Q", index) + jpeg(shapes_frame(index, width, height))


def wait_video(client: httpx.Client, video_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/v1/videos/{video_id}").json()
        if status["status"] in ("done", "failed"):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"video {video_id} still {status} after {timeout} s")
        time.sleep(0.1)


def lane_ids(frames: list[dict[str, Any]], height: int = 240, lanes: int = 3) -> dict[int, set[int]]:
    """For the shapes clip: the set of track ids seen in each horizontal lane over all frames."""
    out: dict[int, set[int]] = {i: set() for i in range(lanes)}
    for f in frames:
        for p in f["poses"]:
            cy = (p["box"][1] + p["box"][3]) / 2
            out[min(int(cy // (height // lanes)), lanes - 1)].add(p["track_id"])
    return out


def loads(msg: str | bytes) -> dict[str, Any]:
    return json.loads(msg)
