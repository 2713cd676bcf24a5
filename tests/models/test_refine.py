"""Gated Thunder refinement (``posestream.models.refine``): crops, masks, gates, and the estimator hook on vtest.avi."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from posestream.models.geometry import oks_matrix
from posestream.models.refine import (
    RefineConfig,
    crop_batch,
    gate_joints,
    identity_gate,
    mask_other_people,
    person_sizes,
    square_crops,
)
from tests.models.test_movenet_weights import vtest_frame200  # noqa: F401 - fixture
from tests.models.test_thunder import thunder_json  # noqa: F401 - fixture


def _standing(cx: float, top: float, height: float, score: float = 0.9) -> np.ndarray:
    """A rough upright COCO-17 pose (x, y, score) of the given height, centred at cx."""
    rel = np.array(
        [
            (0, 0.05), (-0.03, 0.03), (0.03, 0.03), (-0.06, 0.05), (0.06, 0.05),
            (-0.12, 0.2), (0.12, 0.2), (-0.15, 0.35), (0.15, 0.35), (-0.16, 0.48), (0.16, 0.48),
            (-0.08, 0.52), (0.08, 0.52), (-0.08, 0.75), (0.08, 0.75), (-0.08, 0.97), (0.08, 0.97),
        ]
    )  # fmt: skip
    xy = np.stack([cx + rel[:, 0] * height, top + rel[:, 1] * height], axis=1)
    return np.concatenate([xy, np.full((17, 1), score)], axis=1).astype(np.float32)


def test_config_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="crop_scale"):
        RefineConfig(crop_scale=0.9)
    with pytest.raises(ValueError, match="max_iou"):
        RefineConfig(max_iou=1.5)
    with pytest.raises(ValueError, match="min_identity_oks"):
        RefineConfig(min_identity_oks=2.0)
    with pytest.raises(ValueError, match="max_shift"):
        RefineConfig(max_shift=0.0)


def test_square_crop_covers_the_box_and_maps_pixels_back() -> None:
    boxes = np.array([[100, 50, 140, 170]], np.float32)  # 40 x 120 box
    ((x0, y0, side),) = square_crops(boxes, 1.25)
    assert side == pytest.approx(150) and (x0 + side / 2, y0 + side / 2) == pytest.approx((120, 110))
    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[100:104, 130:134] = 255  # a bright 4x4 block centred at continuous (132, 102)
    crop = crop_batch(rgb, np.array([[x0, y0, side]]))[0]
    ys, xs = np.nonzero(crop[..., 0] > 40)
    w = crop[ys, xs, 0].astype(np.float64)
    u, v = (xs + 0.5) @ w / w.sum(), (ys + 0.5) @ w / w.sum()  # continuous crop coordinates
    assert x0 + u * side / 256 == pytest.approx(132, abs=0.3)
    assert y0 + v * side / 256 == pytest.approx(102, abs=0.3)


def test_crop_outside_the_frame_is_black() -> None:
    rgb = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_batch(rgb, np.array([[-100.0, -100.0, 150.0]]))[0]
    assert crop[:100, :100].max() == 0 and crop[-40:, -40:].min() == 200


def test_mask_paints_the_neighbour_and_keeps_the_person() -> None:
    me, other = _standing(100, 20, 160), _standing(115, 20, 160)  # overlapping people
    kp = np.stack([me, other])
    boxes = np.array([[70, 20, 130, 180], [85, 20, 145, 180]], np.float32)
    square = square_crops(boxes[:1], 1.25)[0]
    rgb = np.random.default_rng(0).integers(0, 256, (240, 260, 3), dtype=np.uint8)
    crop = crop_batch(rgb, square[None])[0]
    out = mask_other_people(crop, square, 0, kp, person_sizes(boxes), RefineConfig())
    mean = crop.reshape(-1, 3).mean(0).astype(np.uint8)
    painted = (out != crop).any(-1)
    assert painted.mean() > 0.01 and (out[painted] == mean).all()
    s = 256 / square[2]

    def at(p: np.ndarray) -> tuple[int, int]:
        u, v = ((p[:2] - square[:2]) * s).astype(int)
        return v, u

    assert np.array_equal(out[at(other[16])], mean)  # the neighbour's right ankle is painted
    for k in (5, 6, 16):  # the person's own shoulders and ankle are kept, where the two overlap
        assert np.array_equal(out[at(me[k])], crop[at(me[k])]), k
    alone = mask_other_people(crop, square, 0, kp[:1], person_sizes(boxes[:1]), RefineConfig())
    assert np.array_equal(alone, crop)


def test_distance_and_score_gates() -> None:
    mp = np.stack([_standing(100, 0, 100, 0.5)])
    th = mp.copy()
    th[0, 0, :2] += (30, 0)  # far: 30 px for a sqrt(area) of 100 px
    th[0, 1, :2] += (3, 0)  # near
    th[0, 2, 2] = 0.4  # less confident than MultiPose
    th[0, 3:, 2] = 0.8
    th[0, :2, 2] = 0.8
    sizes = np.array([100.0])
    acc = gate_joints(mp, th, sizes, np.array([True]), RefineConfig(max_shift=0.1, score_margin=0.0))
    assert not acc[0, 0] and acc[0, 1] and not acc[0, 2] and acc[0, 3:].all()
    acc = gate_joints(mp, th, sizes, np.array([True]), RefineConfig(max_shift=math.inf, score_margin=None))
    assert acc.all()
    assert not gate_joints(mp, th, sizes, np.array([False]), RefineConfig(max_shift=math.inf)).any()


def test_identity_gate_rejects_a_pose_that_locked_onto_the_neighbour() -> None:
    me, other = _standing(100, 20, 160), _standing(112, 20, 160)  # overlapping people
    kp = np.stack([me, other])
    boxes = np.array([[70, 20, 130, 180], [82, 20, 142, 180]], np.float32)
    cfg = RefineConfig(min_identity_oks=0.3)
    thunder = np.stack([other + (2, 1, 0), me + (1, -2, 0)])  # both locked onto the neighbour
    # own OKS alone would pass the threshold; only "higher than with the neighbour" rejects it
    assert oks_matrix(kp[:1], thunder[:1], np.array([9600.0]), 0.2)[0, 0] > 0.3
    assert not identity_gate(kp, boxes, thunder, np.array([0, 1]), cfg).any()
    thunder = np.stack([me + (3, 0, 0), other])
    assert identity_gate(kp, boxes, thunder, np.array([0, 1]), cfg).all()
    assert identity_gate(
        kp, boxes, thunder[::-1], np.array([0, 1]), replace(cfg, min_identity_oks=None)
    ).all()


# ---- with the real weights ------------------------------------------------------------------


@pytest.fixture(scope="module")
def refiner(thunder_json):  # noqa: F811
    from posestream.models.refine import ThunderRefiner

    return ThunderRefiner(RefineConfig(enabled=True), thunder_json)


@pytest.mark.weights
def test_crowd_gate_and_one_batch_per_frame(refiner, vtest_frame200, movenet_tflite) -> None:  # noqa: F811
    from posestream.models.estimator import EstimatorConfig, PoseEstimator
    from posestream.models.geometry import box_iou

    off = EstimatorConfig(device="cpu", refine=RefineConfig(enabled=False))
    fp = PoseEstimator(off, movenet_tflite)([vtest_frame200]).poses[0]
    assert len(fp.scores) >= 4
    calls: list[int] = []
    handle = refiner.model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    try:
        cfg = RefineConfig(
            enabled=True, max_iou=1.0, max_shift=math.inf, score_margin=None, max_mean_joint_score=None
        )
        refiner.config = cfg
        iou = box_iou(fp.boxes, fp.boxes)
        kp, accepted = refiner(vtest_frame200, fp.keypoints, fp.boxes, fp.scores, iou)
        assert calls == [len(fp.scores)], "all crops of a frame must run in one forward"
        assert accepted.all()
        np.testing.assert_array_equal(kp[..., 2], fp.keypoints[..., 2])
        # Thunder agrees with MultiPose on these uncrowded walkers: median joint shift < 0.1 person sizes.
        shift = np.linalg.norm(kp[..., :2] - fp.keypoints[..., :2], axis=-1) / person_sizes(fp.boxes)[:, None]
        assert np.median(shift) < 0.1
        crowded = iou.copy()
        np.fill_diagonal(crowded, 0)
        refiner.config = replace(cfg, max_iou=0.0)
        _, accepted = refiner(vtest_frame200, fp.keypoints, fp.boxes, fp.scores, iou)
        assert not accepted[crowded.max(1) > 0].any()
    finally:
        handle.remove()
        refiner.config = RefineConfig(enabled=True)


@pytest.mark.weights
def test_estimator_hook_changes_only_accepted_joints(vtest_frame200, movenet_tflite, thunder_json) -> None:  # noqa: F811
    from posestream.models.estimator import EstimatorConfig, PoseEstimator

    off = PoseEstimator(EstimatorConfig(device="cpu", refine=RefineConfig(enabled=False)), movenet_tflite)
    assert off.refiner is None
    on_cfg = RefineConfig(enabled=True, max_iou=1.0, max_shift=0.2, score_margin=None)
    on = PoseEstimator(EstimatorConfig(device="cpu", refine=on_cfg), movenet_tflite)
    assert PoseEstimator(EstimatorConfig(device="cpu"), movenet_tflite).refiner is not None  # on by default
    a, b = off([vtest_frame200]).poses[0], on([vtest_frame200]).poses[0]
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.keypoints[..., 2], b.keypoints[..., 2])  # scores stay MultiPose's
    changed = (a.keypoints != b.keypoints).any(-1)
    assert changed.any(), "some joints should be refined"
    shift = np.linalg.norm(a.keypoints[..., :2] - b.keypoints[..., :2], axis=-1)
    assert (shift[changed] <= 0.2 * person_sizes(a.boxes)[:, None].repeat(17, 1)[changed] + 1e-3).all()


@pytest.mark.weights
def test_confident_people_are_not_refined(refiner, vtest_frame200, movenet_tflite) -> None:  # noqa: F811
    """``max_mean_joint_score``: a person whose mean joint score reaches it is left alone (no
    Thunder crop for it), one below it is refined."""
    from posestream.models.estimator import EstimatorConfig, PoseEstimator
    from posestream.models.geometry import box_iou

    off = EstimatorConfig(device="cpu", refine=RefineConfig(enabled=False))
    fp = PoseEstimator(off, movenet_tflite)([vtest_frame200]).poses[0]
    kp = fp.keypoints.copy()
    kp[0, :, 2] = 0.9  # person 0 confident, person 1 not
    kp[1, :, 2] = np.minimum(kp[1, :, 2], 0.3)
    calls: list[int] = []
    handle = refiner.model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    try:
        refiner.config = RefineConfig(enabled=True, max_mean_joint_score=0.6)
        out, accepted = refiner(vtest_frame200, kp, fp.boxes, fp.scores, box_iou(fp.boxes, fp.boxes))
        assert not accepted[0].any()
        np.testing.assert_array_equal(out[0], kp[0])
        assert accepted[1].any()
        assert calls == [int((kp[:, :, 2].mean(1) < 0.6).sum())]
        refiner.config = RefineConfig(enabled=True, max_mean_joint_score=None)
        calls.clear()
        refiner(vtest_frame200, kp, fp.boxes, fp.scores, box_iou(fp.boxes, fp.boxes))
        assert calls == [len(kp)]
    finally:
        handle.remove()
        refiner.config = RefineConfig(enabled=True)


def test_max_mean_joint_score_validated() -> None:
    with pytest.raises(ValueError, match="max_mean_joint_score"):
        RefineConfig(max_mean_joint_score=0.0)
