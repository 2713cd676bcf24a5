"""The background processing of uploaded videos (``/v1/videos``, routes in ``uploads``).

An upload is streamed to ``DATA_DIR/videos/{id}/``, checked (it must decode), then a
background task decodes it frame by frame, JPEG-encodes each frame
(``upload_frames.EncodedFrames``) and enqueues it as a ``FrameJob`` with at most
``upload_inflight`` frames queued at once (backpressure: an upload never drops a frame),
collects the results from ``results:video:{id}`` in ``seq`` order
(``relay.OrderedResults``) into ``poses.jsonl`` and keeps the status hash ``video:{id}``
current.

The task holds a lease on the upload (``upload-lease:{id}``, taken before the transfer
starts); if its gateway dies, any gateway that sees the same data folder resumes the
upload once the lease lapsed, from the first frame missing in ``poses.jsonl``
(``UploadManager.resume_orphans``). Jobs are queued only while that lease is held (one
Lua call), so a DELETE, which removes the lease and then purges the video's queued jobs,
leaves none behind. Queued bytes are bounded per upload (``upload_inflight_bytes``) and
per gateway (``upload_inflight_bytes_total``).

``meta.json`` in the folder keeps the status as of the upload (and its end) with the Redis
``epoch``; when Redis loses its data (restart without persistence: new epoch, no status),
the gateway holding the files writes the status again and resumes the upload
(``UploadManager.recover_lost``). A folder without ``meta.json``, status or lease is a
transfer its gateway did not finish; it is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import shutil
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.typing import EncodableT

from posestream.models.data.video import VideoError, probe_video
from posestream.models.poses import iter_jsonl
from posestream.service.gateway.deps import GatewayContext
from posestream.service.gateway.relay import OrderedResults, result_line
from posestream.service.gateway.upload_frames import EncodedFrames, FrameTooLarge
from posestream.service.leases import (
    CREATE_HASH_SCRIPT,
    RELEASE_SCRIPT,
    RENEW_SCRIPT,
    WRITE_HASH_IF_OWNER_SCRIPT,
    XADD_IF_OWNER_SCRIPT,
    default_owner_id,
)
from posestream.service.messages import JOBS_GROUP, FrameJob, VideoStatus, VideoWarning
from posestream.service.messages import ApiError as ApiErrorBody
from posestream.service.redis_types import awaited
from posestream.service.render import render_video
from posestream.service.video_checks import truncation

log = logging.getLogger(__name__)


def video_session(video_id: str) -> str:
    """The tracker session of an uploaded video (':' cannot appear in WebSocket session ids)."""
    return f"video:{video_id}"


def _valid_id(video_id: str) -> bool:
    return len(video_id) == 32 and all(c in "0123456789abcdef" for c in video_id)


class LeaseLost(Exception):
    """This gateway no longer owns an upload (it stalled past its lease, or the upload was deleted)."""


class ByteBudget:
    """Bytes that may be queued at once, shared by the tasks of one event loop.

    ``take(n)`` waits until ``n`` more bytes fit under ``limit`` (or nothing is taken, so
    one frame larger than the limit still goes through alone); ``give(n)`` returns them.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def take(self, n: int) -> None:
        while self.used and self.used + n > self.limit:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut
        self.used += n

    def give(self, n: int) -> None:
        if n <= 0:
            return
        self.used -= n
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


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
                    log.warning(
                        "video %s: lost the upload lease (deleted, or taken over after a stall)",
                        self.video_id,
                    )
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
        self._xadd_if_owner = ctx.redis.register_script(XADD_IF_OWNER_SCRIPT)
        self._create_hash = ctx.redis.register_script(CREATE_HASH_SCRIPT)
        self.budget = ByteBudget(ctx.settings.upload_inflight_bytes_total)
        self._checked_epoch: str | None = None  # epoch of the last full meta.json scan

    def folder(self, video_id: str) -> Path:
        return self.root / video_id

    async def epoch(self) -> str:
        """The Redis data epoch (set here if missing): it changes when Redis loses its data."""
        key = self.ctx.keys.epoch
        await self.ctx.redis.set(key, uuid.uuid4().hex, nx=True)
        value = await self.ctx.redis.get(key)
        return value.decode() if isinstance(value, bytes) else str(value)

    async def save_meta(self, status: VideoStatus) -> None:
        """Record ``status`` and the current epoch in ``meta.json`` (what ``recover_lost`` restores)."""
        meta = {"epoch": await self.epoch(), "status": status.model_dump(mode="json")}
        await asyncio.to_thread(_write_json, self.folder(status.id) / "meta.json", meta)

    async def enqueue(self, job: FrameJob, lease: UploadLease) -> None:
        """Queue ``job`` if this gateway still owns the upload, else raise ``LeaseLost``."""
        fields = [x for kv in job.to_fields().items() for x in kv]
        args = [lease.owner, self.ctx.settings.jobs_maxlen, *fields]
        if await self._xadd_if_owner(keys=[lease.key, self.ctx.keys.jobs], args=args) is None:
            lease.lost = True
            raise LeaseLost(job.session)

    async def purge_jobs(self, session: str) -> int:
        """Delete every queued (or pending) job of ``session`` from the jobs stream; returns how many."""
        redis, jobs = self.ctx.redis, self.ctx.keys.jobs
        start, purged = "-", 0
        while True:
            entries = await redis.xrange(jobs, min=start, max="+", count=256)
            if not entries:
                return purged
            ids = [eid for eid, fields in entries if fields.get(b"session") == session.encode()]
            if ids:
                pipe = redis.pipeline(transaction=True)
                pipe.xack(jobs, JOBS_GROUP, *ids)
                pipe.xdel(jobs, *ids)
                await pipe.execute()
                purged += len(ids)
            last = entries[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else last)

    async def recover_lost(self) -> list[str]:
        """Repair what a Redis data loss (or a gateway killed mid-transfer) left in this data folder.

        For each video folder: no ``meta.json`` and no status or lease in Redis -> a
        transfer that never finished: deleted. ``meta.json`` from an older epoch and no
        status -> Redis lost the status: it is written again from ``meta.json`` (a finished
        video as it ended; an unfinished one as ``running`` from frame 0, since its results
        and tracker state are gone too), so ``resume_orphans`` picks it up. Returns the ids
        whose status was written again.
        """
        redis, keys = self.ctx.redis, self.ctx.keys
        current = await self.epoch()
        full = current != self._checked_epoch  # at start, and after Redis lost its data
        restored = []
        unsettled = False  # a task of the old epoch still runs (it stops on its lost lease): scan again
        folders = await asyncio.to_thread(lambda: sorted(self.root.iterdir()) if self.root.is_dir() else [])
        for folder in folders:
            video_id = folder.name
            if not _valid_id(video_id):
                continue
            if video_id in self.tasks:
                if (
                    full
                    and (await asyncio.to_thread(_read_json, folder / "meta.json") or {}).get("epoch")
                    != current
                ):
                    unsettled = True
                continue
            if not full and (folder / "meta.json").is_file():
                continue
            meta = await asyncio.to_thread(_read_json, folder / "meta.json")
            if meta is None:
                if not await redis.exists(keys.video(video_id), keys.upload_lease(video_id)):
                    log.warning("video %s: deleting an upload whose transfer never finished", video_id)
                    await asyncio.to_thread(shutil.rmtree, folder, True)
                continue
            if meta.get("epoch") == current:
                continue
            status = VideoStatus.model_validate(meta["status"])
            if status.status in ("queued", "running"):
                status = status.model_copy(update={"status": "running", "frames_done": 0, "collected": False})
            fields = [x for kv in status.to_fields().items() for x in kv]
            if await self._create_hash(
                keys=[keys.video(video_id)], args=[self.ctx.settings.video_ttl_s, *fields]
            ):
                log.warning("video %s: Redis lost its status; restored it as %s", video_id, status.status)
                restored.append(video_id)
            await asyncio.to_thread(_write_json, folder / "meta.json", {**meta, "epoch": current})
        if not unsettled:
            self._checked_epoch = current
        return restored

    async def write_status(self, status: VideoStatus, lease: UploadLease) -> None:
        """Write the status hash (with the video TTL) if this gateway still owns the upload."""
        fields = [x for kv in status.to_fields().items() for x in kv]
        args: list[EncodableT] = [lease.owner, self.ctx.settings.video_ttl_s, *fields]
        if not await self._write_if_owner(keys=[lease.key, self.ctx.keys.video(status.id)], args=args):
            lease.lost = True
            raise LeaseLost(status.id)

    async def read_status(self, video_id: str) -> VideoStatus | None:
        if not _valid_id(video_id):
            return None
        fields = await awaited(self.ctx.redis.hgetall(self.ctx.keys.video(video_id)))
        return VideoStatus.from_fields(fields) if fields else None

    async def submit(self, status: VideoStatus, lease: UploadLease) -> None:
        """Register a new upload (its file is in ``folder(id)/input``, ``lease`` held) and start processing it."""
        try:
            await self.write_status(status, lease)
            await self.save_meta(status)
        except BaseException:
            await lease.release()
            raise
        self._start(status.id, lease)

    def _start(self, video_id: str, lease: UploadLease) -> None:
        task = asyncio.create_task(self._run(video_id, lease), name=f"video-{video_id}")
        self.tasks[video_id] = task
        task.add_done_callback(
            lambda t: self.tasks.pop(video_id, None) if self.tasks.get(video_id) is t else None
        )

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
        # After the lease is gone no gateway can queue a job of it (enqueue is fenced by it).
        purged = await self.purge_jobs(session)
        if purged:
            log.info("video %s: deleted %d queued job(s)", video_id, purged)
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
            if await awaited(redis.hget(key, "status")) not in (b"queued", b"running"):
                continue
            if not (self.folder(video_id) / "input").is_file():
                continue  # uploaded to a gateway with another data folder: only it can resume it
            lease = UploadLease(self, video_id)
            if await lease.acquire():
                log.info("video %s: resuming the upload (its gateway stopped while processing it)", video_id)
                self._start(video_id, lease)
                resumed.append(video_id)
        return resumed

    async def _forget_if_deleted(self, video_id: str) -> None:
        """Delete this gateway's files of an upload deleted through another gateway.

        Deleted means: no status, and the epoch in ``meta.json`` is still current (a new
        epoch means Redis lost its data instead; a status means another gateway took over).
        Without this a later Redis data loss would bring the deleted video back.
        """
        folder = self.folder(video_id)
        try:
            meta = await asyncio.to_thread(_read_json, folder / "meta.json")
            if meta is None or await self.ctx.redis.exists(self.ctx.keys.video(video_id)):
                return
            if meta.get("epoch") == await self.epoch():
                log.info("video %s: deleted through another gateway; deleting its files here", video_id)
                await asyncio.to_thread(shutil.rmtree, folder, True)
        except aioredis.RedisError as exc:
            log.warning(
                "video %s: could not tell whether it was deleted (%s); the janitor removes it", video_id, exc
            )

    async def resume_loop(self) -> None:
        """``recover_lost()`` and ``resume_orphans()`` now and every ``upload_resume_interval_s`` until cancelled."""
        while True:
            try:
                await self.recover_lost()
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
            await self._forget_if_deleted(video_id)
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
                    await self.write_status(
                        status.model_copy(update={"status": "failed", "error": body}), lease
                    )
                except Exception:
                    pass
        finally:
            keeper.cancel()
            await lease.release()
            metrics.active_sessions.labels("upload").dec()

    async def _process(self, status: VideoStatus, path: Path, lease: UploadLease) -> None:
        """Feed the frames not yet in ``poses.jsonl`` and collect their results; then render.

        Resuming (another gateway, or this one, died mid-way) continues from the first
        ``seq`` not in ``poses.jsonl``: the frames before it are decoded and skipped (but
        the last ``upload_inflight`` of them are queued again, in case Redis lost the
        worker's last state saves), the rest are enqueued again (copies of frames still
        queued are acknowledged by the workers without a second result), and the result
        stream is read from its start, because results published while no gateway
        collected are only there.
        """
        ctx = self.ctx
        rkey = ctx.keys.results(video_session(status.id))
        folder = self.folder(status.id)
        poses_path = folder / "poses.jsonl"
        if not status.collected:
            written = await asyncio.to_thread(_complete_lines, poses_path)
            if written and not await ctx.redis.exists(rkey):
                # Results are only deleted once collected, so the stream is gone: it expired
                # (no worker published for session_ttl_s) or Redis lost its data; either way
                # the session's tracker state (same TTL, saved after each publish) is gone
                # too. The tracker starts over; so do we, so that track ids stay consistent.
                log.warning("video %s: its results and tracker state are gone; starting it over", status.id)
                await asyncio.to_thread(poses_path.write_bytes, b"")
                written = 0
            await lease.ensure()
            status = status.model_copy(update={"status": "running", "frames_done": written})
            await self.write_status(status, lease)
            status, fatal, warning = await self._collect(status, path, lease, written)
            if warning is not None:
                status = status.model_copy(update={"warnings": [*status.warnings, warning]})
                if ctx.settings.fail_on_truncated:
                    fatal = ApiErrorBody(code="truncated_input", message=warning.message)
            status = status.model_copy(update={"collected": True})
            if fatal is not None:
                await self.finish(status.model_copy(update={"status": "failed", "error": fatal}), lease)
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
        await self.finish(status.model_copy(update={"status": "done"}), lease)

    async def finish(self, status: VideoStatus, lease: UploadLease) -> None:
        """Write the final status (``done``/``failed``) to Redis and to ``meta.json``."""
        await self.write_status(status, lease)
        await self.save_meta(status)

    async def _collect(
        self, status: VideoStatus, path: Path, lease: UploadLease, written: int
    ) -> tuple[VideoStatus, ApiErrorBody | None, VideoWarning | None]:
        """Enqueue frames from ``seq == written`` on and append their results to ``poses.jsonl`` in order.

        Returns the last status written, the error that makes the video fail (a frame over
        ``max_frame_pixels``), and the ``truncated_input`` warning when fewer frames decoded
        than the container declares or decoding broke off.
        """
        ctx = self.ctx
        s = ctx.settings
        session = video_session(status.id)
        rkey = ctx.keys.results(session)
        progress = asyncio.Condition()  # notified when `written` grows
        # A resumed upload queues again the upload_inflight frames before its first unwritten
        # one: if Redis lost the worker's last state saves (a crash with appendfsync everysec)
        # but not the results we collected, the worker's session is behind `written` and
        # waits for those frames; otherwise the worker acknowledges them as duplicates.
        resumed_at = written
        replay_from = max(0, written - s.upload_inflight)
        enqueued = replay_from  # frames decoded so far (their seqs are 0 .. enqueued - 1)
        feeding_done = asyncio.Event()
        decode_error: list[str] = []
        fatal: list[ApiErrorBody] = []
        received_at: dict[int, float] = {}
        sizes: dict[int, int] = {}  # bytes of each queued frame whose result is not written yet
        queued_bytes = 0

        def fits(seq: int, size: int) -> bool:
            return seq < written + s.upload_inflight and (
                not sizes or queued_bytes + size <= s.upload_inflight_bytes
            )

        replay: deque[FrameJob] = deque()
        replay_bytes = 0

        async def flush_replay() -> None:
            nonlocal replay_bytes
            while replay:
                await self.enqueue(replay.popleft(), lease)
            replay_bytes = 0

        async def feed() -> None:
            nonlocal enqueued, queued_bytes, replay_bytes
            frames = EncodedFrames(
                path, s.upload_jpeg_quality, skip=replay_from, max_pixels=s.max_frame_pixels
            )
            try:
                while True:
                    t0 = time.perf_counter()
                    item = await asyncio.to_thread(next, frames, None)
                    if item is None:
                        break
                    ctx.metrics.stage_latency.labels("decode").observe(time.perf_counter() - t0)
                    seq = enqueued
                    index, ts, w, h, jpeg = item
                    job = FrameJob(
                        session=session,
                        seq=seq,
                        frame_index=index,
                        timestamp=ts,
                        width=w,
                        height=h,
                        image=jpeg,
                    )
                    if seq < resumed_at:  # a replay (see above): its result, if any, is ignored
                        # Held back and queued together at the resume point, at most
                        # upload_inflight_bytes of them (the latest; a worker further behind
                        # declares the older seqs lost, whose lines are already written).
                        replay.append(job)
                        replay_bytes += len(jpeg)
                        while len(replay) > 1 and replay_bytes > s.upload_inflight_bytes:
                            replay_bytes -= len(replay.popleft().image)
                        enqueued += 1
                        continue
                    await flush_replay()
                    size = len(jpeg)
                    async with progress:  # backpressure: upload_inflight frames, upload_inflight_bytes bytes
                        await progress.wait_for(functools.partial(fits, seq, size))
                    enqueued += 1
                    if seq < written:
                        continue  # its result was already in the stream (resumed upload)
                    await self.budget.take(len(jpeg))  # upload_inflight_bytes_total
                    sizes[seq] = len(jpeg)
                    queued_bytes += len(jpeg)
                    received_at[seq] = time.time()
                    await self.enqueue(job, lease)
                    ctx.metrics.frames_in.labels("upload").inc()
                await flush_replay()  # a video that ended before its resume point
            except FrameTooLarge as exc:
                fatal.append(ApiErrorBody(code="frame_too_large", message=str(exc)))
            except VideoError as exc:
                decode_error.append(str(exc).replace(str(path), "upload"))
            finally:
                frames.close()
                feeding_done.set()

        feeder = asyncio.create_task(feed(), name=f"video-{status.id}-feed")
        last_status = 0.0
        # From the stream's start: a resumed upload's earlier results are only there.
        results = OrderedResults(ctx.redis, rkey, last_id="0-0", count=256)
        try:
            with open(self.folder(status.id) / "poses.jsonl", "a", encoding="utf-8") as out:
                while not (feeding_done.is_set() and written >= enqueued):
                    await lease.ensure()  # also stops this task soon after a delete on another gateway
                    await results.fetch(written, block_ms=200)
                    now = time.time()
                    if written in results:
                        await lease.ensure()  # no await from here to the write: see UploadLease
                        lines = []
                        while (result := results.pop(written)) is not None:
                            lines.append(result_line(result) + "\n")
                            done_bytes = sizes.pop(written, 0)
                            queued_bytes -= done_bytes
                            self.budget.give(done_bytes)
                            ctx.metrics.observe_result(
                                result.enqueued_at, result.started_at, result.finished_at, now
                            )
                            if written in received_at:
                                ctx.metrics.stage_latency.labels("end_to_end").observe(
                                    now - received_at.pop(written)
                                )
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
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder
            self.budget.give(queued_bytes)  # frames this task will not see answered
        status = status.model_copy(update={"frames_done": written, "frames_total": written})
        if fatal:
            return status, fatal[0], None
        if decode_error and enqueued == 0:
            return status, ApiErrorBody(code="decode_failed", message=decode_error[0]), None
        decl = await asyncio.to_thread(probe_video, path)
        warn = truncation(decl, enqueued, decode_error[0] if decode_error else None, s.truncation_tolerance)
        if warn is not None:
            log.warning("video %s: %s", status.id, warn["message"])
        return status, None, (VideoWarning.model_validate(warn) if warn is not None else None)


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


def _write_json(path: Path, obj: object) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a reader sees the old file or the new one)."""
    part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    part.write_text(json.dumps(obj), encoding="utf-8")
    part.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
