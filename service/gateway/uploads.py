"""``/v1/videos``: upload a clip, follow its status, fetch its poses and rendering.

An upload is streamed to ``DATA_DIR/videos/{id}/``, checked (it must decode), then a
background task decodes it frame by frame, JPEG-encodes each frame and enqueues it as a
``FrameJob`` with at most ``upload_inflight`` frames queued at once (backpressure: an
upload never drops a frame), collects the results from ``results:video:{id}`` in
``seq`` order into ``poses.jsonl`` and keeps the status hash ``video:{id}`` current.

The task holds a lease on the upload (``upload-lease:{id}``); if its gateway dies, any
gateway that sees the same data folder resumes the upload once the lease lapsed, from
the first frame missing in ``poses.jsonl`` (``UploadManager.resume_orphans``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import redis.asyncio as aioredis
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from models.data.video import VideoError, iter_video_frames, probe_video
from models.poses import iter_jsonl
from service.gateway.deps import Authorized, Ctx, GatewayContext
from service.gateway.errors import ApiError
from service.gateway.upload_io import receive_upload
from service.leases import RELEASE_SCRIPT, RENEW_SCRIPT, WRITE_HASH_IF_OWNER_SCRIPT, default_owner_id
from service.messages import ApiError as ApiErrorBody
from service.messages import FrameJob, FrameResult, VideoStatus
from service.render import render_video

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/videos", tags=["videos"], dependencies=[Authorized])

_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".gif"}


def video_session(video_id: str) -> str:
    """The tracker session of an uploaded video (':' cannot appear in WebSocket session ids)."""
    return f"video:{video_id}"


def _valid_id(video_id: str) -> bool:
    return len(video_id) == 32 and all(c in "0123456789abcdef" for c in video_id)


class LeaseLost(Exception):
    """This gateway no longer owns an upload (it stalled past its lease, or the upload was deleted)."""


class UploadLease:
    """This gateway's lease on one upload (``upload-lease:{id}``), kept while its task runs.

    ``keep()`` renews it every ``renew_s``; ``ensure()`` is called before every write to
    the upload's files and raises ``LeaseLost`` unless the last successful renewal is
    younger than ``renew_s`` (renewing inline when it is older). Since the lease lives
    ``ttl_ms`` after a renewal and ``renew_s`` is at most half of it, a write that
    follows ``ensure()`` without an ``await`` cannot race a new owner.
    """

    def __init__(self, manager: UploadManager, video_id: str) -> None:
        s = manager.ctx.settings
        self.video_id = video_id
        self.key = manager.ctx.keys.upload_lease(video_id)
        self.owner = manager.owner
        self.ttl_ms = s.upload_lease_ms
        self.renew_s = s.upload_lease_renew_ms / 1000.0
        self._redis = manager.ctx.redis
        self._manager = manager
        self._renewed_at = float("-inf")  # monotonic time the last successful renewal was sent
        self.lost = False

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        sent = time.monotonic()
        if await self._redis.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            self._renewed_at = sent
            return True
        return False

    async def renew(self) -> bool:
        sent = time.monotonic()
        if await self._manager.renew_script(keys=[self.key], args=[self.owner, self.ttl_ms]):
            self._renewed_at = sent
            return True
        self.lost = True
        return False

    async def ensure(self) -> None:
        """Raise ``LeaseLost`` unless this gateway still owns the upload."""
        if self.lost:
            raise LeaseLost(self.video_id)
        if time.monotonic() - self._renewed_at >= self.renew_s and not await self.renew():
            raise LeaseLost(self.video_id)

    async def keep(self) -> None:
        """Renew until cancelled or lost; a Redis error is retried (the lease outlives a few)."""
        while not self.lost:
            await asyncio.sleep(self.renew_s)
            try:
                if not await self.renew():
                    log.warning("video %s: lost the upload lease (deleted, or taken over after a stall)", self.video_id)
            except aioredis.RedisError as exc:
                log.warning("video %s: lease renewal failed (%s); retrying", self.video_id, exc)

    async def release(self) -> None:
        try:
            await self._manager.release_script(keys=[self.key], args=[self.owner])
        except aioredis.RedisError as exc:
            log.warning("video %s: lease release failed (it lapses anyway): %s", self.video_id, exc)


class UploadManager:
    """Runs the background processing of uploaded videos on this gateway, and resumes orphans.

    Every upload being processed has a lease (``UploadLease``) held by the gateway whose
    task feeds its frames and collects its results. Status writes are fenced by that lease
    in Redis. ``resume_loop()`` makes every gateway look, at start-up and every
    ``upload_resume_interval_s``, for uploads left ``queued``/``running`` with no lease
    (their gateway died) whose files it has, and resume them where they stopped.
    """

    def __init__(self, ctx: GatewayContext, owner: str | None = None) -> None:
        self.ctx = ctx
        self.owner = owner or f"gateway-{default_owner_id()}"
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.root = Path(ctx.settings.data_dir) / "videos"
        self.root.mkdir(parents=True, exist_ok=True)
        self.renew_script = ctx.redis.register_script(RENEW_SCRIPT)
        self.release_script = ctx.redis.register_script(RELEASE_SCRIPT)
        self._write_if_owner = ctx.redis.register_script(WRITE_HASH_IF_OWNER_SCRIPT)

    def folder(self, video_id: str) -> Path:
        return self.root / video_id

    async def write_status(self, status: VideoStatus, lease: UploadLease) -> None:
        """Write the status hash (with the video TTL) if this gateway still owns the upload."""
        fields = [x for kv in status.to_fields().items() for x in kv]
        args = [lease.owner, self.ctx.settings.video_ttl_s, *fields]
        if not await self._write_if_owner(keys=[lease.key, self.ctx.keys.video(status.id)], args=args):
            lease.lost = True
            raise LeaseLost(status.id)

    async def read_status(self, video_id: str) -> VideoStatus | None:
        if not _valid_id(video_id):
            return None
        fields = await self.ctx.redis.hgetall(self.ctx.keys.video(video_id))
        return VideoStatus.from_fields(fields) if fields else None

    async def submit(self, status: VideoStatus) -> None:
        """Register a new upload (its file is in ``folder(id)/input``) and start processing it."""
        lease = UploadLease(self, status.id)
        if not await lease.acquire():  # a fresh random id: only a bug gets here
            raise RuntimeError(f"upload lease of the new video {status.id} is taken")
        try:
            await self.write_status(status, lease)
        except BaseException:
            await lease.release()
            raise
        self._start(status.id, lease)

    def _start(self, video_id: str, lease: UploadLease) -> None:
        task = asyncio.create_task(self._run(video_id, lease), name=f"video-{video_id}")
        self.tasks[video_id] = task
        task.add_done_callback(lambda t: self.tasks.pop(video_id, None) if self.tasks.get(video_id) is t else None)

    async def cancel(self, video_id: str) -> None:
        """Stop this gateway's task of the upload, if any (its lease is released)."""
        task = self.tasks.pop(video_id, None)
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def delete(self, video_id: str) -> None:
        """Stop the upload wherever it runs and delete its keys and files.

        A task on another gateway notices within ``upload_lease_renew_ms``: its lease is
        gone, so its renewal and its next status write fail and it stops. The keys go
        first, so that no gateway (this one included) resumes the upload meanwhile.
        """
        keys = self.ctx.keys
        session = video_session(video_id)
        await self.ctx.redis.delete(
            keys.video(video_id), keys.upload_lease(video_id), keys.results(session), keys.seq(session)
        )
        await self.cancel(video_id)
        await asyncio.to_thread(shutil.rmtree, self.folder(video_id), True)

    async def shutdown(self) -> None:
        """Stop every task; their leases are released, so other gateways resume them at once."""
        for video_id in list(self.tasks):
            await self.cancel(video_id)

    async def resume_orphans(self) -> list[str]:
        """Take over uploads left queued or running without a lease whose files are on this gateway.

        Returns the ids resumed.
        """
        redis = self.ctx.redis
        pattern = _glob_escape(self.ctx.keys.video("")) + "*"
        resumed = []
        async for key in redis.scan_iter(match=pattern, count=500):
            video_id = (key.decode() if isinstance(key, bytes) else key).rsplit(":", 1)[-1]
            if not _valid_id(video_id) or video_id in self.tasks:
                continue
            if await redis.hget(key, "status") not in (b"queued", b"running"):
                continue
            if not (self.folder(video_id) / "input").is_file():
                continue  # uploaded to a gateway with another data folder: only it can resume it
            lease = UploadLease(self, video_id)
            if await lease.acquire():
                log.info("video %s: resuming the upload (its gateway stopped while processing it)", video_id)
                self._start(video_id, lease)
                resumed.append(video_id)
        return resumed

    async def resume_loop(self) -> None:
        """``resume_orphans()`` now and every ``upload_resume_interval_s`` until cancelled."""
        while True:
            try:
                await self.resume_orphans()
            except aioredis.RedisError as exc:
                log.warning("looking for orphaned uploads failed (%s); retrying", exc)
            except Exception:  # the loop must outlive any one bad upload folder or key
                log.exception("looking for orphaned uploads failed; retrying")
            await asyncio.sleep(self.ctx.settings.upload_resume_interval_s)

    async def _run(self, video_id: str, lease: UploadLease) -> None:
        metrics = self.ctx.metrics
        metrics.active_sessions.labels("upload").inc()
        keeper = asyncio.create_task(lease.keep(), name=f"video-{video_id}-lease")
        status = None
        try:
            # Read after the lease is ours: status writes are fenced by the lease, so
            # nobody changes it from here on.
            status = await self.read_status(video_id)
            if status is None or status.status not in ("queued", "running"):
                return  # deleted, or finished just before we took the lease
            await self._process(status, self.folder(video_id) / "input", lease)
        except LeaseLost:
            log.warning("video %s: stopped (this gateway no longer owns it)", video_id)
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            # Not the video's fault: leave it running; once the lease lapses, a gateway
            # (this one too) resumes it where it stopped.
            log.warning("video %s: paused, Redis is unavailable (%s)", video_id, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("video %s failed", video_id)
            if status is not None:
                body = ApiErrorBody(code="internal_error", message=f"{type(exc).__name__}: {exc}")
                try:
                    await self.write_status(status.model_copy(update={"status": "failed", "error": body}), lease)
                except Exception:
                    pass
        finally:
            keeper.cancel()
            await lease.release()
            metrics.active_sessions.labels("upload").dec()

    async def _process(self, status: VideoStatus, path: Path, lease: UploadLease) -> None:
        """Feed the frames not yet in ``poses.jsonl`` and collect their results; then render.

        Resuming (another gateway, or this one, died mid-way) continues from the first
        ``seq`` not in ``poses.jsonl``: the frames before it are decoded and skipped, the
        rest are enqueued again (copies of frames still queued are acknowledged by the
        workers without a second result), and the result stream is read from its start,
        because results published while no gateway collected are only there.
        """
        ctx = self.ctx
        rkey = ctx.keys.results(video_session(status.id))
        folder = self.folder(status.id)
        poses_path = folder / "poses.jsonl"
        if not status.collected:
            written = await asyncio.to_thread(_complete_lines, poses_path)
            if written and not await ctx.redis.exists(rkey):
                # Results are only deleted once collected, so the stream expired: no worker
                # published for session_ttl_s, and the session's tracker state (same TTL,
                # saved after each publish) is gone too. The tracker starts over; so do we.
                log.warning("video %s: its session expired while no gateway ran it; starting it over", status.id)
                await asyncio.to_thread(poses_path.write_bytes, b"")
                written = 0
            await lease.ensure()
            status = status.model_copy(update={"status": "running", "frames_done": written})
            await self.write_status(status, lease)
            status, decode_error = await self._collect(status, path, lease, written)
            status = status.model_copy(update={"collected": decode_error is None})
            if decode_error is not None:
                await self.write_status(status.model_copy(update={"status": "failed", "error": decode_error}), lease)
                await ctx.redis.delete(rkey)
                return
            await self.write_status(status, lease)
            await ctx.redis.delete(rkey)
        if status.render:
            part = folder / f"annotated.{uuid.uuid4().hex[:8]}.part.mp4"  # this owner's own file
            try:
                await asyncio.to_thread(render_video, path, iter_jsonl(poses_path), part)
                await lease.ensure()
                part.replace(folder / "annotated.mp4")
            finally:
                part.unlink(missing_ok=True)
        await self.write_status(status.model_copy(update={"status": "done"}), lease)

    async def _collect(
        self, status: VideoStatus, path: Path, lease: UploadLease, written: int
    ) -> tuple[VideoStatus, ApiErrorBody | None]:
        """Enqueue frames from ``seq == written`` on and append their results to ``poses.jsonl`` in order.

        Returns the last status written and the decode error that ended the video early, if any.
        """
        ctx = self.ctx
        s = ctx.settings
        session = video_session(status.id)
        rkey = ctx.keys.results(session)
        progress = asyncio.Condition()  # notified when `written` grows
        enqueued = written  # frames decoded so far (their seqs are 0 .. enqueued - 1)
        feeding_done = asyncio.Event()
        decode_error: list[ApiErrorBody] = []
        received_at: dict[int, float] = {}

        async def feed() -> None:
            nonlocal enqueued
            frames = _encoded_frames(path, s.upload_jpeg_quality, skip=written)
            try:
                while True:
                    t0 = time.perf_counter()
                    item = await asyncio.to_thread(next, frames, None)
                    if item is None:
                        break
                    ctx.metrics.stage_latency.labels("decode").observe(time.perf_counter() - t0)
                    seq = enqueued
                    async with progress:  # backpressure: at most upload_inflight frames queued
                        await progress.wait_for(lambda seq=seq: seq < written + s.upload_inflight)
                    enqueued += 1
                    if seq < written:
                        continue  # its result was already in the stream (resumed upload)
                    index, ts, w, h, jpeg = item
                    job = FrameJob(session=session, seq=seq, frame_index=index, timestamp=ts, width=w, height=h, image=jpeg)
                    received_at[seq] = time.time()
                    await ctx.redis.xadd(ctx.keys.jobs, job.to_fields(), maxlen=s.jobs_maxlen, approximate=True)
                    ctx.metrics.frames_in.labels("upload").inc()
            except VideoError as exc:
                decode_error.append(ApiErrorBody(code="decode_failed", message=str(exc).replace(str(path), "upload")))
            finally:
                frames.close()
                feeding_done.set()

        feeder = asyncio.create_task(feed(), name=f"video-{status.id}-feed")
        last_status = 0.0
        last_id = "0-0"  # from the start: a resumed upload's earlier results are only there
        pending: dict[int, FrameResult] = {}
        try:
            with open(self.folder(status.id) / "poses.jsonl", "a", encoding="utf-8") as out:
                while not (feeding_done.is_set() and written >= enqueued):
                    await lease.ensure()  # also stops this task soon after a delete on another gateway
                    resp = await ctx.redis.xread({rkey: last_id}, count=256, block=200)
                    for _, entries in resp or []:
                        for entry_id, fields in entries:
                            last_id = entry_id
                            result = FrameResult.from_fields(fields)
                            if result.seq >= written:
                                pending[result.seq] = result
                    now = time.time()
                    if written in pending:
                        await lease.ensure()  # no await from here to the write: see UploadLease
                        lines = []
                        while written in pending:
                            result = pending.pop(written)
                            lines.append(_line(result) + "\n")
                            ctx.metrics.observe_result(result.enqueued_at, result.started_at, result.finished_at, now)
                            if written in received_at:
                                ctx.metrics.stage_latency.labels("end_to_end").observe(now - received_at.pop(written))
                            ctx.metrics.frames_out.labels("upload").inc()
                            written += 1
                        out.writelines(lines)
                        # Flushed before the next await: a gateway that stalls past its lease
                        # must not hold lines that it would write after a new owner took over.
                        out.flush()
                        async with progress:
                            progress.notify_all()
                    if written > status.frames_done and (now - last_status > 0.25):
                        last_status = now
                        total = max(status.frames_total, enqueued)
                        status = status.model_copy(update={"frames_done": written, "frames_total": total})
                        await self.write_status(status, lease)
                    if feeder.done() and feeder.exception() is not None:
                        raise feeder.exception()  # type: ignore[misc]
        finally:
            feeder.cancel()
        status = status.model_copy(update={"frames_done": written, "frames_total": written})
        return status, (decode_error[0] if decode_error else None)


def _complete_lines(path: Path) -> int:
    """Number of complete lines in ``path`` (0 if missing), cutting off a partial last line.

    A gateway killed mid-write can leave half a line behind; that frame is collected again.
    """
    if not path.is_file():
        return 0
    count = 0
    end = 0  # offset just after the last newline
    offset = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            n = chunk.count(b"\n")
            if n:
                count += n
                end = offset + chunk.rindex(b"\n") + 1
            offset += len(chunk)
    if end != offset:
        with open(path, "r+b") as fh:
            fh.truncate(end)
    return count


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _line(result: FrameResult) -> str:
    if not result.error:
        return result.frame
    obj = json.loads(result.frame)
    obj["error"] = {"code": "frame_failed", "message": result.error}
    return json.dumps(obj, separators=(",", ":"))


class _EncodedFrames:
    """Decode + JPEG-encode one frame per ``next`` (runs in a worker thread).

    The first ``skip`` frames are decoded and dropped (not encoded) on the first ``next``:
    a resumed upload's frames whose results are already written.
    """

    def __init__(self, path: Path, quality: int, skip: int = 0) -> None:
        self._it: Iterator[tuple[int, float, np.ndarray]] = iter_video_frames(path)
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        self._skip = skip

    def __iter__(self) -> _EncodedFrames:
        return self

    def __next__(self) -> tuple[int, float, int, int, bytes]:
        while self._skip:
            next(self._it)
            self._skip -= 1
        index, ts, rgb = next(self._it)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), self._params)
        if not ok:
            raise VideoError(f"frame {index} could not be JPEG-encoded")
        return index, ts, rgb.shape[1], rgb.shape[0], buf.tobytes()

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close:
            close()


