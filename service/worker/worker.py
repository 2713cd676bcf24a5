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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from posestream.models.poses import FramePoses
from posestream.service.frames import decode_image
from posestream.service.leases import RELEASE_SCRIPT, RENEW_SCRIPT, default_owner_id
from posestream.service.messages import JOBS_GROUP, FrameJob, FrameResult, RedisKeys
from posestream.service.pipeline import FrameInput, FramePipeline
from posestream.service.settings import Settings
from posestream.service.worker.metrics import MetricsServer, WorkerMetrics
from posestream.service.worker.sessions import (
    SessionStore,
    StaleStateError,
    StoreUnavailableError,
    build_session_store,
    next_seq,
)

log = logging.getLogger(__name__)

# How long an idle worker blocks on XREADGROUP; it bounds how late a stop is noticed.
_IDLE_BLOCK_MS = 500
# A consumer with nothing pending that has not touched the group for this long is gone.
_CONSUMER_GONE_MS = 10 * 60 * 1000


# Field a re-queued job gets when it first waits for a missing earlier seq (unix seconds).
_AHEAD_SINCE = b"ahead_since"
# KEYS[1] jobs stream; ARGV[1] session, ARGV[2] lo, ARGV[3] hi. The smallest seq in [lo, hi)
# of the session's jobs on the stream, or -1. Scans in chunks inside Redis (no images move).
_FIND_SEQ_SCRIPT = """
local best, start = -1, '-'
local lo, hi = tonumber(ARGV[2]), tonumber(ARGV[3])
while true do
  local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 256)
  if #entries == 0 then return best end
  for _, e in ipairs(entries) do
    local f, s, q = e[2], nil, nil
    for i = 1, #f, 2 do
      if f[i] == 'session' then s = f[i + 1] elseif f[i] == 'seq' then q = tonumber(f[i + 1]) end
    end
    if s == ARGV[1] and q and q >= lo and q < hi and (best < 0 or q < best) then best = q end
  end
  start = '(' .. entries[#entries][1]
end
"""

# KEYS[1] jobs stream; ARGV[1] group, ARGV[2] maxlen, then per job: entry id, field count N,
# N field/value items. Acknowledges each job and queues it again only if it was still on the
# stream: a job that DELETE purged meanwhile (XACK + XDEL of a video's jobs) stays gone.
# Returns how many were queued again.
_REQUEUE_SCRIPT = """
local i, added = 3, 0
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('XACK', KEYS[1], ARGV[1], id)
  if redis.call('XDEL', KEYS[1], id) == 1 then
    local fields = {}
    for j = 1, n do fields[j] = ARGV[i + 1 + j] end
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
    added = added + 1
  end
  i = i + 2 + n
end
return added
"""

def default_worker_id() -> str:
    """Consumer name of a worker without a configured id: ``host-pid-random``."""
    return default_owner_id()


def is_nogroup(exc: redis.ResponseError) -> bool:
    """Whether Redis refused a command because the jobs stream or its consumer group does not exist.

    ``NOGROUP`` on any stream command; ``UNBLOCKED`` on a blocking read whose stream was
    deleted meanwhile (FLUSHALL, DEL).
    """
    return str(exc).startswith(("NOGROUP", "UNBLOCKED"))


