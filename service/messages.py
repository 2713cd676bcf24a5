"""The gateway <-> worker contract: pydantic models carried over Redis Streams.

This module is the only thing the gateway and the worker share about Redis entries;
both build and parse entries exclusively through ``to_fields()`` / ``from_fields()``.
Stream entries are flat maps of byte strings, so every field is encoded as UTF-8 text
except the image, which travels as raw bytes.

Keys (all under ``Settings.redis_prefix``, see ``RedisKeys``):

- ``jobs``: stream of ``FrameJob``; consumer group ``workers``.
- ``results:{session}``: stream of ``FrameResult`` per session (bounded, with TTL).
- ``state:{session}``: the session's tracker state (owned by the tracker's state store).
- ``lease:{session}``: which worker may process the session right now.
- ``seq:{session}``: the gateway's per-session sequence counter.
- ``stream:{session}``: owner and last queued frame index of a WebSocket session.
- ``conn:{session}``: which WebSocket connection streams the session right now.
- ``video:{id}``: status hash of an uploaded video.
- ``upload-lease:{id}``: which gateway feeds and collects an uploaded video right now.
- ``epoch``: a random value written once; when it changes, Redis lost its data (restart
  without persistence) and gateways re-publish the uploads they hold on disk.
- ``workers``: sorted set of worker ids scored by their last heartbeat (unix seconds).
- ``pull:{id}``: status of a pull (``POST /v1/pulls``) and its stop request.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from posestream.models.poses import FramePoses

JOBS_GROUP = "workers"
CONTRACT_VERSION = 1
# How a session treats frames the workers cannot keep up with: ``live`` drops the oldest waiting
# frame, ``ordered`` holds the source back (WebSocket streams and pulls).
StreamMode = Literal["live", "ordered"]
# Error prefixes of results the worker publishes without running the networks on the frame; the
# gateway turns each into its own error code (``gateway.relay.error_code``).
LOST_PREFIX = "frame_lost"  # Redis lost the job before any worker took it
EXPIRED_PREFIX = "frame_expired"  # a live frame older than its latency budget when a worker took it


def _text(fields: dict[Any, Any], name: str) -> str:
    for key in (name, name.encode()):
        if key in fields:
            value = fields[key]
            return value.decode() if isinstance(value, bytes) else str(value)
    raise KeyError(f"stream entry lacks field {name!r}")


def _has(fields: dict[Any, Any], name: str) -> bool:
    return name in fields or name.encode() in fields


def _raw(fields: dict[Any, Any], name: str) -> bytes:
    for key in (name, name.encode()):
        if key in fields:
            value = fields[key]
            return value if isinstance(value, bytes) else str(value).encode()
    raise KeyError(f"stream entry lacks field {name!r}")


class FrameJob(BaseModel):
    """One frame to process, as queued on the jobs stream by the gateway.

    ``seq`` is contiguous per session from 0 and assigned by the gateway when it
    enqueues; the worker processes a session's frames strictly in ``seq`` order.
    ``image`` is a JPEG or PNG (WebSocket frames pass through untouched; uploaded
    video frames are JPEG-encoded by the gateway, ``posestream.service.frames.encode_jpeg``).
    """

    model_config = ConfigDict(frozen=True)

    session: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0)
    frame_index: int = Field(ge=0)
    timestamp: float
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    image: bytes = Field(repr=False)
    enqueued_at: float = Field(default_factory=time.time, description="unix seconds at XADD")
    max_age_ms: int = Field(
        0, ge=0, description="live frames: the worker answers the frame as expired, without running the networks, "
        "once this many ms (Redis's clock) have passed since its first XADD; 0 = never (ordered, uploads)",
    )  # fmt: skip

    def to_fields(self) -> dict[str, bytes | str]:
        return {
            "v": str(CONTRACT_VERSION),
            "session": self.session,
            "seq": str(self.seq),
            "frame_index": str(self.frame_index),
            "timestamp": repr(float(self.timestamp)),
            "width": str(self.width),
            "height": str(self.height),
            "image": self.image,
            "enqueued_at": repr(float(self.enqueued_at)),
            "max_age_ms": str(self.max_age_ms),
        }

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> FrameJob:
        """Parse a stream entry; raises ``KeyError``/``ValueError`` on a malformed one."""
        return cls(
            session=_text(fields, "session"),
            seq=int(_text(fields, "seq")),
            frame_index=int(_text(fields, "frame_index")),
            timestamp=float(_text(fields, "timestamp")),
            width=int(_text(fields, "width")),
            height=int(_text(fields, "height")),
            image=_raw(fields, "image"),
            enqueued_at=float(_text(fields, "enqueued_at")),
            max_age_ms=int(_text(fields, "max_age_ms")) if _has(fields, "max_age_ms") else 0,
        )


class FrameResult(BaseModel):
    """One processed frame on ``results:{session}``.

    ``frame`` is the JSON Lines frame object (``FramePoses.to_dict()``) as a JSON string,
    so relaying it costs no re-encoding. ``error`` is set instead when the worker could
    not process the frame (e.g. an undecodable image); ``frame`` then holds an empty
    frame so the result sequence has no hole.
    """

    model_config = ConfigDict(frozen=True)

    seq: int = Field(ge=0)
    frame: str
    error: str = ""
    enqueued_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    worker: str = ""

    @classmethod
    def from_poses(cls, seq: int, poses: FramePoses, **timing: Any) -> FrameResult:
        return cls(seq=seq, frame=json.dumps(poses.to_dict(), separators=(",", ":")), **timing)

    def to_fields(self) -> dict[str, str]:
        return {
            "v": str(CONTRACT_VERSION),
            "seq": str(self.seq),
            "frame": self.frame,
            "error": self.error,
            "enqueued_at": repr(self.enqueued_at),
            "started_at": repr(self.started_at),
            "finished_at": repr(self.finished_at),
            "worker": self.worker,
        }

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> FrameResult:
        return cls(
            seq=int(_text(fields, "seq")),
            frame=_text(fields, "frame"),
            error=_text(fields, "error"),
            enqueued_at=float(_text(fields, "enqueued_at")),
            started_at=float(_text(fields, "started_at")),
            finished_at=float(_text(fields, "finished_at")),
            worker=_text(fields, "worker"),
        )


VideoState = Literal["queued", "running", "done", "failed"]


class ApiError(BaseModel):
    code: str
    message: str


class VideoWarning(BaseModel):
    """Something the client should know about a video that still produced results.

    ``truncated_input``: the video decoded fewer frames than its container declares, or
    broke off while decoding; ``declared_frames`` comes from the container
    (``declared_by``: ``"frame_count"``, exact, or ``"duration"``, duration x frame rate),
    ``decoded_frames`` is how many frames were decoded (and have results), and
    ``decode_error`` the decoder's message when it broke off (else null).
    """

    code: str
    message: str
    declared_frames: int | None = None
    declared_by: str | None = None
    decoded_frames: int | None = None
    decode_error: str | None = None


class VideoStatus(BaseModel):
    """Status of an uploaded video: the ``video:{id}`` hash and the body of ``GET /v1/videos/{id}``."""

    id: str
    status: VideoState
    frames_done: int = 0
    frames_total: int = 0
    error: ApiError | None = None
    warnings: list[VideoWarning] = Field(default_factory=list)
    render: bool = False
    created_at: float = 0.0
    collected: bool = False
    """Every frame's result is in ``poses.jsonl`` (a resumed upload only renders, if asked)."""
    owner: str = ""
    """SHA-256 (hex) of the API key that uploaded the video; empty when the gateway had no keys."""

    def to_fields(self) -> dict[str, str]:
        return {
            "id": self.id,
            "status": self.status,
            "frames_done": str(self.frames_done),
            "frames_total": str(self.frames_total),
            "error": self.error.model_dump_json() if self.error else "",
            "warnings": json.dumps([w.model_dump() for w in self.warnings], separators=(",", ":")),
            "render": "1" if self.render else "0",
            "created_at": repr(self.created_at),
            "collected": "1" if self.collected else "0",
            "owner": self.owner,
        }

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> VideoStatus:
        def optional(name: str, default: str) -> str:
            value = fields.get(name.encode(), fields.get(name, default))
            return value.decode() if isinstance(value, bytes) else str(value)

        error = _text(fields, "error")
        return cls(
            id=_text(fields, "id"),
            status=_text(fields, "status"),
            frames_done=int(_text(fields, "frames_done")),
            frames_total=int(_text(fields, "frames_total")),
            error=ApiError.model_validate_json(error) if error else None,
            warnings=[VideoWarning.model_validate(w) for w in json.loads(optional("warnings", "[]"))],
            render=_text(fields, "render") == "1",
            created_at=float(_text(fields, "created_at")),
            collected=optional("collected", "0") == "1",
            owner=optional("owner", ""),
        )

    def public(self) -> dict[str, Any]:
        """The API body (``render``/``created_at``/``collected``/``owner`` are internal)."""
        return self.model_dump(include={"id", "status", "frames_done", "frames_total", "error", "warnings"})


