"""What every pipeline is made of: frames in, a ``Detector``, and the tracker config its sessions step with.

Detection and tracking meet at one seam. A ``Detector`` turns a batch of frames (from any
number of sessions) into one ``posestream.tracker.session.Detected`` per frame; whatever it
keeps between frames (TemporalNet's previous-frame context) it keeps itself, keyed by
session. The tracker side (``posestream.tracker.session``) owns every session's state. A
``FramePipeline`` pairs the two for the callers that thread states themselves; the worker
and ``run_frames`` call the detector and a ``SessionTracker`` directly.

The concrete detectors live beside this module (``blobs``, ``models``); the composition root
that chooses and builds them is ``posestream.service.pipeline``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from posestream.models.poses import FramePoses
from posestream.tracker.config import TrackerConfig
from posestream.tracker.session import Detected, track_frame
from posestream.tracker.state import TrackerState


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
class Detector(Protocol):
    """People in a batch of frames, as the tracker takes them.

    ``detect(frames)``: ``frames`` from any number of sessions, a session's frames in
    increasing ``seq`` order (the caller guarantees it). Returns one ``Detected`` per frame,
    in input order, each holding the frame's index, time and size. A detector that uses the previous
    frame of a session (TIE) keys that context by ``session_id`` and uses it only for the
    frame with ``seq + 1``.
    """

    name: str

    def detect(self, frames: Sequence[FrameInput]) -> list[Detected]: ...


class FramePipeline:
    """A detector and the tracker config: pose estimation and tracking on a batch of frames.

    Args:
        detector: finds the people of each frame.
        tracker_config: what every session is stepped with.
        name: for logs (default ``"{detector.name}/{preset}"``).
    """

    def __init__(self, detector: Detector, tracker_config: TrackerConfig, name: str | None = None) -> None:
        self.detector = detector
        self.tracker_config = tracker_config
        self.name = name or f"{detector.name}/{tracker_config.preset}"

    def process(
        self, batch: Sequence[FrameInput], states: Sequence[TrackerState | None]
    ) -> list[tuple[FramePoses, TrackerState]]:
        """Detect and track ``batch``, threading each session's state through its frames.

        Args:
            batch: as ``Detector.detect``.
            states: ``states[i]`` is the tracker state of ``batch[i].session_id`` *before this
                batch* (``None`` for a new session); repeated for a session's later frames.
        Returns:
            one ``(poses, state_after_this_frame)`` per input frame, in input order.
        """
        if len(batch) != len(states):
            raise ValueError(f"got {len(batch)} frames but {len(states)} states")
        if not batch:
            return []
        detected = self.detector.detect(batch)
        current: dict[str, TrackerState | None] = {}
        out: list[tuple[FramePoses, TrackerState]] = []
        for frame, given, found in zip(batch, states, detected, strict=True):
            state, poses = track_frame(current.get(frame.session_id, given), found, self.tracker_config)
            current[frame.session_id] = state
            out.append((poses, state))
        return out


class DelayedDetector:
    """Wraps a detector and sleeps ``delay_s`` per batch: a deliberately slow worker for tests."""

    def __init__(self, inner: Detector, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = float(delay_s)
        self.name = f"{inner.name}+delay{int(self.delay_s * 1000)}ms"

    def detect(self, frames: Sequence[FrameInput]) -> list[Detected]:
        time.sleep(self.delay_s)
        return self.inner.detect(frames)


class DelayedPipeline(FramePipeline):
    """``inner`` with a ``DelayedDetector``: sleeps ``delay_s`` per batch (tests' slow worker)."""

    def __init__(self, inner: FramePipeline, delay_s: float) -> None:
        delayed = DelayedDetector(inner.detector, delay_s)
        super().__init__(
            delayed, inner.tracker_config, name=f"{inner.name}+delay{int(delayed.delay_s * 1000)}ms"
        )