def _encoded_frames(path: Path, quality: int, skip: int = 0) -> _EncodedFrames:
    return _EncodedFrames(path, quality, skip)


def _check_video(path: Path) -> int:
    """Decode the first frame (raises ``VideoError``); returns the container's frame count (0 if unknown)."""
    frames = iter_video_frames(path)
    try:
        next(frames)
    finally:
        frames.close()  # type: ignore[attr-defined]
    try:
        return probe_video(path).frames
    except VideoError:
        return 0


def _manager(ctx: GatewayContext) -> UploadManager:
    return ctx.uploads  # type: ignore[return-value]


@router.post("", status_code=202, summary="Upload a clip for tracking")
async def upload_video(
    request: Request, ctx: Ctx, render: bool = Query(False, description="also produce an annotated MP4")
) -> JSONResponse:
    manager = _manager(ctx)
    video_id = uuid.uuid4().hex
    folder = manager.folder(video_id)
    folder.mkdir(parents=True)
    target = folder / "input"
    try:
        size = await receive_upload(request, target, ctx.settings.max_upload_bytes)
        if size == 0:
            raise ApiError(400, "empty_upload", "the uploaded file is empty (0 bytes)")
        try:
            frames_total = await asyncio.to_thread(_check_video, target)
        except VideoError as exc:
            raise ApiError(
                400, "invalid_video", f"the upload is not a video PyAV can decode: {str(exc).replace(str(target), 'upload')}"
            ) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    status = VideoStatus(id=video_id, status="queued", frames_total=frames_total, render=render, created_at=time.time())
    await manager.submit(status)
    url = str(request.url_for("video_status", video_id=video_id).path)
    return JSONResponse({"id": video_id, "status_url": url}, status_code=202, headers={"Location": url})


