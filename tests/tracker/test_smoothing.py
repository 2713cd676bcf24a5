"""One-Euro keypoint smoothing: less jitter on a still person, state that survives a store, bounded state."""

import dataclasses

import msgpack
import numpy as np
import pytest

from posestream.tracker.config import TrackerConfig
from posestream.tracker.smoothing import one_euro_alpha
from posestream.tracker.state import SCHEMA_VERSION, TrackerState, state_size_bound
from posestream.tracker.step import step
from posestream.tracker.synthetic import SimPerson, simulate

SMOOTH = TrackerConfig(preset="oks", smooth=True)


def run(config, people, n_frames, state=None, **sim):
    """(state after the clip, [(track ids, keypoints) per frame], the simulated frames)."""
    state = state or TrackerState.initial()
    out, frames = [], []
    for frame in simulate(people, n_frames, fields=(), shuffle=False, **sim):
        state, poses = step(state, frame.detections, config)
        out.append((poses.track_ids.copy(), poses.keypoints.copy()))
        frames.append(frame)
    return state, out, frames


def truth_of(person, frame_index):
    """The noise-free joints of a SimPerson at a frame: the same clip with no keypoint noise."""
    frame = list(simulate([person], frame_index + 1, fields=(), keypoint_noise=0.0, shuffle=False))[-1]
    return frame.detections.keypoints[0, :, :2]


def test_alpha_is_the_first_order_low_pass_factor():
    # tau = 1 / (2 pi fc); alpha = 1 / (1 + tau / te): fc = 1 / (2 pi) Hz and te = 1 s give 1/2.
    assert one_euro_alpha(1 / (2 * np.pi), 1.0) == pytest.approx(0.5)
    assert one_euro_alpha(1.0, 1e6) == pytest.approx(1.0, abs=1e-5)
    assert one_euro_alpha(1.0, 1e-6) == pytest.approx(0.0, abs=1e-5)


def test_off_by_default_reports_the_detections_unchanged():
    assert TrackerConfig().smooth is False
    state, out, frames = run(TrackerConfig(preset="oks"), [SimPerson(0, start=(400, 300))], 20)
    assert state.filters is None
    for (_, kp), frame in zip(out, frames, strict=True):
        np.testing.assert_array_equal(kp, frame.detections.keypoints)


def test_a_still_person_jitters_less_and_a_moving_one_stays_close():
    still, moving = SimPerson(0, start=(400, 300)), SimPerson(1, start=(200, 500), velocity=(4.0, 0.0))
    n = 150
    noise = 3.0
    _, raw, _ = run(TrackerConfig(preset="oks"), [still, moving], n, keypoint_noise=noise)
    _, smooth, _ = run(SMOOTH, [still, moving], n, keypoint_noise=noise)
    truth = {pid: np.stack([truth_of(p, t) for t in range(n)]) for pid, p in ((0, still), (1, moving))}

    def error(out, pid):  # mean joint error (px) after the first second, person pid (track id = pid here)
        errs = [np.linalg.norm(kp[ids == pid][0, :, :2] - truth[pid][t], axis=1).mean()
                for t, (ids, kp) in enumerate(out) if t >= 30]  # fmt: skip
        return float(np.mean(errs))

    assert [sorted(ids.tolist()) for ids, _ in smooth] == [sorted(ids.tolist()) for ids, _ in raw]
    assert error(smooth, 0) < 0.6 * error(raw, 0)  # still: the filter removes most of the noise
    assert error(smooth, 1) < 2.0 * error(raw, 1) + 2.0  # 4 px/frame: some lag, bounded
    # Only (x, y) change; scores and boxes are reported as detected.
    for (_, kp_s), (_, kp_r) in zip(smooth, raw, strict=True):
        np.testing.assert_array_equal(kp_s[:, :, 2], kp_r[:, :, 2])


