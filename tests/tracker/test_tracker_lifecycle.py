"""Track lifecycle on synthetic pose sequences: matching, confirmation, loss, re-identification."""

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from posestream.models.poses import FramePoses
from posestream.tracker.config import TrackerConfig
from posestream.tracker.costs import iou_cost
from posestream.tracker.state import CONFIRMED, TENTATIVE, TrackerState
from posestream.tracker.step import step
from posestream.tracker.synthetic import SimPerson, random_crowd, simulate


@dataclass
class Frame:
    person_ids: np.ndarray
    track_ids: np.ndarray
    state: TrackerState
    detections: FramePoses


def run(people, n_frames, config, **sim):
    state = TrackerState.initial()
    history = []
    for frame in simulate(people, n_frames, **sim):
        state, out = step(state, frame.detections, config)
        # The output is the input frame with track ids: same people, same order.
        assert len(out) == len(frame.detections)
        np.testing.assert_array_equal(out.keypoints, frame.detections.keypoints)
        history.append(Frame(frame.person_ids, out.track_ids, state, frame.detections))
    return history


def ids_per_person(history):
    """{person id: set of track ids it was reported with (ignoring -1)}."""
    out = {}
    for f in history:
        for pid, tid in zip(f.person_ids.tolist(), f.track_ids.tolist(), strict=True):
            out.setdefault(pid, set())
            if tid >= 0:
                out[pid].add(tid)
    return out


def id_of(history, frame, pid):
    f = history[frame]
    (where,) = np.flatnonzero(f.person_ids == pid)
    return int(f.track_ids[where])


def assert_one_id_each(history):
    ids = ids_per_person(history)
    assert all(len(v) == 1 for v in ids.values()), ids
    firsts = [next(iter(v)) for v in ids.values()]
    assert len(set(firsts)) == len(firsts), f"two people share an id: {ids}"
    return ids


def test_oks_tracker_two_people_walking_past_each_other():
    near = SimPerson(0, start=(200, 360), velocity=(4, 0), height=240)
    far = SimPerson(1, start=(600, 330), velocity=(-4, 0), height=160)
    history = run([near, far], 100, TrackerConfig(preset="oks"), fields=())
    overlap = max(1 - iou_cost(f.detections, f.detections)[0, 1] for f in history)
    assert overlap > 0.4, "the scenario must make their boxes overlap"
    assert_one_id_each(history)
    assert all((f.track_ids >= 0).all() for f in history)  # people on the first frame get ids at once


@pytest.mark.parametrize("preset", ["he+tie", "he"])
def test_crossing_people_with_fully_overlapping_boxes_keep_ids_by_he(preset):
    a = SimPerson(0, start=(300, 360), velocity=(4, 0), height=200)
    b = SimPerson(1, start=(700, 360), velocity=(-4, 0), height=200)
    history = run([a, b], 100, TrackerConfig(preset=preset), he_noise=0.3)
    assert (
        max(1 - iou_cost(f.detections, f.detections)[0, 1] for f in history) > 0.9
    )  # boxes coincide up to keypoint noise
    assert_one_id_each(history)


def test_crossing_scenario_defeats_the_box_only_tracker():
    # The same sequence is hard: IoU alone cannot tell the two apart when their boxes coincide.
    a = SimPerson(0, start=(300, 360), velocity=(4, 0), height=200)
    b = SimPerson(1, start=(700, 360), velocity=(-4, 0), height=200)
    ids = ids_per_person(run([a, b], 100, TrackerConfig(preset="iou"), he_noise=0.3))
    assert any(len(v) > 1 for v in ids.values())


def test_person_absent_20_frames_comes_back_from_the_gallery():
    cfg = TrackerConfig(max_missed=5)
    a = SimPerson(0, start=(200, 300), velocity=(2, 0), visible=((0, 30), (50, 100)))
    b = SimPerson(1, start=(900, 300), velocity=(-1, 0))
    history = run([a, b], 100, cfg)
    ids = assert_one_id_each(history)
    a_id = next(iter(ids[0]))
    assert a_id in history[45].state.gallery.ids.tolist()  # lost, waiting in the gallery
    assert a_id not in history[45].state.tracks.ids.tolist()
    assert id_of(history, 50, 0) == a_id  # re-identified on its first frame back
    assert history[-1].state.next_id == 2  # no id was spent on the return
    assert len(history[-1].state.gallery) == 0


def test_person_absent_20_frames_kept_active_with_default_max_missed():
    a = SimPerson(0, start=(200, 300), velocity=(2, 0), visible=((0, 30), (50, 100)))
    b = SimPerson(1, start=(900, 300), velocity=(-1, 0))
    history = run([a, b], 100, TrackerConfig())
    a_id = next(iter(assert_one_id_each(history)[0]))
    tracks = history[45].state.tracks
    assert a_id in tracks.ids.tolist() and tracks.misses[tracks.ids == a_id][0] == 16