async def _status_or_404(ctx: GatewayContext, video_id: str) -> VideoStatus:
    status = await _manager(ctx).read_status(video_id)
    if status is None:
        raise ApiError(404, "not_found", f"no video with id {video_id!r} (never uploaded, deleted or expired)")
    return status


@router.get("/{video_id}", name="video_status", summary="Status of an uploaded clip")
async def get_status(video_id: str, ctx: Ctx) -> dict[str, Any]:
    return (await _status_or_404(ctx, video_id)).public()


@router.get("/{video_id}/poses", summary="The JSON Lines result (one line per frame)")
async def get_poses(video_id: str, ctx: Ctx) -> StreamingResponse:
    status = await _status_or_404(ctx, video_id)
    if status.status in ("queued", "running"):
        raise ApiError(409, "not_ready", f"video {video_id} is {status.status} ({status.frames_done}/{status.frames_total} frames)")
    path = _manager(ctx).folder(video_id) / "poses.jsonl"
    if not path.is_file():
        raise ApiError(404, "not_found", f"video {video_id} has no result file on this gateway")

    async def chunks() -> AsyncIterator[bytes]:
        with open(path, "rb") as fh:
            while chunk := await asyncio.to_thread(fh.read, 256 * 1024):
                yield chunk

    return StreamingResponse(
        chunks(), media_type="application/x-ndjson", headers={"Content-Disposition": f'attachment; filename="{video_id}.jsonl"'}
    )