def ensure_group(client: redis.Redis, keys: RedisKeys) -> None:
    """Create the jobs stream and its consumer group if missing (idempotent)."""
    try:
        client.xgroup_create(keys.jobs, JOBS_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclass
class _Entry:
    entry_id: bytes | None  # None: a seq declared lost (no job on the stream)
    fields: dict[bytes, bytes]
    job: FrameJob
    lost: str = ""  # why the seq is declared lost; it is published as a failed frame


@dataclass
class _SessionWork:
    session: str
    state: object | None
    version: object
    jobs: list[_Entry]


class Worker:
    """One consumer of the jobs stream.

    Args:
        settings: service settings (keys, batching, leases, TTLs).
        pipeline: the frame pipeline (injected so tests and the CLI choose it).
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
        self.worker_id = worker_id or settings.worker_id or default_worker_id()
        self._renew = self.redis.register_script(RENEW_SCRIPT)
        self._release = self.redis.register_script(RELEASE_SCRIPT)
        self._find_seq = self.redis.register_script(_FIND_SEQ_SCRIPT)
        self._requeue_script = self.redis.register_script(_REQUEUE_SCRIPT)
        self._stop = threading.Event()
        self._last_claim = 0.0
        self._idle_backoff = 0.0
        self._gap_scans: dict[str, float] = {}  # session -> when its missing seq was last looked for
        self.frames_processed = 0
        self.metrics = metrics or WorkerMetrics()
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
                pending = self.redis.xpending_range(self.keys.jobs, JOBS_GROUP, "-", "+", 1, consumername=self.worker_id)
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
        entries = self._read_batch()
        if time.monotonic() - self._last_claim > self.settings.claim_idle_ms / 2000.0:
            self._last_claim = time.monotonic()
            entries += self._claim_stale()
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

    def _parse(self, raw: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> list[_Entry]:
        out = []
        for entry_id, fields in raw:
            if not fields:  # deleted while pending (trimmed)
                self._ack([entry_id])
                continue
            try:
                out.append(_Entry(entry_id, fields, FrameJob.from_fields(fields)))
            except (KeyError, ValueError) as exc:
                self.metrics.errors.labels("malformed_job").inc()
                log.error("dropping malformed job %s: %s", entry_id, exc)
                self._ack([entry_id])
        return out

    def _read_batch(self) -> list[_Entry]:
        s = self.settings
        got = self.redis.xreadgroup(JOBS_GROUP, self.worker_id, {self.keys.jobs: ">"}, count=s.batch_size, block=_IDLE_BLOCK_MS)
        raw = [e for _, es in got for e in es] if got else []
        if raw:
            # Top up the batch for at most batch_wait_ms. Polled without BLOCK: Redis resolves
            # blocking timeouts only every 1/hz seconds (100 ms by default), far above a few ms.
            deadline = time.monotonic() + s.batch_wait_ms / 1000.0
            while len(raw) < s.batch_size:
                more = self.redis.xreadgroup(
                    JOBS_GROUP, self.worker_id, {self.keys.jobs: ">"}, count=s.batch_size - len(raw)
                )
                if more:
                    raw += [e for _, es in more for e in es]
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 0.001))
        return self._parse(raw)

    def _claim_stale(self) -> list[_Entry]:
        """Take over jobs a dead (or stuck) worker left pending; prune vanished consumers."""
        s = self.settings
        claimed: list = []
        start = "0-0"
        while len(claimed) < s.batch_size:
            res = self.redis.xautoclaim(
                self.keys.jobs, JOBS_GROUP, self.worker_id, s.claim_idle_ms, start_id=start, count=s.batch_size
            )
            next_id, entries = res[0], res[1]
            deleted = res[2] if len(res) > 2 else []
            if deleted:
                self._ack(deleted)
            claimed += entries
            if next_id in (b"0-0", "0-0"):
                break
            start = next_id
        if claimed:
            self.metrics.claimed.inc(len(claimed))
            log.warning("claimed %d stale job(s) from dead or stuck workers", len(claimed))
        try:
            for c in self.redis.xinfo_consumers(self.keys.jobs, JOBS_GROUP):
                if c["pending"] == 0 and c["idle"] > _CONSUMER_GONE_MS and c["name"].decode() != self.worker_id:
                    self.redis.xgroup_delconsumer(self.keys.jobs, JOBS_GROUP, c["name"])
        except redis.RedisError as exc:
            log.debug("consumer pruning skipped: %s", exc)
        return self._parse(claimed)

    # ---- Redis helpers --------------------------------------------------------------------
    def _ack(self, entry_ids: Sequence[bytes]) -> None:
        if not entry_ids:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(self.keys.jobs, JOBS_GROUP, *entry_ids)
        pipe.xdel(self.keys.jobs, *entry_ids)
        with self.metrics.stage_latency.labels("ack").time():
            pipe.execute()

    def _requeue(self, entries: Sequence[_Entry], reason: str) -> None:
        if not entries:
            return
        self.metrics.requeued.labels(reason).inc(len(entries))
        args: list[bytes | str | int] = [JOBS_GROUP, self.settings.jobs_maxlen]
        for e in entries:
            if reason == "ahead" and _AHEAD_SINCE not in e.fields:  # when it began waiting for a missing seq
                e.fields = {**e.fields, _AHEAD_SINCE: repr(time.time()).encode()}
            assert e.entry_id is not None  # only jobs read from the stream are re-queued
            args += [e.entry_id, 2 * len(e.fields)]
            for k, v in e.fields.items():
                args += [k, v]
        self._requeue_script(keys=[self.keys.jobs], args=args)

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
    def _process_entries(self, entries: list[_Entry]) -> int:
        by_session: dict[str, list[_Entry]] = defaultdict(list)
        for e in entries:
            by_session[e.job.session].append(e)
        work: list[_SessionWork] = []
        for session, items in by_session.items():
            items.sort(key=lambda e: e.job.seq)
            if not self._acquire(session):
                self._requeue(items, "session_leased")
                continue
            try:
                with self.metrics.stage_latency.labels("state_load").time():
                    state, version = self.store.load(session)
                runnable = self._select(state, items)
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

    def _select(self, state: object | None, items: list[_Entry]) -> list[_Entry]:
        """Split a session's entries into done (ack), runnable (returned) and ahead (re-queue)."""
        expected = next_seq(state)
        done, runnable, ahead = [], [], []
        for e in items:
            if e.job.seq == expected:
                runnable.append(e)
                expected += 1
            elif e.job.seq < expected:  # processed before (redelivered), or a copy within this batch
                done.append(e)
            else:  # a frame before it is still pending somewhere
                ahead.append(e)
        if ahead and not runnable:
            ahead = self._lost_before(ahead, expected, runnable)
        if done:
            self.metrics.duplicates.inc(len(done))
            log.info("acknowledging %d frame(s) of %s already processed", len(done), items[0].job.session)
            self._ack([e.entry_id for e in done])
        self._requeue(ahead, "ahead")
        return runnable

    def _lost_before(self, ahead: list[_Entry], expected: int, runnable: list[_Entry]) -> list[_Entry]:
        """Seqs a session's ahead frames wait for: declare those gone from the jobs stream lost.

        Only once a frame has waited ``seq_gap_timeout_ms``, and at most once per session per
        timeout (the scan reads the whole stream inside Redis). A job is on the stream from its
        XADD until it is acknowledged (pending or re-queued included), so a missing seq that
        is not on it was lost by Redis: it gets a ``frame_lost`` result (appended to
        ``runnable``) and the frames after it run. Returns the frames still waiting.
        """
        timeout = self.settings.seq_gap_timeout_ms / 1000
        since = min(float(e.fields.get(_AHEAD_SINCE, b"inf")) for e in ahead)
        first = ahead[0].job
        now = time.monotonic()
        if time.time() - since <= timeout or now - self._gap_scans.get(first.session, -timeout) <= timeout:
            return ahead  # not waited long enough, or this session's stream was scanned recently
        if len(self._gap_scans) > 10_000:  # forget sessions not scanned for a while (bounded memory)
            self._gap_scans = {k: t for k, t in self._gap_scans.items() if now - t <= timeout}
        self._gap_scans[first.session] = now
        found = int(self._find_seq(keys=[self.keys.jobs], args=[first.session, expected, first.seq]))
        if found == expected:  # still queued or pending: wait another timeout before looking again
            for e in ahead:
                e.fields = {k: v for k, v in e.fields.items() if k != _AHEAD_SINCE}
            return ahead
        upto = first.seq if found < 0 else found
        log.error("session %s: seqs %d-%d are not on the jobs stream; declaring them lost", first.session, expected, upto - 1)
        for seq in range(expected, upto):
            # The lost job's own index and time are gone with it. An upload numbers its frames
            # like its seqs (index == seq), so stepping back from the first waiting frame is
            # exact there; for a stream (whose indices may skip) it is an estimate, and the
            # stream relay reports only the seq of a lost frame.
            back = first.seq - seq
            update = {
                "seq": seq,
                "frame_index": first.frame_index - back,
                "timestamp": first.timestamp * seq / first.seq if first.seq else 0.0,
                "image": b"",
            }
            lost = first.model_copy(update=update)
            runnable.append(_Entry(None, {}, lost, f"frame_lost: the job of seq {seq} was lost before processing"))
        expected, still = upto, []
        for e in ahead:
            if e.job.seq == expected:
                runnable.append(e)
                expected += 1
            else:
                still.append(e)
        return still

    def _run_and_commit(self, work: list[_SessionWork]) -> int:
        m = self.metrics
        m.batches.inc()
        m.batch_size.observe(sum(len(w.jobs) for w in work))
        m.batch_sessions.observe(len(work))
        m.sessions_with_state.set(sum(w.state is not None for w in work))
        started = time.time()
        batch: list[FrameInput] = []
        states: list[object] = []
        owners: list[tuple[int, int]] = []  # (work index, job index) per batch slot
        errors: dict[tuple[int, int], str] = {}
        for wi, w in enumerate(work):
            for ji, e in enumerate(w.jobs):
                if e.lost:
                    errors[(wi, ji)] = e.lost
                    continue
                with m.stage_latency.labels("decode").time():
                    rgb, err = decode_image(e.job.image, self.settings.max_frame_pixels)
                if rgb is None:
                    errors[(wi, ji)] = err
                    continue
                batch.append(FrameInput(w.session, e.job.seq, e.job.frame_index, e.job.timestamp, rgb))
                states.append(w.state)
                owners.append((wi, ji))
        outputs: dict[tuple[int, int], tuple[FramePoses, object]] = {}
        if batch:
            if any(errors):
                # A failed frame splits its session's run: the frames after it must see the
                # state stepped over the failure, so run them in a second pass.
                batch, states, owners, later = _split_after_errors(batch, states, owners, errors)
            else:
                later = []
            outputs = self._run_pipeline(batch, states, owners, errors)
            for frames, slots in later:
                outputs.update(self._run_sequential(work, frames, slots, outputs, errors))
        finished = time.time()
        processed = 0
        for wi, w in enumerate(work):
            state = w.state
            pipe = self.redis.pipeline(transaction=False)
            rkey = self.keys.results(w.session)
            for ji, e in enumerate(w.jobs):
                job = e.job
                if (wi, ji) in outputs:
                    poses, state = outputs[(wi, ji)]
                    err = ""
                else:  # step over the failed frame with no detections: the cursor advances
                    state = self._empty_step(state, job)
                    poses = FramePoses.empty(job.frame_index, job.timestamp, job.width, job.height)
                    err = errors.get((wi, ji), "not processed")
                    m.errors.labels("frame").inc()
                if next_seq(state) != job.seq + 1:
                    log.error("pipeline %s broke the state invariant: frame_index %d after seq %d",
                              self.pipeline.name, next_seq(state), job.seq)  # fmt: skip
                result = FrameResult.from_poses(
                    job.seq, poses, error=err, enqueued_at=job.enqueued_at,
                    started_at=started, finished_at=finished, worker=self.worker_id,
                )  # fmt: skip
                pipe.xadd(rkey, result.to_fields(), maxlen=self.settings.results_maxlen, approximate=True)
            pipe.expire(rkey, self.settings.session_ttl_s)
            with m.stage_latency.labels("publish").time():
                pipe.execute()
            try:
                with m.stage_latency.labels("state_save").time():
                    self.store.save(w.session, state, w.version)
            except StaleStateError:
                m.errors.labels("stale_state").inc()
                # Someone else advanced this session (our lease expired while we worked).
                # Our results carry the same seqs as theirs, which the gateway dedups;
                # leave the rest to whoever owns the session now.
                current, _ = self.store.load(w.session)
                last = next_seq(current) - 1
                log.warning("state of %s changed under us (now at seq %d); re-queueing the rest", w.session, last)
                self._ack([e.entry_id for e in w.jobs if e.job.seq <= last and e.entry_id])
                self._requeue([e for e in w.jobs if e.job.seq > last and e.entry_id], "stale_state")
                continue
            self._ack([e.entry_id for e in w.jobs if e.entry_id])
            processed += len(w.jobs)
        self.frames_processed += processed
        m.frames_processed.inc(processed)
        return processed

    def _run_pipeline(self, batch, states, owners, errors):  # type: ignore[no-untyped-def]
        try:
            with self.metrics.stage_latency.labels("pipeline").time():
                return dict(zip(owners, self.pipeline.process(batch, states), strict=True))
        except Exception as exc:  # a frame error must never stall a session
            self.metrics.errors.labels("pipeline").inc()
            log.exception("pipeline failed on a batch of %d frame(s)", len(batch))
            for o in owners:
                errors[o] = f"pipeline error: {type(exc).__name__}: {exc}"
            return {}

    def _run_sequential(self, work, frames, slots, outputs, errors):  # type: ignore[no-untyped-def]
        """Frames after a failed frame of the same session, one at a time."""
        out = {}
        for frame, (wi, ji) in zip(frames, slots, strict=True):
            state = work[wi].state
            for j in range(ji):  # the state after the session's previous frame
                if (wi, j) in out:
                    state = out[(wi, j)][1]
                elif (wi, j) in outputs:
                    state = outputs[(wi, j)][1]
                else:
                    state = self._empty_step(state, work[wi].jobs[j].job)
            out.update(self._run_pipeline([frame], [state], [(wi, ji)], errors))
        return out

    def _empty_step(self, state: object | None, job: FrameJob) -> object:
        from posestream.tracker.detections import Detections, FrameInfo
        from posestream.tracker.state import TrackerState
        from posestream.tracker.step import step

        config = getattr(self.pipeline, "tracker_config", None)
        if config is None:
            from posestream.tracker.config import TrackerConfig

            config = TrackerConfig()
        info = FrameInfo(job.frame_index, job.timestamp, job.width, job.height)
        new_state, _ = step(state if state is not None else TrackerState.initial(), Detections.empty(info), config)
        return new_state


def _split_after_errors(batch, states, owners, errors):  # type: ignore[no-untyped-def]
    """Keep in the batch each session's frames before its first failed frame; return the rest apart."""
    first_error: dict[int, int] = {}
    for wi, ji in errors:
        first_error[wi] = min(ji, first_error.get(wi, ji))
    keep_b, keep_s, keep_o, later_f, later_o = [], [], [], [], []
    for f, st, o in zip(batch, states, owners, strict=True):
        if o[0] in first_error and o[1] > first_error[o[0]]:
            later_f.append(f)
            later_o.append(o)
        else:
            keep_b.append(f)
            keep_s.append(st)
            keep_o.append(o)
    return keep_b, keep_s, keep_o, ([(later_f, later_o)] if later_f else [])


def run_worker(settings: Settings, pipeline_factory: Callable[[], FramePipeline]) -> int:
    """The worker's main: open the metrics endpoint, load the models, serve until SIGTERM.

    Returns an exit code: 0 after a graceful stop, 1 when the metrics endpoint cannot be
    opened (checked before the models load, so a bad port fails in a second).
    """
    metrics = WorkerMetrics()
    server = None
    if settings.worker_metrics_port:
        try:
            server = MetricsServer(metrics.registry, settings.worker_metrics_port, settings.worker_metrics_addr)
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