@pytest.mark.parametrize("preset", ["he+tie", "oks"])
def test_person_leaving_and_reentering_the_frame_gets_the_old_id(preset):
    # Walks out of view at frame 40 and back in 100 frames later, 300 px further on.
    a = SimPerson(0, start=(100, 300), velocity=(3, 0), visible=((0, 40), (140, 200)))
    b = SimPerson(1, start=(1000, 400), velocity=(0, 0))
    history = run([a, b], 200, TrackerConfig(preset=preset))
    assert_one_id_each(history)
    assert history[-1].state.next_id == 2


def test_tentative_confirmed_lost_transitions():
    cfg = TrackerConfig(n_init=3, confirm_on_first_frame=False, max_missed=2, gallery_max_age=4)
    a = SimPerson(0, start=(300, 300), visible=((0, 10),))
    flicker = SimPerson(1, start=(900, 300), visible=((1, 2),))
    history = run([a, flicker], 20, cfg)
    assert [id_of(history, t, 0) for t in range(4)] == [-1, -1, 0, 0]  # id once confirmed
    assert history[1].state.tracks.status.tolist() == [TENTATIVE, TENTATIVE]
    assert id_of(history, 1, 1) == -1
    assert history[2].state.tracks.status.tolist() == [CONFIRMED]  # the flicker's track is gone
    for t, misses in [(10, 1), (11, 2)]:  # absent: still active
        assert history[t].state.tracks.misses.tolist() == [misses]
    s = history[12].state  # third miss > max_missed: lost, into the gallery
    assert len(s.tracks) == 0 and s.gallery.ids.tolist() == [0] and s.gallery.last_seen.tolist() == [9]
    assert history[13].state.gallery.ids.tolist() == [0]  # age 13 - 9 = 4 <= gallery_max_age
    assert len(history[14].state.gallery) == 0  # aged out
    assert history[-1].state.next_id == 1  # the flicker never spent an id


def test_report_tentative_spends_ids_at_birth():
    cfg = TrackerConfig(n_init=3, confirm_on_first_frame=False, report_tentative=True)
    a = SimPerson(0, start=(300, 300))
    flicker = SimPerson(1, start=(900, 300), visible=((1, 2),))
    history = run([a, flicker], 5, cfg)
    assert [id_of(history, t, 0) for t in range(5)] == [0] * 5
    assert id_of(history, 1, 1) == 1
    assert history[-1].state.next_id == 2  # burnt by the flicker


def test_first_frame_people_get_ids_at_once():
    a, b = SimPerson(0, start=(300, 300)), SimPerson(1, start=(900, 300))
    late = SimPerson(2, start=(600, 100), visible=((5, 20),))
    history = run([a, b, late], 20, TrackerConfig(n_init=3))
    assert sorted(history[0].track_ids.tolist()) == [0, 1]
    assert [id_of(history, t, 2) for t in (5, 6, 7)] == [-1, -1, 2]


def test_low_score_detections_continue_tracks_but_do_not_start_them():
    cfg = TrackerConfig(preset="oks", min_det_score=0.5, n_init=1)
    frames = [f.detections for f in simulate([SimPerson(0, start=(300, 300))], 3, fields=())]
    low = [dataclasses.replace(d, scores=np.full(len(d), 0.3, np.float32)) for d in frames]
    state, out = step(TrackerState.initial(), low[0], cfg)
    assert out.track_ids.tolist() == [-1] and len(state.tracks) == 0
    state, out = step(state, frames[1], cfg)
    state, out = step(state, low[2], cfg)
    assert out.track_ids.tolist() == [0]


def test_ids_are_never_reused():
    people = random_crowd(1500, mean_people=6, mean_stay=80, seed=3)
    cfg = TrackerConfig(max_missed=10, gallery_size=4, gallery_max_age=60)
    history = run(people, 1500, cfg, false_positive_rate=0.3, missing_joint_rate=0.2, seed=3)
    gone, seen = set(), set()
    previous = set()
    for f in history:
        alive = set(f.state.tracks.ids.tolist()) | set(f.state.gallery.ids.tolist())
        alive.discard(-1)
        reported = set(f.track_ids.tolist()) - {-1}
        assert not (alive | reported) & gone, "an id came back after its track was forgotten"
        new = sorted(alive - seen)
        assert new == list(range(len(seen), len(seen) + len(new))), "ids must be spent in order"
        seen |= alive
        gone |= previous - alive
        previous = alive
    assert history[-1].state.next_id == len(seen)
    assert len(gone) > 20  # the scenario really retires many tracks


def test_crowd_quality_regression():
    # People coming and going, crossing paths at random: HE+TIE must give every person one
    # id and never give one id to two people (IDF1 = 1 on this sequence).
    people = random_crowd(2000, mean_people=6, mean_stay=200, seed=1)
    history = run(people, 2000, TrackerConfig())
    ids = assert_one_id_each(history)
    assert len(ids) == len(people)


def test_max_tracks_caps_active_tracks():
    people = [SimPerson(i, start=(100 + 150 * i, 300)) for i in range(5)]
    history = run(people, 3, TrackerConfig(max_tracks=3))
    for f in history:
        assert len(f.state.tracks) == 3
        assert sorted(f.track_ids.tolist()) == [-1, -1, 0, 1, 2]


