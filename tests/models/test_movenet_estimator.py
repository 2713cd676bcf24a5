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
        EstimatorConfig(input_sizes=(512,), flip=True, flip_max_size=None, device="cpu"),
        weights=movenet_tflite,
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


def test_flip_max_size_flips_only_small_scales(movenet_tflite: Path, vtest_frame200: np.ndarray) -> None:
    """With ``flip_max_size=256`` only the 256 pass runs its mirrored canvas (batch of 2 canvases
    for one frame); with ``None`` both scales do."""
    from posestream.models.refine import RefineConfig

    cfg = EstimatorConfig(device="cpu", refine=RefineConfig(enabled=False), network_batch=8)
    assert cfg.flips(256) and not cfg.flips(512)
    est = PoseEstimator(cfg, weights=movenet_tflite)
    seen: list[tuple[int, int]] = []
    run = est._run
    est._run = lambda canvas: (seen.append((int(max(canvas.shape[1:3])), len(canvas))), run(canvas))[1]
    est([vtest_frame200])
    assert seen == [(256, 2), (512, 1)]
    seen.clear()
    est.config = EstimatorConfig(device="cpu", flip_max_size=None, refine=cfg.refine, network_batch=8)
    est([vtest_frame200])
    assert seen == [(256, 2), (512, 2)]


def test_mirrored_canvas_matches_letterboxed_mirrored_frame(vtest_frame200: np.ndarray) -> None:
    """The mirrored canvas (plain canvas mirrored) shows the mirrored frame under ``mirrored(t)``:
    a frame point maps to the same canvas pixel either way, also with odd padding."""
    from posestream.models.estimator import letterbox, mirrored

    for frame in (vtest_frame200, vtest_frame200[:, :701]):  # even and odd horizontal padding
        canvas, (t,) = letterbox([frame], 512)
        m = mirrored(t)
        xy = np.array([[10.0, 20.0], [300.5, 100.0], [frame.shape[1] - 3.0, 400.0]])
        plain = t.to_input(xy)
        flipped_frame_xy = np.stack([frame.shape[1] - xy[:, 0], xy[:, 1]], 1)
        np.testing.assert_allclose(m.to_input(flipped_frame_xy)[:, 0], t.input_width - plain[:, 0], atol=1e-3)
        mirror_lb, _ = letterbox([np.ascontiguousarray(frame[:, ::-1])], 512)
        # The same picture up to the resize's rounding (area averaging is symmetric).
        shifted = np.roll(canvas[0, :, ::-1], m.pad_x - t.pad_x, axis=1)
        assert np.abs(mirror_lb[0].astype(int) - shifted.astype(int)).mean() < 1.0


def test_jit_and_network_batch_keep_the_outputs(movenet_tflite: Path, vtest_frame200: np.ndarray) -> None:
    """The frozen TorchScript trace (default ``compile="jit"``) and one canvas per call give the
    eager, whole-batch result to float rounding, on two frames of different shapes."""
    from posestream.models.refine import RefineConfig

    frames = [vtest_frame200, _close_up(vtest_frame200)]
    off = RefineConfig(enabled=False)
    eager = PoseEstimator(
        EstimatorConfig(device="cpu", compile="none", network_batch=16, refine=off), weights=movenet_tflite
    )
    jit = PoseEstimator(EstimatorConfig(device="cpu", refine=off), weights=movenet_tflite)
    assert jit.config.compile == "jit" and jit.network_batch == 1
    a, b = eager(frames), jit(frames)
    assert len(jit._traced) >= 2, "one trace per input shape"
    for pa, pb in zip(a.poses, b.poses, strict=True):
        assert len(pa) == len(pb)
        np.testing.assert_allclose(pa.keypoints, pb.keypoints, atol=1e-2)
    torch.testing.assert_close(a.heatmaps, b.heatmaps, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="compile"):
        EstimatorConfig(compile="tensorrt")
    with pytest.raises(ValueError, match="network_batch"):
        EstimatorConfig(network_batch=0)
