"""``WS /v1/streams``: live or ordered frame streams with results sent back in order.

Protocol (client -> server):

1. A JSON text hello: ``{"fps": 25, "width": 640, "height": 480, "mode": "live"|"ordered"}``,
   plus ``"ack": SEQ`` when resuming (``?session=ID``): the ``seq`` of the last result the
   client received (-1: none). ``width * height`` must be at most ``max_frame_pixels``.
2. Binary messages, one frame each: an 8-byte big-endian unsigned frame index, then the
   JPEG or PNG bytes. Frame indices must strictly increase within a session (across
   its connections too).
3. Optionally the text ``{"end": true}``: the server finishes the frames it holds, sends
   ``{"end": {...}}`` and closes with 1000.

Server -> client: first ``{"session", "resumed", "mode", "next_seq", "last_index"}`` (plus
``"credit"`` in ordered mode), then one text message per processed frame, in ``seq``
order: the JSON Lines frame object plus ``"seq"`` (the session's result number, from 0),
``"dropped"`` (frames dropped on this connection so far) and, in ordered mode,
``"credit"``. A duplicate or decreasing index gets ``{"error": {"code":
"frame_out_of_order", ...}}`` and is ignored; other bad input closes the socket (codes in
``posestream.service.gateway.errors``). Only the image header is read here (size check); a frame
whose body is corrupt comes back as a result with ``"error": {"code": "frame_failed"}``.

Credit (ordered mode): ``credit`` is cumulative: the client may have sent at most
``credit`` binary messages on this connection. It starts at ``stream_window`` and each
answered frame raises it by one. A client within its credit is always read, so pings
and close frames are handled however slow the workers are. A client that ignores credit
still works: once it is past its credit the server stops reading it (TCP backpressure, as before)
and, while paused, sends ``{"credit": N}`` every half second, which also finds dead peers.

``live`` mode: at most ``max_inflight`` frames of the session are queued in Redis and at
most ``live_queue`` wait in the gateway; when a new frame arrives with the waiting queue
full, the oldest waiting frame is dropped. A queued frame that a worker reaches more than
``live_max_age_ms`` after it arrived is answered without running the networks, as a
result with ``"error": {"code": "frame_expired"}`` and no poses, in its place, so the
budget holds across all the sessions sharing the workers (``dropped`` counts only the
frames dropped in the gateway, which get no result). Either way frames are never reordered.

Numbering and resume: a frame gets its ``seq`` in the same Lua script that queues it
(and records ``last_index``, and checks this connection still holds the session's lock),
so a disconnect can never leave a numbered frame unqueued. Every queued frame is
processed and its result kept on the session's result stream (``results_maxlen``). After
any disconnect or gateway restart, a client reconnects with ``?session=ID`` and its last
received ``seq`` as ``ack``: it gets every result after ``ack`` (those computed while it
was away first), then live ones, each ``seq`` once; it resends its frames after
``last_index`` (those the server had received but not queued are not kept). Without
``ack`` a resume starts at ``next_seq`` (results still owed are skipped). A session
belongs to the API key that created it (stored as its SHA-256); another key, an unknown
or an expired session all get 4404.
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
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from posestream.service.frames import ImageHeaderError, image_size
from posestream.service.gateway import errors as E
from posestream.service.gateway.deps import GatewayContext, WsCtx, key_is_valid, key_owner, ws_credentials
from posestream.service.gateway.relay import OrderedResults, error_code
from posestream.service.leases import RENEW_SCRIPT
from posestream.service.messages import LOST_PREFIX, FrameJob, FrameResult, StreamMode
from posestream.service.redis_types import awaited

log = logging.getLogger(__name__)

router = APIRouter(tags=["streams"])

_SESSION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEADER = struct.Struct(">Q")
HELLO_TIMEOUT_S = 10.0
# While a client that ignores its credit is not read, probe it this often (finds dead peers).
_PAUSED_PROBE_S = 0.5
# KEYS[1] conn lock, KEYS[2] seq counter, KEYS[3] stream hash, KEYS[4] jobs stream.
# ARGV[1] lock token, ARGV[2] lock ttl ms, ARGV[3] session ttl s, ARGV[4] jobs maxlen,
# ARGV[5] frame index, ARGV[6] owner, ARGV[7..] job fields (name, value, ...) without seq.
# Numbers and queues one frame atomically; -1 when this connection no longer holds the lock.
ENQUEUE_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local seq = redis.call('INCR', KEYS[2]) - 1
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], 'last_index', ARGV[5], 'owner', ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'seq', seq, unpack(ARGV, 7))
return seq
"""


