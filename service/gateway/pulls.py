"""``/v1/pulls``: the gateway pulls a network stream (RTSP, HTTP(S) file, HLS) and tracks its people.

``POST /v1/pulls {"url": ..., "mode": "live"|"ordered"}`` -> 201 with the pull's ``id``, its
tracker ``session`` and the URLs below. The gateway opens the URL with PyAV
(``posestream.service.pulls.PullSource``: reconnects with backoff, resumes a file where it
dropped), JPEG-encodes each frame and queues it as a ``FrameJob`` on the same jobs stream
as uploads and WebSocket streams, so the same workers, tracker state and result streams serve
it. Frames are numbered ``seq`` 0, 1, ... as they are queued (one producer: this task).

- ``live``: at most ``max_inflight`` frames queued in Redis and ``live_queue`` waiting in the
  gateway; a new frame arriving with the waiting queue full drops the oldest waiting one
  (``frames_dropped``); a queued frame a worker reaches more than ``live_max_age_ms`` after it
  was read comes back with ``"error": {"code": "frame_expired"}`` and no poses (it counts in
  ``frames_done``). A file source is read at its own frame rate, as if it were live.
- ``ordered``: every frame is processed; reading waits while ``max_inflight`` are queued.

``GET /v1/pulls/{id}``: ``state`` (``connecting``, ``running``, ``reconnecting``, then one of
``ended`` (the source's end, every result collected), ``failed`` (``error``: the source failed
for good, ``source_failed``, or a frame over ``max_frame_pixels``), ``stopped`` (DELETE)),
``frames_read``, ``frames_queued``, ``frames_done``, ``frames_dropped``, ``reconnects``.
``DELETE /v1/pulls/{id}`` stops it (the frames already queued are still collected);
its status and results stay readable until ``video_ttl_s``.

Results: ``WS /v1/pulls/{id}/results`` sends ``{"pull", "session", "state"}`` then one text
message per frame in ``seq`` order (the JSON Lines frame object plus ``"seq"``; a frame the
worker failed on carries ``"error"``), from ``?from=SEQ`` (default 0; results older than the
session's result stream keeps, ``results_maxlen``, are announced by a ``results_expired``
error message and skipped), and at the end ``{"end": STATUS}`` and close 1000 (ended or
stopped) or close 4502 with the reason (failed). Unknown id, or another API key's: 4404.
``GET /v1/pulls/{id}/results.jsonl`` gives the lines collected so far (complete lines only).

Errors: 400 ``bad_url`` (scheme other than rtsp, rtsps, http, https; no host; unresolvable;
a private address without ``pull_allow_private``), 422 (request schema), 429 ``too_many_pulls``
(``max_pulls`` running on this gateway), 404 ``not_found``. API keys as for every route.

A pull runs on the gateway that accepted it: a gateway that dies leaves its pulls' status as
it last wrote it (no other gateway takes them over; the status expires after ``video_ttl_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from posestream.service.frames import encode_jpeg
from posestream.service.gateway import errors as E
from posestream.service.gateway.deps import (
    Authorized,
    Ctx,
    GatewayContext,
    Owner,
    WsCtx,
    key_is_valid,
    key_owner,
    ws_credentials,
)
from posestream.service.gateway.errors import ApiError
from posestream.service.gateway.relay import OrderedResults, result_line
from posestream.service.messages import ApiError as ApiErrorBody
from posestream.service.messages import FrameJob, FrameResult, StreamMode
from posestream.service.pulls import (
    PullError,
    PullFailed,
    PullSource,
    PullState,
    check_url,
    config_from_settings,
    redact,
)
from posestream.service.redis_types import awaited
from posestream.service.video_checks import frame_too_large

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/pulls", tags=["pulls"], dependencies=[Authorized])
ws_router = APIRouter(tags=["pulls"])

TERMINAL: frozenset[str] = frozenset({"ended", "failed", "stopped"})
_STATUS_EVERY_S = 0.25


def pull_session(pull_id: str) -> str:
    """The tracker session of a pull."""
    return f"pull:{pull_id}"


def _valid_id(pull_id: str) -> bool:
    return len(pull_id) == 32 and all(c in "0123456789abcdef" for c in pull_id)


class PullRequest(BaseModel):
    """Body of ``POST /v1/pulls``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1, max_length=4096, description="rtsp://, rtsps://, http:// or https:// (HLS: the .m3u8)"
    )
    mode: StreamMode = "live"


