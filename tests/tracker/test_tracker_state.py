"""Tracker state as data: serialisation, determinism after restore, purity, bounded size."""

import subprocess
import sys

import msgpack
import numpy as np
import pytest

from posestream.models.poses import FramePoses
from posestream.tracker.config import TrackerConfig
from posestream.tracker.state import (
    SCHEMA_VERSION,
    Gallery,
    StateFormatError,
    TrackerState,
    Tracks,
    state_size_bound,
)
from posestream.tracker.step import step
from posestream.tracker.synthetic import SimPerson, random_crowd, simulate


def busy_state(config, n_frames=120, **sim):
    """A state with confirmed, tentative and missed tracks and a non-empty gallery."""
    people = [
        SimPerson(0, start=(100, 300), velocity=(3, 0), visible=((0, 30), (80, 200))),
        SimPerson(1, start=(900, 300), velocity=(-2, 1)),
        SimPerson(2, start=(500, 100), velocity=(0, 2), visible=((0, 40),)),
        SimPerson(3, start=(600, 500), visible=((n_frames - 2, 200),)),
    ]
    state = TrackerState.initial()
    for frame in simulate(people, n_frames, **sim):
        state, _ = step(state, frame.detections, config)
    return state


def test_round_trip_is_exact():
    state = busy_state(TrackerConfig(max_missed=5, n_init=3))
    assert len(state.gallery) and len(state.tracks) and (state.tracks.status == 0).any()
    data = state.to_bytes()
    back = TrackerState.from_bytes(data)
    assert back.to_bytes() == data and back == state
    for name in Tracks.SPEC:
        a, b = getattr(state.tracks, name), getattr(back.tracks, name)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert (back.next_id, back.frame_index) == (state.next_id, state.frame_index)


def test_round_trip_keeps_nan_for_fields_the_detections_lacked():
    state = busy_state(TrackerConfig(preset="oks"), n_frames=10, fields=())
    assert np.isnan(state.tracks.sie).all() and state.embedding_dim == 0
    back = TrackerState.from_bytes(state.to_bytes())
    assert np.isnan(back.tracks.sie).all() and back == state


@pytest.mark.parametrize("preset", ["he+tie", "oks", "ke+sie"])
def test_step_on_restored_state_is_identical(preset):
    cfg = TrackerConfig(preset=preset, max_missed=5, gallery_size=3)
    people = random_crowd(300, mean_people=5, mean_stay=60, seed=7)
    state = TrackerState.initial()
    for frame in simulate(people, 300, fields=("he", "sie", "tie", "ke"), false_positive_rate=0.2, seed=7):
        restored = TrackerState.from_bytes(state.to_bytes())
        new_a, out_a = step(state, frame.detections, cfg)
        new_b, out_b = step(restored, frame.detections, cfg)
        assert new_a.to_bytes() == new_b.to_bytes()
        assert out_a.track_ids.tobytes() == out_b.track_ids.tobytes()
        assert out_a.keypoints.tobytes() == out_b.keypoints.tobytes() == frame.detections.keypoints.tobytes()
        state = new_b  # continue from the restored branch
    assert state.next_id > 5 and len(state.gallery) > 0


def test_step_is_pure():
    cfg = TrackerConfig(max_missed=5)
    state = busy_state(cfg, n_frames=60)
    before = state.to_bytes()
    frame = next(simulate([SimPerson(1, start=(780, 360), velocity=(-2, 1))], 1))
    dets = frame.detections
    det_copy = [a.copy() for a in (dets.keypoints, dets.embeddings, dets.sie, dets.tie_bwd)]
    first = step(state, dets, cfg)
    second = step(state, dets, cfg)
    assert state.to_bytes() == before
    assert first[0] == second[0] and np.array_equal(first[1].track_ids, second[1].track_ids)
    for a, b in zip(det_copy, (dets.keypoints, dets.embeddings, dets.sie, dets.tie_bwd), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="read-only"):
        state.tracks.keypoints[0, 0, 0] = 1.0


def test_state_copies_caller_arrays():
    ids = np.array([7])
    tracks = Tracks.empty(2).take(np.zeros(0, int))
    assert len(tracks) == 0
    fields = {
        name: np.zeros((1, *getattr(tracks, name).shape[1:]), getattr(tracks, name).dtype)
        for name in Tracks.SPEC
    }
    fields["ids"] = ids
    built = Tracks(**fields)
    ids[0] = 99
    assert built.ids.tolist() == [7]


