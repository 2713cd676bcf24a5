"""``WS /v1/streams`` with real websockets clients, a real gateway, workers and Redis."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from posestream.service.pipeline import DelayedPipeline, build_pipeline
from tests.service.conftest import ServerThread, WorkerThread
from tests.service.helpers import frame_message, lane_ids

HELLO = {"fps": 25, "width": 320, "height": 240}


async def _stream(
    url: str,
    n: int,
    mode: str,
    interval: float = 0.0,
    start: int = 0,
    errors: bool = False,
    **connect: object,
):
    """Send ``n`` frames then ``{"end": true}``; returns (ready, results, end).

    Every result must be error-free unless ``errors`` (then results with an error are kept too)."""
    async with websockets.connect(url, **connect) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({**HELLO, "mode": mode}))
        ready = json.loads(await ws.recv())

        async def send() -> None:
            for i in range(start, start + n):
                await ws.send(frame_message(i))
                if interval:
                    await asyncio.sleep(interval)
            await ws.send(json.dumps({"end": True}))

        sender = asyncio.create_task(send())
        results, end = [], None
        async for msg in ws:
            obj = json.loads(msg)
            if "end" in obj:
                end = obj["end"]
            else:
                assert errors or "error" not in obj, obj
                results.append(obj)
        await sender
        assert ws.close_code == 1000, (ws.close_code, ws.close_reason)
        return ready, results, end


def test_ordered_stream_of_200_frames_gets_200_results_in_order(stack: ServerThread) -> None:
    ready, results, end = asyncio.run(_stream(stack.ws_url + "/v1/streams", 200, "ordered"))
    assert ready["resumed"] is False and ready["mode"] == "ordered"
    assert [r["frame_index"] for r in results] == list(range(200))
    assert all(r["dropped"] == 0 and len(r["poses"]) == 3 for r in results)
    assert results[10]["timestamp"] == pytest.approx(10 / 25)
    assert end == {"frames_received": 200, "frames_sent": 200, "dropped": 0}
    assert all(len(ids) == 1 for ids in lane_ids(results).values())


def test_live_stream_with_a_slow_worker_drops_and_reports_but_never_reorders(make_settings) -> None:
    settings = make_settings(max_inflight=2, live_queue=2, batch_size=1)
    slow = DelayedPipeline(build_pipeline("blobs", "iou"), 0.08)
    with WorkerThread(settings, slow), ServerThread(settings) as server:
        _, results, end = asyncio.run(_stream(server.ws_url + "/v1/streams", 60, "live", interval=0.01))
    indices = [r["frame_index"] for r in results]
    assert indices == sorted(set(indices)), "results must come in strictly increasing frame order"
    dropped = [r["dropped"] for r in results]
    assert dropped == sorted(dropped) and end["dropped"] > 0
    assert len(results) + end["dropped"] == 60 == end["frames_received"]
    assert indices[0] == 0 and len(results) < 60


@pytest.mark.parametrize("budget_ms", [250, 0])
def test_live_frames_past_the_latency_budget_come_back_expired_in_order(
    make_settings, budget_ms: int
) -> None:
    """A worker 10x slower than the stream: with a budget the frames that waited too long in Redis are
    answered as expired (no poses, in their place) instead of late; without one none expire."""
    settings = make_settings(max_inflight=8, live_queue=4, batch_size=1, live_max_age_ms=budget_ms)
    slow = DelayedPipeline(build_pipeline("blobs", "iou"), 0.1)
    with WorkerThread(settings, slow), ServerThread(settings) as server:
        _, results, end = asyncio.run(_stream(server.ws_url + "/v1/streams", 40, "live", 0.01, errors=True))
    indices = [r["frame_index"] for r in results]
    assert indices == sorted(set(indices)) and [r["seq"] for r in results] == list(range(len(results)))
    assert (
        len(results) == end["frames_sent"] and len(results) + end["dropped"] == 40 == end["frames_received"]
    )
    expired = [r for r in results if r.get("error", {}).get("code") == "frame_expired"]
    processed = [r for r in results if "error" not in r]
    assert len(expired) + len(processed) == len(results)
    assert all(r["poses"] == [] and "live budget" in r["error"]["message"] for r in expired)
    if budget_ms:
        assert len(expired) >= 3, indices
    else:
        assert expired == []
    assert all(len(p["poses"]) == 3 for p in processed)


def test_resumed_session_continues_track_ids(stack: ServerThread) -> None:
    url = stack.ws_url + "/v1/streams"
    ready, first, _ = asyncio.run(_stream(url, 20, "ordered"))
    session = ready["session"]
    ready2, second, _ = asyncio.run(_stream(f"{url}?session={session}", 20, "ordered", start=20))
    assert ready2 == {
        "session": session,
        "resumed": True,
        "mode": "ordered",
        "next_seq": 20,
        "last_index": 19,
        "credit": 16,
    }
    assert [r["frame_index"] for r in second] == list(range(20, 40))
    ids = lane_ids(first + second)
    assert all(len(v) == 1 for v in ids.values()), ids  # same ids across the reconnect


async def _expect_close(url: str, messages: list[str | bytes], code: int, **connect: object) -> str:
    async with websockets.connect(url, **connect) as ws:  # type: ignore[arg-type]
        for m in messages:
            try:
                await ws.send(m)
            except ConnectionClosed:
                break
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed:
            pass
        assert ws.close_code == code, (ws.close_code, ws.close_reason)
        assert ws.close_reason
        return ws.close_reason


def test_garbage_gets_close_codes_and_the_server_keeps_serving(stack: ServerThread) -> None:
    url = stack.ws_url + "/v1/streams"
    hello = json.dumps({**HELLO, "mode": "live"})
    cases = [
        (["not json"], 4400),
        ([b"\x00binary hello"], 4400),
        ([json.dumps({"fps": -1, "width": 320, "height": 240})], 4400),
        ([json.dumps({**HELLO, "mode": "sideways"})], 4400),
        ([hello, b"\x00\x01"], 1007),  # shorter than the 8-byte index + image
        ([hello, struct.pack(">Q", 0) + b"GIF89a not an image"], 1007),
        ([hello, struct.pack(">Q", 0) + b"\xff\xd8\xff\xe0 truncated jpeg"], 1007),
        ([hello, frame_message(0, 160, 120)], 1007),  # not the announced size
        ([hello, frame_message(0), "hello again"], 1003),
    ]

    async def run() -> None:
        for messages, code in cases:
            await _expect_close(url, messages, code)
        await _expect_close(url + "?session=bad%20id", [hello], 4400)

    asyncio.run(run())
    _, results, _ = asyncio.run(_stream(url, 5, "ordered"))
    assert len(results) == 5


def test_out_of_order_and_duplicate_indices_get_an_error_message_not_a_crash(stack: ServerThread) -> None:
    async def run() -> tuple[list[dict], list[dict]]:
        async with websockets.connect(stack.ws_url + "/v1/streams") as ws:
            await ws.send(json.dumps({**HELLO, "mode": "ordered"}))
            await ws.recv()
            for i in (0, 1, 1, 0, 2):
                await ws.send(frame_message(i))
            await ws.send(json.dumps({"end": True}))
            errors, results = [], []
            async for msg in ws:
                obj = json.loads(msg)
                (errors if "error" in obj else results if "poses" in obj else []).append(obj)
            return errors, results

    errors, results = asyncio.run(run())
    assert [r["frame_index"] for r in results] == [0, 1, 2]
    assert [e["error"]["code"] for e in errors] == ["frame_out_of_order"] * 2


def test_websocket_api_keys_header_and_subprotocol(make_settings) -> None:
    settings = make_settings(api_keys=["k1"])
    with WorkerThread(settings), ServerThread(settings) as server:
        url = server.ws_url + "/v1/streams"
        hello = json.dumps({**HELLO, "mode": "ordered"})
        assert "missing" in asyncio.run(_expect_close(url, [hello], 4401))
        assert "invalid" in asyncio.run(
            _expect_close(url, [hello], 4401, additional_headers={"X-API-Key": "nope"})
        )
        _, results, _ = asyncio.run(
            _stream(url, 3, "ordered", additional_headers={"Authorization": "Bearer k1"})
        )
        assert len(results) == 3
        _, results, _ = asyncio.run(_stream(url, 3, "ordered", subprotocols=["posestream.v1", "apikey.k1"]))
        assert len(results) == 3
