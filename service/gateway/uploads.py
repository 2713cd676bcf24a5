"""``/v1/videos``: upload a clip, follow its status, fetch its poses and rendering.

The routes only: the transfer is ``upload_io.receive_upload``, the check before it is
accepted ``upload_frames.check_video``, and the processing that follows runs in
``upload_manager.UploadManager`` (one per gateway, ``GatewayContext.uploads``).
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from posestream.models.data.video import VideoError
from posestream.models.poses import iter_jsonl
from posestream.service.exports import EXPORT_FORMATS, ExportFormatName, iter_export
from posestream.service.gateway.deps import Authorized, Ctx, GatewayContext, Owner
from posestream.service.gateway.errors import ApiError
from posestream.service.gateway.upload_frames import FrameTooLarge, check_video
from posestream.service.gateway.upload_io import receive_upload
from posestream.service.gateway.upload_manager import UploadLease, UploadManager
from posestream.service.messages import VideoStatus

router = APIRouter(prefix="/v1/videos", tags=["videos"], dependencies=[Authorized])
_FORMAT_HELP = (
    "jsonl (the service's own, one line per frame) or an export (posestream.service.exports): "
    + "; ".join(f"{f.name}: {f.description}" for f in EXPORT_FORMATS.values())
)


def _manager(ctx: GatewayContext) -> UploadManager:
    return ctx.uploads  # type: ignore[return-value]


@router.post("", status_code=202, summary="Upload a clip for tracking")
async def upload_video(
    request: Request,
    ctx: Ctx,
    owner: Owner,
    render: bool = Query(False, description="also produce an annotated MP4"),
) -> JSONResponse:
    manager = _manager(ctx)
    video_id = uuid.uuid4().hex
    # Held from before the folder exists: a folder without meta.json, status and lease is a
    # transfer whose gateway died (recover_lost deletes it), never one still arriving.
    lease = UploadLease(manager, video_id)
    if not await lease.acquire():  # a fresh random id: only a bug gets here
        raise RuntimeError(f"upload lease of the new video {video_id} is taken")
    keeper = asyncio.create_task(lease.keep(), name=f"video-{video_id}-transfer-lease")
    folder = manager.folder(video_id)
    target = folder / "input"
    try:
        folder.mkdir(parents=True)
        size = await receive_upload(request, target, ctx.settings.max_upload_bytes)
        if size == 0:
            raise ApiError(400, "empty_upload", "the uploaded file is empty (0 bytes)")
        try:
            frames_total = await asyncio.to_thread(check_video, target, ctx.settings.max_frame_pixels)
        except FrameTooLarge as exc:
            raise ApiError(413, "frame_too_large", f"the video's {exc}") from None
        except VideoError as exc:
            raise ApiError(
                400,
                "invalid_video",
                f"the upload is not a video PyAV can decode: {str(exc).replace(str(target), 'upload')}",
            ) from None
    except BaseException:
        keeper.cancel()
        shutil.rmtree(folder, ignore_errors=True)
        await lease.release()
        raise
    keeper.cancel()
    status = VideoStatus(
        id=video_id,
        status="queued",
        frames_total=frames_total,
        render=render,
        created_at=time.time(),
        owner=owner,
    )
    await manager.submit(status, lease)
    url = str(request.url_for("video_status", video_id=video_id).path)
    return JSONResponse({"id": video_id, "status_url": url}, status_code=202, headers={"Location": url})


async def _status_or_404(ctx: GatewayContext, video_id: str, owner: str) -> VideoStatus:
    """The video's status; 404 ``not_found`` when it does not exist or belongs to another API key.

    Both get the same body, so a key cannot tell another key's video from a missing one.
    """
    status = await _manager(ctx).read_status(video_id)
    if status is None or (ctx.settings.api_keys and status.owner != owner):
        raise ApiError(
            404, "not_found", f"no video with id {video_id!r} (never uploaded, deleted or expired)"
        )
    return status


@router.get("/{video_id}", name="video_status", summary="Status of an uploaded clip")
async def get_status(video_id: str, ctx: Ctx, owner: Owner) -> dict[str, Any]:
    return (await _status_or_404(ctx, video_id, owner)).public()


@router.get("/{video_id}/poses", summary="The result: JSON Lines (one line per frame) or an export format")
async def get_poses(
    video_id: str,
    ctx: Ctx,
    owner: Owner,
    format: Annotated[Literal["jsonl"] | ExportFormatName, Query(description=_FORMAT_HELP)] = "jsonl",
) -> StreamingResponse:
    status = await _status_or_404(ctx, video_id, owner)
    if status.status in ("queued", "running"):
        raise ApiError(
            409,
            "not_ready",
            f"video {video_id} is {status.status} ({status.frames_done}/{status.frames_total} frames)",
        )
    path = _manager(ctx).folder(video_id) / "poses.jsonl"
    if not path.is_file():
        raise ApiError(404, "not_found", f"video {video_id} has no result file on this gateway")
    if format != "jsonl":
        fmt = EXPORT_FORMATS[format]
        # A sync generator: Starlette iterates it in a worker thread, so reading and converting
        # the file never blocks the event loop.
        exported = iter_export(fmt.name, lambda: iter_jsonl(path), video=video_id)
        return StreamingResponse(
            exported,
            media_type=fmt.media_type,
            headers={"Content-Disposition": f'attachment; filename="{video_id}{fmt.suffix}"'},
        )

    async def chunks() -> AsyncIterator[bytes]:
        with open(path, "rb") as fh:
            while chunk := await asyncio.to_thread(fh.read, 256 * 1024):
                yield chunk

    return StreamingResponse(
        chunks(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{video_id}.jsonl"'},
    )


@router.get("/{video_id}/render", summary="The annotated MP4 (upload with ?render=true)")
async def get_render(video_id: str, ctx: Ctx, owner: Owner) -> FileResponse:
    status = await _status_or_404(ctx, video_id, owner)
    if not status.render:
        raise ApiError(404, "render_not_requested", "this video was uploaded without ?render=true")
    if status.status != "done":
        raise ApiError(
            409, "not_ready", f"video {video_id} is {status.status}; the rendering is made when it is done"
        )
    path = _manager(ctx).folder(video_id) / "annotated.mp4"
    if not path.is_file():
        raise ApiError(404, "not_found", f"video {video_id} has no rendering on this gateway")
    return FileResponse(path, media_type="video/mp4", filename=f"{video_id}.mp4")


@router.delete("/{video_id}", summary="Delete a clip, its results and its status")
async def delete_video(video_id: str, ctx: Ctx, owner: Owner) -> dict[str, Any]:
    await _status_or_404(ctx, video_id, owner)
    await _manager(ctx).delete(video_id)
    return {"id": video_id, "deleted": True}