def test_low_score_joints_are_reported_raw_and_leave_their_filter_alone():
    person = SimPerson(0, start=(400, 300))
    state, _, _ = run(SMOOTH, [person], 10)
    frame = list(simulate([person], 11, fields=(), shuffle=False))[-1].detections
    kp = frame.keypoints.copy()
    kp[0, 5, :2] += 50.0  # a wild guess...
    kp[0, 5, 2] = 0.1  # ...at a low score
    frame = dataclasses.replace(frame, keypoints=kp)
    after, poses = step(state, frame, SMOOTH)
    np.testing.assert_array_equal(poses.keypoints[0, 5], kp[0, 5])
    np.testing.assert_array_equal(after.filters.x[0, 5], state.filters.x[0, 5])
    assert after.filters.t[0, 5] == state.filters.t[0, 5] < after.filters.t[0, 6] == frame.timestamp


def test_filters_follow_the_active_tracks_and_stay_bounded():
    cfg = dataclasses.replace(SMOOTH, max_missed=3)
    people = [SimPerson(0, start=(300, 300)), SimPerson(1, start=(800, 300), visible=((0, 20),))]
    state, out, _ = run(cfg, people, 19)
    assert state.filters.ids.tolist() == [0, 1]
    state, out, _ = run(cfg, people, 30)  # person 1 gone for 10 > max_missed frames: track lost
    assert state.filters.ids.tolist() == [0] == state.tracks.ids.tolist()
    assert len(state.to_bytes()) <= state_size_bound(cfg.max_tracks, cfg.gallery_size, 0, 0, smooth=True)


def test_a_state_written_before_smoothing_existed_still_loads_and_smooths():
    cfg = TrackerConfig(preset="oks")
    state, _, _ = run(cfg, [SimPerson(0, start=(400, 300))], 5)
    # The bytes as the tracker wrote them before TrackerState had filters: no "filters" key.
    old = msgpack.packb(
        {"schema": SCHEMA_VERSION, "frame_index": state.frame_index, "next_id": state.next_id,
         "tracks": state.tracks._to_msg(), "gallery": state.gallery._to_msg()},
        use_bin_type=True,
    )  # fmt: skip
    assert old == state.to_bytes()  # unsmoothed states are still written exactly so
    back = TrackerState.from_bytes(old)
    assert back.filters is None and back == state
    frame = list(simulate([SimPerson(0, start=(400, 300))], 6, fields=(), shuffle=False))[-1]
    after, _ = step(back, frame.detections, SMOOTH)
    assert after.filters.ids.tolist() == [0]
    assert TrackerState.from_bytes(after.to_bytes()) == after


def test_smoothing_resumes_exactly_after_the_state_went_through_redis(redis_store):
    """A worker change mid-clip: the state is saved to Redis, another tracker loads it and goes on."""
    people = [SimPerson(0, start=(300, 300), velocity=(2.0, 1.0)), SimPerson(1, start=(800, 400))]
    frames = [f.detections for f in simulate(people, 60, fields=(), keypoint_noise=2.0, seed=3)]
    state = TrackerState.initial()
    whole = []
    for dets in frames:
        state, poses = step(state, dets, SMOOTH)
        whole.append(poses.keypoints)

    state = TrackerState.initial()
    resumed = []
    for dets in frames[:25]:  # worker A
        state, poses = step(state, dets, SMOOTH)
        resumed.append(poses.keypoints)
    redis_store.save("clip", state, 0)
    state, version = redis_store.load("clip")  # worker B: only what Redis holds
    assert version == 1 and state.filters is not None and len(state.filters) == 2
    for dets in frames[25:]:
        state, poses = step(state, dets, SMOOTH)
        resumed.append(poses.keypoints)
    for a, b in zip(whole, resumed, strict=True):
        assert a.tobytes() == b.tobytes()
    assert not np.array_equal(whole[-1], frames[-1].keypoints)  # it did smooth


@pytest.mark.parametrize(
    "field, value",
    [("smooth_min_cutoff", 0.0), ("smooth_d_cutoff", -1.0), ("smooth_beta", -0.1), ("smooth", 1)],
)
def test_bad_parameters_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        TrackerConfig(**{field: value})
