"""``WS /v1/streams``: live or ordered frame streams with results sent back in order.

Protocol (client -> server):

1. A JSON text hello: ``{"fps": 25, "width": 640, "height": 480, "mode": "live"|"ordered"}``.
2. Binary messages, one frame each: an 8-byte big-endian unsigned frame index, then the
   JPEG or PNG bytes. Frame indices must strictly increase on a connection.
3. Optionally the text ``{"end": true}``: the server finishes the frames it holds, sends
   ``{"end": {...}}`` and closes with 1000.

Server -> client: first ``{"session": ID, "resumed": bool, "mode": ..., "next_seq": N}``,
then one text message per processed frame, in order: the JSON Lines frame object plus
``"dropped"`` (frames dropped on this connection so far). A duplicate or decreasing index
gets ``{"error": {"code": "frame_out_of_order", ...}}`` and is ignored; other bad input
closes the socket (codes in ``service.gateway.errors``).

``live`` mode: at most ``max_inflight`` frames of the session are queued in Redis and at
most ``live_queue`` wait in the gateway; when a new frame arrives with the waiting queue
full, the oldest waiting frame is dropped. ``ordered`` mode: when the waiting queue is
full the gateway stops reading the socket until results come back (TCP backpressure).
Either way frames are never reordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import struct
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import redis.asyncio as aioredis
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.gateway import errors as E
from service.gateway.deps import GatewayContext, WsCtx, key_is_valid, ws_credentials
from service.messages import FrameJob, FrameResult

log = logging.getLogger(__name__)

router = APIRouter(tags=["streams"])

_SESSION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEADER = struct.Struct(">Q")
HELLO_TIMEOUT_S = 10.0
_CONN_LOCK_S = 30


class Hello(BaseModel):
    """The first message of a stream."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(gt=0, le=1000)
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)
    mode: Literal["live", "ordered"] = "live"


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass
class _Frame:
    index: int
    image: bytes
    received_at: float


@dataclass
class _Stream:
    session: str
    hello: Hello
    next_seq: int  # the seq the next enqueued frame gets (and the next result we expect)
    waiting: deque[_Frame] = field(default_factory=deque)
    inflight: int = 0
    dropped: int = 0
    received: int = 0
    sent: int = 0
    reading_done: bool = False
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    received_at: dict[int, float] = field(default_factory=dict)


def _validate_image(data: bytes, hello: Hello) -> str | None:
    """None when ``data`` is a JPEG/PNG of the hello's size, else what is wrong."""
    if not (data.startswith(b"\xff\xd8\xff") or data.startswith(b"\x89PNG\r\n\x1a\n")):
        return "frame payload is not a JPEG or PNG image"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return "frame image could not be decoded (corrupt JPEG/PNG)"
    h, w = img.shape[:2]
    if (w, h) != (hello.width, hello.height):
        return f"frame is {w}x{h} but the hello announced {hello.width}x{hello.height}"
    return None


@router.websocket("/v1/streams")
async def stream(websocket: WebSocket, ctx: WsCtx) -> None:
    key, subprotocol = ws_credentials(websocket)
    await websocket.accept(subprotocol=subprotocol)
    metrics = ctx.metrics
    lock_key = None
    try:
        if not key_is_valid(ctx.settings, key):
            raise _Close(E.WS_UNAUTHORIZED, "missing API key" if not key else "invalid API key")
        requested = websocket.query_params.get("session")
        if requested is not None and not _SESSION_RE.match(requested):
            raise _Close(E.WS_BAD_HELLO, "session must be 1-64 characters of A-Z a-z 0-9 _ . -")
        hello = await _read_hello(websocket)
        session = requested or uuid.uuid4().hex
        lock_key = f"{ctx.keys.prefix}conn:{session}"
        if not await ctx.redis.set(lock_key, "1", nx=True, ex=_CONN_LOCK_S):
            lock_key = None
            raise _Close(E.WS_SESSION_BUSY, f"session {session} is streaming on another connection")
        raw_seq = await ctx.redis.get(ctx.keys.seq(session))
        next_seq = int(raw_seq) if raw_seq else 0
        st = _Stream(session, hello, next_seq)
        await websocket.send_text(
            json.dumps({"session": session, "resumed": next_seq > 0, "mode": hello.mode, "next_seq": next_seq})
        )
        metrics.active_sessions.labels("websocket").inc()
        try:
            await _serve(websocket, ctx, st, lock_key)
        finally:
            metrics.active_sessions.labels("websocket").dec()
    except _Close as exc:
        metrics.errors.labels(_close_name(exc.code)).inc()
        with contextlib.suppress(Exception):
            await websocket.close(exc.code, exc.reason[:120])
    except WebSocketDisconnect:
        pass
    except aioredis.ConnectionError as exc:
        log.warning("redis unavailable during a stream: %s", exc)
        with contextlib.suppress(Exception):
            await websocket.close(E.WS_UNAVAILABLE, "redis unavailable; try again later")
    except Exception as exc:
        log.exception("stream failed")
        with contextlib.suppress(Exception):
            await websocket.close(E.WS_INTERNAL, f"internal error: {type(exc).__name__}"[:120])
    finally:
        if lock_key:
            with contextlib.suppress(Exception):
                await ctx.redis.delete(lock_key)


