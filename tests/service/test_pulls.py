"""Pull ingest (``/v1/pulls``, ``posestream track URL``, ``PullSource``) against real servers on loopback.

HTTP: ``http.server`` serving the shapes clip (MP4) and an HLS playlist made with PyAV; RTSP:
GStreamer's gst-rtsp-server in a system-Python subprocess (``tests/service/rtsp_server.py``).
The gateway, the blob-pipeline worker and Redis are real (``tests/service/conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
import websockets

from posestream.service.pulls import PullConfig, PullError, PullFailed, PullSource, check_url, redact
from tests.service.clips import write_clip
from tests.service.conftest import ServerThread, WorkerThread
from tests.service.helpers import POSESTREAM, lane_ids
from tests.service.media_servers import HttpMediaServer, RtspServer, rtsp_unavailable, write_hls

FRAMES = 50
FPS = 25.0
# Fast retries so a drop costs the tests a second, not the production backoff.
FAST_PULL = dict(
    pull_allow_private=True, pull_initial_backoff_s=0.2, pull_max_backoff_s=0.5, pull_timeout_s=3.0
)


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    write_clip(root / "clip.mp4", frames=FRAMES, fps=FPS)
    write_hls(root / "hls", frames=FRAMES, fps=int(FPS))
    return root


def _wait_pull(client: httpx.Client, pull_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/v1/pulls/{pull_id}").json()
        if status["state"] in ("ended", "failed", "stopped"):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"pull {pull_id} still {status} after {timeout} s")
        time.sleep(0.1)


async def _ws_results(url: str, **connect: Any) -> tuple[dict, list[dict], dict | None, int | None, str]:
    """(hello, results, end status, close code, close reason) of ``WS /v1/pulls/{id}/results``."""
    async with websockets.connect(url, **connect) as ws:
        hello = json.loads(await ws.recv())
        results, end = [], None
        with contextlib.suppress(websockets.ConnectionClosedError):  # a close code other than 1000
            async for msg in ws:
                obj = json.loads(msg)
                if "end" in obj:
                    end = obj["end"]
                else:
                    results.append(obj)
    return hello, results, end, ws.close_code, ws.close_reason


def _check_one_clip(frames: list[dict[str, Any]], n: int = FRAMES) -> None:
    """Every frame of the shapes clip once, in order, with its own timestamp, and one track id per shape."""
    assert [f["frame_index"] for f in frames] == list(range(n))
    ts = [f["timestamp"] for f in frames]
    assert all(b - a == pytest.approx(1 / FPS, abs=1e-3) for a, b in zip(ts, ts[1:], strict=False)), ts
    assert all(len(f["poses"]) == 3 for f in frames)
    ids = lane_ids(frames)
    assert all(len(v) == 1 for v in ids.values()), ids  # track continuity: one id per shape throughout


# ---- PullSource ----------------------------------------------------------------------------------
def test_check_url_accepts_stream_schemes_only_and_refuses_private_addresses() -> None:
    for bad in ("file:///etc/passwd", "ftp://example.com/a.mp4", "concat:a|b", "/tmp/x.mp4", "http://"):
        with pytest.raises(PullError):
            check_url(bad, allow_private=True)
    assert check_url("RTSP://127.0.0.1:8554/cam", allow_private=True) == "rtsp"
    for private in (
        "http://localhost/a.mp4",
        "http://127.0.0.1/a.mp4",
        "rtsp://10.1.2.3/cam",
        "https://[::1]/x.m3u8",
        "http://169.254.1.1/",
    ):
        with pytest.raises(PullError, match="pull_allow_private"):
            check_url(private, allow_private=False)
    assert redact("rtsp://admin:s3cret@10.0.0.2:554/cam") == "rtsp://admin:***@10.0.0.2:554/cam"


def test_backoff_doubles_up_to_its_cap() -> None:
    config = PullConfig(initial_backoff_s=0.5, max_backoff_s=3.0)
    assert [config.backoff(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValueError):
        PullConfig(initial_backoff_s=2.0, max_backoff_s=1.0)


@pytest.mark.parametrize("name", ["clip.mp4", "hls/index.m3u8"])
def test_pull_source_reads_an_http_file_and_hls_to_their_end(media: Path, name: str) -> None:
    with HttpMediaServer(media) as server:
        source = PullSource(server.url(name), PullConfig(allow_private=True))
        frames = list(source.frames())
    assert len(frames) == FRAMES and [f[0] for f in frames] == list(range(FRAMES))
    assert frames[0][2].shape == (240, 320, 3)
    assert source.stats.state == "ended" and source.stats.reconnects == 0 and source.stats.fps == FPS


def test_a_playlist_cannot_make_the_pull_read_local_files(media: Path) -> None:
    # An HLS playlist whose segments are file: URLs: FFmpeg follows them when allowed to,
    # a PullSource only opens network protocols (protocol_whitelist).
    hls = media / "hls"
    evil = media / "evil.m3u8"
    evil.write_text((hls / "index.m3u8").read_text().replace("seg", f"file://{hls}/seg"))
    with av.open(str(evil), options={"protocol_whitelist": "file,crypto"}) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES
    with HttpMediaServer(media) as server:
        source = PullSource(server.url("evil.m3u8"), PullConfig(allow_private=True, max_retries=0))
        with pytest.raises(PullFailed):
            list(source.frames())
    assert source.stats.frames_read == 0


def test_pull_source_gives_up_after_max_retries() -> None:
    from tests.service.conftest import free_port

    source = PullSource(
        f"http://127.0.0.1:{free_port()}/nothing.mp4",
        PullConfig(allow_private=True, max_retries=2, initial_backoff_s=0.05, max_backoff_s=0.1),
    )
    with pytest.raises(PullFailed, match="gave up after 2 reconnect attempts"):
        list(source.frames())
    assert source.stats.state == "failed" and source.stats.reconnects == 2


# ---- the service ---------------------------------------------------------------------------------
@pytest.fixture
def pull_stack(make_settings):
    settings = make_settings(**FAST_PULL)
    with WorkerThread(settings), ServerThread(settings) as server:
        yield server


@pytest.mark.parametrize(
    ("name", "mode"), [("clip.mp4", "ordered"), ("hls/index.m3u8", "ordered"), ("clip.mp4", "live")]
)
def test_pull_an_http_file_or_hls_through_the_workers(
    pull_stack: ServerThread, media: Path, name: str, mode: str
) -> None:
    with HttpMediaServer(media) as server, httpx.Client(base_url=pull_stack.url, timeout=30) as client:
        r = client.post("/v1/pulls", json={"url": server.url(name), "mode": mode})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["session"] == f"pull:{body['id']}" and r.headers["location"] == f"/v1/pulls/{body['id']}"
        hello, results, end, code, _ = asyncio.run(_ws_results(pull_stack.ws_url + body["results_url"]))
        assert hello["pull"] == body["id"] and code == 1000
        assert end is not None and end["state"] == "ended" and end["error"] is None
        status = client.get(body["status_url"]).json()
        lines = [json.loads(line) for line in client.get(body["results_jsonl_url"]).text.splitlines()]
    assert status["frames_read"] == FRAMES and status["reconnects"] == 0
    assert [r["seq"] for r in results] == list(range(status["frames_queued"]))
    assert [{k: v for k, v in r.items() if k != "seq"} for r in results] == lines
    if mode == "ordered":
        assert status["frames_done"] == FRAMES and status["frames_dropped"] == 0
        _check_one_clip(lines)
    else:  # live: the file is read at its own rate; what the workers could not take is dropped, never reordered
        assert status["frames_done"] + status["frames_dropped"] == FRAMES
        assert [f["frame_index"] for f in lines] == sorted({f["frame_index"] for f in lines})


def test_a_live_pull_with_a_slow_worker_drops_frames_but_never_reorders(make_settings, media: Path) -> None:
    from posestream.service.pipeline import DelayedPipeline, build_pipeline

    settings = make_settings(**FAST_PULL, max_inflight=2, live_queue=2, batch_size=1)
    slow = DelayedPipeline(build_pipeline("blobs", "iou"), 0.1)  # about 10 frames/s against the clip's 25
    with (
        WorkerThread(settings, slow),
        ServerThread(settings) as gw,
        HttpMediaServer(media) as server,
        httpx.Client(base_url=gw.url, timeout=30) as client,
    ):
        body = client.post("/v1/pulls", json={"url": server.url("clip.mp4"), "mode": "live"}).json()
        status = _wait_pull(client, body["id"])
        lines = [json.loads(line) for line in client.get(body["results_jsonl_url"]).text.splitlines()]
    assert status["state"] == "ended" and status["frames_read"] == FRAMES
    assert status["frames_dropped"] > 0 and status["frames_done"] + status["frames_dropped"] == FRAMES
    indices = [f["frame_index"] for f in lines]
    assert (
        len(lines) == status["frames_done"] and indices == sorted(set(indices)) and indices[-1] == FRAMES - 1
    )


@pytest.mark.parametrize("name", ["clip.mp4", "hls/index.m3u8"])
def test_pull_reconnects_after_the_http_server_drops_and_resumes_where_it_stopped(
    make_settings, media: Path, name: str
) -> None:
    settings = make_settings(**FAST_PULL)
    size = sum(f.stat().st_size for f in (media / name).parent.iterdir() if f.is_file())
    # Throttled so the clip takes about 3 s to arrive; once the first frames are tracked, the
    # server goes away (every connection cut) for 1.5 s, then comes back on the same port.
    http = HttpMediaServer(media, rate_bps=size / 3.0)
    http.start()
    at_drop: list[dict[str, Any]] = []

    def bounce(status_url: str) -> None:
        with httpx.Client(base_url=gw.url, timeout=30) as watcher:
            while (st := watcher.get(status_url).json())["frames_done"] < 3:
                time.sleep(0.02)
        http.stop()
        at_drop.append(st)
        time.sleep(1.5)
        http.start()

    with (
        WorkerThread(settings),
        ServerThread(settings) as gw,
        httpx.Client(base_url=gw.url, timeout=30) as client,
    ):
        try:
            r = client.post("/v1/pulls", json={"url": http.url(name), "mode": "ordered"})
            assert r.status_code == 201, r.text
            threading.Thread(target=bounce, args=(r.json()["status_url"],), daemon=True).start()
            status = _wait_pull(client, r.json()["id"])
            lines = [json.loads(line) for line in client.get(r.json()["results_jsonl_url"]).text.splitlines()]
        finally:
            time.sleep(0.1)
            http.stop()
    assert at_drop and 3 <= at_drop[0]["frames_done"] <= at_drop[0]["frames_read"] < FRAMES, at_drop
    assert status["state"] == "ended" and status["reconnects"] >= 1, status
    assert status["frames_read"] == status["frames_done"] == FRAMES
    _check_one_clip(lines)  # no frame lost or repeated across the drop, the same track ids after it


def test_delete_stops_a_pull_and_keeps_what_it_collected(pull_stack: ServerThread, media: Path) -> None:
    write_clip(media / "long.mp4", frames=200, fps=FPS)  # live mode reads it in real time: 8 s
    with HttpMediaServer(media) as server, httpx.Client(base_url=pull_stack.url, timeout=30) as client:
        body = client.post("/v1/pulls", json={"url": server.url("long.mp4"), "mode": "live"}).json()
        deadline = time.monotonic() + 20
        while client.get(body["status_url"]).json()["frames_done"] < 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = client.delete(body["status_url"])
        assert r.status_code == 200 and r.json()["state"] == "stopped", r.json()
        status = client.get(body["status_url"]).json()
        lines = client.get(body["results_jsonl_url"]).text.splitlines()
        _, results, end, code, _ = asyncio.run(_ws_results(pull_stack.ws_url + body["results_url"]))
    assert 5 <= status["frames_done"] == status["frames_queued"] == len(lines) == len(results) < 150, status
    assert code == 1000 and end == status


def test_a_source_that_never_answers_fails_with_4502(make_settings) -> None:
    from tests.service.conftest import free_port

    settings = make_settings(**FAST_PULL, pull_max_retries=1)
    with ServerThread(settings) as gw, httpx.Client(base_url=gw.url, timeout=30) as client:
        body = client.post("/v1/pulls", json={"url": f"rtsp://127.0.0.1:{free_port()}/cam"}).json()
        _, results, end, code, reason = asyncio.run(_ws_results(gw.ws_url + body["results_url"]))
        status = client.get(body["status_url"]).json()
    assert results == [] and code == 4502 and reason.startswith("source failed:")
    assert end == status and status["state"] == "failed" and status["error"]["code"] == "source_failed"
    assert status["reconnects"] == 1


def test_a_frame_over_max_frame_pixels_fails_the_pull(make_settings, media: Path) -> None:
    settings = make_settings(**FAST_PULL, max_frame_pixels=320 * 200)  # the clip is 320x240
    with (
        HttpMediaServer(media) as server,
        ServerThread(settings) as gw,
        httpx.Client(base_url=gw.url) as client,
    ):
        body = client.post("/v1/pulls", json={"url": server.url("clip.mp4"), "mode": "ordered"}).json()
        _, results, end, code, reason = asyncio.run(_ws_results(gw.ws_url + body["results_url"]))
    assert results == [] and code == 4502 and "max_frame_pixels" in reason
    assert end is not None and end["error"]["code"] == "frame_too_large" and end["frames_queued"] == 0


def test_pull_errors(make_settings, media: Path) -> None:
    settings = make_settings(api_keys=["k1", "k2"], max_pulls=1, pull_initial_backoff_s=0.2)
    k1 = {"Authorization": "Bearer k1"}
    with ServerThread(settings) as gw, httpx.Client(base_url=gw.url, timeout=30, headers=k1) as client:
        assert httpx.post(gw.url + "/v1/pulls", json={"url": "http://example.com/a.mp4"}).status_code == 401
        for url in ("file:///etc/passwd", "ftp://example.com/a.mp4", "not a url"):
            r = client.post("/v1/pulls", json={"url": url})
            assert r.status_code == 400 and r.json()["error"]["code"] == "bad_url", r.text
        r = client.post("/v1/pulls", json={"url": "http://127.0.0.1:9/a.mp4"})  # pull_allow_private is off
        assert r.status_code == 400 and "pull_allow_private" in r.json()["error"]["message"]
        for bad in (
            {},
            {"url": "http://example.com/a.mp4", "mode": "fast"},
            {"url": "http://example.com", "x": 1},
        ):
            r = client.post("/v1/pulls", json=bad)
            assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text
        for method in ("GET", "DELETE"):
            r = client.request(method, "/v1/pulls/" + "0" * 32)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        code, reason = asyncio.run(_close_of(gw.ws_url + "/v1/pulls/" + "0" * 32 + "/results", "k1"))
        assert code == 4404 and "no pull" in reason
        code, _ = asyncio.run(_close_of(gw.ws_url + "/v1/pulls/" + "0" * 32 + "/results", "wrong"))
        assert code == 4401


def test_too_many_pulls_is_429_and_another_keys_pull_is_404(make_settings, media: Path) -> None:
    settings = make_settings(**FAST_PULL, api_keys=["k1", "k2"], max_pulls=1)
    size = (media / "clip.mp4").stat().st_size
    with (
        HttpMediaServer(media, rate_bps=size / 10.0) as server,
        ServerThread(settings) as gw,
        httpx.Client(base_url=gw.url, timeout=30, headers={"X-API-Key": "k1"}) as client,
    ):
        body = client.post("/v1/pulls", json={"url": server.url("clip.mp4")}).json()
        r = client.post("/v1/pulls", json={"url": server.url("clip.mp4")})
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_pulls"
        r = client.get(body["status_url"], headers={"X-API-Key": "k2"})
        assert r.status_code == 404
        code, _ = asyncio.run(_close_of(gw.ws_url + body["results_url"], "k2"))
        assert code == 4404
        assert client.delete(body["status_url"]).json()["state"] == "stopped"
        assert client.post("/v1/pulls", json={"url": server.url("clip.mp4")}).status_code == 201


async def _close_of(url: str, key: str) -> tuple[int | None, str]:
    async with websockets.connect(url, subprotocols=["posestream.v1", f"apikey.{key}"]) as ws:  # type: ignore[list-item]
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason


# ---- RTSP --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rtsp_reason() -> str | None:
    return rtsp_unavailable()


def test_pull_rtsp_through_the_workers_and_reconnect_after_the_server_restarts(
    make_settings, media: Path, rtsp_reason: str | None
) -> None:
    if rtsp_reason:
        pytest.skip(rtsp_reason)
    settings = make_settings(**FAST_PULL)
    clip = write_clip(media / "long.mp4", frames=100, fps=FPS)  # 4 s in real time
    rtsp = RtspServer(clip)
    rtsp.start()

    def bounce() -> None:
        time.sleep(1.5)
        rtsp.stop()
        time.sleep(1.0)
        rtsp.start()

    with (
        WorkerThread(settings),
        ServerThread(settings) as gw,
        httpx.Client(base_url=gw.url, timeout=30) as client,
    ):
        try:
            body = client.post("/v1/pulls", json={"url": rtsp.url, "mode": "ordered"}).json()
            threading.Thread(target=bounce, daemon=True).start()
            hello, results, end, code, _ = asyncio.run(_ws_results(gw.ws_url + body["results_url"]))
        finally:
            time.sleep(0.1)
            rtsp.stop()
    assert code == 1000 and end is not None and end["state"] == "ended" and end["reconnects"] >= 1, end
    # The server's media has a range, so the pull resumes at the last frame's time (RTSP PLAY with
    # Range): every frame once, in order, one track id per shape across the restart.
    _check_one_clip(results, 100)


def test_a_live_rtsp_source_is_reconnected_and_its_timestamps_go_on(rtsp_reason: str | None) -> None:
    reason = rtsp_reason or rtsp_unavailable(live=True)
    if reason:
        pytest.skip(reason)
    rtsp = RtspServer("live")
    rtsp.start()
    source = PullSource(
        rtsp.url, PullConfig(allow_private=True, initial_backoff_s=0.2, max_backoff_s=0.5, read_timeout_s=3.0)
    )
    frames: list[tuple[int, float]] = []
    try:
        for index, ts, _ in source.frames():
            frames.append((index, ts))
            if len(frames) == 25:  # the server goes away mid-stream and comes back
                rtsp.stop()
                rtsp.start()
            if len(frames) == 60:
                source.stop.set()
    finally:
        rtsp.stop()
    assert source.stats.live and source.stats.reconnects >= 1 and source.stats.state == "stopped", (
        source.stats
    )
    assert [i for i, _ in frames] == list(range(60))
    ts = [t for _, t in frames]
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False)), (
        ts
    )  # a new connection's pts continue, not restart


# ---- the CLI -----------------------------------------------------------------------------------------
def test_posestream_track_url_writes_json_lines_as_for_files(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "pulled.jsonl"
    with HttpMediaServer(media) as server:
        run = subprocess.run(
            [*POSESTREAM, "track", server.url("clip.mp4"), "--model", "blobs", "--tracker", "iou", "--out", str(out), "-q"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "50 frames" in run.stdout and "0 reconnects" in run.stdout
    _check_one_clip([json.loads(line) for line in out.read_text().splitlines()])
    bad = subprocess.run(
        [*POSESTREAM, "track", "file:///etc/passwd", "--model", "blobs"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unsupported URL scheme 'file'" in bad.stderr


def test_posestream_track_url_exits_1_when_the_source_fails_for_good(tmp_path: Path) -> None:
    from tests.service.conftest import free_port

    env = {**os.environ, "POSESTREAM_PULL_MAX_RETRIES": "1", "POSESTREAM_PULL_INITIAL_BACKOFF_S": "0.1"}
    run = subprocess.run(
        [*POSESTREAM, "track", f"http://127.0.0.1:{free_port()}/x.mp4", "--model", "blobs", "--tracker", "iou",
         "--out", str(tmp_path / "x.jsonl"), "-q"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert run.returncode == 1 and "the source failed for good" in run.stderr, run.stderr


@pytest.mark.slow
@pytest.mark.weights
def test_posestream_track_url_with_movenet_on_a_real_clip(
    temporalnet_checkpoint: Path, tmp_path: Path
) -> None:
    # The default pipeline (MoveNet + Thunder refinement + TemporalNet he+tie) on real people, pulled over HTTP.
    vtest = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
    if not vtest.is_file():
        pytest.skip("vtest.avi (Debian opencv-doc) is not installed")
    from posestream.models.data.video import VideoWriter, iter_video_frames

    root = tmp_path / "media"
    root.mkdir()
    with VideoWriter(root / "people.mp4", 768, 576, 10.0) as writer:
        for index, _, rgb in iter_video_frames(vtest):
            if index >= 20:
                break
            writer.write(rgb)
    out = tmp_path / "people.jsonl"
    with HttpMediaServer(root) as server:
        run = subprocess.run(
            [*POSESTREAM, "track", server.url("people.mp4"), "--out", str(out), "-q", "--input-size", "256"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    assert [f["frame_index"] for f in frames] == list(range(20))
    assert sum(len(f["poses"]) for f in frames) / 20 >= 2  # several people walk through every frame
