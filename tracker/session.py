"""One session's tracking between frames: its state from a store, one ``step`` per frame, saved back.

``SessionTracker(store, config)`` threads a session's ``TrackerState`` from frame to frame
through a state store (``FramePipeline.process`` is the same ``track_frame`` with the states
passed in and out explicitly, for tests and benchmarks). The CLI runs it over a ``MemoryStore``, the worker over a
``RedisStore`` (``posestream.tracker.stores``), the tests over either:

- ``step(session, frames)``: load the session's state, track its frames in order, save the
  new state with the store's version check (``StaleStateError`` if someone saved meanwhile).
- ``load`` / ``track`` / ``skip`` / ``save``: the same steps apart, for a caller that must do
  something between tracking and saving (the worker publishes its results first, so a
  crash can only make a frame a duplicate, never lose it).

What a frame brings (``Detected``): its people (``FramePoses`` with the tracker's feature
arrays) and, for TIE, ``tie_bwd_at``.
Psi_TIE compares "the track's joints at t-1 propagated to t" with the detections' SIE: the
backward TIE of the pair (t-1, t) sampled at each track's last joints. Those joints are in
the state, which the detector never sees, so the detector hands over a sampler instead of
the values: ``tie_bwd_at(track_keypoints (T, 17, 3) frame pixels) -> (T, 17, 2)`` frame
pixels, and ``track`` writes its answer into ``state.tracks.tie_bwd`` right before the
step. Without one (no TIE, or no frame t-1 context) the tracks keep the ``tie_bwd`` their
last detection brought (zero motion: their SIE).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from posestream.models.poses import FramePoses
from posestream.tracker.config import TrackerConfig
from posestream.tracker.state import TrackerState
from posestream.tracker.step import step
from posestream.tracker.stores import StateStore

__all__ = ["Detected", "SessionTracker", "TieSampler", "track_frame"]

# (T, 17, 3) the tracks' last joints, frame pixels -> (T, 17, 2) backward TIE there, frame pixels.
TieSampler = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class Detected:
    """One frame as a detector hands it to the tracker.

    Attributes:
        detections: the frame's people with the arrays its tracker preset reads (HE, SIE, TIE, KE).
        tie_bwd_at: backward TIE of the pair (t-1, t) at given joints of frame t-1 (see the
            module docstring); ``None`` when the frame has none.
    """

    detections: FramePoses
    tie_bwd_at: TieSampler | None = None


def track_frame(
    state: TrackerState | None, frame: Detected, config: TrackerConfig
) -> tuple[TrackerState, FramePoses]:
    """One ``step`` of a session: ``state`` (``None`` = a new session) and the frame's people.

    Returns:
        the state after the frame and the frame's people with their track ids.
    """
    state = state if state is not None else TrackerState.initial()
    if frame.tie_bwd_at is not None and len(state.tracks):
        bwd = frame.tie_bwd_at(state.tracks.keypoints)
        state = dataclasses.replace(state, tracks=dataclasses.replace(state.tracks, tie_bwd=bwd))
    return step(state, frame.detections, config)


class SessionTracker:
    """The tracker of many sessions whose states live in ``store``.

    Args:
        store: where each session's state lives between calls (``MemoryStore`` or
            ``RedisStore``); only ``load`` and the version-checked ``save`` are used.
        config: the tracker's thresholds and preset, the same for every session.
    """

    def __init__(self, store: StateStore, config: TrackerConfig) -> None:
        self.store = store
        self.config = config

    def step(self, session: str, frames: Sequence[Detected]) -> list[FramePoses]:
        """Track ``frames`` (the session's next frames, in order) and save the session's new state.

        Raises:
            StaleStateError: the session's state was saved by someone else meanwhile; nothing
                is saved, reload and redo the frames.
        """
        state, version = self.load(session)
        out = []
        for frame in frames:
            state, poses = self.track(state, frame)
            out.append(poses)
        if state is not None:
            self.save(session, state, version)
        return out

    def load(self, session: str) -> tuple[TrackerState | None, int]:
        """The session's state (``None`` for a new or expired session) and its store version."""
        return self.store.load(session)

    def track(self, state: TrackerState | None, frame: Detected) -> tuple[TrackerState, FramePoses]:
        """One frame of a session whose state is ``state`` (``track_frame`` with this config)."""
        return track_frame(state, frame, self.config)

    def skip(
        self, state: TrackerState | None, frame_index: int, timestamp: float, width: int, height: int
    ) -> TrackerState:
        """Step over a frame that could not be processed: no detections, the cursor still advances."""
        return self.track(state, Detected(FramePoses.empty(frame_index, timestamp, width, height)))[0]

    def save(self, session: str, state: TrackerState, version: int) -> int:
        """Store ``state`` if the stored version is still ``version``; returns the new version."""
        return self.store.save(session, state, version)
