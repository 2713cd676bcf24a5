"""``/v1/videos``: upload a clip, follow its status, fetch its poses and rendering.

An upload is streamed to ``DATA_DIR/videos/{id}/``, checked (it must decode), then a
background task decodes it frame by frame, JPEG-encodes each frame and enqueues it as a
``FrameJob`` with at most ``upload_inflight`` frames queued at once (backpressure: an
upload never drops a frame), collects the results from ``results:video:{id}`` in
``seq`` order into ``poses.jsonl`` and keeps the status hash ``video:{id}`` current.
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


class UploadManager:
    """Runs and tracks the background processing of uploaded videos of this gateway."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.root = Path(ctx.settings.data_dir) / "videos"
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, video_id: str) -> Path:
        return self.root / video_id

    async def write_status(self, status: VideoStatus) -> None:
        key = self.ctx.keys.video(status.id)
        pipe = self.ctx.redis.pipeline(transaction=True)
        pipe.hset(key, mapping=status.to_fields())
        pipe.expire(key, self.ctx.settings.video_ttl_s)
        await pipe.execute()

    async def read_status(self, video_id: str) -> VideoStatus | None:
        if not _valid_id(video_id):
            return None
        fields = await self.ctx.redis.hgetall(self.ctx.keys.video(video_id))
        return VideoStatus.from_fields(fields) if fields else None

    def start(self, status: VideoStatus, path: Path) -> None:
        task = asyncio.create_task(self._run(status, path), name=f"video-{status.id}")
        self.tasks[status.id] = task
        task.add_done_callback(lambda _: self.tasks.pop(status.id, None))

    async def cancel(self, video_id: str) -> None:
        task = self.tasks.pop(video_id, None)
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def shutdown(self) -> None:
        for video_id in list(self.tasks):
            await self.cancel(video_id)

    async def _run(self, status: VideoStatus, path: Path) -> None:
        metrics = self.ctx.metrics
        metrics.active_sessions.labels("upload").inc()
        try:
            await self._process(status, path)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("video %s failed", status.id)
            status = status.model_copy(
                update={"status": "failed", "error": ApiErrorBody(code="internal_error", message=f"{type(exc).__name__}: {exc}")}
            )
            try:
                await self.write_status(status)
            except Exception:
                pass
        finally:
            metrics.active_sessions.labels("upload").dec()

    async def _process(self, status: VideoStatus, path: Path) -> None:
        ctx = self.ctx
        s = ctx.settings
        session = video_session(status.id)
        rkey = ctx.keys.results(session)
        folder = self.folder(status.id)
        status = status.model_copy(update={"status": "running"})
        await self.write_status(status)

        inflight = asyncio.Semaphore(s.upload_inflight)
        enqueued = 0
        feeding_done = asyncio.Event()
        decode_error: list[ApiErrorBody] = []
        received_at: dict[int, float] = {}

        async def feed() -> None:
            nonlocal enqueued
            frames = _encoded_frames(path, s.upload_jpeg_quality)
            try:
                while True:
                    t0 = time.perf_counter()
                    item = await asyncio.to_thread(next, frames, None)
                    if item is None:
                        break
                    ctx.metrics.stage_latency.labels("decode").observe(time.perf_counter() - t0)
                    index, ts, w, h, jpeg = item
                    await inflight.acquire()
                    job = FrameJob(session=session, seq=enqueued, frame_index=index, timestamp=ts, width=w, height=h, image=jpeg)
                    received_at[enqueued] = time.time()
                    await ctx.redis.xadd(ctx.keys.jobs, job.to_fields(), maxlen=s.jobs_maxlen, approximate=True)
                    ctx.metrics.frames_in.labels("upload").inc()
                    enqueued += 1
            except VideoError as exc:
                decode_error.append(ApiErrorBody(code="decode_failed", message=str(exc).replace(str(path), "upload")))
            finally:
                frames.close()
                feeding_done.set()

        feeder = asyncio.create_task(feed())
        written = 0
        last_status = 0.0
        last_id = "0-0"
        pending: dict[int, FrameResult] = {}
        try:
            with open(folder / "poses.jsonl", "w", encoding="utf-8") as out:
                while not (feeding_done.is_set() and written >= enqueued):
                    resp = await ctx.redis.xread({rkey: last_id}, count=256, block=200)
                    for _, entries in resp or []:
                        for entry_id, fields in entries:
                            last_id = entry_id
                            result = FrameResult.from_fields(fields)
                            if result.seq >= written:
                                pending[result.seq] = result
                    now = time.time()
                    while written in pending:
                        result = pending.pop(written)
                        out.write(_line(result) + "\n")
                        ctx.metrics.observe_result(result.enqueued_at, result.started_at, result.finished_at, now)
                        ctx.metrics.stage_latency.labels("end_to_end").observe(now - received_at.pop(written, now))
                        ctx.metrics.frames_out.labels("upload").inc()
                        inflight.release()
                        written += 1
                    if written and (now - last_status > 0.25):
                        out.flush()
                        last_status = now
                        total = max(status.frames_total, enqueued)
                        status = status.model_copy(update={"frames_done": written, "frames_total": total})
                        await self.write_status(status)
                    if feeder.done() and feeder.exception() is not None:
                        raise feeder.exception()  # type: ignore[misc]
        finally:
            feeder.cancel()
        await ctx.redis.delete(rkey)
        status = status.model_copy(update={"frames_done": written, "frames_total": written})
        if decode_error:
            status = status.model_copy(update={"status": "failed", "error": decode_error[0]})
            await self.write_status(status)
            return
        if status.render:
            await asyncio.to_thread(render_video, path, iter_jsonl(folder / "poses.jsonl"), folder / "annotated.mp4")
        await self.write_status(status.model_copy(update={"status": "done"}))


def _line(result: FrameResult) -> str:
    if not result.error:
        return result.frame
    obj = json.loads(result.frame)
    obj["error"] = {"code": "frame_failed", "message": result.error}
    return json.dumps(obj, separators=(",", ":"))


class _EncodedFrames:
    """Decode + JPEG-encode one frame per ``next`` (runs in a worker thread)."""

    def __init__(self, path: Path, quality: int) -> None:
        self._it: Iterator[tuple[int, float, np.ndarray]] = iter_video_frames(path)
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]

    def __iter__(self) -> _EncodedFrames:
        return self

    def __next__(self) -> tuple[int, float, int, int, bytes]:
        index, ts, rgb = next(self._it)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), self._params)
        if not ok:
            raise VideoError(f"frame {index} could not be JPEG-encoded")
        return index, ts, rgb.shape[1], rgb.shape[0], buf.tobytes()

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close:
            close()


def _encoded_frames(path: Path, quality: int) -> _EncodedFrames:
    return _EncodedFrames(path, quality)


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
    await manager.write_status(status)
    manager.start(status, target)
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
    manager = _manager(ctx)
    await manager.cancel(video_id)
    session = video_session(video_id)
    await ctx.redis.delete(ctx.keys.video(video_id), ctx.keys.results(session), ctx.keys.seq(session))
    await asyncio.to_thread(shutil.rmtree, manager.folder(video_id), True)
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