def _close_name(code: int) -> str:
    return {
        E.WS_UNSUPPORTED: "unsupported_data", E.WS_INVALID_FRAME: "invalid_frame", E.WS_TOO_LARGE: "frame_too_large",
        E.WS_BAD_HELLO: "bad_hello", E.WS_UNAUTHORIZED: "unauthorized", E.WS_HELLO_TIMEOUT: "hello_timeout",
        E.WS_SESSION_BUSY: "session_busy",
    }.get(code, str(code))  # fmt: skip


async def _read_hello(websocket: WebSocket) -> Hello:
    try:
        msg = await asyncio.wait_for(websocket.receive(), HELLO_TIMEOUT_S)
    except TimeoutError:
        raise _Close(E.WS_HELLO_TIMEOUT, f"no hello within {HELLO_TIMEOUT_S:.0f} s") from None
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    text = msg.get("text")
    if text is None:
        raise _Close(E.WS_BAD_HELLO, 'the first message must be a JSON text hello {"fps","width","height","mode"}')
    try:
        return Hello.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "hello"
        raise _Close(E.WS_BAD_HELLO, f"bad hello: {where}: {first.get('msg')}") from None


async def _serve(websocket: WebSocket, ctx: GatewayContext, st: _Stream, lock_key: str) -> None:
    rkey = ctx.keys.results(st.session)
    # Results of this connection's frames can only appear after the stream's current end.
    last = await ctx.redis.xrevrange(rkey, count=1)
    start_id = last[0][0] if last else "0-0"
    send_lock = asyncio.Lock()
    ended = asyncio.Event()

    async def send(obj: dict) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(obj, separators=(",", ":")))

    tasks = [
        asyncio.create_task(_receiver(websocket, ctx, st, send, ended)),
        asyncio.create_task(_enqueuer(ctx, st, lock_key)),
        asyncio.create_task(_relay(ctx, st, rkey, start_id, send, lock_key)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        # All three finished normally: the client asked to end and everything was sent.
        await send({"end": {"frames_received": st.received, "frames_sent": st.sent, "dropped": st.dropped}})
        await websocket.close(E.WS_NORMAL, "end of stream")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _receiver(websocket: WebSocket, ctx: GatewayContext, st: _Stream, send, ended: asyncio.Event) -> None:
    s = ctx.settings
    metrics = ctx.metrics
    last_index = -1
    while True:
        if st.hello.mode == "ordered":
            async with st.cond:  # backpressure: do not read the socket while the queue is full
                await st.cond.wait_for(lambda: len(st.waiting) < s.live_queue)
        msg = await websocket.receive()
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", 1000))
        data = msg.get("bytes")
        if data is None:
            text = msg.get("text") or ""
            try:
                end = json.loads(text).get("end") is True
            except (ValueError, AttributeError):
                end = False
            if end:
                async with st.cond:
                    st.reading_done = True
                    st.cond.notify_all()
                ended.set()
                return
            raise _Close(E.WS_UNSUPPORTED, 'expected a binary frame message (8-byte index + image) or {"end": true}')
        if len(data) > s.max_ws_frame_bytes:
            raise _Close(E.WS_TOO_LARGE, f"frame message is {len(data)} bytes; the limit is {s.max_ws_frame_bytes}")
        if len(data) < _HEADER.size + 1:
            raise _Close(E.WS_INVALID_FRAME, "frame message must be an 8-byte big-endian index followed by image bytes")
        (index,) = _HEADER.unpack_from(data)
        received_at = time.time()
        if index <= last_index:
            metrics.errors.labels("frame_out_of_order").inc()
            await send({
                "error": {
                    "code": "frame_out_of_order",
                    "message": f"frame index {index} is not after {last_index}; indices must strictly increase (frame ignored)",
                }
            })  # fmt: skip
            continue
        image = data[_HEADER.size :]
        t0 = time.perf_counter()
        problem = await asyncio.to_thread(_validate_image, image, st.hello)
        metrics.stage_latency.labels("decode").observe(time.perf_counter() - t0)
        if problem:
            raise _Close(E.WS_INVALID_FRAME, problem)
        last_index = index
        metrics.frames_in.labels("websocket").inc()
        async with st.cond:
            st.received += 1
            if st.hello.mode == "live" and len(st.waiting) >= s.live_queue:
                st.waiting.popleft()
                st.dropped += 1
                metrics.frames_dropped.inc()
            st.waiting.append(_Frame(index, image, received_at))
            st.cond.notify_all()


async def _enqueuer(ctx: GatewayContext, st: _Stream, lock_key: str) -> None:
    s = ctx.settings
    seq_key = ctx.keys.seq(st.session)
    while True:
        async with st.cond:
            await st.cond.wait_for(lambda: (st.waiting and st.inflight < s.max_inflight) or (st.reading_done and not st.waiting))
            if not st.waiting:
                return
            frame = st.waiting.popleft()
            st.inflight += 1
            st.cond.notify_all()
        pipe = ctx.redis.pipeline(transaction=True)
        pipe.incr(seq_key)
        pipe.expire(seq_key, s.session_ttl_s)
        pipe.expire(lock_key, _CONN_LOCK_S)
        seq = int((await pipe.execute())[0]) - 1
        st.received_at[seq] = frame.received_at
        hello = st.hello
        job = FrameJob(
            session=st.session, seq=seq, frame_index=frame.index, timestamp=frame.index / hello.fps,
            width=hello.width, height=hello.height, image=frame.image,
        )  # fmt: skip
        await ctx.redis.xadd(ctx.keys.jobs, job.to_fields(), maxlen=s.jobs_maxlen, approximate=True)


async def _relay(ctx: GatewayContext, st: _Stream, rkey: str, last_id: str | bytes, send, lock_key: str) -> None:
    metrics = ctx.metrics
    pending: dict[int, FrameResult] = {}
    lock_refreshed = time.monotonic()
    while True:
        async with st.cond:
            if st.reading_done and not st.waiting and st.inflight == 0:
                return
        if time.monotonic() - lock_refreshed > _CONN_LOCK_S / 3:
            lock_refreshed = time.monotonic()
            await ctx.redis.expire(lock_key, _CONN_LOCK_S)
        resp = await ctx.redis.xread({rkey: last_id}, count=64, block=200)
        for _, entries in resp or []:
            for entry_id, fields in entries:
                last_id = entry_id
                result = FrameResult.from_fields(fields)
                if result.seq >= st.next_seq:  # older seqs: duplicates or a previous connection's
                    pending[result.seq] = result
        while st.next_seq in pending:
            result = pending.pop(st.next_seq)
            obj = json.loads(result.frame)
            obj["dropped"] = st.dropped
            if result.error:
                obj["error"] = {"code": "frame_failed", "message": result.error}
            await send(obj)
            now = time.time()
            metrics.observe_result(result.enqueued_at, result.started_at, result.finished_at, now)
            received_at = st.received_at.pop(st.next_seq, None)
            if received_at is not None:
                metrics.stage_latency.labels("end_to_end").observe(now - received_at)
            metrics.frames_out.labels("websocket").inc()
            async with st.cond:
                st.next_seq += 1
                st.sent += 1
                st.inflight -= 1
                st.cond.notify_all()
