"""``PoseEstimator`` on real frames: vtest.avi frame 200 (7 people), a close-up, batching, features.

Set ``POSESTREAM_REGEN_DOCS=1`` to rewrite ``docs/movenet_vtest_frame200.png`` from the
decoded skeletons of frame 200.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from posestream.models.backbones.movenet import FEATURE_CHANNELS
from posestream.models.estimator import EstimatorConfig, PoseEstimator
from posestream.models.poses import UNTRACKED, FramePoses
from posestream.models.skeleton import flip_permutation
from tests.models import test_movenet_weights as shared

pytestmark = pytest.mark.weights

# The shared fixtures (fetch the weights like a user would; skip only when that fails).
vtest_frame200 = shared.vtest_frame200

# The yellow cloth on the grass (bottom left) and a smaller yellow scrap, frame 200 pixels.
YELLOW_THINGS_XY = ((115.0, 510.0), (338.0, 459.0))
DOCS_PNG = Path(__file__).resolve().parents[2] / "docs" / "movenet_vtest_frame200.png"


@pytest.fixture(scope="module")
def estimator(movenet_tflite: Path) -> PoseEstimator:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return PoseEstimator(EstimatorConfig(device="cpu"), weights=movenet_tflite)


def _close_up(frame: np.ndarray) -> np.ndarray:
    """A real close-up: the person at (630, 300) cropped and enlarged 3.5x (~470x630)."""
    crop = frame[210:390, 570:705]
    return cv2.resize(crop, None, fx=3.5, fy=3.5, interpolation=cv2.INTER_CUBIC)


def _assert_contract(fp: FramePoses, width: int, height: int) -> None:
    assert (fp.width, fp.height) == (width, height)
    assert fp.keypoints.shape == (len(fp), 17, 3) and fp.boxes.shape == (len(fp), 4)
    assert np.all(fp.track_ids == UNTRACKED)
    assert np.all(fp.keypoints[..., 0] >= 0) and np.all(fp.keypoints[..., 0] <= width)
    assert np.all(fp.keypoints[..., 1] >= 0) and np.all(fp.keypoints[..., 1] <= height)
    assert np.all(fp.boxes[:, 2] >= fp.boxes[:, 0]) and np.all(fp.boxes[:, 3] >= fp.boxes[:, 1])
    assert np.all(np.diff(fp.scores) <= 0), "people must come best first"


def _finds_seven_not_the_cloth(fp: FramePoses) -> None:
    assert len(fp) == 7, f"expected the 7 people of frame 200, got {len(fp)} (scores {fp.scores.round(2)})"
    for cx, cy in YELLOW_THINGS_XY:
        inside = (
            (fp.boxes[:, 0] <= cx + 20)
            & (cx - 20 <= fp.boxes[:, 2])
            & (fp.boxes[:, 1] <= cy + 20)
            & (cy - 20 <= fp.boxes[:, 3])
        )
        assert not inside.any(), f"a person was decoded on the yellow cloth at {(cx, cy)}"
    assert np.all(fp.boxes[:, 3] < 400), "all 7 people walk on the paths in the upper part of the frame"
    # Every one of them is a whole person: most keypoints confidently found.
    assert np.all((fp.keypoints[..., 2] > 0.3).sum(axis=1) >= 8)


def test_frame200_default_policy_finds_the_seven_people(
    estimator: PoseEstimator, vtest_frame200: np.ndarray
) -> None:
    out = estimator([vtest_frame200], frame_indices=[200], timestamps=[8.0])
    fp = out.poses[0]
    _assert_contract(fp, 768, 576)
    assert (fp.frame_index, fp.timestamp) == (200, 8.0)
    _finds_seven_not_the_cloth(fp)
    if os.environ.get("POSESTREAM_REGEN_DOCS") == "1":
        _write_png(vtest_frame200, fp, DOCS_PNG)


def test_frame200_single_scale_512(movenet_tflite: Path, vtest_frame200: np.ndarray) -> None:
    est = PoseEstimator(EstimatorConfig(input_sizes=(512,), device="cpu"), weights=movenet_tflite)
    _finds_seven_not_the_cloth(est([vtest_frame200]).poses[0])


def test_mirrored_frame_decodes_to_the_mirrored_people(
    movenet_tflite: Path, vtest_frame200: np.ndarray
) -> None:
    """The geometry flip testing relies on, checked on the real model: the people of the
    mirrored frame, mirrored back by hand (x -> width - x, left/right swapped), lie on the
    people of the frame; and flip testing (maps mirrored back and averaged) finds the 7."""
    est = PoseEstimator(EstimatorConfig(input_sizes=(512,), device="cpu"), weights=movenet_tflite)
    plain = est([vtest_frame200]).poses[0]
    mirrored = est([np.ascontiguousarray(vtest_frame200[:, ::-1])]).poses[0]
    width = vtest_frame200.shape[1]
    back = mirrored.keypoints[:, flip_permutation()].copy()
    back[..., 0] = width - back[..., 0]
    dists = []
    for i in range(len(plain)):
        d = np.linalg.norm(back[..., :2] - plain.keypoints[i, None, :, :2], axis=-1)  # (M, 17)
        j = int(np.argmin(np.median(d, axis=1)))
        sure = (plain.keypoints[i, :, 2] > 0.3) & (back[j, :, 2] > 0.3)
        dists.append(np.median(d[j, sure]))
    assert len(dists) == 7 and np.median(dists) < 3.0, f"median joint distances {np.round(dists, 1)}"
    flipped = PoseEstimator(
        EstimatorConfig(input_sizes=(512,), flip=True, device="cpu"), weights=movenet_tflite
    )
    _finds_seven_not_the_cloth(flipped([vtest_frame200]).poses[0])


def test_close_up_person_is_found(estimator: PoseEstimator, vtest_frame200: np.ndarray) -> None:
    close = _close_up(vtest_frame200)
    fp = estimator([close]).poses[0]
    _assert_contract(fp, close.shape[1], close.shape[0])
    assert len(fp) == 1 and fp.scores[0] > 0.5
    assert (fp.keypoints[0, :, 2] > 0.3).sum() >= 12
    box_h = fp.boxes[0, 3] - fp.boxes[0, 1]
    assert box_h > 0.5 * close.shape[0]


def test_batch_of_mixed_sizes_returns_features_and_transforms(
    estimator: PoseEstimator, vtest_frame200: np.ndarray
) -> None:
    close = _close_up(vtest_frame200)
    out = estimator([vtest_frame200, close], frame_indices=[3, 4])
    assert [p.frame_index for p in out.poses] == [3, 4]
    assert len(out.poses[0]) == 7 and len(out.poses[1]) == 1
    b, c, h, w = out.features.shape
    assert (b, c) == (2, FEATURE_CHANNELS)
    t0, t1 = out.transforms
    assert (
        (h, w) == (t0.input_height // 4, t0.input_width // 4) == (t1.input_height // 4, t1.input_width // 4)
    )
    assert t0.input_width == 512 and t0.input_height % 32 == 0
    cells = t0.boxes_to_features(out.poses[0].boxes)
    assert np.all(cells >= 0) and np.all(cells[:, 2] <= w) and np.all(cells[:, 3] <= h)
    # The features at the people are not blank: TemporalNet can pool from them.
    x1, y1, x2, y2 = np.round(cells[0]).astype(int)
    assert float(out.features[0, :, y1:y2, x1:x2].abs().mean()) > 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_fp16_matches_cpu(
    movenet_tflite: Path, estimator: PoseEstimator, vtest_frame200: np.ndarray
) -> None:
    gpu = PoseEstimator(EstimatorConfig(device="cuda"), weights=movenet_tflite)
    assert gpu.half and gpu.model.backbone.conv1.weight.dtype == torch.float16
    a = estimator([vtest_frame200]).poses[0]
    g = gpu([vtest_frame200]).poses[0]
    assert len(g) == len(a) == 7
    for i in range(len(a)):
        j = int(np.argmin(np.abs(g.boxes - a.boxes[i]).sum(1)))
        sure = (a.keypoints[i, :, 2] > 0.3) & (g.keypoints[j, :, 2] > 0.3)
        assert np.abs(g.keypoints[j, sure, :2] - a.keypoints[i, sure, :2]).max() < 3.0


def _write_png(rgb: np.ndarray, fp: FramePoses, path: Path, zoom: float = 1.5) -> None:
    """Skeletons of ``fp`` over ``rgb`` (the project's ``draw_poses`` when present), enlarged."""
    big = cv2.resize(rgb, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    scaled = FramePoses(
        fp.frame_index, fp.timestamp, big.shape[1], big.shape[0],
        fp.keypoints * np.array([zoom, zoom, 1], np.float32), fp.boxes * zoom, fp.scores, fp.track_ids,
    )  # fmt: skip
    try:
        from posestream.models.data.draw import draw_poses

        img = draw_poses(big, scaled, min_score=0.2, color_by_track=False, solid_score=0.35, draw_boxes=True)
    except ImportError:
        from posestream.models.skeleton import EDGES

        img = big.copy()
        for kp in scaled.keypoints:
            for a, b in EDGES:
                if kp[a, 2] > 0.2 and kp[b, 2] > 0.2:
                    cv2.line(
                        img,
                        tuple(int(v) for v in kp[a, :2]),
                        tuple(int(v) for v in kp[b, :2]),
                        (80, 230, 80),
                        2,
                    )
    for box, score in zip(scaled.boxes, scaled.scores, strict=True):
        cv2.putText(
            img,
            f"{score:.2f}",
            (int(box[0]), max(12, int(box[1]) - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (255, 255, 255),
            1,
        )
    cv2.rectangle(img, (0, 0), (img.shape[1], 32), (0, 0, 0), -1)
    cv2.putText(
        img, f"vtest.avi frame 200: {len(fp)} people (MoveNet MultiPose in PyTorch, our decoder, inputs 256+512)",
        (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