class Hello(BaseModel):
    """The first message of a stream."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(gt=0, le=1000)
    width: int = Field(gt=0, le=65535)
    height: int = Field(gt=0, le=65535)
    mode: StreamMode = "live"
    ack: int | None = Field(None, ge=-1, description="resume: seq of the last result received (-1: none)")


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
    token: str  # this connection's value of the session lock
    owner: str  # key_owner of the API key that created the session
    next_seq: int  # the seq of the next result to send
    own_from: int  # seqs from here on are this connection's frames
    last_index: int  # the session's last accepted frame index
    window: int
    assigned: int = 0  # the session's seq counter after this connection's last enqueue
    waiting: deque[_Frame] = field(default_factory=deque)
    enqueuing: bool = False
    inflight: int = 0  # this connection's frames queued in Redis, result not sent yet
    taken: int = 0  # binary messages read on this connection
    answered: int = 0  # of those, answered (result sent, dropped, or ignored)
    dropped: int = 0
    received: int = 0
    sent: int = 0
    reading_done: bool = False
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    received_at: dict[int, float] = field(default_factory=dict)

    @property
    def credit(self) -> int:
        return self.answered + self.window

    def finished(self) -> bool:
        return (
            self.reading_done and not self.waiting and not self.enqueuing and self.next_seq >= self.assigned
        )


def check_frame(data: bytes, hello: Hello) -> str | None:
    """None when ``data`` has a JPEG/PNG header of the hello's size, else what is wrong (header only)."""
    try:
        w, h = image_size(data)
    except ImageHeaderError as exc:
        return str(exc)
    if (w, h) != (hello.width, hello.height):
        return f"frame is {w}x{h} but the hello announced {hello.width}x{hello.height}"
    return None


@router.websocket("/v1/streams")
async def stream(websocket: WebSocket, ctx: WsCtx) -> None:
    key, subprotocol = ws_credentials(websocket)
    await websocket.accept(subprotocol=subprotocol)
    metrics = ctx.metrics
    lock_key = token = None
    try:
        if not key_is_valid(ctx.settings, key):
            raise _Close(E.WS_UNAUTHORIZED, "missing API key" if not key else "invalid API key")
        requested = websocket.query_params.get("session")
        if requested is not None and not _SESSION_RE.match(requested):
            raise _Close(E.WS_BAD_HELLO, "session must be 1-64 characters of A-Z a-z 0-9 _ . -")
        hello = await _read_hello(websocket)
        st, replay_gap = await _open_session(ctx, hello, requested, key_owner(ctx.settings, key))
        lock_key, token = ctx.keys.conn(st.session), st.token
        ready = {"session": st.session, "resumed": requested is not None, "mode": hello.mode,
                 "next_seq": st.own_from, "last_index": st.last_index}  # fmt: skip
        if hello.mode == "ordered":
            ready["credit"] = st.credit
        await websocket.send_text(json.dumps(ready))
        if replay_gap:
            await websocket.send_text(
                json.dumps({"error": {"code": "results_expired", "message": replay_gap}})
            )
        metrics.active_sessions.labels("websocket").inc()
        try:
            await _serve(websocket, ctx, st)
        finally:
            metrics.active_sessions.labels("websocket").dec()
    except _Close as exc:
        metrics.errors.labels(_close_name(exc.code)).inc()
        with contextlib.suppress(Exception):
            await websocket.close(exc.code, exc.reason[:120])
    except WebSocketDisconnect:
        pass
    except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
        log.warning("redis unavailable during a stream: %s", exc)
        with contextlib.suppress(Exception):
            await websocket.close(E.WS_UNAVAILABLE, "redis unavailable; try again later")
    except Exception as exc:
        log.exception("stream failed")
        with contextlib.suppress(Exception):
            await websocket.close(E.WS_INTERNAL, f"internal error: {type(exc).__name__}"[:120])
    finally:
        if lock_key and token is not None:  # both are set together, when the lock is taken
            with contextlib.suppress(Exception):
                await awaited(ctx.redis.eval(_RELEASE_IF, 1, lock_key, token))


_RELEASE_IF = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


