"""Cost terms on tiny hand-computed examples, and their combination with gating."""

import math

import numpy as np
import pytest

from posestream.models.poses import FramePoses
from posestream.tracker.config import TrackerConfig
from posestream.tracker.costs import (
    check_detection_fields,
    combined_cost,
    iou_cost,
    ke_cost,
    oks_cost,
    person_centre_sie,
    psi_he,
    psi_tie,
    sie_cost,
)


def frame(keypoints, boxes, scores, **fields):
    """One frame's detected people (a 1280x720 frame 0)."""
    return FramePoses(0, 0.0, 1280, 720, keypoints, boxes, scores, **fields)


def people(n, *, box=(0.0, 0.0, 10.0, 10.0), score=0.9, **fields):
    """n people with all 17 keypoints at the origin (score ``score``) and the given box."""
    kp = np.zeros((n, 17, 3), np.float32)
    kp[:, :, 2] = score
    return frame(kp, np.tile(np.asarray(box, np.float32), (n, 1)), np.ones(n, np.float32), **fields)


def joints(n, xy):
    """(n, 17, 2) with every joint at xy."""
    return np.tile(np.asarray(xy, np.float32), (n, 17, 1))


def test_psi_he_is_squared_l2_of_unit_embeddings():
    tracks = people(1, embeddings=[[2.0, 0.0]])  # normalised to [1, 0] on construction
    dets = people(4, embeddings=[[1, 0], [0, 3], [-1, 0], [1, 1]])
    np.testing.assert_allclose(psi_he(tracks, dets), [[0.0, 2.0, 4.0, 2.0 - math.sqrt(2.0)]], atol=1e-6)


def test_iou_cost():
    a = people(1, box=(0, 0, 2, 2))
    b = frame(np.zeros((3, 17, 3)), [[1, 1, 3, 3], [5, 5, 6, 6], [0, 0, 2, 2]], np.ones(3))
    np.testing.assert_allclose(iou_cost(a, b), [[1 - 1 / 7, 1.0, 0.0]])


def test_oks_cost_one_shared_joint():
    # Only the nose is present in both: OKS = exp(-d^2 / (2 s^2 (2 sigma)^2)), s^2 = box area.
    t = people(1, score=0.0)
    d = people(2, score=0.0)
    t.keypoints[0, 0] = (0, 0, 0.9)
    d.keypoints[:, 0] = (1, 0, 0.9)
    d.keypoints[1, 0, 2] = 0.1  # second detection: nose below the keypoint threshold -> nothing shared
    expected = math.exp(-1.0 / (2 * 100.0 * (2 * 0.026) ** 2))
    np.testing.assert_allclose(oks_cost(t, d), [[1 - expected, 1.0]], rtol=1e-6)


def test_oks_cost_identical_poses_is_zero():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 100, (2, 17, 2)), np.full((2, 17, 1), 0.9)], axis=2)
    d = frame(kp, [[0, 0, 100, 100]] * 2, np.ones(2))
    c = oks_cost(d, d)
    np.testing.assert_allclose(np.diag(c), 0.0, atol=1e-12)
    assert c[0, 1] > 0.5


def test_psi_tie_eq9_in_person_scales():
    # ||TIE_bwd_i - SIE_j|| = |(10,0) - (13,4)| = 5, ||TIE_fwd_j - SIE_i|| = |(6,8) - (0,0)| = 10,
    # mean (5 + 10) / 2 = 7.5, divided by the person scale sqrt(100) = 10.
    tracks = people(1, sie=joints(1, (0, 0)), tie_bwd=joints(1, (10, 0)))
    tie_fwd = joints(1, (6, 8))
    tie_fwd[0, 3] = (500, 500)  # a joint below the keypoint threshold must not count
    dets = people(1, sie=joints(1, (13, 4)), tie_fwd=tie_fwd)
    dets.keypoints[0, 3, 2] = 0.1
    np.testing.assert_allclose(psi_tie(tracks, dets), [[0.75]])


def test_psi_tie_scale_is_mean_of_both_people():
    tracks = people(1, box=(0, 0, 10, 10), sie=joints(1, (0, 0)), tie_bwd=joints(1, (10, 0)))
    dets = people(1, box=(0, 0, 20, 20), sie=joints(1, (13, 4)), tie_fwd=joints(1, (6, 8)))
    np.testing.assert_allclose(psi_tie(tracks, dets), [[7.5 / 15.0]])


