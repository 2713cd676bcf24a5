"""The body-shape prior: fitted from known poses, it puts hidden joints back where they were."""

import numpy as np
import pytest

from posestream.models.pose_prior import SHAPE_DIM, PosePrior, fit_pose_prior, normalise_shapes
from posestream.models.skeleton import KEYPOINT_INDEX
from tests.models.test_spatial_decode import TEMPLATE

EXTREMITIES = [KEYPOINT_INDEX[n] for n in ("left_wrist", "right_wrist", "left_ankle", "right_ankle")]


def people(rng, n, jitter=0.5):
    """(n, 17, 3) upright people of the TEMPLATE family: random size, place, arm and leg swing."""
    out = []
    for _ in range(n):
        shape = TEMPLATE.copy()
        swing, stride = rng.uniform(-0.08, 0.08), rng.uniform(-0.1, 0.1)
        shape[[7, 9], 0] += [swing / 2, swing]  # left arm swings, the right one the other way
        shape[[8, 10], 0] -= [swing / 2, swing]
        shape[[13, 15], 0] += [stride / 2, stride]
        shape[[14, 16], 0] -= [stride / 2, stride]
        height = rng.uniform(60, 300)
        xy = rng.uniform(0, 600, 2) + shape * height + rng.normal(0, jitter, shape.shape)
        out.append(np.concatenate([xy, np.full((17, 1), 2.0)], axis=1))
    return np.stack(out)


def test_hidden_extremities_come_back_where_they_were():
    rng = np.random.default_rng(0)
    prior = fit_pose_prior(people(rng, 400))
    reliable = np.ones(17, bool)
    reliable[EXTREMITIES] = False
    for truth in people(rng, 20):
        guess = truth[:, :2].copy()
        guess[~reliable] = [-500.0, 900.0]  # wherever the decoder put them: not read
        done = prior.complete(guess, reliable, noise=0.5)
        height = truth[:, 1].max() - truth[:, 1].min()
        np.testing.assert_array_equal(done[reliable], truth[reliable, :2])  # the reliable joints stay
        # Elbows and knees say where the swing goes (within the joints' own jitter, doubled by the lever).
        assert np.abs(done[~reliable] - truth[~reliable, :2]).max() < 0.04 * height


def test_completion_follows_the_person_not_the_frame():
    rng = np.random.default_rng(1)
    prior = fit_pose_prior(people(rng, 200))
    truth = people(rng, 1)[0, :, :2]
    reliable = np.arange(17) < 11  # head, arms; no hips or legs
    base = prior.complete(truth, reliable, noise=1.0)
    moved = prior.complete(3.0 * truth + [40.0, -7.0], reliable, noise=3.0)  # noise scales with the person
    np.testing.assert_allclose(moved, 3.0 * base + [40.0, -7.0], atol=1e-6)


def test_what_the_prior_cannot_place_is_refused():
    prior = fit_pose_prior(people(np.random.default_rng(2), 100))
    xy = people(np.random.default_rng(3), 1)[0, :, :2]
    one = np.zeros(17, bool)
    one[0] = True
    assert prior.complete(xy, one, 1.0) is None  # one joint fixes no scale
    two = one.copy()
    two[5] = True
    assert prior.complete(np.zeros((17, 2)), two, 1.0) is None  # both at one point
    mirrored = xy.copy()
    mirrored[:, 1] *= -1  # upside down: the best scale onto the mean shape is negative
    assert prior.complete(mirrored, np.ones(17, bool) & (np.arange(17) < 13), 1.0) is None
    np.testing.assert_array_equal(prior.complete(xy, np.ones(17, bool), 1.0), xy)  # nothing to complete


def test_fit_uses_only_fully_labelled_poses_and_needs_enough_of_them():
    rng = np.random.default_rng(4)
    good = people(rng, 100)
    broken = people(rng, 50)
    broken[:, 3, :2] = 1e6  # absurd ear, but unlabelled: these poses are not used
    broken[:, 3, 2] = 0
    a, b = fit_pose_prior(good), fit_pose_prior(np.concatenate([good, broken]))
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.cov, b.cov)
    np.testing.assert_allclose(a.mean, normalise_shapes(good[..., :2]).mean(axis=0))
    with pytest.raises(ValueError, match="at least 35"):
        fit_pose_prior(good[:SHAPE_DIM])