async def _open_session(
    ctx: GatewayContext, hello: Hello, requested: str | None, owner: str
) -> tuple[_Stream, str]:
    """Check the hello against the session, take its lock; (stream state, results_expired message or "")."""
    s, r = ctx.settings, ctx.redis
    if hello.width * hello.height > s.max_frame_pixels:
        raise _Close(
            E.WS_BAD_HELLO,
            f"bad hello: {hello.width}x{hello.height} is over max_frame_pixels={s.max_frame_pixels}",
        )
    if requested is not None:
        session = requested
        stored = await awaited(r.hget(ctx.keys.stream(session), "owner"))
        if stored is None or stored.decode() != owner:
            raise _Close(
                E.WS_NO_SESSION, f"no session {session} for this API key (unknown, expired or another key's)"
            )
    else:
        if hello.ack is not None:
            raise _Close(E.WS_BAD_HELLO, "bad hello: ack is only for resuming a session (?session=ID)")
        session = uuid.uuid4().hex
        pipe = r.pipeline(transaction=True)
        pipe.hset(ctx.keys.stream(session), mapping={"owner": owner, "last_index": -1})
        pipe.expire(ctx.keys.stream(session), s.session_ttl_s)
        await pipe.execute()
    token = uuid.uuid4().hex
    if not await r.set(ctx.keys.conn(session), token, nx=True, px=s.stream_lock_ms):
        raise _Close(E.WS_SESSION_BUSY, f"session {session} is streaming on another connection")
    try:  # from here on, any failure releases the lock (a resume must not meet 4409 for it)
        pipe = r.pipeline(transaction=False)
        pipe.get(ctx.keys.seq(session))
        pipe.hget(ctx.keys.stream(session), "last_index")
        pipe.xrange(ctx.keys.results(session), count=1)
        raw_seq, raw_last, first = await pipe.execute()
        assigned = int(raw_seq) if raw_seq else 0
        start, gap = assigned, ""
        if hello.ack is not None:
            start = hello.ack + 1
            if start > assigned:
                raise _Close(
                    E.WS_BAD_HELLO,
                    f"bad hello: ack {hello.ack} is beyond the session's last seq {assigned - 1}",
                )
            oldest = FrameResult.from_fields(first[0][1]).seq if first else None
            if oldest is not None and start < oldest:
                gap = f"results of seq {start}-{oldest - 1} are no longer kept (results_maxlen); replay starts at {oldest}"
                start = oldest
    except BaseException:
        with contextlib.suppress(Exception):
            await awaited(r.eval(_RELEASE_IF, 1, ctx.keys.conn(session), token))
        raise
    st = _Stream(session, hello, token, owner, next_seq=start, own_from=assigned, assigned=assigned,
                 last_index=int(raw_last) if raw_last is not None else -1, window=s.stream_window)  # fmt: skip
    return st, gap


def _lost_lock(session: str) -> _Close:
    return _Close(
        E.WS_SESSION_BUSY,
        f"session {session}: this connection lost its lock (lapsed, taken over, or Redis restarted)",
    )


def _close_name(code: int) -> str:
    return {
        E.WS_UNSUPPORTED: "unsupported_data", E.WS_INVALID_FRAME: "invalid_frame", E.WS_TOO_LARGE: "frame_too_large",
        E.WS_BAD_HELLO: "bad_hello", E.WS_UNAUTHORIZED: "unauthorized", E.WS_HELLO_TIMEOUT: "hello_timeout",
        E.WS_SESSION_BUSY: "session_busy", E.WS_NO_SESSION: "no_session",
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
        raise _Close(
            E.WS_BAD_HELLO, 'the first message must be a JSON text hello {"fps","width","height","mode"}'
        )
    try:
        return Hello.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "hello"
        raise _Close(E.WS_BAD_HELLO, f"bad hello: {where}: {first.get('msg')}") from None


async def _serve(websocket: WebSocket, ctx: GatewayContext, st: _Stream) -> None:
    rkey = ctx.keys.results(st.session)
    if st.next_seq < st.assigned:
        start_id: str | bytes = "0-0"  # owed results may already be on the stream: read it all
    else:  # results of this connection's frames can only appear after the stream's current end
        last = await ctx.redis.xrevrange(rkey, count=1)
        start_id = last[0][0] if last else "0-0"
    send_lock = asyncio.Lock()

    async def send(obj: dict) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(obj, separators=(",", ":")))

    tasks = [
        asyncio.create_task(_receiver(websocket, ctx, st, send)),
        asyncio.create_task(_enqueuer(ctx, st)),
        asyncio.create_task(_relay(ctx, st, rkey, start_id, send)),
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


async def _receiver(websocket: WebSocket, ctx: GatewayContext, st: _Stream, send) -> None:
    s = ctx.settings
    metrics = ctx.metrics
    ordered = st.hello.mode == "ordered"
    while True:
        if ordered and st.taken - st.answered > st.window:  # the client sent past its credit
            await _wait_for_credit(st, send)
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
                return
            raise _Close(
                E.WS_UNSUPPORTED, 'expected a binary frame message (8-byte index + image) or {"end": true}'
            )
        if len(data) > s.max_ws_frame_bytes:
            raise _Close(
                E.WS_TOO_LARGE, f"frame message is {len(data)} bytes; the limit is {s.max_ws_frame_bytes}"
            )
        if len(data) < _HEADER.size + 1:
            raise _Close(
                E.WS_INVALID_FRAME, "frame message must be an 8-byte big-endian index followed by image bytes"
            )
        (index,) = _HEADER.unpack_from(data)
        received_at = time.time()
        st.taken += 1
        if index <= st.last_index:
            metrics.errors.labels("frame_out_of_order").inc()
            st.answered += 1
            err: dict[str, Any] = {"error": {"code": "frame_out_of_order",
                             "message": f"frame index {index} is not after {st.last_index}; indices must strictly "
                             "increase within a session (frame ignored)"}}  # fmt: skip
            if ordered:
                err["credit"] = st.credit
            await send(err)
            continue
        image = data[_HEADER.size :]
        t0 = time.perf_counter()
        problem = check_frame(image, st.hello)
        metrics.stage_latency.labels("decode").observe(time.perf_counter() - t0)
        if problem:
            raise _Close(E.WS_INVALID_FRAME, problem)
        st.last_index = index
        metrics.frames_in.labels("websocket").inc()
        async with st.cond:
            st.received += 1
            if not ordered and len(st.waiting) >= s.live_queue:
                st.waiting.popleft()
                st.dropped += 1
                st.answered += 1
                metrics.frames_dropped.inc()
            st.waiting.append(_Frame(index, image, received_at))
            st.cond.notify_all()


async def _wait_for_credit(st: _Stream, send) -> None:
    """A client past its credit: stop reading it until results come back, probing it meanwhile."""
    while True:
        async with st.cond:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    st.cond.wait_for(lambda: st.taken - st.answered <= st.window), _PAUSED_PROBE_S
                )
            if st.taken - st.answered <= st.window:
                return
        await send({"credit": st.credit})  # raises once the peer is gone


