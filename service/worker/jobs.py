"""The jobs stream seen from one worker: read and top up a batch, claim dead workers' jobs, acknowledge, re-queue.

Every Redis command on the jobs stream (``RedisKeys.jobs`` and its consumer group) that a
worker runs is here; the loop (``posestream.service.worker.worker``) decides what to do with
the jobs, ``posestream.service.worker.batching`` in which order a session's jobs may run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import redis

from posestream.service.messages import JOBS_GROUP, FrameJob, RedisKeys
from posestream.service.redis_types import sync_reply
from posestream.service.settings import Settings
from posestream.service.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

# How long an idle worker blocks on XREADGROUP; it bounds how late a stop is noticed.
IDLE_BLOCK_MS = 500
# A consumer with nothing pending that has not touched the group for this long is gone.
_CONSUMER_GONE_MS = 10 * 60 * 1000
# XREADGROUP's reply on a bytes client: [(stream, [(entry id, fields), ...]), ...], None on timeout.
_StreamsReply: TypeAlias = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None


# Field a re-queued job gets when it first waits for a missing earlier seq (unix seconds).
AHEAD_SINCE = b"ahead_since"
# Field a re-queued live job gets: its deadline in Redis-clock ms (the first XADD's id + its budget),
# so the budget keeps counting from the first XADD however often the job is re-queued.
EXPIRES_MS = b"expires_ms"
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
class JobEntry:
    """One job read from the jobs stream (or a seq declared lost), with its raw fields for re-queueing."""

    entry_id: bytes | None  # None: a seq declared lost (no job on the stream)
    fields: dict[bytes, bytes]
    job: FrameJob
    lost: str = ""  # why the seq is declared lost; it is published as a failed frame

    @property
    def stream_id(self) -> bytes:
        """``entry_id`` of a job read from the stream (to ack it); a seq declared lost has none."""
        if self.entry_id is None:
            raise ValueError(f"seq {self.job.seq} of {self.job.session} was declared lost: no stream entry")
        return self.entry_id

    @property
    def deadline_ms(self) -> int | None:
        """Redis-clock ms after which this live job is answered as expired; None = no budget.

        The budget (``FrameJob.max_age_ms``) counts from the job's first XADD: the entry id's
        millisecond part (Redis's clock), or the deadline a re-queue wrote into ``EXPIRES_MS``.
        """
        if not self.job.max_age_ms or self.entry_id is None:
            return None
        if EXPIRES_MS in self.fields:
            return int(self.fields[EXPIRES_MS])
        return int(self.entry_id.split(b"-", 1)[0]) + self.job.max_age_ms


class JobQueue:
    """One worker's consumer of the jobs stream.

    Args:
        client: a ``redis.Redis`` (bytes responses).
        keys: the service's key names.
        settings: batching, claiming and stream-length settings.
        worker_id: this worker's consumer name in the group.
        metrics: where re-queued, claimed and malformed jobs and ack latencies are counted.
    """

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, settings: Settings, worker_id: str, metrics: WorkerMetrics
    ) -> None:
        self.redis = client
        self.keys = keys
        self.settings = settings
        self.worker_id = worker_id
        self.metrics = metrics
        self._find_seq = client.register_script(_FIND_SEQ_SCRIPT)
        self._requeue_script = client.register_script(_REQUEUE_SCRIPT)

    def parse(self, raw: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> list[JobEntry]:
        out = []
        for entry_id, fields in raw:
            if not fields:  # deleted while pending (trimmed)
                self.ack([entry_id])
                continue
            try:
                out.append(JobEntry(entry_id, fields, FrameJob.from_fields(fields)))
            except (KeyError, ValueError) as exc:
                self.metrics.errors.labels("malformed_job").inc()
                log.error("dropping malformed job %s: %s", entry_id, exc)
                self.ack([entry_id])
        return out

    def read_batch(self) -> list[JobEntry]:
        s = self.settings
        got: _StreamsReply = sync_reply(
            self.redis.xreadgroup(
                JOBS_GROUP, self.worker_id, {self.keys.jobs: ">"}, count=s.batch_size, block=IDLE_BLOCK_MS
            )
        )
        raw = [e for _, es in got for e in es] if got else []
        if raw:
            # Top up the batch for at most batch_wait_ms. Polled without BLOCK: Redis resolves
            # blocking timeouts only every 1/hz seconds (100 ms by default), far above a few ms.
            deadline = time.monotonic() + s.batch_wait_ms / 1000.0
            while len(raw) < s.batch_size:
                more: _StreamsReply = sync_reply(
                    self.redis.xreadgroup(
                        JOBS_GROUP, self.worker_id, {self.keys.jobs: ">"}, count=s.batch_size - len(raw)
                    )
                )
                if more:
                    raw += [e for _, es in more for e in es]
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 0.001))
        return self.parse(raw)

    def claim_stale(self) -> list[JobEntry]:
        """Take over jobs a dead (or stuck) worker left pending; prune vanished consumers."""
        s = self.settings
        claimed: list = []
        start = "0-0"
        while len(claimed) < s.batch_size:
            # [next start id, claimed entries, ids deleted while pending (Redis >= 7)]
            res: list[Any] = sync_reply(
                self.redis.xautoclaim(
                    self.keys.jobs,
                    JOBS_GROUP,
                    self.worker_id,
                    s.claim_idle_ms,
                    start_id=start,
                    count=s.batch_size,
                )
            )
            next_id, entries = res[0], res[1]
            deleted = res[2] if len(res) > 2 else []
            if deleted:
                self.ack(deleted)
            claimed += entries
            if next_id in (b"0-0", "0-0"):
                break
            start = next_id
        if claimed:
            self.metrics.claimed.inc(len(claimed))
            log.warning("claimed %d stale job(s) from dead or stuck workers", len(claimed))
        try:
            consumers: list[dict[str, Any]] = sync_reply(
                self.redis.xinfo_consumers(self.keys.jobs, JOBS_GROUP)
            )
            for c in consumers:
                if (
                    c["pending"] == 0
                    and c["idle"] > _CONSUMER_GONE_MS
                    and c["name"].decode() != self.worker_id
                ):
                    self.redis.xgroup_delconsumer(self.keys.jobs, JOBS_GROUP, c["name"])
        except redis.RedisError as exc:
            log.debug("consumer pruning skipped: %s", exc)
        return self.parse(claimed)

    def ack(self, entry_ids: Sequence[bytes]) -> None:
        if not entry_ids:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(self.keys.jobs, JOBS_GROUP, *entry_ids)
        pipe.xdel(self.keys.jobs, *entry_ids)
        with self.metrics.stage_latency.labels("ack").time():
            pipe.execute()

    def requeue(self, entries: Sequence[JobEntry], reason: str) -> None:
        if not entries:
            return
        self.metrics.requeued.labels(reason).inc(len(entries))
        args: list[bytes | str | int] = [JOBS_GROUP, self.settings.jobs_maxlen]
        for e in entries:
            if reason == "ahead" and AHEAD_SINCE not in e.fields:  # when it began waiting for a missing seq
                e.fields = {**e.fields, AHEAD_SINCE: repr(time.time()).encode()}
            deadline = e.deadline_ms
            if deadline is not None and EXPIRES_MS not in e.fields:  # the new entry id is later
                e.fields = {**e.fields, EXPIRES_MS: str(deadline).encode()}
            assert e.entry_id is not None  # only jobs read from the stream are re-queued
            args += [e.entry_id, 2 * len(e.fields)]
            for k, v in e.fields.items():
                args += [k, v]
        self._requeue_script(keys=[self.keys.jobs], args=args)

    def server_time_ms(self) -> int:
        """Redis's clock in ms: the clock of entry ids, on which live frames' budgets are measured."""
        seconds, micros = sync_reply(self.redis.time())
        return int(seconds) * 1000 + int(micros) // 1000

    def find_seq(self, session: str, lo: int, hi: int) -> int:
        """The smallest seq in ``[lo, hi)`` of ``session``'s jobs still on the stream (queued or pending), or -1."""
        return int(self._find_seq(keys=[self.keys.jobs], args=[session, lo, hi]))