def test_dict_round_trip_and_validation():
    prior = fit_pose_prior(people(np.random.default_rng(5), 60))
    back = PosePrior.from_dict(prior.to_dict())
    np.testing.assert_array_equal(back.mean, prior.mean)
    np.testing.assert_array_equal(back.cov, prior.cov)
    with pytest.raises(ValueError, match="mean"):
        PosePrior(np.zeros(10), np.eye(SHAPE_DIM))
    lopsided = np.eye(SHAPE_DIM)
    lopsided[0, 1] = 0.5
    with pytest.raises(ValueError, match="symmetric"):
        PosePrior(np.zeros(SHAPE_DIM), lopsided)


def test_decoder_puts_a_weak_misplaced_ankle_where_the_body_says():
    """``complete_with_prior``: a joint whose heatmap only has a weak peak in the wrong place."""
    import dataclasses

    import torch

    from posestream.models.decode import DecodeConfig, decode_spatial
    from posestream.models.targets import to_output_coords
    from tests.models.test_spatial_decode import _maps, known_poses

    prior = fit_pose_prior(people(np.random.default_rng(6), 300))
    poses = known_poses(np.random.default_rng(7), people=1)
    heat, tags, svf = _maps(poses)
    ankle = KEYPOINT_INDEX["left_ankle"]
    heat[ankle] = 0.15 * torch.roll(heat[ankle], shifts=10, dims=1)  # 40 input pixels to the right
    plain = DecodeConfig(refine="gaussian", min_joints=2)
    kp, _ = decode_spatial(heat, tags, svf, plain, stride=4)
    assert kp.shape[0] == 1 and np.abs(kp[0, ankle, :2] - poses[0, ankle, :2]).max() > 10.0
    on = dataclasses.replace(plain, prior_threshold=0.2)
    done, _ = decode_spatial(heat, tags, svf, on, stride=4, prior=prior)
    assert np.abs(done[0, ankle, :2] - poses[0, ankle, :2]).max() < 4.0  # one output cell
    others = np.arange(17) != ankle
    np.testing.assert_array_equal(done[0, others], kp[0, others])  # confident joints untouched
    x, y = np.round(to_output_coords(done[0, ankle, :2], 4)).astype(int)
    assert done[0, ankle, 2] == pytest.approx(float(heat[ankle, y, x]))  # its score: the heat where it now is
    strict = dataclasses.replace(on, prior_min_joints=17)  # 16 confident joints are not enough
    np.testing.assert_array_equal(decode_spatial(heat, tags, svf, strict, stride=4, prior=prior)[0], kp)
    # Off (the default), the prior changes nothing; on, it must be there.
    np.testing.assert_array_equal(decode_spatial(heat, tags, svf, plain, stride=4, prior=prior)[0], kp)
    with pytest.raises(ValueError, match="pose prior"):
        decode_spatial(heat, tags, svf, on, stride=4)


def test_joints_the_prior_puts_off_the_map_score_zero():
    import torch

    from posestream.models.decode import DecodeConfig, complete_with_prior

    prior = fit_pose_prior(people(np.random.default_rng(8), 300))
    truth = people(np.random.default_rng(9), 1)[0]
    xy = truth[:, :2] - truth[:, :2].min(axis=0)
    truth[:, :2] = xy * 60.0 / np.ptp(xy[:, 1]) + [
        20.0,
        10.0,
    ]  # 60 cells from eyes to ankles at y ~70: off a 64 x 64 map
    joints = np.concatenate([truth[:, :2], np.full((17, 1), 0.5)], axis=1)[None]
    ankles = [KEYPOINT_INDEX["left_ankle"], KEYPOINT_INDEX["right_ankle"]]
    joints[0, ankles] = (30.0, 60.0, 0.05)  # filled weakly at the bottom edge
    heat = torch.full((17, 64, 64), 0.3)
    done = complete_with_prior(joints, heat, prior, DecodeConfig(prior_threshold=0.2))
    assert (done[0, ankles, 1] > 63).all() and (done[0, ankles, 2] == 0).all()
    assert np.abs(done[0, ankles, :2] - truth[ankles, :2]).max() < 0.05 * 60


def test_prior_arrays_cannot_be_changed_in_place():
    prior = fit_pose_prior(people(np.random.default_rng(10), 60))
    with pytest.raises(ValueError, match="read-only"):
        prior.mean[0] = 1.0


def test_prior_decode_fields_are_validated():
    from posestream.models.decode import DecodeConfig

    for bad in ({"prior_threshold": -0.1}, {"prior_noise": 0.0}, {"prior_min_joints": 1}):
        with pytest.raises(ValueError, match="prior_"):
            DecodeConfig(**bad)