@dataclass(frozen=True)
class RedisKeys:
    """Names of every Redis key the service uses, under one prefix."""

    prefix: str = "posestream:"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}jobs"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    def results(self, session: str) -> str:
        return f"{self.prefix}results:{session}"

    def lease(self, session: str) -> str:
        return f"{self.prefix}lease:{session}"

    def seq(self, session: str) -> str:
        return f"{self.prefix}seq:{session}"

    def stream(self, session: str) -> str:
        """Hash of a WebSocket session: ``owner`` (hash of its API key), ``last_index`` (last queued frame index)."""
        return f"{self.prefix}stream:{session}"

    def conn(self, session: str) -> str:
        """Lock of the one WebSocket connection streaming a session right now (value: its token)."""
        return f"{self.prefix}conn:{session}"

    def video(self, video_id: str) -> str:
        return f"{self.prefix}video:{video_id}"

    def upload_lease(self, video_id: str) -> str:
        return f"{self.prefix}upload-lease:{video_id}"

    def pull(self, pull_id: str) -> str:
        """Hash of a pull: ``status`` (its JSON status) and ``stop`` (set by DELETE)."""
        return f"{self.prefix}pull:{pull_id}"

    @property
    def epoch(self) -> str:
        """A random value set once; a different (or no) value later means Redis lost its data."""
        return f"{self.prefix}epoch"

    @property
    def state_prefix(self) -> str:
        """Prefix handed to the tracker's state store (it owns the keys below it)."""
        return f"{self.prefix}state:"