@router.get("/{video_id}/render", summary="The annotated MP4 (upload with ?render=true)")
async def get_render(video_id: str, ctx: Ctx) -> FileResponse:
    status = await _status_or_404(ctx, video_id)
    if not status.render:
        raise ApiError(404, "render_not_requested", "this video was uploaded without ?render=true")
    if status.status != "done":
        raise ApiError(409, "not_ready", f"video {video_id} is {status.status}; the rendering is made when it is done")
    path = _manager(ctx).folder(video_id) / "annotated.mp4"
    if not path.is_file():
        raise ApiError(404, "not_found", f"video {video_id} has no rendering on this gateway")
    return FileResponse(path, media_type="video/mp4", filename=f"{video_id}.mp4")


@router.delete("/{video_id}", summary="Delete a clip, its results and its status")
async def delete_video(video_id: str, ctx: Ctx) -> dict[str, Any]:
    await _status_or_404(ctx, video_id)
    await _manager(ctx).delete(video_id)
    return {"id": video_id, "deleted": True}


async def janitor(manager: UploadManager, redis: aioredis.Redis, ttl_s: float, every_s: float = 60.0) -> None:
    """Delete video folders older than the video TTL (their status hashes expire on their own)."""
    while True:
        cutoff = time.time() - ttl_s
        for folder in list(manager.root.iterdir()) if manager.root.is_dir() else []:
            try:
                if folder.name not in manager.tasks and folder.stat().st_mtime < cutoff:
                    await asyncio.to_thread(shutil.rmtree, folder, True)
            except OSError:
                pass
        await asyncio.sleep(every_s)
