"""Stream faults (issue 17): disconnects, resume, gateway restarts and SIGTERM, load, key isolation, huge frames.

Real Redis, real gateways (uvicorn on loopback, in a thread or a subprocess), real blob
workers and real ``websockets`` clients (``posestream.service.stream_client``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import struct
import subprocess
import time

import pytest
import redis
import websockets
from websockets.exceptions import ConnectionClosed

from posestream.service.frames import decode_image
from posestream.service.messages import FrameJob, FrameResult, RedisKeys
from posestream.service.pipeline import DelayedPipeline, build_pipeline
from posestream.service.stream_client import run_stream
from tests.service.clips import jpeg, shapes_frame
from tests.service.conftest import ServerThread, WorkerThread, free_port
from tests.service.helpers import POSESTREAM, settings_env

HELLO = {"fps": 25, "width": 320, "height": 240, "mode": "ordered"}
_IMAGES = {i: jpeg(shapes_frame(i)) for i in range(64)}


def _image(i: int) -> bytes:
    return _IMAGES[i % 64]


def _requeued(worker: WorkerThread, reason: str = "ahead") -> float:
    return worker.worker.metrics.requeued.labels(reason)._value.get()


async def _until_accepted(url: str, session: str, ack: int | None, deadline_s: float, **kw) -> object:
    """Resume ``session``; retry while the old connection's lock is held (4409) up to ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while True:
        run = await run_stream(url, HELLO, _image, session=session, ack=ack, **kw)
        if run.close_code != 4409 or time.monotonic() > end:
            return run
        await asyncio.sleep(0.2)


def test_disconnects_and_gateway_restarts_then_resume_lose_and_repeat_nothing(make_settings) -> None:
    """Abrupt and clean closes mid-stream, a gateway restart: every frame answered once, in order."""
    settings = make_settings(stream_lock_ms=1500, max_inflight=4, stream_window=8)
    slow = DelayedPipeline(build_pipeline("blobs", "iou"), 0.03)  # results still owed at each disconnect
    every: list[dict] = []
    with WorkerThread(settings, slow):

        async def cycles(url: str, session: str | None, n: int) -> str | None:
            for c in range(n):
                ack = every[-1]["seq"] if every else (-1 if session else None)
                run = await _until_accepted(url, session, ack, 10, count=40, stop_after=3 + c,
                                            stop="abort" if c % 2 == 0 else "close")  # fmt: skip
                assert run.close_code != 4409, "a closed connection kept its session locked"
                assert run.ready["resumed"] is (session is not None)
                session = run.ready["session"]
                every.extend(run.results)
            return session

        with ServerThread(settings) as gw:
            session = asyncio.run(cycles(gw.ws_url + "/v1/streams", None, 5))
        with ServerThread(settings) as gw:  # the gateway restarted: resume on the new one
            url = gw.ws_url + "/v1/streams"
            session = asyncio.run(cycles(url, session, 4))
            last = asyncio.run(_until_accepted(url, session, every[-1]["seq"], 10, count=10, stop="end"))
    every.extend(last.results)
    assert last.close_code == 1000 and last.end is not None
    assert [r["seq"] for r in every] == list(range(len(every))), "a seq was skipped or repeated"
    indices = [r["frame_index"] for r in every]
    assert indices == list(range(len(every))), "a frame index was skipped or repeated"
    assert indices[-1] == last.sent[-1]
    assert all("error" not in r and len(r["poses"]) == 3 for r in every)


def test_results_computed_while_disconnected_are_replayed_from_the_ack(make_settings, redis_client) -> None:
    settings = make_settings(batch_size=1)
    keys = RedisKeys(settings.redis_prefix)
    slow = DelayedPipeline(build_pipeline("blobs", "iou"), 0.05)
    with WorkerThread(settings, slow), ServerThread(settings) as gw:
        url = gw.ws_url + "/v1/streams"
        first = asyncio.run(run_stream(url, HELLO, _image, 12, stop_after=2, stop="abort"))
        session = first.ready["session"]
        time.sleep(0.3)
        queued = int(redis_client.get(keys.seq(session)))
        deadline = time.monotonic() + 20
        while redis_client.xlen(keys.results(session)) < queued:  # the worker finishes them meanwhile
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ack = first.last_seq
        again = asyncio.run(_until_accepted(url, session, ack, 10, count=5, stop="end"))
    assert queued > ack + 1, "nothing was owed at the disconnect"
    assert again.ready["last_index"] == queued - 1 and again.sent == list(range(queued, queued + 5))
    assert [r["seq"] for r in again.results] == list(range(ack + 1, queued + 5))
    assert [r["frame_index"] for r in first.results + again.results] == list(range(queued + 5))
    assert again.end == {"frames_received": 5, "frames_sent": queued + 5 - ack - 1, "dropped": 0}