class PullStatus(BaseModel):
    """Status of a pull: the ``status`` field of ``pull:{id}`` and the body of ``GET /v1/pulls/{id}``."""

    id: str
    session: str
    url: str  # redacted (no password)
    mode: StreamMode
    state: PullState = "connecting"
    frames_read: int = 0
    frames_queued: int = 0
    frames_done: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    error: ApiErrorBody | None = None
    created_at: float = 0.0
    owner: str = ""

    def public(self) -> dict[str, Any]:
        return self.model_dump(exclude={"owner"})


@dataclass
class _Pull:
    status: PullStatus
    raw_url: str
    stop: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None
    handoff: _Handoff | None = None

    def request_stop(self) -> None:
        """Stop reading now (event loop only): frames not yet queued are dropped, queued ones still collected."""
        self.stop.set()
        if self.handoff is not None:
            self.handoff.close()


@dataclass(frozen=True)
class _End:
    """The reader's last item: why it stopped (None: the source ended, or the pull was stopped)."""

    error: ApiErrorBody | None


class PullManager:
    """The pulls this gateway runs (at most ``max_pulls``), one asyncio task and one reader thread each."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.pulls: dict[str, _Pull] = {}
        self.root = Path(ctx.settings.data_dir) / "pulls"

    def folder(self, pull_id: str) -> Path:
        return self.root / pull_id

    async def read_status(self, pull_id: str) -> PullStatus | None:
        if not _valid_id(pull_id):
            return None
        raw = await awaited(self.ctx.redis.hget(self.ctx.keys.pull(pull_id), "status"))
        return PullStatus.model_validate_json(raw) if raw else None

    async def write_status(self, status: PullStatus) -> None:
        key = self.ctx.keys.pull(status.id)
        pipe = self.ctx.redis.pipeline(transaction=True)
        pipe.hset(key, "status", status.model_dump_json())
        pipe.expire(key, self.ctx.settings.video_ttl_s)
        await pipe.execute()

    async def start(self, url: str, mode: StreamMode, owner: str) -> PullStatus:
        if len(self.pulls) >= self.ctx.settings.max_pulls:
            raise ApiError(
                429, "too_many_pulls",
                f"this gateway already runs {len(self.pulls)} pulls (max_pulls); stop one or try later",
                headers={"Retry-After": "5"},
            )  # fmt: skip
        pull_id = uuid.uuid4().hex
        status = PullStatus(
            id=pull_id,
            session=pull_session(pull_id),
            url=redact(url),
            mode=mode,
            created_at=time.time(),
            owner=owner,
        )
        pull = _Pull(status, url)
        self.pulls[pull_id] = pull  # counted from here on, so concurrent requests cannot pass max_pulls
        try:
            await asyncio.to_thread(self._prepare_folder, pull_id)
            await self.write_status(status)
        except BaseException:
            self.pulls.pop(pull_id, None)
            raise
        pull.task = asyncio.create_task(self._run(pull), name=f"pull-{pull_id}")
        return status

    def _prepare_folder(self, pull_id: str) -> None:
        """Make the pull's folder; delete those of pulls older than ``video_ttl_s`` (their status expired)."""
        cutoff = time.time() - self.ctx.settings.video_ttl_s
        if self.root.is_dir():
            for old in self.root.iterdir():
                with contextlib.suppress(OSError):
                    if old.name not in self.pulls and old.stat().st_mtime < cutoff:
                        shutil.rmtree(old, ignore_errors=True)
        self.folder(pull_id).mkdir(parents=True, exist_ok=True)

    async def request_stop(self, pull_id: str) -> None:
        """Ask the pull to stop, wherever it runs (the task polls ``stop``); waits briefly if it runs here."""
        await awaited(self.ctx.redis.hset(self.ctx.keys.pull(pull_id), "stop", "1"))
        pull = self.pulls.get(pull_id)
        if pull is not None and pull.task is not None:
            pull.request_stop()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(pull.task), timeout=5)

    async def shutdown(self) -> None:
        """Stop every pull of this gateway (they end ``stopped``)."""
        for pull in list(self.pulls.values()):
            pull.request_stop()
        tasks = [p.task for p in self.pulls.values() if p.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()

    # ---- one pull ----------------------------------------------------------------------------
    async def _run(self, pull: _Pull) -> None:
        ctx, s = self.ctx, self.ctx.settings
        status = pull.status
        live = status.mode == "live"
        try:
            # The URL check resolves the host again (it may have changed since the route checked it): off the loop.
            config = config_from_settings(s, realtime=live)
            source = await asyncio.to_thread(PullSource, pull.raw_url, config, pull.stop)
        except PullError as exc:  # checked in the route; the address may have changed since
            self.pulls.pop(status.id, None)
            await self._finish(pull, "failed", ApiErrorBody(code="bad_url", message=str(exc)))
            return
        items = pull.handoff = _Handoff(asyncio.get_running_loop(), s.live_queue if live else 2, live)
        reader = threading.Thread(
            target=_read_frames, args=(source, items, s.upload_jpeg_quality, s.max_frame_pixels),
            name=f"pull-{status.id}-reader", daemon=True,
        )  # fmt: skip
        reader.start()
        rkey = ctx.keys.results(status.session)
        inflight = asyncio.Condition()
        counts = {"queued": 0, "done": 0}
        end: list[ApiErrorBody | None] = []
        stop_checked = 0.0

        async def feed() -> None:
            while True:
                async with inflight:
                    await inflight.wait_for(lambda: counts["queued"] - counts["done"] < s.max_inflight)
                item = await items.get()
                if isinstance(item, _End):
                    end.append(item.error)
                    return
                index, ts, width, height, jpeg, read_at = item
                job = FrameJob(
                    session=status.session, seq=counts["queued"], frame_index=index, timestamp=ts,
                    width=width, height=height, image=jpeg, max_age_ms=s.live_budget_ms(read_at) if live else 0,
                )  # fmt: skip
                await ctx.redis.xadd(ctx.keys.jobs, job.to_fields(), maxlen=s.jobs_maxlen, approximate=True)  # type: ignore[arg-type]
                ctx.metrics.frames_in.labels("pull").inc()
                async with inflight:
                    counts["queued"] += 1

        feeder = asyncio.create_task(feed(), name=f"pull-{status.id}-feed")
        results = OrderedResults(ctx.redis, rkey, last_id="0-0", count=256)
        last_write = 0.0
        ctx.metrics.active_sessions.labels("pull").inc()
        try:
            with open(self.folder(status.id) / "poses.jsonl", "a", encoding="utf-8") as out:
                while not (feeder.done() and counts["done"] >= counts["queued"]):
                    if feeder.done() and feeder.exception() is not None:
                        raise feeder.exception()  # type: ignore[misc]
                    await results.fetch(counts["done"], block_ms=100)
                    lines = []
                    now = time.time()
                    while (result := results.pop(counts["done"])) is not None:
                        lines.append(result_line(result) + "\n")
                        ctx.metrics.observe_result(
                            result.enqueued_at, result.started_at, result.finished_at, now
                        )
                        ctx.metrics.frames_out.labels("pull").inc()
                        counts["done"] += 1
                    if lines:
                        out.writelines(lines)
                        out.flush()
                        async with inflight:
                            inflight.notify_all()
                    if now - last_write >= _STATUS_EVERY_S:
                        last_write = now
                        status = self._progress(pull, source, counts, items.dropped)
                        await self.write_status(status)
                    if now - stop_checked >= _STATUS_EVERY_S and not pull.stop.is_set():
                        stop_checked = now
                        if await awaited(ctx.redis.hget(ctx.keys.pull(status.id), "stop")):
                            pull.request_stop()  # DELETE on another gateway
            status = self._progress(pull, source, counts, items.dropped)
            error = end[0] if end else None
            state: PullState = (
                "failed" if error is not None else ("stopped" if pull.stop.is_set() else "ended")
            )
            await self._finish(pull, state, error)
        except asyncio.CancelledError:
            pull.stop.set()
            raise
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            log.warning("pull %s: Redis is unavailable (%s); stopping it", status.id, exc)
            pull.stop.set()
        except Exception as exc:
            log.exception("pull %s failed", status.id)
            pull.stop.set()
            with contextlib.suppress(Exception):
                await self._finish(
                    pull,
                    "failed",
                    ApiErrorBody(code="internal_error", message=f"{type(exc).__name__}: {exc}"),
                )
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder
            ctx.metrics.active_sessions.labels("pull").dec()
            self.pulls.pop(status.id, None)

    def _progress(self, pull: _Pull, source: PullSource, counts: dict[str, int], dropped: int) -> PullStatus:
        stats = source.stats
        state: PullState = stats.state if stats.state not in TERMINAL else "running"
        pull.status = pull.status.model_copy(
            update={
                "state": state, "frames_read": stats.frames_read, "frames_queued": counts["queued"],
                "frames_done": counts["done"], "frames_dropped": dropped, "reconnects": stats.reconnects,
            }
        )  # fmt: skip
        return pull.status

    async def _finish(self, pull: _Pull, state: PullState, error: ApiErrorBody | None) -> None:
        pull.status = pull.status.model_copy(update={"state": state, "error": error})
        await self.write_status(pull.status)
        log.info(
            "pull %s: %s after %d frames (%s)", pull.status.id, state, pull.status.frames_done, error or ""
        )


class _Handoff:
    """Frames from the reader thread to the pull's task: put from the thread, ``get`` in the event loop.

    ``live``: the newest ``capacity`` frames wait; a frame arriving when they are full drops the
    oldest (``dropped`` counts them). Ordered: ``put`` blocks while ``capacity`` frames wait.
    The ``_End`` marker is never dropped. No executor thread is held while waiting.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int, live: bool) -> None:
        self.loop, self.capacity, self.live = loop, capacity, live
        self.items: deque[Any] = deque()
        self.ready = asyncio.Event()
        self.slots = threading.Semaphore(capacity)
        self.dropped = 0

    # -- reader thread
    def put(self, item: Any, stop: threading.Event) -> bool:
        """Hand ``item`` over; False when the pull stopped (or the loop is gone) first."""
        if not self.live and not isinstance(item, _End):
            while not self.slots.acquire(timeout=0.2):
                if stop.is_set():
                    return False
        try:
            self.loop.call_soon_threadsafe(self._append, item)
        except RuntimeError:  # the event loop closed (gateway shutdown)
            return False
        return True

    # -- event loop
    def _append(self, item: Any) -> None:
        if self.live and not isinstance(item, _End) and len(self.items) >= self.capacity:
            self.items.popleft()
            self.dropped += 1
        self.items.append(item)
        self.ready.set()

    def close(self) -> None:
        """Drop the waiting frames and end the hand-off now (the reader's later items are ignored)."""
        self.items.clear()
        self.items.append(_End(None))
        self.ready.set()

    async def get(self) -> Any:
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        item = self.items.popleft()
        if not self.live and not isinstance(item, _End):
            self.slots.release()
        return item


def _read_frames(source: PullSource, items: _Handoff, quality: int, max_pixels: int) -> None:
    """The reader thread: decode, check and JPEG-encode each frame into ``items``; then an ``_End``."""
    error: ApiErrorBody | None = None
    try:
        for index, ts, rgb in source.frames():
            if msg := frame_too_large(rgb.shape[1], rgb.shape[0], max_pixels):
                error = ApiErrorBody(code="frame_too_large", message=f"frame {index}: {msg}")
                break
            item = (index, ts, rgb.shape[1], rgb.shape[0], encode_jpeg(rgb, quality), time.time())
            if not items.put(item, source.stop) or source.stop.is_set():
                break
    except PullFailed as exc:
        error = ApiErrorBody(code="source_failed", message=str(exc))
    except Exception as exc:
        log.exception("pull reader failed")
        error = ApiErrorBody(code="internal_error", message=f"{type(exc).__name__}: {exc}")
    items.put(_End(error), source.stop)


def _manager(request: Request | WebSocket) -> PullManager:
    return request.app.state.pulls


async def _status_or_404(request: Request, ctx: GatewayContext, pull_id: str, owner: str) -> PullStatus:
    status = await _manager(request).read_status(pull_id)
    if status is None or (ctx.settings.api_keys and status.owner != owner):
        raise ApiError(404, "not_found", f"no pull with id {pull_id!r} (never started, or expired)")
    return status


# ---- routes -------------------------------------------------------------------------------------
@router.post("", status_code=201, summary="Pull a stream (RTSP, HTTP(S) file, HLS) and track it")
async def start_pull(body: PullRequest, request: Request, ctx: Ctx, owner: Owner) -> JSONResponse:
    try:
        await asyncio.to_thread(check_url, body.url, ctx.settings.pull_allow_private)
    except PullError as exc:
        raise ApiError(400, "bad_url", str(exc)) from None
    status = await _manager(request).start(body.url, body.mode, owner)
    url = f"/v1/pulls/{status.id}"
    return JSONResponse(
        {
            "id": status.id, "session": status.session, "mode": status.mode, "status_url": url,
            "results_url": f"{url}/results", "results_jsonl_url": f"{url}/results.jsonl",
        },
        status_code=201, headers={"Location": url},
    )  # fmt: skip


@router.get("/{pull_id}", summary="Status of a pull")
async def get_pull(pull_id: str, request: Request, ctx: Ctx, owner: Owner) -> dict[str, Any]:
    return (await _status_or_404(request, ctx, pull_id, owner)).public()


@router.delete("/{pull_id}", summary="Stop a pull (its results stay readable)")
async def stop_pull(pull_id: str, request: Request, ctx: Ctx, owner: Owner) -> dict[str, Any]:
    status = await _status_or_404(request, ctx, pull_id, owner)
    if status.state not in TERMINAL:
        await _manager(request).request_stop(pull_id)
        status = await _status_or_404(request, ctx, pull_id, owner)
    return status.public()


@router.get("/{pull_id}/results.jsonl", summary="The JSON Lines collected so far (one line per frame)")
async def get_results(pull_id: str, request: Request, ctx: Ctx, owner: Owner) -> Response:
    await _status_or_404(request, ctx, pull_id, owner)
    path = _manager(request).folder(pull_id) / "poses.jsonl"
    if not path.is_file():
        raise ApiError(404, "not_found", f"pull {pull_id} has no result file on this gateway")
    data = await asyncio.to_thread(path.read_bytes)
    data = data[: data.rfind(b"\n") + 1]  # complete lines only
    return Response(data, media_type="application/x-ndjson")


@ws_router.websocket("/v1/pulls/{pull_id}/results")
async def pull_results(websocket: WebSocket, pull_id: str, ctx: WsCtx) -> None:
    key, subprotocol = ws_credentials(websocket)
    await websocket.accept(subprotocol=subprotocol)
    try:
        if not key_is_valid(ctx.settings, key):
            await websocket.close(E.WS_UNAUTHORIZED, "missing API key" if not key else "invalid API key")
            return
        status = await _manager(websocket).read_status(pull_id)
        if status is None or (ctx.settings.api_keys and status.owner != key_owner(ctx.settings, key)):
            await websocket.close(
                E.WS_NO_SESSION,
                f"no pull {pull_id} for this API key (unknown, expired or another key's)"[:120],
            )
            return
        raw_from = websocket.query_params.get("from", "0")
        if not raw_from.isdigit():
            await websocket.close(E.WS_BAD_HELLO, "from must be a seq (an integer >= 0)")
            return
        await _relay(websocket, ctx, status, int(raw_from))
    except WebSocketDisconnect:
        pass
    except (aioredis.ConnectionError, aioredis.TimeoutError):
        with contextlib.suppress(Exception):
            await websocket.close(E.WS_UNAVAILABLE, "redis unavailable; try again later")
    except Exception as exc:
        log.exception("pull results relay failed")
        with contextlib.suppress(Exception):
            await websocket.close(E.WS_INTERNAL, f"internal error: {type(exc).__name__}"[:120])


async def _relay(websocket: WebSocket, ctx: GatewayContext, status: PullStatus, next_seq: int) -> None:
    manager = _manager(websocket)
    rkey = ctx.keys.results(status.session)
    await websocket.send_text(
        json.dumps({"pull": status.id, "session": status.session, "state": status.state})
    )
    first = await ctx.redis.xrange(rkey, count=1)
    oldest = FrameResult.from_fields(first[0][1]).seq if first else None
    if oldest is not None and next_seq < oldest:
        msg = f"results of seq {next_seq}-{oldest - 1} are no longer kept (results_maxlen); sending from {oldest}"
        await websocket.send_text(json.dumps({"error": {"code": "results_expired", "message": msg}}))
        next_seq = oldest
    results = OrderedResults(ctx.redis, rkey, last_id="0-0", count=256)
    while True:
        # The status first: once it is terminal, every result up to frames_queued is on the stream.
        current = await manager.read_status(status.id) or status
        await results.fetch(next_seq, block_ms=200)
        while (result := results.pop(next_seq)) is not None:
            obj = json.loads(result.frame)
            obj["seq"] = next_seq
            if result.error:
                obj["error"] = {"code": "frame_failed", "message": result.error}
            await websocket.send_text(json.dumps(obj, separators=(",", ":")))
            next_seq += 1
        if current.state in TERMINAL and next_seq >= current.frames_queued:
            await websocket.send_text(json.dumps({"end": current.public()}))
            if current.state == "failed":
                reason = f"source failed: {current.error.message if current.error else 'unknown'}"
                await websocket.close(E.WS_SOURCE_FAILED, reason[:120])
            else:
                await websocket.close(E.WS_NORMAL)
            return
        if current.state in TERMINAL and not await ctx.redis.exists(rkey):
            # The result stream expired (session_ttl_s) before this client caught up.
            await websocket.send_text(json.dumps({"end": current.public()}))
            await websocket.close(E.WS_NORMAL)
            return
