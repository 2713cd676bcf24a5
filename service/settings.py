"""Settings of the running service: one pydantic-settings class, read from ``POSESTREAM_*``.

The gateway, the worker and the CLI all read this class; nothing else in the service
reads the environment. Values are validated at start-up so a bad deployment fails
early with a message that names the variable.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, TypeAdapter, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from posestream.models.weights import SPATIAL_DECODERS
from posestream.models.weights import weights_dir as default_weights_dir

# The pose estimators the service can run: the one list (Settings.model, the CLI's --model
# choices and posestream.service.pipeline.build_pipeline all read it).
ModelName = Literal["movenet", "spatialnet", "blobs"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
# The CPU test detector (coloured blobs, no weights) and the networks (torch, weights).
TEST_MODEL = "blobs"
NETWORK_MODELS: tuple[str, ...] = tuple(m for m in MODEL_NAMES if m != TEST_MODEL)


class Settings(BaseSettings):
    """Every knob of the gateway and the worker (environment prefix ``POSESTREAM_``)."""

    # env_nested_delimiter: a dict field's keys come from POSESTREAM_<FIELD>__<KEY> variables
    # (POSESTREAM_TRACKER_OVERRIDES__GATE_HE=0.8).
    model_config = SettingsConfigDict(
        env_prefix="POSESTREAM_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    # --- Redis ---------------------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis connection URL (jobs, results, state)."
    )
    redis_prefix: str = Field(
        "posestream:",
        description="Prefix of every Redis key the service writes; tests use a unique one to isolate and clean up.",
    )

    # --- gateway ---------------------------------------------------------------------------
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted API keys, comma-separated in the environment; empty turns authentication off.",
    )
    data_dir: Path = Field(Path("./data"), description="Folder for uploaded videos and their results.")
    max_upload_bytes: int = Field(
        512 * 1024 * 1024, gt=0, description="Largest accepted upload (HTTP 413 above)."
    )
    max_ws_frame_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="Largest accepted WebSocket frame message."
    )
    video_ttl_s: int = Field(
        24 * 3600, gt=0, description="Uploaded videos, results and status are deleted after this."
    )
    upload_jpeg_quality: int = Field(
        95, ge=1, le=100,
        description="JPEG quality of uploaded frames queued for the workers. Raising it sends the workers frames "
        "closer to the decoded video at more bytes per queued frame (upload_inflight_bytes bounds the total).",
    )  # fmt: skip
    upload_inflight_bytes: int = Field(
        32 * 1024 * 1024, gt=0,
        description="Most bytes of one upload's encoded frames queued in Redis at once (a frame larger than this "
        "is still queued, alone). Raising it lets an upload of large frames keep more workers busy, at that much "
        "more Redis memory per upload.",
    )  # fmt: skip
    upload_inflight_bytes_total: int = Field(
        256 * 1024 * 1024, gt=0,
        description="Most bytes of encoded frames that all uploads of one gateway queue in Redis at once. Raising "
        "it admits more concurrent uploads of large frames before they wait for each other, at that much Redis memory.",
    )  # fmt: skip
    fail_on_truncated: bool = Field(
        False,
        description="An upload that decodes fewer frames than its container declares (or breaks off while decoding) "
        "ends 'failed' with error truncated_input instead of 'done' with a truncated_input warning.",
    )
    truncation_tolerance: float = Field(
        0.02, ge=0, lt=1,
        description="Fraction of the frame count estimated from a container's duration (when it states no exact "
        "count) that may be missing before an upload is called truncated. Raising it tolerates containers whose "
        "duration overstates their frames, and misses shorter cuts; an exact declared count is always held exactly.",
    )  # fmt: skip
    docs_open: bool = Field(
        False,
        description="Serve /docs, /redoc and /openapi.json even when api_keys is set (without keys they are always "
        "served). They list every route and parameter, not data.",
    )
    http_implementation: Literal["json-errors", "h11"] = Field(
        "json-errors",
        description="The gateway's HTTP/1.1 implementation: 'json-errors' is uvicorn's h11 protocol answering a "
        "request it cannot parse (bad Content-Length, broken headers) with the JSON error body; 'h11' is "
        "uvicorn's own (plain-text 400).",
    )
    upload_lease_ms: int = Field(
        15_000, gt=0,
        description="A gateway's lease on an upload it is processing lives this long unless renewed; when a gateway "
        "dies, another gateway resumes its uploads once the lease lapsed. Raising it delays that takeover; lowering it "
        "lets a gateway that stalls (event loop blocked, Redis slow) lose uploads it is still working on (it then "
        "stops them and a gateway resumes them, which costs time but never a frame).",
    )  # fmt: skip
    upload_lease_renew_ms: int = Field(
        3_000, gt=0,
        description="How often a gateway renews its upload leases (at most half of upload_lease_ms). Raising it "
        "saves Redis calls but leaves less margin before a slow renewal lets a lease lapse.",
    )  # fmt: skip
    upload_resume_interval_s: float = Field(
        5.0, gt=0,
        description="How often every gateway looks for uploads left queued or running without a live lease (their "
        "gateway died) and resumes those whose files it has; it also looks once at start-up. Raising it delays "
        "the resumption of orphaned uploads; lowering it scans the status keys more often.",
    )  # fmt: skip

    # --- pulls (POST /v1/pulls, posestream track URL) ---------------------------------------
    max_pulls: int = Field(
        8, gt=0,
        description="Most pulls one gateway runs at once (HTTP 429 above). Each holds a decoder thread and up to "
        "max_inflight queued frames; raising it lets one gateway ingest more streams, at that CPU and memory.",
    )  # fmt: skip
    pull_allow_private: bool = Field(
        False,
        description="Pull from URLs whose host resolves to a loopback, private, link-local or reserved address. Off, "
        "a client cannot make the gateway fetch from inside its network; the tests turn it on (their servers are on "
        "loopback), as does a deployment whose cameras sit on a private network. `posestream track URL` always allows them.",
    )  # fmt: skip
    pull_max_retries: int = Field(
        5, ge=0,
        description="Consecutive failed (re)connect attempts before a pull fails for good (WS close 4502); a "
        "connection that yields a frame resets the count. Raising it rides out longer outages and reports a source "
        "that is gone later.",
    )  # fmt: skip
    pull_initial_backoff_s: float = Field(
        0.5, gt=0,
        description="Wait before a pull's first reconnect attempt; it doubles after each failed attempt. Raising it "
        "is gentler on a struggling server and misses more of a live stream per drop.",
    )  # fmt: skip
    pull_max_backoff_s: float = Field(
        8.0, gt=0,
        description="Longest wait between two reconnect attempts of a pull. Raising it spaces attempts out in a "
        "long outage (fewer connections, later recovery).",
    )  # fmt: skip
    pull_timeout_s: float = Field(
        10.0, gt=0,
        description="Longest wait for a pulled source to open, and longest silence while reading it before the "
        "connection counts as dropped. Raising it tolerates slow servers; a dead one is noticed that much later.",
    )  # fmt: skip
    pull_rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp",
        description="RTSP transport of pulls: tcp (RTP interleaved on the RTSP connection: no loss, passes NAT and "
        "firewalls) or udp (lower latency, packets may be lost).",
    )

    # --- queues and sessions ---------------------------------------------------------------
    session_ttl_s: int = Field(
        600, gt=0, description="Idle sessions (state, results, counters) expire after this."
    )
    jobs_maxlen: int = Field(
        100_000, gt=0,
        description="Approximate cap of the jobs stream; in-flight limits keep unprocessed jobs far below it.",
    )  # fmt: skip
    results_maxlen: int = Field(
        1000, gt=0,
        description="Approximate cap of each session's result stream (Redis memory per session). A resumed stream "
        "replays the results it is owed from it: raising it lets a client be further behind when it resumes; a "
        "client further behind than this gets a ``results_expired`` message for the trimmed ones.",
    )  # fmt: skip
    max_inflight: int = Field(
        8, gt=0, description="Frames of one session queued in Redis at once (backpressure)."
    )
    upload_inflight: int = Field(
        32, gt=0, description="Frames of one uploaded video queued in Redis at once (backpressure)."
    )
    live_queue: int = Field(
        4, gt=0, description="Frames waiting in the gateway per live session before the oldest drops."
    )
    live_max_age_ms: int = Field(
        2000, ge=0, description="Latency budget of a live frame (WebSocket live mode and live pulls), from its "
        "arrival at the gateway: a worker that takes it later answers it as expired (a result with error "
        "frame_expired and no poses) without running the networks, so a saturated worker serves fresh frames whatever the number "
        "of live sessions. Raising it drops fewer frames under overload and lets latency grow to it; 0 = no "
        "budget (only the per-session live_queue and max_inflight bound a stream's backlog).",
    )  # fmt: skip
    stream_window: int = Field(
        16, gt=0,
        description="Ordered-mode credit window: the most frames of one WebSocket connection received but not yet "
        "answered; the server grants it as ``credit`` and keeps reading the socket while a client stays within it. "
        "Raising it keeps more frames in flight per stream (throughput on slow links, gateway memory up to "
        "window x max_ws_frame_bytes per stream); below max_inflight it leaves worker capacity unused.",
    )  # fmt: skip
    stream_lock_ms: int = Field(
        10_000, gt=0,
        description="A connection's lock on its stream session lives this long unless renewed (every third of it). "
        "After a gateway dies, a client resuming the session gets 4409 until it lapses; raising it delays that, "
        "lowering it lets a gateway whose event loop stalls lose the session to a resuming connection.",
    )  # fmt: skip
    max_frame_pixels: int = Field(
        4096 * 4096, gt=0,
        description="Most pixels (width x height) of one frame, checked in the stream hello and in every image "
        "header before it is decoded (gateway and worker). Raising it admits larger frames; each costs about "
        "6 bytes per pixel of worker memory while it is decoded (BGR and RGB copies).",
    )  # fmt: skip

    # --- worker ------------------------------------------------------------------------------
    batch_size: int = Field(
        8, gt=0, description="Most frames run through the pipeline in one batch (across sessions)."
    )
    batch_wait_ms: int = Field(
        5, ge=0, description="How long a worker waits to fill a batch once a frame arrived."
    )
    lease_ms: int = Field(
        10_000, gt=0, description="A session lease lives this long unless renewed (dead-worker takeover)."
    )
    claim_idle_ms: int = Field(
        15_000, gt=0, description="Pending jobs idle this long are claimed by another worker."
    )
    seq_gap_timeout_ms: int = Field(
        30_000, gt=0,
        description="A session's frame that has waited this long for an earlier seq makes the worker look for that "
        "seq on the jobs stream (a scan inside Redis); if it is not there, Redis lost its job (e.g. a restart "
        "without persistence): the seq gets a ``frame_lost`` result and the session goes on. A seq still queued or "
        "pending (a dead worker's) is waited for. Each worker scans at most once per session per timeout. Raising "
        "it delays recovery from a lost job (only trimming at jobs_maxlen or a Redis that lost data makes one); "
        "lowering it costs Redis CPU under a backlog, when frames legitimately wait behind re-queued ones.",
    )  # fmt: skip
    heartbeat_interval_s: float = Field(2.0, gt=0, description="How often a worker announces itself.")
    heartbeat_ttl_s: float = Field(
        10.0, gt=0, description="A worker heartbeat older than this does not count as alive."
    )
    worker_id: str = Field("", description="Consumer name in the group; empty = hostname-pid-random.")
    worker_metrics_port: int = Field(
        9101, ge=0, le=65535,
        description="Port of the worker's Prometheus endpoint (GET /metrics); 0 turns it off. Workers sharing a "
        "host (not containers) each need their own port.",
    )  # fmt: skip
    worker_metrics_addr: str = Field(
        "127.0.0.1",
        description="Address the worker's metrics endpoint binds: loopback by default, so only this host can read "
        "it; docker-compose.yml sets 0.0.0.0 so Prometheus can scrape workers over the compose network.",
    )

    # --- pipeline ----------------------------------------------------------------------------
    model: ModelName = Field(
        "movenet",
        description="Pose estimator; 'blobs' is the CPU test pipeline (coloured blobs, not people).",
    )
    decoder: str = Field(
        SPATIAL_DECODERS[0],
        description="How MODEL=spatialnet turns its maps into people (posestream.models.weights.SPATIAL_DECODERS): "
        "'embedding' groups joints by KE + SIE (seeds 000/002; what scores best, so the default), 'recurrent' runs "
        "seed 001's learned ConvLSTM decoder (weights/recurrent_spatialnet.pt). Other models refuse 'recurrent'.",
    )
    refine: bool = Field(
        True,
        description="Run the gated MoveNet Thunder refinement (posestream.models.refine.RefineConfig's gates) on "
        "each frame's people, for MODEL=movenet and MODEL=spatialnet (MODEL=blobs has nothing to refine). On by "
        "default: chosen on the real dev set's train split, it raises real-image AP for both (benchmarks/RESULTS.md "
        "'Gated Thunder refinement' and spatialnet_refine_real_dev); it costs one Thunder pass per refined person. "
        "Off keeps each model's own joints (boxes and scores never change).",
    )
    tracker: str = Field(
        "he+tie",
        description="Tracker preset (posestream.tracker.config.PRESET_TERMS): 'he+tie' (seed 000: Human Embedding + Temporal "
        "Instance Embedding from TemporalNet), 'he', 'tie', the baselines 'sie', 'oks', 'iou', and with "
        "MODEL=spatialnet also its KE baselines 'ke' and 'ke+sie'.",
    )
    tracker_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Tracker fields (posestream.tracker.config.TrackerConfig, e.g. gate_he, max_missed) set over "
        "the preset's defaults and the TemporalNet checkpoint card's calibration: default < card < these. One "
        "variable per field, POSESTREAM_TRACKER_OVERRIDES__<FIELD>=value (or a JSON object in "
        "POSESTREAM_TRACKER_OVERRIDES). The worker and `posestream track` log the resolved config at start.",
    )
    smooth: bool = Field(
        False,
        description="Smooth each track's reported keypoints with a One-Euro filter per joint (uploads and live "
        "sessions alike; its state is in the tracker state, so it survives a change of worker). The same as "
        "POSESTREAM_TRACKER_OVERRIDES__SMOOTH=true; the filter's parameters are the tracker fields "
        "smooth_min_cutoff, smooth_beta and smooth_d_cutoff (posestream.tracker.config.TrackerConfig says what "
        "raising each does), set through tracker_overrides. Off by default: it lags fast motion.",
    )
    weights_dir: Path = Field(
        default_factory=default_weights_dir,
        description="Folder of our checkpoints (temporalnet_movenet.pt, spatialnet_movenet.pt, ...). Fetched "
        "third-party weights (MoveNet, Thunder) are cached under $POSESTREAM_WEIGHTS_DIR/cache, which the model "
        "code reads from the environment itself: set the variable, not only this field. Default: the source checkout's weights/ "
        "(./weights when installed outside a checkout); the worker image sets /app/weights.",
    )
    input_sizes: list[int] | None = Field(
        None,
        description="Network input sizes (long side, multiples of 32), e.g. [512] or [256, 512] (multi-scale, "
        "JSON list in the environment). Unset: the estimator's default policy (posestream.models.estimator.EstimatorConfig).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the networks run.")
    debug_delay_ms: int = Field(
        0, ge=0, description="Debug/test only: extra sleep per batch to simulate a slow worker."
    )

    @field_validator("decoder")
    @classmethod
    def _known_decoder(cls, v: str) -> str:
        if v not in SPATIAL_DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(SPATIAL_DECODERS)}, got {v!r}")
        return v

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("tracker")
    @classmethod
    def _known_tracker(cls, value: str) -> str:
        from posestream.tracker.config import PRESET_TERMS

        if value not in PRESET_TERMS:
            raise ValueError(f"unknown tracker {value!r}; choose one of {', '.join(PRESET_TERMS)}")
        return value

    @field_validator("tracker_overrides")
    @classmethod
    def _known_tracker_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return tracker_overrides(value)

    @field_validator("redis_prefix")
    @classmethod
    def _prefix_ends_with_colon(cls, value: str) -> str:
        if not value:
            raise ValueError("redis_prefix must not be empty (e.g. 'posestream:')")
        return value if value.endswith(":") else value + ":"

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.claim_idle_ms <= self.batch_wait_ms:
            raise ValueError("claim_idle_ms must be larger than batch_wait_ms, or workers steal live jobs")
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_ttl_s must be larger than heartbeat_interval_s")
        if 2 * self.upload_lease_renew_ms > self.upload_lease_ms:
            raise ValueError(
                "upload_lease_renew_ms must be at most half of upload_lease_ms, or one slow renewal lets a lease lapse"
            )
        if self.results_maxlen <= self.stream_window + self.max_inflight:
            raise ValueError(
                "results_maxlen must be larger than stream_window + max_inflight: a resumed stream replays the "
                "results it was owed from the session's result stream, so trimming must not reach them"
            )
        if self.pull_initial_backoff_s > self.pull_max_backoff_s:
            raise ValueError("pull_initial_backoff_s must be at most pull_max_backoff_s")
        if self.tracker_overrides:
            from posestream.tracker.config import TrackerConfig

            TrackerConfig(preset=self.tracker, **self.tracker_overrides)  # its own range checks, at start-up
        if self.results_maxlen <= self.upload_inflight:
            raise ValueError(
                "results_maxlen must be larger than upload_inflight: a resumed upload reads the results of its "
                "queued frames back from the stream, so trimming must not reach them"
            )
        return self

    def live_budget_ms(self, received_at: float) -> int:
        """``FrameJob.max_age_ms`` of a live frame that reached the gateway at ``received_at`` (unix s).

        What is left of ``live_max_age_ms`` after the frame waited in the gateway, at least 1 ms
        (a frame that already used its budget expires as soon as a worker takes it); 0 when
        ``live_max_age_ms`` is 0 (no budget).
        """
        if not self.live_max_age_ms:
            return 0
        return max(1, self.live_max_age_ms - round(1000 * (time.time() - received_at)))


def tracker_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as ``TrackerConfig`` fields of their fields' types (environment strings parsed).

    Raises:
        ValueError: an unknown field, ``preset`` (set ``tracker``), or a value of the wrong type.
    """
    import dataclasses

    from posestream.tracker.config import TrackerConfig

    types = {f.name: type(f.default) for f in dataclasses.fields(TrackerConfig) if f.name != "preset"}
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(
            f"unknown tracker field(s) {unknown} (the preset is POSESTREAM_TRACKER); choose from {sorted(types)}"
        )
    return {k: TypeAdapter(types[k]).validate_python(v) for k, v in values.items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings from the environment (tests pass their own to the factories)."""
    return Settings()
