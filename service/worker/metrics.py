"""Prometheus metrics of one worker (its own registry: no process-global state).

``run_worker`` serves them with prometheus_client's HTTP server on
``worker_metrics_port`` (``GET /metrics``); a ``Worker`` built without metrics gets a
private set that nobody scrapes (tests, embedded use).
"""

from __future__ import annotations

import logging
import threading
import time
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

STAGES = ("decode", "state_load", "pipeline", "publish", "state_save", "ack")
"""Stages of ``posestream_worker_stage_seconds``: ``decode`` (one JPEG/PNG), ``state_load``
(one session's tracker state), ``pipeline`` (one pipeline call on a batch), ``publish`` (one
session's results XADDed), ``state_save`` (one session's version-checked save), ``ack``
(XACK + XDEL of one session's jobs)."""

REQUEUE_REASONS = ("session_leased", "ahead", "stale_state")
"""Why a job went back on the stream: another worker holds its session's lease; a frame
before it is still pending; another worker advanced the session under this one."""

ERROR_KINDS = ("redis", "pipeline", "frame", "malformed_job", "stale_state")
"""``redis``: the loop lost Redis (and retries); ``pipeline``: a pipeline call raised (its
frames are published as failed); ``frame``: a frame published with an error (undecodable
or in a failed batch); ``malformed_job``: a job that did not parse (dropped);
``stale_state``: a version-checked state save lost to another worker."""


class WorkerMetrics:
    """Counters, gauges and histograms of one worker loop."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.frames_processed = Counter(
            "posestream_worker_frames_processed",
            "Frames whose result was published and job acknowledged.",
            registry=r,
        )
        self.batches = Counter(
            "posestream_worker_batches", "Batches of runnable frames processed.", registry=r
        )
        self.batch_size = Histogram(
            "posestream_worker_batch_size",
            "Frames per processed batch (all sessions).",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_sessions = Histogram(
            "posestream_worker_batch_sessions",
            "Sessions per processed batch.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.stage_latency = Histogram(
            "posestream_worker_stage_seconds", "Latency of the worker's stages.", ["stage"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.requeued = Counter(
            "posestream_worker_jobs_requeued",
            "Jobs put back on the stream, by reason.",
            ["reason"],
            registry=r,
        )
        self.claimed = Counter(
            "posestream_worker_jobs_claimed",
            "Jobs taken over from dead or stuck workers (XAUTOCLAIM).",
            registry=r,
        )
        self.duplicates = Counter(
            "posestream_worker_jobs_duplicate",
            "Jobs acknowledged without processing: their seq was done.",
            registry=r,
        )
        self.errors = Counter("posestream_worker_errors", "Errors by kind.", ["kind"], registry=r)
        self.expired = Counter(
            "posestream_worker_frames_expired",
            "Live frames answered as expired without running the networks: older than their latency budget.",
            registry=r,
        )
        self.sessions_with_state = Gauge(
            "posestream_worker_batch_sessions_with_state",
            "Sessions of the last batch that already had tracker state (the rest started fresh).", registry=r,
        )  # fmt: skip
        self.last_loop = Gauge(
            "posestream_worker_last_loop_timestamp_seconds",
            "Unix time the worker loop last went round (idle rounds included); stale = stuck worker.", registry=r,
        )  # fmt: skip
        for stage in STAGES:
            self.stage_latency.labels(stage)
        for reason in REQUEUE_REASONS:
            self.requeued.labels(reason)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)
        self.last_loop.set(time.time())


class MetricsServer:
    """prometheus_client's HTTP server for one registry, in a daemon thread; ``close()`` stops it."""

    def __init__(self, registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> None:
        """Bind and serve; raises ``OSError`` when the address cannot be bound (e.g. the port is in use)."""
        self._httpd: WSGIServer
        self._thread: threading.Thread
        self._httpd, self._thread = start_http_server(port, addr=addr, registry=registry)
        self.port = int(self._httpd.server_port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
