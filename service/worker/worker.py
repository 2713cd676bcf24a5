"""The worker loop: Redis Streams consumer group -> pipeline -> per-session result streams.

Guarantees, and how they are kept:

- **Per-session order**: a session's frames are processed only by the holder of its
  lease (``SET lease:{s} worker NX PX lease_ms``) and only when ``seq == last_seq + 1``
  where ``last_seq`` is stored atomically with the tracker state. A frame already done
  (``seq <= last_seq``, e.g. redelivered after a crash) is acknowledged without being
  republished; a frame that is ahead, or whose session is leased by another worker, is
  re-queued (XADD a copy, then XACK + XDEL the original in one transaction) so nothing
  blocks and nothing is lost.
- **At-least-once, effectively once**: results are published first, then the new state
  is saved with the store's version check, then the jobs are acknowledged. A crash
  between publish and save republishes the same ``seq`` later (the gateway ignores a
  ``seq`` it already relayed); a crash between save and ack makes the job a duplicate,
  acknowledged without republishing.
- **Dead workers**: every ``claim_idle_ms / 2`` a worker XAUTOCLAIMs entries idle longer
  than ``claim_idle_ms``; a dead worker's leases expire after ``lease_ms``.
- **Redis restarts**: a connection error is retried every second; a restart that lost
  the data (no persistence) also lost the jobs stream and its group (``NOGROUP``), which
  the worker recreates and carries on. The lost jobs are the gateways' to re-queue.
- **Bounded**: processed jobs are deleted from the stream (so its length is the queue
  depth), result streams have a MAXLEN and a TTL, state has the session TTL, and
  consumers that vanished without pending jobs are removed from the group.

The parts: ``posestream.service.worker.jobs`` (every command on the jobs stream: read, claim,
ack, re-queue), ``posestream.service.worker.batching`` (which of a session's jobs run now, in
seq order), ``posestream.service.frames.decode_image`` (JPEG/PNG to RGB), this module (the loop: leases, one batch through the detector and
``posestream.tracker.session.SessionTracker``, publish, save, ack).

Each worker records its own metrics (``posestream.service.worker.metrics``: frames, batches, stage
latencies, re-queued and claimed jobs, errors); ``run_worker`` serves them over HTTP on
``worker_metrics_port``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import redis

from posestream.models.poses import FramePoses
from posestream.service.frames import decode_image
from posestream.service.leases import RELEASE_SCRIPT, RENEW_SCRIPT, default_owner_id
from posestream.service.messages import EXPIRED_PREFIX, JOBS_GROUP, FrameResult, RedisKeys
from posestream.service.pipelines.base import FrameInput, FramePipeline
from posestream.service.redis_types import stream_fields
from posestream.service.settings import Settings
from posestream.service.worker.batching import SeqOrder
from posestream.service.worker.jobs import JobEntry, JobQueue, ensure_group, is_nogroup
from posestream.service.worker.metrics import MetricsServer, WorkerMetrics
from posestream.service.worker.sessions import (
    SessionStore,
    StaleStateError,
    StoreUnavailableError,
    build_session_store,
    next_seq,
)
from posestream.tracker.session import Detected, SessionTracker
from posestream.tracker.state import TrackerState

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    """Consumer name of a worker without a configured id: ``host-pid-random``."""
    return default_owner_id()


@dataclass
class _SessionWork:
    session: str
    state: TrackerState | None
    version: int
    jobs: list[JobEntry]


class Worker:
    """One consumer of the jobs stream.

    Args:
        settings: service settings (keys, batching, leases, TTLs).
        pipeline: the frame pipeline (injected so tests and the CLI choose it): its detector runs
            on each batch, its tracker config steps the sessions (``SessionTracker`` over ``store``).
        client: a ``redis.Redis`` (bytes responses); one is made from the settings if None.
        store: the session state store; the tracker's Redis store by default.
        worker_id: consumer name; ``settings.worker_id`` or ``host-pid-random`` if None.
        metrics: where the loop records its metrics; a private set if None.
    """

    def __init__(
        self,
        settings: Settings,
        pipeline: FramePipeline,
        client: redis.Redis | None = None,
        store: SessionStore | None = None,
        worker_id: str | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.keys = RedisKeys(settings.redis_prefix)
        self.redis = client or redis.Redis.from_url(settings.redis_url)
        self.store = store or build_session_store(self.redis, settings)
        self.sessions = SessionTracker(self.store, pipeline.tracker_config)
        self.worker_id = worker_id or settings.worker_id or default_worker_id()
        self._renew = self.redis.register_script(RENEW_SCRIPT)
        self._release = self.redis.register_script(RELEASE_SCRIPT)
        self._stop = threading.Event()
        self._last_claim = 0.0
        self._idle_backoff = 0.0
        self.frames_processed = 0
        self.metrics = metrics or WorkerMetrics()
        self.jobs = JobQueue(self.redis, self.keys, settings, self.worker_id, self.metrics)
        self.order = SeqOrder(self.jobs, settings, self.metrics)
        ensure_group(self.redis, self.keys)

    # ---- lifecycle ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its current batch and return."""
        self._stop.set()

    def run(self) -> None:
        """Heartbeat and process batches until ``stop()`` (or SIGTERM via ``install_signal_handlers``)."""
        log.info("worker %s started (pipeline %s)", self.worker_id, self.pipeline.name)
        hb = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        self._heartbeat()
        hb.start()
        try:
            while not self._stop.is_set():
                self.metrics.last_loop.set(time.time())
                try:
                    self.run_once()
                except (redis.ConnectionError, redis.TimeoutError, StoreUnavailableError) as exc:
                    self.metrics.errors.labels("redis").inc()
                    log.warning("redis unavailable (%s); retrying", exc)
                    self._stop.wait(1.0)
                except redis.ResponseError as exc:
                    if not is_nogroup(exc):
                        raise
                    # Redis restarted without persistence (or the stream was deleted): the
                    # jobs stream and its group are gone. Make them again and carry on.
                    self.metrics.errors.labels("nogroup").inc()
                    log.warning("the jobs stream or its consumer group is gone (%s); recreating it", exc)
                    try:
                        ensure_group(self.redis, self.keys)
                    except redis.RedisError as again:
                        log.warning("recreating the consumer group failed (%s); retrying", again)
                        self._stop.wait(1.0)
        finally:
            self._stop.set()
            hb.join(timeout=5)
            try:
                self.redis.zrem(self.keys.workers, self.worker_id)
                pending = self.redis.xpending_range(
                    self.keys.jobs, JOBS_GROUP, "-", "+", 1, consumername=self.worker_id
                )
                if not pending:
                    self.redis.xgroup_delconsumer(self.keys.jobs, JOBS_GROUP, self.worker_id)
            except redis.RedisError:
                pass
            log.info("worker %s stopped after %d frames", self.worker_id, self.frames_processed)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT finish the current batch, then exit (graceful shutdown)."""

        def _handler(signum: int, _frame: object) -> None:
            log.info("signal %d: finishing the current batch", signum)
            self.stop()

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)

    def _heartbeat(self) -> None:
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.keys.workers, {self.worker_id: now})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now - 10 * self.settings.heartbeat_ttl_s)
        pipe.execute()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                self._heartbeat()
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)

    # ---- one batch ------------------------------------------------------------------------
    def run_once(self) -> int:
        """Read, process and acknowledge one batch; returns the number of frames processed."""
        entries = self.jobs.read_batch()
        if time.monotonic() - self._last_claim > self.settings.claim_idle_ms / 2000.0:
            self._last_claim = time.monotonic()
            entries += self.jobs.claim_stale()
        if not entries:
            return 0
        done = self._process_entries(entries)
        if done == 0:
            # Only re-queued frames (another worker holds the session, or a frame before
            # them is still pending): back off, doubling up to 0.32 s while nothing runs,
            # so a session waiting for a seq cannot spin the stream.
            self._idle_backoff = min(0.32, max(0.01, 2 * self._idle_backoff))
            self._stop.wait(self._idle_backoff)
        else:
            self._idle_backoff = 0.0
        return done

    def _acquire(self, session: str) -> bool:
        key = self.keys.lease(session)
        if self.redis.set(key, self.worker_id, nx=True, px=self.settings.lease_ms):
            return True
        return bool(self._renew(keys=[key], args=[self.worker_id, self.settings.lease_ms]))

    def _release_lease(self, session: str) -> None:
        try:
            self._release(keys=[self.keys.lease(session)], args=[self.worker_id])
        except redis.RedisError as exc:
            log.warning("lease release for %s failed (it expires anyway): %s", session, exc)

    # ---- the core -------------------------------------------------------------------------
    def _process_entries(self, entries: list[JobEntry]) -> int:
        by_session: dict[str, list[JobEntry]] = defaultdict(list)
        for e in entries:
            by_session[e.job.session].append(e)
        work: list[_SessionWork] = []
        for session, items in by_session.items():
            items.sort(key=lambda e: e.job.seq)
            if not self._acquire(session):
                self.jobs.requeue(items, "session_leased")
                continue
            try:
                with self.metrics.stage_latency.labels("state_load").time():
                    state, version = self.sessions.load(session)
                runnable = self.order.select(state, items)
            except Exception:
                self._release_lease(session)
                raise
            if runnable:
                work.append(_SessionWork(session, state, version, runnable))
            else:
                self._release_lease(session)
        if not work:
            return 0
        try:
            return self._run_and_commit(work)
        finally:
            for w in work:
                self._release_lease(w.session)

    def _run_and_commit(self, work: list[_SessionWork]) -> int:
        m = self.metrics
        m.batches.inc()
        m.batch_size.observe(sum(len(w.jobs) for w in work))
        m.batch_sessions.observe(len(work))
        m.sessions_with_state.set(sum(w.state is not None for w in work))
        started = time.time()
        batch: list[FrameInput] = []
        owners: list[tuple[int, int]] = []  # (work index, job index) per batch slot
        errors: dict[tuple[int, int], str] = {}
        expired = self._expired(work)
        for wi, w in enumerate(work):
            for ji, e in enumerate(w.jobs):
                if e.lost:
                    errors[(wi, ji)] = e.lost
                    continue
                if (wi, ji) in expired:
                    errors[(wi, ji)] = expired[(wi, ji)]
                    continue
                with m.stage_latency.labels("decode").time():
                    rgb, err = decode_image(e.job.image, self.settings.max_frame_pixels)
                if rgb is None:
                    errors[(wi, ji)] = err
                    continue
                batch.append(FrameInput(w.session, e.job.seq, e.job.frame_index, e.job.timestamp, rgb))
                owners.append((wi, ji))
        detected = self._detect(batch, owners, errors) if batch else {}
        processed = 0
        for wi, w in enumerate(work):
            # A failed frame is stepped over with no detections, so the frames after it see
            # the state they would have seen (and the cursor advances by one per frame).
            state = w.state
            steps: list[tuple[FramePoses, str]] = []
            for ji, e in enumerate(w.jobs):
                job = e.job
                poses = None
                if (wi, ji) in detected:
                    try:
                        state, poses = self.sessions.track(state, detected[(wi, ji)])
                    except Exception as exc:  # a frame error must never stall a session
                        m.errors.labels("pipeline").inc()
                        log.exception("tracking failed on frame seq %d of %s", job.seq, w.session)
                        errors[(wi, ji)] = f"pipeline error: {type(exc).__name__}: {exc}"
                if poses is None:
                    state = self.sessions.skip(state, job.frame_index, job.timestamp, job.width, job.height)
                    poses = FramePoses.empty(job.frame_index, job.timestamp, job.width, job.height)
                    if (wi, ji) in expired:
                        m.expired.inc()
                    else:
                        m.errors.labels("frame").inc()
                    steps.append((poses, errors.get((wi, ji), "not processed")))
                else:
                    steps.append((poses, ""))
                if next_seq(state) != job.seq + 1:
                    log.error("pipeline %s broke the state invariant: frame_index %d after seq %d",
                              self.pipeline.name, next_seq(state), job.seq)  # fmt: skip
            finished = time.time()
            pipe = self.redis.pipeline(transaction=False)
            rkey = self.keys.results(w.session)
            for e, (poses, err) in zip(w.jobs, steps, strict=True):
                result = FrameResult.from_poses(
                    e.job.seq, poses, error=err, enqueued_at=e.job.enqueued_at,
                    started_at=started, finished_at=finished, worker=self.worker_id,
                )  # fmt: skip
                pipe.xadd(
                    rkey,
                    stream_fields(result.to_fields()),
                    maxlen=self.settings.results_maxlen,
                    approximate=True,
                )
            pipe.expire(rkey, self.settings.session_ttl_s)
            with m.stage_latency.labels("publish").time():
                pipe.execute()
            try:
                with m.stage_latency.labels("state_save").time():
                    self.sessions.save(w.session, state, w.version)  # type: ignore[arg-type]
            except StaleStateError:
                m.errors.labels("stale_state").inc()
                # Someone else advanced this session (our lease expired while we worked).
                # Our results carry the same seqs as theirs, which the gateway dedups;
                # leave the rest to whoever owns the session now.
                current, _ = self.sessions.load(w.session)
                last = next_seq(current) - 1
                log.warning(
                    "state of %s changed under us (now at seq %d); re-queueing the rest", w.session, last
                )
                self.jobs.ack([e.entry_id for e in w.jobs if e.job.seq <= last and e.entry_id])
                self.jobs.requeue([e for e in w.jobs if e.job.seq > last and e.entry_id], "stale_state")
                continue
            self.jobs.ack([e.entry_id for e in w.jobs if e.entry_id])
            processed += len(w.jobs)
        self.frames_processed += processed
        m.frames_processed.inc(processed)
        return processed

    def _expired(self, work: list[_SessionWork]) -> dict[tuple[int, int], str]:
        """(work index, job index) -> the error of each live job past its latency budget now.

        An expired frame is answered at once, stepped over like a failed one (the tracker
        keeps its tracks and the frames after it run), so a saturated worker spends its time
        on frames young enough to matter, whatever the number of live sessions.
        """
        deadlines = {(wi, ji): (d, e.job.max_age_ms) for wi, w in enumerate(work) for ji, e in enumerate(w.jobs)
                     if not e.lost and (d := e.deadline_ms) is not None}  # fmt: skip
        if not deadlines:
            return {}
        now = self.jobs.server_time_ms()
        return {
            key: f"{EXPIRED_PREFIX}: the frame waited {now - deadline + budget} ms in the queue, past the "
            f"{budget} ms its live budget (live_max_age_ms) had left when it was queued"
            for key, (deadline, budget) in deadlines.items()
            if now > deadline
        }

    def _detect(
        self, batch: list[FrameInput], owners: list[tuple[int, int]], errors: dict[tuple[int, int], str]
    ) -> dict[tuple[int, int], Detected]:
        """The detector on one batch (every session's frames); a failure marks the whole batch failed."""
        try:
            with self.metrics.stage_latency.labels("pipeline").time():
                return dict(zip(owners, self.pipeline.detector.detect(batch), strict=True))
        except Exception as exc:  # a frame error must never stall a session
            self.metrics.errors.labels("pipeline").inc()
            log.exception("pipeline failed on a batch of %d frame(s)", len(batch))
            for o in owners:
                errors[o] = f"pipeline error: {type(exc).__name__}: {exc}"
            return {}


def run_worker(settings: Settings, pipeline_factory: Callable[[], FramePipeline]) -> int:
    """The worker's main: open the metrics endpoint, load the models, serve until SIGTERM.

    Returns an exit code: 0 after a graceful stop, 1 when the metrics endpoint cannot be
    opened (checked before the models load, so a bad port fails in a second).
    """
    metrics = WorkerMetrics()
    server = None
    if settings.worker_metrics_port:
        try:
            server = MetricsServer(
                metrics.registry, settings.worker_metrics_port, settings.worker_metrics_addr
            )
        except OSError as exc:
            log.error(
                "cannot serve worker metrics on %s:%d (%s): set POSESTREAM_WORKER_METRICS_PORT to a free port "
                "(each worker on one host needs its own; 0 turns the endpoint off) and POSESTREAM_WORKER_METRICS_ADDR "
                "to an address of this host",
                settings.worker_metrics_addr, settings.worker_metrics_port, exc.strerror or exc,
            )  # fmt: skip
            return 1
        log.info("worker metrics on http://%s:%d/metrics", settings.worker_metrics_addr, server.port)
    try:
        worker = Worker(settings, pipeline_factory(), metrics=metrics)
        worker.install_signal_handlers()
        worker.run()
    finally:
        if server is not None:
            server.close()
    return 0
