"""The gateway's browser page at ``/``, driven end to end in headless Chromium.

A real gateway and worker (the blob test detector by default; ``POSESTREAM_PAGE_TEST_MODEL=movenet``
runs MoveNet for real skeletons) on a free port; ``tests/browser/page_check.mjs`` (playwright-core,
``npm ci`` in ``tests/browser``) opens the page, streams a few seconds of vtest.avi (re-encoded here
to VP8 WebM, which Chromium decodes) through the file input over the live WebSocket, streams Chromium's fake camera with the webcam
button, then uploads
the same clip in the upload tab and plays it with the poses drawn. The test checks the track ids
the page shows against the service's own results: the live session's (replayed by resuming it
with ``ack=-1``) and the upload's poses. Screenshots go to the test's folder, or to ``docs/``
with ``POSESTREAM_PAGE_SCREENSHOTS=docs`` (how ``docs/page_*.png`` were made).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from posestream.service.client import open_stream, ws_connect_options
from posestream.service.settings import TEST_MODEL, Settings
from tests.service.conftest import ServerThread, WorkerThread

ROOT = Path(__file__).resolve().parents[2]
BROWSER = ROOT / "tests" / "browser"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
SECONDS = 4.0


def _vp8_clip(out: Path, seconds: float) -> int:
    """The first ``seconds`` of vtest.avi as VP8 WebM at its own size and rate; the frame count."""
    import av

    with av.open(str(VTEST)) as src, av.open(str(out), "w") as dst:
        vin = src.streams.video[0]
        rate = vin.average_rate
        vout = dst.add_stream("libvpx", rate=rate)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        vout.bit_rate = 2_000_000
        n = 0
        for frame in src.decode(vin):
            if n >= seconds * float(rate):
                break
            img = frame.to_ndarray(format="rgb24")
            for packet in vout.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                dst.mux(packet)
            n += 1
        for packet in vout.encode():
            dst.mux(packet)
    return n


def _node_ready() -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"the page test needs Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("the page test needs node and npm (apt-get install nodejs npm; .ci/run does)")
    if not (BROWSER / "node_modules" / "playwright-core").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER, check=True, timeout=300)


def _session_track_ids(ws_url: str, session: str, hello: dict, key: str) -> set[int]:
    """Every track id in a finished live session's results, replayed by resuming it with ``ack=-1``."""

    async def replay() -> set[int]:
        ws, ready = await open_stream(ws_url, hello, session=session, ack=-1, **ws_connect_options(key))
        ids: set[int] = set()
        async with ws:
            await ws.send(json.dumps({"end": True}))
            async for raw in ws:
                obj = json.loads(raw)
                ids |= {p["track_id"] for p in obj.get("poses", []) if p["track_id"] >= 0}
        return ids

    return asyncio.run(replay())


def test_page_streams_a_file_and_plays_an_upload_in_headless_chromium(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    if not VTEST.is_file():
        pytest.fail(f"needs {VTEST} (apt-get install opencv-doc)")
    _node_ready()
    clip = tmp_path / "vtest.webm"
    frames = _vp8_clip(clip, SECONDS)
    model = os.environ.get("POSESTREAM_PAGE_TEST_MODEL", TEST_MODEL)
    key = "page-key"
    settings = make_settings(api_keys=[key], model=model, tracker="iou", input_sizes=[256])
    shots = ROOT / "docs" if os.environ.get("POSESTREAM_PAGE_SCREENSHOTS") == "docs" else tmp_path
    live_png, upload_png = shots / "page_live.png", shots / "page_upload.png"
    pipeline = None
    if model != TEST_MODEL:
        from posestream.service.pipeline import build_pipeline

        pipeline = build_pipeline(model, "iou", input_sizes=[256], weights_dir=settings.weights_dir)
    with WorkerThread(settings, pipeline), ServerThread(settings) as server:
        page = httpx.get(server.url + "/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert httpx.get(server.url + "/static/app.js").status_code == 200
        run = subprocess.run(
            ["node", str(BROWSER / "page_check.mjs"), server.url + "/", str(clip), str(live_png),
             str(upload_png), key],
            cwd=BROWSER, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        shown = json.loads(run.stdout.strip().splitlines()[-1])
        live, upload = shown["live"], shown["upload"]
        assert live["status"] == "ended" and not live["error"], shown
        assert 0 < live["frames"] and live["frames"] + live["dropped"] <= frames, shown
        page_ids = {int(i) for i in live["ids"].split(",") if i}
        hello = {"fps": 25, "width": 768, "height": 576, "mode": "live"}
        assert page_ids and page_ids == _session_track_ids(
            server.ws_url + "/v1/streams", live["session"], hello, key
        )

        webcam = shown["webcam"]
        assert webcam["status"] == "ended" and webcam["frames"] >= 5 and not webcam["error"], shown
        assert webcam["session"] != live["session"]

        assert upload["status"] == "playing" and upload["frames"] == f"{frames}/{frames}", shown
        assert upload["uploaded"] == 1 and upload["drawn"] >= 10, shown
        poses = httpx.get(
            f"{server.url}/v1/videos/{upload['video']}/poses", headers={"X-API-Key": key}
        ).text.splitlines()
        ids = {p["track_id"] for line in poses for p in json.loads(line)["poses"] if p["track_id"] >= 0}
        assert {int(i) for i in upload["ids"].split(",") if i} == ids and ids
    assert live_png.stat().st_size > 10_000 and upload_png.stat().st_size > 10_000