def test_a_client_further_behind_than_the_result_stream_is_told_and_replayed_from_the_oldest(
    make_settings,
) -> None:
    settings = make_settings(results_maxlen=30, stream_window=8, max_inflight=4, upload_inflight=8)
    with WorkerThread(settings), ServerThread(settings) as gw:
        url = gw.ws_url + "/v1/streams"
        first = asyncio.run(run_stream(url, HELLO, _image, 250))
        again = asyncio.run(run_stream(url, HELLO, _image, 2, session=first.ready["session"], ack=0))
    assert first.close_code == 1000 and len(first.results) == 250
    assert [e["error"]["code"] for e in again.errors] == ["results_expired"]
    seqs = [r["seq"] for r in again.results]
    assert 1 < seqs[0] <= 250 - 30 and seqs == list(range(seqs[0], 252)), seqs[:5]  # MAXLEN ~ keeps >= 30
    assert again.close_code == 1000


def test_resume_without_ack_after_abrupt_closes_is_never_stuck(make_settings) -> None:
    """Old clients (no ack, no credit): after abrupt closes the session still gets every new frame's result."""
    settings = make_settings(stream_lock_ms=1500)
    with WorkerThread(settings) as worker, ServerThread(settings) as gw:
        url = gw.ws_url + "/v1/streams"

        async def run() -> object:
            session, nxt = None, 0
            for c in range(10):
                if session is None:
                    run = await run_stream(
                        url, HELLO, _image, 30, honour_credit=False, stop_after=1, stop="abort"
                    )
                else:
                    run = await _until_accepted(url, session, None, 10, count=30, start=nxt, honour_credit=False,
                                                stop_after=1 + c % 4, stop="abort", timeout_s=10)  # fmt: skip
                assert run.ready, f"resume {c} refused: {run.close_code} {run.close_reason}"
                assert run.results, f"resume {c} got no result within 10 s: the session is stuck"
                session = run.ready["session"]
                nxt = max(run.sent) + 1
            return await _until_accepted(url, session, None, 10, count=20, start=nxt, honour_credit=False,
                                         stop="end", timeout_s=15)  # fmt: skip

        last = asyncio.run(run())
        requeued = _requeued(worker)
    assert last.close_code == 1000, (last.close_code, last.close_reason)
    assert [r["frame_index"] for r in last.results] == last.sent
    assert requeued < 200, f"the worker re-queued waiting jobs {requeued:.0f} times"


def test_dead_connection_stops_holding_its_session(make_settings) -> None:
    """No worker: results never come, the receiver is past its credit; an abrupt close must free the lock."""
    settings = make_settings()  # the lock would lapse after stream_lock_ms = 10 s if nobody released it
    with ServerThread(settings) as gw:
        url = gw.ws_url + "/v1/streams"

        async def run() -> tuple[object, float]:
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps(HELLO))
                session = json.loads(await ws.recv())["session"]
                for i in range(40):  # far past the window: the server stops reading this client
                    await ws.send(struct.pack(">Q", i) + _image(i))
                await asyncio.sleep(0.5)
                ws.transport.abort()
            t0 = time.monotonic()
            while True:  # the lock must go within a few probe periods, long before it would lapse
                again = await run_stream(url, HELLO, _image, 0, session=session, stop="end", timeout_s=5)
                if again.close_code != 4409 or time.monotonic() - t0 > 10:
                    return again, time.monotonic() - t0
                await asyncio.sleep(0.1)

        again, took = asyncio.run(run())
    assert again.close_code != 4409 and took < 4, (again.close_code, took)
    assert again.ready["last_index"] >= 0


