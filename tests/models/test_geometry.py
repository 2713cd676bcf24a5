"""posestream.models.geometry against values worked out by hand."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from posestream.models.geometry import (
    HEAD_FROM_BOX_HEIGHT,
    box_area,
    box_iou,
    head_size,
    head_size_or_box,
    keypoint_similarity,
    oks_matrix,
    person_centre,
)
from posestream.models.skeleton import KEYPOINT_INDEX, OKS_SIGMAS


def _pose(x: float, y: float, score: float = 2.0) -> np.ndarray:
    """(1, 17, 3): every keypoint at (x, y)."""
    kp = np.zeros((1, 17, 3))
    kp[0, :, :2] = (x, y)
    kp[0, :, 2] = score
    return kp


def test_keypoint_similarity_by_hand():
    # Nose: sigma 0.026, so (2 sigma)^2 = 0.002704; d^2 = 2.704, area 1000:
    # exp(-2.704 / (2 * 1000 * 0.002704)) = exp(-0.5).
    d2 = np.zeros(17)
    d2[0] = 2.704
    terms = keypoint_similarity(d2, 1000.0)
    assert terms.dtype == np.float64
    assert terms[0] == pytest.approx(math.exp(-0.5), rel=1e-12)
    assert np.all(terms[1:] == 1.0)
    fast = keypoint_similarity(d2.astype(np.float32), np.float32(1000.0), fast=True)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast, terms, rtol=1e-6)


def test_keypoint_similarity_float32_path_agrees_with_float64():
    rng = np.random.default_rng(0)
    d2 = rng.uniform(0, 4000, (50, 17))
    areas = rng.uniform(100, 40000, (50, 1))
    np.testing.assert_allclose(
        keypoint_similarity(d2.astype(np.float32), areas.astype(np.float32), fast=True),
        keypoint_similarity(d2, areas),
        rtol=2e-6,
        atol=1e-7,
    )


def test_oks_matrix_by_hand():
    # Reference: nose alone labelled at (10, 10); the other pose's nose 1.6443 px away, so
    # d^2 = 2.704 and OKS = exp(-0.5) with area 1000 (the other joints do not count).
    ref = np.zeros((1, 17, 3))
    ref[0, 0] = (10.0, 10.0, 2.0)
    other = np.zeros((2, 17, 3))
    other[0, 0] = (10.0, 10.0 + math.sqrt(2.704), 0.9)
    other[1, 0] = (10.0, 10.0, 0.9)
    oks = oks_matrix(ref, other, np.array([1000.0]))
    assert oks.shape == (1, 2)
    assert oks[0, 0] == pytest.approx(math.exp(-0.5), rel=1e-9)
    assert oks[0, 1] == 1.0
    # min_score: the reference's nose (score 2) counts only below 2; without a counted
    # keypoint the OKS is 0.
    assert oks_matrix(ref, other, np.array([1000.0]), min_score=2.0).tolist() == [[0.0, 0.0]]


def test_oks_matrix_unlabelled_reference_uses_cocos_box_rule():
    # Box (100, 100)-(110, 120): grown by its size on every side, x in [90, 120], y in [80, 140].
    # Every keypoint at (0, 0) lies 90 left and 80 above: d^2 = 90^2 + 80^2 for all 17.
    ref = _pose(0.0, 0.0, score=0.0)
    area = 200.0
    oks = oks_matrix(ref, _pose(0.0, 0.0, 0.9), np.array([area]), ref_boxes=np.array([[100, 100, 110, 120]]))
    expected = np.mean(np.exp(-(90.0**2 + 80.0**2) / (2 * OKS_SIGMAS) ** 2 / area / 2))
    assert oks[0, 0] == pytest.approx(expected)
    # Inside the grown box the distance is 0: OKS 1.
    inside = oks_matrix(ref, _pose(95.0, 90.0), np.array([area]), ref_boxes=np.array([[100, 100, 110, 120]]))
    assert inside[0, 0] == 1.0


def test_oks_matrix_empty_sides():
    assert oks_matrix(np.zeros((0, 17, 3)), _pose(1, 1), np.zeros(0)).shape == (0, 1)
    assert oks_matrix(_pose(1, 1), np.zeros((0, 17, 3)), np.ones(1)).shape == (1, 0)


def test_box_area_and_iou_by_hand():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [2, 2, 4, 4]])
    assert box_area(b).tolist() == [100.0, 100.0, 100.0, 4.0]
    assert box_area(np.array([[10, 10, 0, 5]])).tolist() == [0.0]  # inverted sides count as empty
    # Overlap 5 x 10 = 50, union 150; disjoint; identical; nested 4 / 100.
    np.testing.assert_allclose(box_iou(a, b), [[1 / 3, 0.0, 1.0, 0.04]])
    assert box_iou(np.zeros((1, 4)), np.zeros((1, 4))).tolist() == [[0.0]]  # empty union
    assert box_iou(a, np.zeros((0, 4))).shape == (1, 0)


def test_person_centre_by_hand():
    kp = np.zeros((2, 17, 3), np.float32)
    kp[0, :, 2] = 0.9
    kp[0, :, 0] = np.arange(17)  # x = 0..16: mean 8
    kp[0, :, 1] = 4.0
    kp[1, :2] = [(10, 20, 0.9), (30, 40, 0.9)]  # only two confident joints: centre (20, 30)
    kp[1, 2:] = (1000, 1000, 0.1)
    centre = person_centre(kp, min_score=0.2)
    assert centre.shape == (2, 2)
    np.testing.assert_allclose(centre, [[8.0, 4.0], [20.0, 30.0]])
    # Nobody above the threshold: the mean of all 17 joints.
    low = kp[1:].copy()
    low[:, :, 2] = 0.0
    np.testing.assert_allclose(
        person_centre(low, 0.2), [[(10 + 30 + 15 * 1000) / 17, (20 + 40 + 15 * 1000) / 17]]
    )


def test_head_size_proxies():
    kp = np.zeros((3, 17, 3))
    kp[0, 3] = (10, 0, 2)
    kp[0, 4] = (30, 0, 2)  # ears 20 apart
    kp[1, 1] = (10, 0, 2)
    kp[1, 2] = (15, 0, 2)  # eyes 5 apart -> 10
    hs = head_size(kp)
    assert hs[0] == 20 and hs[1] == 10 and np.isnan(hs[2])


def test_head_size_shoulders_and_box_fallback():
    kp = np.zeros((2, 17, 3))
    kp[0, KEYPOINT_INDEX["left_shoulder"]] = (0, 0, 1)
    kp[0, KEYPOINT_INDEX["right_shoulder"]] = (32, 0, 1)  # 32 / 1.6 = 20
    boxes = np.array([[0, 0, 50, 100], [0, 10, 40, 90]], np.float64)
    hs, from_box = head_size_or_box(kp, boxes)
    assert hs[0] == pytest.approx(20.0)
    assert hs[1] == pytest.approx(80 * HEAD_FROM_BOX_HEIGHT) == 10.0
    assert from_box.tolist() == [False, True]


def test_geometry_does_not_import_torch():
    code = "import sys, posestream.models.geometry\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_greedy_oks_nms_keeps_the_best_of_each_duplicate_group():
    from posestream.models.geometry import greedy_oks_nms

    rng = np.random.default_rng(0)
    base = np.concatenate([rng.uniform(0, 100, (17, 2)), np.ones((17, 1))], axis=1)
    near = base.copy()
    near[:, :2] += 1.0  # a duplicate one pixel off
    far = base.copy()
    far[:, :2] += 500.0
    kp = np.stack([near, far, base]).astype(np.float32)
    scores = np.array([0.5, 0.4, 0.9])
    areas = np.full(3, 100.0 * 100.0)
    assert greedy_oks_nms(kp, scores, areas, 0.5, 0.2).tolist() == [2, 1]
    assert greedy_oks_nms(kp, scores, areas, 1.0, 0.2).tolist() == [2, 0, 1]  # off: sorted only
    assert greedy_oks_nms(kp[:0], scores[:0], areas[:0], 0.5, 0.2).tolist() == []
