"""Prometheus metrics of one gateway app (its own registry: no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """Counters, gauges and histograms exposed on ``GET /metrics``.

    Stages of ``posestream_stage_latency_seconds``: ``decode`` (gateway: validate or
    decode+encode a frame), ``queue`` (enqueued -> a worker starts it), ``pipeline``
    (worker batch), ``relay`` (worker done -> gateway sends/writes it), ``end_to_end``
    (frame received or decoded by the gateway -> result sent or written).
    """

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.frames_in = Counter(
            "posestream_frames_in", "Frames accepted by the gateway.", ["source"], registry=r
        )
        self.frames_out = Counter("posestream_frames_out", "Frame results delivered.", ["source"], registry=r)
        self.frames_dropped = Counter(
            "posestream_frames_dropped",
            "Frames dropped in live mode because the workers fell behind.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "posestream_queue_depth", "Jobs in the jobs stream (waiting or being processed).", registry=r
        )
        self.jobs_pending = Gauge(
            "posestream_jobs_pending", "Jobs delivered to a worker and not yet acknowledged.", registry=r
        )
        self.workers_alive = Gauge("posestream_workers_alive", "Workers with a fresh heartbeat.", registry=r)
        self.active_sessions = Gauge(
            "posestream_active_sessions", "Open sessions on this gateway.", ["kind"], registry=r
        )
        self.stage_latency = Histogram(
            "posestream_stage_latency_seconds",
            "Per-frame latency by stage.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("posestream_errors", "Client-visible errors by code.", ["code"], registry=r)
        for stage in ("decode", "queue", "pipeline", "relay", "end_to_end"):
            self.stage_latency.labels(stage)
        for kind in ("websocket", "upload"):
            self.active_sessions.labels(kind)
        for source in ("websocket", "upload"):
            self.frames_in.labels(source)
            self.frames_out.labels(source)

    def observe_result(self, enqueued_at: float, started_at: float, finished_at: float, now: float) -> None:
        """Record the worker-side stages of one result (unix-second timestamps)."""
        if enqueued_at and started_at:
            self.stage_latency.labels("queue").observe(max(0.0, started_at - enqueued_at))
        if started_at and finished_at:
            self.stage_latency.labels("pipeline").observe(max(0.0, finished_at - started_at))
        if finished_at:
            self.stage_latency.labels("relay").observe(max(0.0, now - finished_at))