def test_sigterm_with_open_streams_exits_within_seconds(make_settings, redis_client) -> None:
    settings = make_settings()
    keys = RedisKeys(settings.redis_prefix)
    port = free_port()
    env = settings_env(settings, "model", "tracker")
    proc = subprocess.Popen([*POSESTREAM, "serve", "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"ws://127.0.0.1:{port}/v1/streams"
    try:

        async def run() -> float:
            for _ in range(100):
                try:
                    async with websockets.connect(url):
                        break
                except OSError:
                    await asyncio.sleep(0.1)
            socks = []
            for honours in (True, False, False):  # no worker: results never come
                ws = await websockets.connect(url)
                await ws.send(json.dumps(HELLO))
                await ws.recv()
                for i in range(16 if honours else 40):
                    await ws.send(struct.pack(">Q", i) + _image(i))
                socks.append(ws)
            await asyncio.sleep(0.5)
            assert len(list(redis_client.scan_iter(match=keys.conn("*")))) == 3
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            while proc.poll() is None and time.monotonic() - t0 < 30:
                await asyncio.sleep(0.05)
            took = time.monotonic() - t0
            for ws in socks:
                with pytest.raises(ConnectionClosed):
                    while True:  # credit probes may still be buffered before the close
                        await asyncio.wait_for(ws.recv(), 5)
            return took

        took = asyncio.run(run())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert took < 5, f"the gateway took {took:.1f} s to exit on SIGTERM with streams open"
    # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean exit.
    assert proc.returncode in (0, -signal.SIGTERM), proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    assert list(redis_client.scan_iter(match=keys.conn("*"))) == [], "session locks outlived the gateway"


def test_sixteen_unpaced_ordered_streams_all_complete_without_keepalive_closes(make_settings) -> None:
    # A short server keepalive: a socket the server stops reading for 2 s gets closed 1011.
    settings = make_settings()
    with (
        WorkerThread(settings),
        WorkerThread(settings),
        ServerThread(settings, ws_ping_interval=0.5, ws_ping_timeout=2.0) as gw,
    ):
        url = gw.ws_url + "/v1/streams"

        async def run() -> list:
            return await asyncio.gather(
                *(run_stream(url, HELLO, _image, 60, timeout_s=60) for _ in range(16))
            )

        runs = asyncio.run(run())
    codes = [r.close_code for r in runs]
    assert codes == [1000] * 16, [(r.close_code, r.close_reason, len(r.results)) for r in runs]
    for r in runs:
        assert [x["frame_index"] for x in r.results] == list(range(60))
        assert r.end == {"frames_received": 60, "frames_sent": 60, "dropped": 0}
        assert r.ready["credit"] == settings.stream_window
        assert r.probes == 0, "the server stopped reading a client that stayed within its credit"
        assert max(x["credit"] for x in r.results) == 60 + settings.stream_window


def test_a_session_belongs_to_the_key_that_created_it(make_settings, redis_client) -> None:
    settings = make_settings(api_keys=["k1", "k2"])
    keys = RedisKeys(settings.redis_prefix)
    k1, k2 = {"additional_headers": {"X-API-Key": "k1"}}, {"additional_headers": {"X-API-Key": "k2"}}
    with WorkerThread(settings), ServerThread(settings) as gw:
        url = gw.ws_url + "/v1/streams"
        first = asyncio.run(run_stream(url, HELLO, _image, 3, **k1))
        session = first.ready["session"]
        other = asyncio.run(run_stream(url, HELLO, _image, 3, session=session, **k2))
        unknown = asyncio.run(run_stream(url, HELLO, _image, 3, session="no-such-session", **k1))
        mine = asyncio.run(run_stream(url, HELLO, _image, 3, session=session, ack=2, **k1))
    assert first.close_code == 1000 and len(first.results) == 3
    assert other.close_code == 4404 and not other.results
    assert unknown.close_code == 4404
    assert other.close_reason.replace(session, "ID") == unknown.close_reason.replace("no-such-session", "ID")
    assert mine.close_code == 1000 and [r["frame_index"] for r in mine.results] == [3, 4, 5]
    stored = redis_client.hgetall(keys.stream(session))
    assert stored[b"owner"] == hashlib.sha256(b"k1").hexdigest().encode()
    assert b"k1" not in b"".join(stored.values())


def _jpeg_header(width: int, height: int) -> bytes:
    """A JPEG start announcing ``width`` x ``height`` (SOI, APP0, SOF0) and a little scan data."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return (
        b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9) + sof + b"\xff\xda" + bytes(64)
    )


def test_frames_over_max_frame_pixels_are_refused_before_decoding(make_settings) -> None:
    settings = make_settings(max_frame_pixels=320 * 240)
    with WorkerThread(settings), ServerThread(settings) as gw:
        url = gw.ws_url + "/v1/streams"
        big = asyncio.run(run_stream(url, {**HELLO, "width": 16384, "height": 16384}, _image, 1))
        ok = asyncio.run(run_stream(url, HELLO, _image, 2))
    assert big.close_code == 4400 and "max_frame_pixels" in big.close_reason
    assert ok.close_code == 1000 and len(ok.results) == 2
    rgb, err = decode_image(_jpeg_header(16384, 16384), max_pixels=settings.max_frame_pixels)
    assert rgb is None and "16384x16384" in err and "max_frame_pixels" in err
    rgb, err = decode_image(_image(0), max_pixels=settings.max_frame_pixels)
    assert rgb is not None and rgb.shape == (240, 320, 3) and err == ""


def test_gateway_checks_frame_headers_and_the_worker_reports_a_corrupt_body(make_settings) -> None:
    """The gateway reads only the header: a corrupt body of the right size is a ``frame_failed`` result."""
    settings = make_settings()
    corrupt = _jpeg_header(320, 240)
    with WorkerThread(settings), ServerThread(settings) as gw:
        url = gw.ws_url + "/v1/streams"
        run = asyncio.run(run_stream(url, HELLO, lambda i: corrupt if i == 1 else _image(i), 3))
        wrong = asyncio.run(run_stream(url, HELLO, lambda i: _jpeg_header(640, 480), 1))
    assert run.close_code == 1000 and [r["frame_index"] for r in run.results] == [0, 1, 2]
    assert run.results[1]["error"]["code"] == "frame_failed" and run.results[1]["poses"] == []
    assert "error" not in run.results[0] and "error" not in run.results[2]
    assert wrong.close_code == 1007 and "640x480" in wrong.close_reason


def test_worker_waits_for_a_pending_seq_and_declares_only_a_vanished_one_lost(
    make_settings, redis_client
) -> None:
    settings = make_settings(seq_gap_timeout_ms=1000, claim_idle_ms=30_000)
    keys = RedisKeys(settings.redis_prefix)

    def job(session: str, seq: int) -> dict:
        return FrameJob(session=session, seq=seq, frame_index=seq, timestamp=seq / 25, width=320, height=240,
                        image=_image(seq)).to_fields()  # fmt: skip

    def results(session: str, n: int, within: float) -> list[tuple[int, str]]:
        deadline = time.monotonic() + within
        while redis_client.xlen(keys.results(session)) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        got = [FrameResult.from_fields(f) for _, f in redis_client.xrange(keys.results(session))]
        return [(r.seq, r.error.split(":")[0]) for r in got]

    worker = WorkerThread(settings)  # the group exists from here; the loop starts below
    # "wait": seq 0 is pending at a consumer that died (claimed only after claim_idle_ms).
    redis_client.xadd(keys.jobs, job("wait", 0))
    dead = redis_client.xreadgroup("workers", "dead-worker", {keys.jobs: ">"}, count=1)[0][1][0]
    redis_client.xadd(keys.jobs, job("wait", 1))
    redis_client.xadd(keys.jobs, job("gap", 1))  # "gap": seq 0 never comes (Redis lost it)
    with worker:
        assert results("gap", 2, 6) == [(0, "frame_lost"), (1, "")]
        assert results("wait", 1, 2.0) == [], "a seq pending at another consumer was declared lost"
        requeued = _requeued(worker)
        assert 1 <= requeued < 60, f"waiting jobs were re-queued {requeued:.0f} times"
        redis_client.xadd(keys.jobs, dead[1])  # the takeover: re-queue the dead consumer's job
        redis_client.xack(keys.jobs, "workers", dead[0])
        redis_client.xdel(keys.jobs, dead[0])
        assert results("wait", 2, 6) == [(0, ""), (1, "")]
    assert redis_client.xlen(keys.jobs) == 0


def test_settings_need_room_for_replay_in_the_result_stream(make_settings) -> None:
    with pytest.raises(ValueError, match="stream_window"):
        make_settings(results_maxlen=20, stream_window=16, upload_inflight=4)


_ = redis  # the fixture's client type