def test_psi_tie_without_shared_joints_compares_predicted_centres():
    tracks = people(1, sie=joints(1, (0, 0)), tie_bwd=joints(1, (10, 0)))
    dets = people(1, sie=joints(1, (13, 4)), tie_fwd=joints(1, (6, 8)))
    tracks.keypoints[0, 8:, 2] = 0.0
    dets.keypoints[0, :8, 2] = 0.0
    np.testing.assert_allclose(psi_tie(tracks, dets), [[0.75]])


def test_sie_and_ke_smoothness_baselines():
    tracks = people(1, sie=joints(1, (0, 0)), tags=np.full((1, 17), 1.0))
    dets = people(
        2, sie=np.concatenate([joints(1, (3, 4)), joints(1, (0, 0))]), tags=[[1.5] * 17, [1.0] * 17]
    )
    np.testing.assert_allclose(sie_cost(tracks, dets), [[0.5, 0.0]])
    np.testing.assert_allclose(ke_cost(tracks, dets), [[0.5, 0.0]])
    t2 = people(1, tags=np.zeros((1, 17, 2)))
    d2 = people(1, tags=np.tile([3.0, 4.0], (1, 17, 1)))
    np.testing.assert_allclose(ke_cost(t2, d2), [[5.0]])


def test_person_centre_sie_fills_every_joint_with_the_centre():
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, 0] = np.arange(17)
    kp[0, :, 2] = 0.9
    kp[0, 16] = (1000, 1000, 0.0)  # absent: ignored
    sie = person_centre_sie(kp)
    assert sie.shape == (1, 17, 2)
    np.testing.assert_allclose(sie[0], np.tile([7.5, 0.0], (17, 1)))


def test_combined_cost_weights_and_gates():
    cfg = TrackerConfig(preset="he+tie", lambda_he=3.0, lambda_tie=1.0, gate_he=1.0, gate_tie=1.0)
    tracks = people(1, embeddings=[[1, 0]], sie=joints(1, (0, 0)), tie_bwd=joints(1, (10, 0)))
    dets = people(
        3,
        embeddings=[[1, 0], [0, 1], [1, 0]],  # he: 0, 2 (> gate), 0
        sie=np.concatenate([joints(1, (13, 4)), joints(1, (13, 4)), joints(1, (100, 0))]),
        tie_fwd=np.concatenate(
            [joints(1, (6, 8)), joints(1, (6, 8)), joints(1, (0, 0))]
        ),  # tie: .75, .75, 4.5
        tie_bwd=joints(3, (0, 0)),
    )
    c = combined_cost(tracks, dets, cfg)
    np.testing.assert_allclose(c[0, 0], 3 * 0.0 + 0.75)
    assert np.isinf(c[0, 1]) and np.isinf(c[0, 2])
    # Raising the gates makes them possible again, with the weighted sum as cost.
    loose = TrackerConfig(preset="he+tie", gate_he=4.0, gate_tie=10.0)
    np.testing.assert_allclose(combined_cost(tracks, dets, loose)[0], [0.75, 6.75, 4.5])


def test_combined_cost_treats_unknown_track_values_as_the_gate():
    cfg = TrackerConfig(preset="he", gate_he=1.0)
    tracks = people(1)
    object.__setattr__(tracks, "embeddings", np.full((1, 2), np.nan, np.float32))
    dets = people(1, embeddings=[[1, 0]])
    np.testing.assert_allclose(combined_cost(tracks, dets, cfg), [[3.0 * 1.0]])


def test_missing_fields_name_the_preset():
    dets = people(1)
    with pytest.raises(ValueError, match=r"'he\+tie'.*embeddings"):
        check_detection_fields(dets, TrackerConfig(preset="he+tie"))
    with pytest.raises(ValueError, match=r"'tie'.*sie"):
        check_detection_fields(people(1, embeddings=[[1.0]]), TrackerConfig(preset="tie"))
    check_detection_fields(dets, TrackerConfig(preset="oks"))  # keypoints and boxes suffice
    with pytest.raises(ValueError, match="embeddings"):
        psi_he(people(1, embeddings=[[1.0]]), dets)


def test_costs_of_empty_sets_have_empty_shapes():
    empty, one = people(0, embeddings=np.zeros((0, 4))), people(1, embeddings=[[1, 0, 0, 0]])
    assert psi_he(empty, one).shape == (0, 1)
    assert iou_cost(one, empty).shape == (1, 0)
    assert oks_cost(empty, empty).shape == (0, 0)
    assert combined_cost(empty, one, TrackerConfig(preset="he")).shape == (0, 1)
