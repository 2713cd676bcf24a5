"""Which of a session's jobs may run now, in seq order.

A session's frames must be tracked in ``seq`` order, one worker at a time: ``SeqOrder.select``
splits the jobs a worker read for one session into done (redelivered: acknowledged),
runnable (the next seqs, in order) and ahead (a seq before them is missing: re-queued), and
declares a missing seq lost once it is gone from the jobs stream for ``seq_gap_timeout_ms``.
"""

from __future__ import annotations

import logging
import time

from posestream.service.messages import LOST_PREFIX
from posestream.service.settings import Settings
from posestream.service.worker.jobs import AHEAD_SINCE, JobEntry, JobQueue
from posestream.service.worker.metrics import WorkerMetrics
from posestream.service.worker.sessions import next_seq

log = logging.getLogger(__name__)


class SeqOrder:
    """The seq-order rules of one worker (it remembers when it last scanned for each session's gap).

    Args:
        jobs: the worker's jobs stream (acks, re-queues, the gap scan).
        settings: ``seq_gap_timeout_ms``.
        metrics: counts duplicates.
    """

    def __init__(self, jobs: JobQueue, settings: Settings, metrics: WorkerMetrics) -> None:
        self.jobs = jobs
        self.settings = settings
        self.metrics = metrics
        self._gap_scans: dict[str, float] = {}  # session -> when its missing seq was last looked for

    def select(self, state: object | None, items: list[JobEntry]) -> list[JobEntry]:
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
            self.jobs.ack([e.stream_id for e in done])
        self.jobs.requeue(ahead, "ahead")
        return runnable

    def _lost_before(self, ahead: list[JobEntry], expected: int, runnable: list[JobEntry]) -> list[JobEntry]:
        """Seqs a session's ahead frames wait for: declare those gone from the jobs stream lost.

        Only once a frame has waited ``seq_gap_timeout_ms``, and at most once per session per
        timeout (the scan reads the whole stream inside Redis). A job is on the stream from its
        XADD until it is acknowledged (pending or re-queued included), so a missing seq that
        is not on it was lost by Redis: it gets a ``frame_lost`` result (appended to
        ``runnable``) and the frames after it run. Returns the frames still waiting.
        """
        timeout = self.settings.seq_gap_timeout_ms / 1000
        since = min(float(e.fields.get(AHEAD_SINCE, b"inf")) for e in ahead)
        first = ahead[0].job
        now = time.monotonic()
        if time.time() - since <= timeout or now - self._gap_scans.get(first.session, -timeout) <= timeout:
            return ahead  # not waited long enough, or this session's stream was scanned recently
        if len(self._gap_scans) > 10_000:  # forget sessions not scanned for a while (bounded memory)
            self._gap_scans = {k: t for k, t in self._gap_scans.items() if now - t <= timeout}
        self._gap_scans[first.session] = now
        found = self.jobs.find_seq(first.session, expected, first.seq)
        if found == expected:  # still queued or pending: wait another timeout before looking again
            for e in ahead:
                e.fields = {k: v for k, v in e.fields.items() if k != AHEAD_SINCE}
            return ahead
        upto = first.seq if found < 0 else found
        log.error(
            "session %s: seqs %d-%d are not on the jobs stream; declaring them lost",
            first.session,
            expected,
            upto - 1,
        )
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
            runnable.append(
                JobEntry(None, {}, lost, f"{LOST_PREFIX}: the job of seq {seq} was lost before processing")
            )
        expected, still = upto, []
        for e in ahead:
            if e.job.seq == expected:
                runnable.append(e)
                expected += 1
            else:
                still.append(e)
        return still