def test_gallery_is_capped_by_count():
    people = [SimPerson(i, start=(100 + 100 * i, 300), visible=((0, 5 + i),)) for i in range(8)]
    history = run(people, 40, TrackerConfig(max_missed=1, gallery_size=3))
    assert max(len(f.state.gallery) for f in history) == 3
    last_seen = history[20].state.gallery.last_seen
    assert sorted(last_seen.tolist()) == [9, 10, 11]  # the most recently seen three


def test_missing_preset_field_is_a_clear_error_but_empty_frames_are_fine():
    cfg = TrackerConfig(preset="he+tie")
    frame = next(simulate([SimPerson(0, start=(300, 300))], 1, fields=("sie", "tie")))
    with pytest.raises(ValueError, match=r"preset 'he\+tie' needs detections.embeddings"):
        step(TrackerState.initial(), frame.detections, cfg)
    state, out = step(TrackerState.initial(), FramePoses.empty(0, 0.0, 1280, 720), cfg)
    assert len(out) == 0 and state.frame_index == 1


def test_he_dimension_change_mid_session_is_rejected():
    frames = [f.detections for f in simulate([SimPerson(0, start=(300, 300))], 1, embedding_dim=8)]
    other = [f.detections for f in simulate([SimPerson(0, start=(300, 300))], 1, embedding_dim=16)]
    state, _ = step(TrackerState.initial(), frames[0], TrackerConfig())
    with pytest.raises(ValueError, match="HE has 16 dimensions.*8"):
        step(state, other[0], TrackerConfig())


def test_tracked_output_is_the_input_frame_with_track_ids():
    frame = next(simulate([SimPerson(0, start=(300, 300)), SimPerson(1, start=(700, 300))], 1))
    _, poses = step(TrackerState.initial(), frame.detections, TrackerConfig())
    assert isinstance(poses, FramePoses)
    assert poses.frame_index == 0 and poses.width == 1280
    np.testing.assert_array_equal(poses.keypoints, frame.detections.keypoints)
    assert sorted(poses.track_ids.tolist()) == [0, 1]
    assert (frame.detections.track_ids == -1).all()  # the input is not modified
    np.testing.assert_array_equal(poses.embeddings, frame.detections.embeddings)


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_track_he_is_a_renormalised_moving_average(momentum):
    cfg = TrackerConfig(preset="oks", embedding_momentum=momentum)
    frames = [f.detections for f in simulate([SimPerson(0, start=(300, 300))], 2, fields=())]
    e0, e1 = np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]])
    d0, d1 = (dataclasses.replace(d, embeddings=e) for d, e in zip(frames, (e0, e1), strict=True))
    state, _ = step(TrackerState.initial(), d0, cfg)
    np.testing.assert_allclose(state.tracks.embeddings, e0)
    state, _ = step(state, d1, cfg)
    m = min(momentum, 1 / 2)  # a running mean while the track is young: hits / (hits + 1) after one hit
    expected = m * e0 + (1 - m) * e1
    np.testing.assert_allclose(state.tracks.embeddings, expected / np.linalg.norm(expected), rtol=1e-6)


def test_returning_person_seen_half_hidden_first_gets_the_old_id_back():
    # A person is lost to the gallery, re-emerges half hidden (an embedding unlike theirs,
    # few joints) and becomes clearly visible a few frames later: within reid_window the
    # young track takes the old id back; the interim id is retired, never reused.
    cfg = TrackerConfig(preset="oks", max_missed=3, n_init=2, reid_window=10)
    rng = np.random.default_rng(0)
    e_a = np.eye(8, dtype=np.float32)[:1]
    e_odd = (np.eye(8, dtype=np.float32)[1:2] + e_a) / np.sqrt(2.0)  # Psi_HE 0.59 > 0.5 from e_a

    def det(x: float, emb: np.ndarray, visible: int) -> FramePoses:
        kp = np.zeros((1, 17, 3), np.float32)
        kp[0, :, 0] = x + rng.normal(0, 1, 17)
        kp[0, :, 1] = np.linspace(100, 300, 17)
        kp[0, :visible, 2] = 0.9
        return FramePoses(0, 0.0, 1280, 720, kp, np.array([[x - 30, 100, x + 30, 300]], np.float32),
                          np.array([0.9], np.float32), embeddings=emb)  # fmt: skip

    state, ids = TrackerState.initial(), []
    for t in range(30):
        if t < 8:
            d = det(100 + 2 * t, e_a, 17)
        elif t < 20:
            d = FramePoses.empty(0, 0.0, 1280, 720)
        elif t < 23:
            d = det(400 + 2 * t, e_odd, 5)  # re-emerging: few joints, odd appearance
        else:
            d = det(400 + 2 * t, e_a, 17)
        state, out = step(state, d, cfg)
        ids.append(out.track_ids.tolist())
    first = ids[0][0]
    assert first >= 0 and all(i == [first] for i in ids[:8])
    assert ids[-1] == [first]  # the old id is back
    shown = {i for frame in ids for i in frame if i >= 0}
    assert len(shown) <= 2 and state.next_id == max(shown) + 1  # at most one interim id, never reused