async def _enqueuer(ctx: GatewayContext, st: _Stream) -> None:
    s = ctx.settings
    keys = [ctx.keys.conn(st.session), ctx.keys.seq(st.session), ctx.keys.stream(st.session), ctx.keys.jobs]
    script = ctx.redis.register_script(ENQUEUE_SCRIPT)
    while True:
        async with st.cond:
            await st.cond.wait_for(
                lambda: (st.waiting and st.inflight < s.max_inflight) or (st.reading_done and not st.waiting)
            )
            if not st.waiting:
                return
            frame = st.waiting.popleft()
            st.inflight += 1
            st.enqueuing = True
            st.cond.notify_all()
        hello = st.hello
        job = FrameJob(
            session=st.session, seq=0, frame_index=frame.index, timestamp=frame.index / hello.fps,
            width=hello.width, height=hello.height, image=frame.image,
            max_age_ms=s.live_budget_ms(frame.received_at) if hello.mode == "live" else 0,
        )  # fmt: skip
        fields = job.to_fields()
        del fields["seq"]  # the script numbers the frame
        args: list[bytes | str | int] = [
            st.token,
            s.stream_lock_ms,
            s.session_ttl_s,
            s.jobs_maxlen,
            frame.index,
            st.owner,
        ]
        for name, value in fields.items():
            args += [name, value]
        seq = int(await script(keys=keys, args=args))
        if seq < 0:
            raise _lost_lock(st.session)
        st.received_at[seq] = frame.received_at
        async with st.cond:
            st.assigned = seq + 1
            st.enqueuing = False
            st.cond.notify_all()


async def _relay(ctx: GatewayContext, st: _Stream, rkey: str, last_id: str | bytes, send) -> None:
    s, metrics = ctx.settings, ctx.metrics
    renew = ctx.redis.register_script(RENEW_SCRIPT)
    lock_key = ctx.keys.conn(st.session)
    results = OrderedResults(ctx.redis, rkey, last_id=last_id, count=64)
    lock_renewed = time.monotonic()
    while True:
        async with st.cond:
            if st.finished():
                return
        if time.monotonic() - lock_renewed > s.stream_lock_ms / 3000:
            lock_renewed = time.monotonic()
            if not await renew(keys=[lock_key], args=[st.token, s.stream_lock_ms]):
                raise _lost_lock(st.session)
        await results.fetch(st.next_seq, block_ms=200)
        while (result := results.pop(st.next_seq)) is not None:
            seq = st.next_seq
            code = error_code(result.error) if result.error else ""
            if code == LOST_PREFIX:
                obj: dict = {"seq": seq, "error": {"code": code, "message": result.error}}
            else:
                obj = json.loads(result.frame)
                obj["seq"] = seq
                if code:
                    obj["error"] = {"code": code, "message": result.error}
            async with st.cond:
                st.next_seq += 1
                st.sent += 1
                if seq >= st.own_from:
                    st.inflight -= 1
                    st.answered += 1
                st.cond.notify_all()
            obj["dropped"] = st.dropped
            if st.hello.mode == "ordered":
                obj["credit"] = st.credit
            await send(obj)
            now = time.time()
            metrics.observe_result(result.enqueued_at, result.started_at, result.finished_at, now)
            received_at = st.received_at.pop(seq, None)
            if received_at is not None:
                metrics.stage_latency.labels("end_to_end").observe(now - received_at)
            metrics.frames_out.labels("websocket").inc()
