"""The MoveNet decoder's stages on hand-made maps (no weights needed), and the letterbox maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posestream.models.estimator import EstimatorConfig, letterbox, merge_by_confidence, merge_scales
from posestream.models.geometry import box_iou, oks_matrix
from posestream.models.movenet_decode import (
    CenterPeaks,
    DecodedPoses,
    DecoderConfig,
    absorb_keypoints,
    decode,
    find_centers,
    fuse_maps,
    person_boxes,
    pose_nms,
    refine_with_offsets,
    regress_keypoints,
    resample_maps,
    score_poses,
)
from posestream.models.skeleton import flip_permutation

H = W = 32


def _maps(centers: list[tuple[int, int, float]], batch: int = 1) -> dict[str, torch.Tensor]:
    """Maps for people standing at the given (x, y, centre score): every keypoint k is
    regressed to (x + k % 3 - 1, y + k // 3 - 3), has a heatmap peak one cell to the right
    of that (0.8) and an offset of (dy, dx) = (0.25, -0.5); boxes are 20 high, 10 wide."""
    m = {
        "center_heatmap": torch.zeros(batch, 1, H, W),
        "keypoint_regression": torch.zeros(batch, 34, H, W),
        "keypoint_heatmap": torch.zeros(batch, 17, H, W),
        "keypoint_offset": torch.zeros(batch, 34, H, W),
        "box_scale": torch.zeros(batch, 2, H, W),
        "box_offset": torch.zeros(batch, 2, H, W),
    }
    for x, y, s in centers:
        m["center_heatmap"][:, 0, y, x] = s
        m["box_scale"][:, 0, y, x] = 20.0
        m["box_scale"][:, 1, y, x] = 10.0
        for k in range(17):
            dx, dy = k % 3 - 1, k // 3 - 3
            m["keypoint_regression"][:, 2 * k, y, x] = dy
            m["keypoint_regression"][:, 2 * k + 1, y, x] = dx
            px, py = x + dx + 1, y + dy
            m["keypoint_heatmap"][:, k, py, px] = 0.8
            m["keypoint_offset"][:, 2 * k, py, px] = 0.25
            m["keypoint_offset"][:, 2 * k + 1, py, px] = -0.5
    return m


def test_find_centers_nms_and_topk_order() -> None:
    heat = torch.zeros(1, 1, H, W)
    heat[0, 0, 10, 8] = 0.9
    heat[0, 0, 10, 9] = 0.85  # inside the 5x5 window of the stronger peak: suppressed
    heat[0, 0, 20, 25] = 0.7
    peaks = find_centers(heat, DecoderConfig(max_people=3))
    assert peaks.scores.shape == (1, 3)
    assert peaks.scores[0, :2].tolist() == pytest.approx([0.9, 0.7])
    assert (peaks.xs[0, :2].tolist(), peaks.ys[0, :2].tolist()) == ([8, 25], [10, 20])
    assert float(peaks.scores[0, 2]) == 0.0
    assert find_centers(torch.rand(1, 1, 2, 2), DecoderConfig(max_people=20)).scores.shape == (1, 4)


def test_regression_is_swapped_to_xy_and_boxes_are_clipped() -> None:
    m = _maps([(8, 10, 0.9), (29, 4, 0.5)])
    peaks = CenterPeaks(torch.tensor([[0.9, 0.5]]), torch.tensor([[8, 29]]), torch.tensor([[10, 4]]))
    reg = regress_keypoints(m["keypoint_regression"], peaks)
    assert reg.shape == (1, 2, 17, 2)
    assert reg[0, 0, 0].tolist() == [7.0, 7.0]  # k=0: dx -1, dy -3
    assert reg[0, 0, 16].tolist() == [8.0, 12.0]  # k=16: dx 0, dy +2
    boxes = person_boxes(m["box_scale"], m["box_offset"], peaks)
    assert boxes[0, 0].tolist() == [3.0, 0.0, 13.0, 20.0]  # y1 = 10 - 10 clipped at 0
    assert boxes[0, 1].tolist() == [24.0, 0.0, 32.0, 14.0]  # x2 = 34 clipped at W


def test_absorb_prefers_the_near_candidate_and_stays_in_the_box() -> None:
    heat = torch.zeros(17, H, W)
    heat[0, 10, 9] = 0.6  # one cell from the regressed keypoint
    heat[0, 10, 20] = 0.95  # stronger, but 12 cells away (another person's)
    reg = torch.full((1, 17, 2), 8.0)
    reg[0, :, 1] = 10.0
    box = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    cells, scores, absorbed = absorb_keypoints(heat, reg, box, DecoderConfig())
    assert cells[0, 0].tolist() == [9, 10] and bool(absorbed[0, 0])
    assert float(scores[0, 0]) == pytest.approx(0.6 * np.exp(-1 / (0.3 * 32)), rel=1e-5)
    # With a very flat weighting the stronger far candidate wins...
    cells, _, _ = absorb_keypoints(heat, reg, box, DecoderConfig(distance_scale=100.0))
    assert cells[0, 0].tolist() == [20, 10]
    # ...unless it lies outside the person's box.
    cells, _, _ = absorb_keypoints(
        heat, reg, torch.tensor([[0.0, 0.0, 15.0, 32.0]]), DecoderConfig(distance_scale=100.0)
    )
    assert cells[0, 0].tolist() == [9, 10]
    # No candidate at all: the keypoint falls back to its regressed location.
    assert not bool(absorbed[0, 1])


def test_peaks_mode_only_absorbs_local_maxima() -> None:
    heat = torch.zeros(17, H, W)
    heat[0, 10, 12] = 0.9  # the peak, 4 cells away
    heat[0, 10, 11] = 0.5  # its slope, nearer the regressed keypoint
    reg = torch.tensor([[[8.0, 10.0]] * 17])
    box = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    dense, _, _ = absorb_keypoints(heat, reg, box, DecoderConfig(distance_scale=0.3))
    peaks, _, _ = absorb_keypoints(heat, reg, box, DecoderConfig(distance_scale=0.3, candidates="peaks"))
    assert dense[0, 0].tolist() == [11, 10] and peaks[0, 0].tolist() == [12, 10]


def test_offsets_refine_to_sub_pixel_positions() -> None:
    off = torch.zeros(34, H, W)
    off[2 * 3, 5, 7] = 0.25  # dy of keypoint 3 at (x=7, y=5)
    off[2 * 3 + 1, 5, 7] = -0.5  # dx
    cells = torch.zeros(1, 17, 2, dtype=torch.long)
    cells[0, 3] = torch.tensor([7, 5])
    xy = refine_with_offsets(off, cells)
    assert xy[0, 3].tolist() == [6.5, 5.25]
    assert xy[0, 0].tolist() == [0.0, 0.0]


def test_person_score_is_centre_times_mean_of_passing_keypoints() -> None:
    ks = torch.tensor([[0.5, 0.3, 0.1] + [0.0] * 14])
    assert float(score_poses(torch.tensor([0.8]), ks, DecoderConfig())[0]) == pytest.approx(0.8 * 0.4)
    assert float(score_poses(torch.tensor([0.8]), torch.zeros(1, 17), DecoderConfig())[0]) == 0.0


def test_decode_end_to_end_in_input_pixels() -> None:
    maps = _maps([(8, 10, 0.9), (22, 18, 0.7)], batch=2)
    out = decode(maps, DecoderConfig(min_pose_score=0.1), stride=4)
    assert len(out) == 2 and all(len(p) == 2 for p in out)
    p = out[0]
    assert p.scores.tolist() == pytest.approx(
        [0.9 * 0.8 * np.exp(-1 / 9.6), 0.7 * 0.8 * np.exp(-1 / 9.6)], rel=1e-5
    )
    # keypoint 0 of the first person: cell (8 - 1 + 1, 10 - 3) + (dx, dy) = (7.5, 7.25) cells
    assert p.keypoints[0, 0, :2].tolist() == pytest.approx([7.5 * 4, 7.25 * 4])
    assert p.boxes[0].tolist() == pytest.approx([3 * 4, 0, 13 * 4, 20 * 4])
    assert p.centers[0].tolist() == [32.0, 40.0]


def test_decoder_returns_more_than_six_people() -> None:
    centers = [(4 + 6 * (i % 5), 6 + 12 * (i // 5), 0.9 - 0.01 * i) for i in range(10)]
    maps = _maps(centers)
    assert len(decode(maps, DecoderConfig(min_pose_score=0.1, nms_oks=1.0))[0]) == 10
    assert len(decode(maps, DecoderConfig.reference())[0]) == 6
    assert len(decode(maps, DecoderConfig(max_people=8, min_pose_score=0.1, nms_oks=1.0))[0]) == 8


def test_thresholds_filter_people() -> None:
    maps = _maps([(8, 10, 0.9), (22, 18, 0.04)])
    assert len(decode(maps, DecoderConfig(center_threshold=0.05, min_pose_score=0.0))[0]) == 1
    assert len(decode(maps, DecoderConfig(center_threshold=0.0, min_pose_score=0.0, nms_oks=1.0))[0]) == 20
    assert len(decode(maps, DecoderConfig(center_threshold=0.0, min_pose_score=0.5))[0]) == 1


def test_rescorer_seam() -> None:
    maps = _maps([(8, 10, 0.9), (22, 18, 0.7)])
    out = decode(
        maps, DecoderConfig(min_pose_score=0.5), rescorer=lambda kp, boxes, scores: np.array([0.1, 0.9])
    )
    assert out[0].scores.tolist() == pytest.approx([0.9])


def _pose(x: float, y: float, score: float, size: float = 100.0) -> DecodedPoses:
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, 0] = x + np.linspace(0, size / 3, 17)
    kp[0, :, 1] = y + np.linspace(0, size, 17)
    kp[0, :, 2] = 0.9
    box = np.array([[x, y, x + size / 3, y + size]], np.float32)
    return DecodedPoses(kp, box, np.array([score], np.float32), np.array([[x, y]], np.float32))


def test_oks_and_pose_nms() -> None:
    a = _pose(10, 10, 0.8)
    near = _pose(11, 11, 0.6)
    far = _pose(200, 10, 0.7)
    allp = DecodedPoses.concatenate([a, near, far])
    oks = oks_matrix(allp.keypoints, allp.keypoints, np.full(3, 3333.0))
    assert np.allclose(np.diag(oks), 1.0) and oks[0, 1] > 0.5 and oks[0, 2] < 1e-6
    keep = pose_nms(allp, 0.5, 0.2)
    assert keep.tolist() == [0, 2]
    assert pose_nms(allp, 1.0, 0.2).tolist() == [0, 2, 1]


def test_config_validation_says_what_to_fix() -> None:
    with pytest.raises(ValueError, match="odd"):
        DecoderConfig(center_nms_kernel=4)
    with pytest.raises(ValueError, match="min_pose_score"):
        DecoderConfig(min_pose_score=1.5)
    with pytest.raises(ValueError, match="candidates"):
        DecoderConfig(candidates="sparse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiples of 32"):
        EstimatorConfig(input_sizes=(250,))
    with pytest.raises(ValueError, match="feature_size"):
        EstimatorConfig(input_sizes=(256,), feature_size=512)
    with pytest.raises(ValueError, match="device"):
        EstimatorConfig(device="tpu")


# ---- letterbox and scale merging (torch-free parts of the estimator) --------------------------


def test_letterbox_geometry_and_round_trip() -> None:
    wide = np.full((576, 768, 3), 100, np.uint8)
    tall = np.full((640, 360, 3), 200, np.uint8)
    canvas, (tw, tt) = letterbox([wide, tall], 512)
    assert canvas.shape == (2, 512, 512, 3)  # the tall frame needs 512 rows
    canvas1, (t1,) = letterbox([wide], 512)
    assert canvas1.shape == (1, 384, 512, 3) and (t1.pad_x, t1.pad_y) == (0, 0)
    square, (ts,) = letterbox([wide], 512, square=True)
    assert square.shape == (1, 512, 512, 3) and ts.pad_y == 64 and ts.scale_x == pytest.approx(512 / 768)
    assert (square[0, :64] == 0).all() and (square[0, 64:448] == 100).all()
    pts = np.array([[0.0, 0.0], [768.0, 576.0], [100.5, 33.25]])
    assert np.allclose(ts.to_frame(ts.to_input(pts)), pts, atol=1e-4)
    assert ts.to_input(np.array([768.0, 576.0])).tolist() == pytest.approx([512.0, 448.0])
    cells = ts.boxes_to_features(np.array([[0.0, 0.0, 768.0, 576.0]]))
    assert cells[0].tolist() == pytest.approx([0.0, 16.0, 128.0, 112.0])
    assert tt.pad_x == (512 - 288) // 2 and tt.input_width == 512
    with pytest.raises(ValueError, match="uint8"):
        letterbox([wide.astype(np.float32)], 256)


def test_merge_scales_takes_each_person_from_its_preferred_scale() -> None:
    cfg = EstimatorConfig(input_sizes=(256, 512))
    small_at_512 = _pose(100, 100, 0.45, size=80)  # 80 px of a 768 frame: 53 px at 512, preferred there
    small_at_256 = _pose(103, 98, 0.5, size=84)  # the same person, noisier, from 256
    big_at_256 = _pose(300, 20, 0.6, size=500)  # a close-up person, preferred at 256
    big_at_512 = _pose(305, 25, 0.4, size=490)
    only_at_256 = _pose(600, 100, 0.3, size=80)  # found only at the non-preferred scale: kept
    merged = merge_scales(
        [
            DecodedPoses.concatenate([small_at_256, big_at_256, only_at_256]),
            DecodedPoses.concatenate([small_at_512, big_at_512]),
        ],
        cfg,
        frame_long_side=768,
    )
    assert sorted(merged.scores.tolist()) == pytest.approx([0.3, 0.45, 0.6])
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]])).tolist() == [
        [pytest.approx(1 / 3), 0.0]
    ]


# ---- multi-scale and flip testing on one grid --------------------------------------------------


def _identity(batch: int = 1) -> np.ndarray:
    return np.tile(np.array([[1.0, 0.0, 1.0, 0.0]]), (batch, 1))


def test_resample_maps_identity_is_exact() -> None:
    maps = _maps([(8, 10, 0.9), (22, 18, 0.7)])
    same = resample_maps(maps, _identity(), (H, W))
    for name, m in same.items():
        assert torch.allclose(m, maps[name], atol=1e-6), name
    with pytest.raises(ValueError, match="flipped"):
        resample_maps(maps, _identity(), (H, W), flipped=True)


def test_mirrored_maps_decode_to_the_mirrored_people() -> None:
    """Resampling onto the mirrored grid is the maps of the mirrored image: people at
    width - x, left and right joints exchanged, the same scores; twice is the identity."""
    maps = _maps([(8, 10, 0.9), (22, 18, 0.7)])
    width = W * 4
    mirror = np.array([[-1.0, float(width), 1.0, 0.0]])
    flipped = resample_maps(maps, mirror, (H, W), flipped=True)
    cfg = DecoderConfig(nms_oks=1.0)
    ref, got = decode(maps, cfg)[0], decode(flipped, cfg)[0]
    assert len(ref) == len(got) == 2
    perm = flip_permutation()
    for i in range(2):
        j = int(np.argmin(np.abs(got.centers[:, 1] - ref.centers[i, 1])))
        expect = ref.keypoints[i, perm].copy()
        expect[:, 0] = width - expect[:, 0]
        assert np.allclose(got.keypoints[j, :, :2], expect[:, :2], atol=1e-4)
        assert np.allclose(got.keypoints[j, :, 2], expect[:, 2], atol=1e-6)
        assert got.scores[j] == pytest.approx(ref.scores[i])
        assert np.allclose(got.boxes[j, [0, 2]], width - ref.boxes[i, [2, 0]], atol=1e-4)
    twice = resample_maps(flipped, mirror, (H, W), flipped=True)
    for name, m in twice.items():
        assert torch.allclose(m, maps[name], atol=1e-5), name


def test_resampled_onto_a_finer_grid_keeps_positions_and_fusion_averages() -> None:
    maps = _maps([(8, 10, 0.9)])
    # Real centre-cell fields are dense and smooth: make them so for this one person.
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    maps["box_scale"][0, 0], maps["box_scale"][0, 1] = 20.0, 10.0
    maps["box_offset"][0, 0], maps["box_offset"][0, 1] = 10.0 - ys, 8.0 - xs
    for k in range(17):
        maps["keypoint_regression"][0, 2 * k] = 10.0 + k // 3 - 3 - ys
        maps["keypoint_regression"][0, 2 * k + 1] = 8.0 + k % 3 - 1 - xs
    coarse = decode(maps, DecoderConfig())[0]
    # Target grid twice as fine (a pass at twice the input size): source px = 0.5 * target px.
    fine = resample_maps(maps, np.array([[0.5, 0.0, 0.5, 0.0]]), (2 * H, 2 * W))
    got = decode(fine, DecoderConfig())[0]
    assert len(got) == 1
    assert np.abs(got.keypoints[0, :, :2] - 2 * coarse.keypoints[0, :, :2]).max() <= 4.0
    assert np.abs(got.boxes[0] - 2 * coarse.boxes[0]).max() <= 4.0
    # Fusing a pass with itself changes nothing; with an empty pass, heat halves, positions stay.
    same = fuse_maps([maps, maps])
    assert all(torch.allclose(same[k], maps[k].float(), atol=1e-6) for k in same)
    empty = {k: torch.zeros_like(v) for k, v in maps.items()}
    half = fuse_maps([maps, empty])
    assert torch.allclose(half["keypoint_heatmap"], maps["keypoint_heatmap"] / 2)
    assert torch.allclose(half["keypoint_offset"], maps["keypoint_offset"], atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        fuse_maps([])


def test_merge_by_confidence_keeps_the_surest_detection_of_each_person() -> None:
    cfg = EstimatorConfig(input_sizes=(256, 512), scale_merge="confidence")
    small_at_256 = _pose(103, 98, 0.3, size=84)  # the same person at both scales
    small_at_512 = _pose(100, 100, 0.45, size=80)
    big_at_256 = _pose(300, 20, 0.6, size=500)
    big_at_512 = _pose(340, 60, 0.4, size=480)  # far in OKS, but its box overlaps: a duplicate
    only_at_512 = _pose(600, 100, 0.2, size=80)
    parts = [
        DecodedPoses.concatenate([small_at_256, big_at_256]),
        DecodedPoses.concatenate([small_at_512, big_at_512, only_at_512]),
    ]
    merged = merge_by_confidence(parts, cfg)
    assert merged.scores.tolist() == pytest.approx([0.6, 0.45, 0.2])
    assert np.allclose(merged.keypoints[1], small_at_512.keypoints[0])
    # Two people overlapping at ONE scale are both kept (the box rule is across scales only).
    pair = DecodedPoses.concatenate([_pose(100, 100, 0.5), _pose(140, 100, 0.4)])
    assert len(merge_by_confidence([pair, DecodedPoses.concatenate([])], cfg)) == 2
    # Per-joint choice: each joint from the match most confident there.
    sure_legs = _pose(101, 99, 0.3, size=80)
    sure_legs.keypoints[0, 11:, 2] = 0.99
    merged = merge_by_confidence([DecodedPoses.concatenate([sure_legs]), small_at_512], cfg, joints=True)
    assert len(merged) == 1 and merged.scores[0] == pytest.approx(0.45)
    assert np.allclose(merged.keypoints[0, 11:], sure_legs.keypoints[0, 11:])
    assert np.allclose(merged.keypoints[0, :11], small_at_512.keypoints[0, :11])
    with pytest.raises(ValueError, match="scale_merge"):
        EstimatorConfig(scale_merge="vote")
