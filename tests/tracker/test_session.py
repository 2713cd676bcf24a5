"""``posestream.tracker.session``: one session's frames stepped through a state store, TIE's pre-step sampling."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from posestream.models.poses import FramePoses
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.tracker.config import TrackerConfig
from posestream.tracker.costs import person_centre_sie
from posestream.tracker.session import Detected, SessionTracker, track_frame
from posestream.tracker.state import TrackerState
from posestream.tracker.step import step
from posestream.tracker.stores import MemoryStore, StaleStateError


def _people(t: int, tie: bool = False) -> FramePoses:
    """Two people walking right, 4 px per frame, 100 px apart; frame t, 320x240."""
    keypoints = np.zeros((2, NUM_KEYPOINTS, 3), np.float32)
    for i in range(2):
        keypoints[i, :, 0] = 40 + 100 * i + 4 * t + np.linspace(0, 30, NUM_KEYPOINTS)
        keypoints[i, :, 1] = 60 + np.linspace(0, 90, NUM_KEYPOINTS)
        keypoints[i, :, 2] = 0.9
    boxes = np.stack([np.r_[k[:, :2].min(0), k[:, :2].max(0)] for k in keypoints]).astype(np.float32)
    extra = {}
    if tie:
        sie = person_centre_sie(keypoints)
        extra = {"sie": sie, "tie_fwd": sie - np.float32(4), "tie_bwd": sie}
    return FramePoses(t, t / 25, 320, 240, keypoints, boxes, np.full(2, 0.9, np.float32), **extra)


def test_step_loads_tracks_and_saves_with_the_version_check() -> None:
    config = TrackerConfig(preset="oks")
    store = MemoryStore()
    sessions = SessionTracker(store, config)
    first = sessions.step("s", [Detected(_people(t)) for t in range(3)])
    second = sessions.step("s", [Detected(_people(t)) for t in range(3, 5)])
    # The same as stepping the state by hand, frame after frame.
    state, expected = None, []
    for t in range(5):
        state, poses = track_frame(state, Detected(_people(t)), config)
        expected.append(poses)
    for got, want in zip(first + second, expected, strict=True):
        assert got.track_ids.tolist() == want.track_ids.tolist() and np.array_equal(
            got.keypoints, want.keypoints
        )
    stored, version = store.load("s")
    assert version == 2 and stored.frame_index == 5 == state.frame_index
    # Someone else saved meanwhile: the step is refused and nothing of it is stored.
    loaded, v = sessions.load("s")
    store.save("s", loaded, v)  # another worker, meanwhile
    with pytest.raises(StaleStateError):
        sessions.save("s", sessions.track(loaded, Detected(_people(5)))[0], v)
    assert store.load("s")[0].frame_index == 5


def test_skip_steps_over_a_frame_with_nobody() -> None:
    sessions = SessionTracker(MemoryStore(), TrackerConfig(preset="iou"))
    state = sessions.skip(None, 0, 0.0, 320, 240)
    assert state.frame_index == 1 and len(state.tracks) == 0


def test_tie_sampler_sees_the_tracks_last_joints_and_feeds_the_step() -> None:
    """The backward TIE a detector hands over is sampled at the tracks' joints right before the step."""
    config = TrackerConfig(preset="tie")
    state, _ = track_frame(None, Detected(_people(0, tie=True)), config)
    seen = []

    def sampler(track_keypoints: np.ndarray) -> np.ndarray:
        seen.append(track_keypoints.copy())
        return person_centre_sie(track_keypoints) + np.float32(4)  # they move 4 px right

    after, poses = track_frame(state, Detected(_people(1, tie=True), sampler), config)
    assert len(seen) == 1 and np.array_equal(seen[0], state.tracks.keypoints)
    bwd = person_centre_sie(state.tracks.keypoints) + np.float32(4)
    by_hand, tracked = step(
        dataclasses.replace(state, tracks=dataclasses.replace(state.tracks, tie_bwd=bwd)),
        _people(1, tie=True),
        config,
    )
    assert poses.track_ids.tolist() == tracked.track_ids.tolist()
    assert after.to_bytes() == by_hand.to_bytes()
    # Without tracks there is nothing to sample.
    track_frame(TrackerState.initial(), Detected(_people(0, tie=True), sampler), config)
    assert len(seen) == 1
