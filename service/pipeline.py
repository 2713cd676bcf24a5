"""The frame pipeline: frames -> pose estimator (batched) -> TemporalNet -> tracker step.

One code path serves the embedded CLI (``posestream track``), the worker and the
tests: they all call ``FramePipeline.process`` on a batch of frames together with
each frame's session tracker state, and get back per-frame poses (JSON Lines
``FramePoses`` with track ids) plus the new state.

Pipelines available (``build_pipeline``):

- ``movenet`` / ``spatialnet``: the real models (``posestream.models.estimator`` and friends);
  imported only when built, so nothing here pulls in torch at import time.
- ``blobs``: the CPU **test** pipeline (``posestream.service.pipelines.blobs``). It really runs on
  the pixels (thresholding + connected components, one pseudo-pose per coloured blob)
  and really tracks, but it finds coloured blobs, not people. It exists so the service
  can be tested end to end without weights or a GPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from posestream.models.poses import FramePoses

log = logging.getLogger(__name__)

# The tracker's serialisable per-session state (``posestream.tracker.state.TrackerState`` once it
# lands). The service treats it as opaque: it only passes it between ``process`` calls
# and the state store.
TrackerState = Any

PIPELINE_CHOICES = ("movenet", "spatialnet", "blobs")


@dataclass(frozen=True)
class FrameInput:
    """One frame entering the pipeline.

    Attributes:
        session_id: the stream / video the frame belongs to (its tracker state's key).
        seq: contiguous per-session sequence number (0, 1, 2, ...).
        frame_index: the frame's index in its video or stream (reported back).
        timestamp: seconds from the start of the video or stream.
        rgb: (H, W, 3) uint8 RGB image.
    """

    session_id: str
    seq: int
    frame_index: int
    timestamp: float
    rgb: np.ndarray

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


@runtime_checkable
class FramePipeline(Protocol):
    """Pose estimation and tracking on a batch of frames from one or more sessions.

    ``process(batch, states)``:
        batch: frames from any number of sessions; a session's frames appear in
            increasing ``seq`` order (the caller guarantees it).
        states: ``states[i]`` is the tracker state of ``batch[i].session_id`` *before
            this batch* (``None`` for a new session). When a session has several frames
            in the batch the same value is repeated; the pipeline carries the state from
            one of that session's frames to the next.
    Returns:
        one ``(poses, state_after_this_frame)`` per input frame, in input order. The
        state after a session's last frame in the batch is the session's new state.
    """

    name: str

    def process(
        self, batch: Sequence[FrameInput], states: Sequence[TrackerState | None]
    ) -> list[tuple[FramePoses, TrackerState]]: ...


class DelayedPipeline:
    """Wraps a pipeline and sleeps ``delay_s`` per batch: a deliberately slow worker for tests."""

    def __init__(self, inner: FramePipeline, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = float(delay_s)
        self.name = f"{inner.name}+delay{int(self.delay_s * 1000)}ms"

    def process(
        self, batch: Sequence[FrameInput], states: Sequence[TrackerState | None]
    ) -> list[tuple[FramePoses, TrackerState]]:
        time.sleep(self.delay_s)
        return self.inner.process(batch, states)


def build_pipeline(
    model: str,
    tracker: str = "he+tie",
    input_sizes: Sequence[int] | None = None,
    device: str = "auto",
    debug_delay_ms: int = 0,
) -> FramePipeline:
    """The pipeline for a model name (``PIPELINE_CHOICES``); loads weights, so call it in a main.

    Raises:
        ValueError: unknown model, or a model whose code or weights are not available,
            with a message that says what to do.
    """
    pipeline: FramePipeline
    if model == "blobs":
        from posestream.service.pipelines.blobs import BlobPipeline

        pipeline = BlobPipeline(tracker=tracker if tracker in ("oks", "iou") else "iou")
    elif model in ("movenet", "spatialnet"):
        try:
            from posestream.service.pipelines.models import build_model_pipeline
        except ImportError as exc:
            raise ValueError(
                f"--model {model} is not available in this build ({exc}); use --model blobs for the CPU test pipeline"
            ) from None
        pipeline = build_model_pipeline(model, tracker=tracker, input_sizes=input_sizes, device=device)
    else:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(PIPELINE_CHOICES)}")
    if debug_delay_ms:
        pipeline = DelayedPipeline(pipeline, debug_delay_ms / 1000.0)
    return pipeline


def available_models() -> list[str]:
    """Model names whose code is importable here (the CLI offers these)."""
    names = []
    try:
        import posestream.service.pipelines.models  # noqa: F401

        names += ["movenet", "spatialnet"]
    except ImportError:
        pass
    return names + ["blobs"]


def run_frames(
    pipeline: FramePipeline,
    frames: Iterable[tuple[int, float, np.ndarray]],
    session_id: str = "local",
    batch_size: int = 8,
    state: TrackerState | None = None,
) -> Iterator[tuple[FramePoses, np.ndarray]]:
    """Run one video's frames through ``pipeline`` in batches, threading the tracker state.

    This is the embedded (no Redis) path of ``posestream track``; the worker runs the
    same ``process`` call on batches read from Redis.

    Args:
        frames: ``(frame_index, timestamp, rgb)`` as yielded by ``iter_video_frames``.
    Yields:
        ``(poses, rgb)`` per frame, in order (the image is handed back for rendering).
    """
    batch: list[FrameInput] = []
    seq = 0
    for frame_index, timestamp, rgb in frames:
        batch.append(FrameInput(session_id, seq, frame_index, timestamp, rgb))
        seq += 1
        if len(batch) >= batch_size:
            out = pipeline.process(batch, [state] * len(batch))
            state = out[-1][1]
            yield from ((poses, f.rgb) for (poses, _), f in zip(out, batch, strict=True))
            batch = []
    if batch:
        out = pipeline.process(batch, [state] * len(batch))
        yield from ((poses, f.rgb) for (poses, _), f in zip(out, batch, strict=True))