@pytest.mark.slow
def test_size_stays_bounded_over_10000_frames():
    cfg = TrackerConfig(preset="he", max_tracks=16, gallery_size=8, gallery_max_age=300, max_missed=10)
    e = 16
    bound = state_size_bound(cfg.max_tracks, cfg.gallery_size, e)
    assert bound < 20_000  # a fixed budget for this configuration: < 20 kB in Redis per session
    people = random_crowd(10_000, mean_people=6, mean_stay=100, seed=11)
    state = TrackerState.initial()
    largest = 0
    for frame in simulate(people, 10_000, embedding_dim=e, fields=("he",), false_positive_rate=0.1, seed=11):
        state, _ = step(state, frame.detections, cfg)
        if frame.detections.frame_index % 50 == 0:
            largest = max(largest, len(state.to_bytes()))
    assert state.next_id > 400  # hundreds of people came and went
    assert largest <= bound
    assert len(state.tracks) <= 16 and len(state.gallery) <= 8


def test_size_bound_covers_a_full_state():
    bound = state_size_bound(4, 3, 8, 2)
    rng = np.random.default_rng(0)

    def full(cls, n):
        empty = cls.empty(8, 2)
        return cls(**{
            name: (rng.standard_normal((n, *getattr(empty, name).shape[1:])) * 1e9).astype(getattr(empty, name).dtype)
            for name in cls.SPEC
        })  # fmt: skip

    state = TrackerState(full(Tracks, 4), full(Gallery, 3), 2**40, 2**40)
    assert bound - 16 <= len(state.to_bytes()) <= bound


def test_from_bytes_rejects_other_schema_versions_and_garbage():
    data = msgpack.unpackb(TrackerState.initial().to_bytes())
    data["schema"] = SCHEMA_VERSION + 1
    with pytest.raises(
        StateFormatError, match=f"schema version {SCHEMA_VERSION + 1}.*reads version {SCHEMA_VERSION}"
    ):
        TrackerState.from_bytes(msgpack.packb(data))
    with pytest.raises(StateFormatError, match="not valid msgpack"):
        TrackerState.from_bytes(b"\xc1garbage")
    with pytest.raises(StateFormatError, match="no schema version"):
        TrackerState.from_bytes(msgpack.packb([1, 2, 3]))
    data["schema"] = SCHEMA_VERSION
    data["tracks"]["ids"][1] = [5]  # 0 bytes of data cannot fill 5 ids
    with pytest.raises(StateFormatError, match="tracks.ids"):
        TrackerState.from_bytes(msgpack.packb(data))
    data = msgpack.unpackb(TrackerState.initial().to_bytes())
    data["tracks"]["ids"][0] = "<f8"
    with pytest.raises(StateFormatError, match="tracks.ids"):
        TrackerState.from_bytes(msgpack.packb(data))


def test_detections_validate_shapes():
    def frame(*args, **kw):
        return FramePoses(0, 0.0, 640, 480, *args, **kw)

    with pytest.raises(ValueError, match=r"boxes must have shape \(2, 4\)"):
        frame(np.zeros((2, 17, 3)), np.zeros((3, 4)), np.ones(2))
    # The tracker rejects NaN poses (the pose contract itself leaves that to its readers).
    with pytest.raises(ValueError, match="NaN"):
        step(
            TrackerState.initial(),
            frame(np.full((1, 17, 3), np.nan), np.zeros((1, 4)), np.ones(1)),
            TrackerConfig(),
        )
    with pytest.raises(ValueError, match="NaN"):
        frame(np.zeros((1, 17, 3)), np.zeros((1, 4)), np.ones(1), sie=np.full((1, 17, 2), np.nan))
    with pytest.raises(ValueError, match="all-zero HE"):
        frame(np.zeros((1, 17, 3)), np.zeros((1, 4)), np.ones(1), embeddings=np.zeros((1, 4)))


def test_tracker_core_does_not_import_torch():
    code = (
        "import sys\n"
        "import posestream.tracker.step, posestream.tracker.stores, posestream.tracker.costs, posestream.tracker.assignment, posestream.tracker.state, posestream.tracker.synthetic\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
