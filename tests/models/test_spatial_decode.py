"""Targets built from known poses decode back to those poses (SpatialNet path)."""

import dataclasses

import numpy as np
import pytest
import torch

from posestream.models.backbones.hourglass import HourglassConfig
from posestream.models.decode import (
    DecodeConfig,
    decode_spatial,
    find_peaks,
    merge_multiscale,
    refine_locations,
    unflip_maps,
)
from posestream.models.skeleton import flip_permutation
from posestream.models.spatialnet import SpatialNet, SpatialNetConfig
from posestream.models.targets import (
    TargetConfig,
    build_spatial_targets,
    dense_embedding_targets,
    to_input_coords,
    to_output_coords,
)

# A standing person, (x, y) in units of body height, origin at the feet centre.
TEMPLATE = np.array([
    [0.0, -0.93], [-0.03, -0.95], [0.03, -0.95], [-0.07, -0.93], [0.07, -0.93],
    [-0.13, -0.80], [0.13, -0.80], [-0.17, -0.62], [0.17, -0.62], [-0.19, -0.45], [0.19, -0.45],
    [-0.09, -0.48], [0.09, -0.48], [-0.10, -0.25], [0.10, -0.25], [-0.10, -0.02], [0.10, -0.02],
])  # fmt: skip


def known_poses(rng, people=3, size=256):
    """(K, 17, 3) poses in input pixels at sub-pixel positions, all visible, well apart."""
    out = []
    for k in range(people):
        height = rng.uniform(110, 150)
        foot = np.array([40 + k * 85 + rng.uniform(-5, 5), rng.uniform(200, 240)])
        xy = foot + TEMPLATE * height + rng.normal(0, 1.0, TEMPLATE.shape)
        out.append(np.concatenate([xy, np.full((17, 1), 2.0)], axis=1))
    return np.stack(out).astype(np.float32)


def _maps(poses, size=256, stride=4):
    cfg = TargetConfig()
    t = build_spatial_targets(poses, size // stride, size // stride, cfg)
    tags, svf = dense_embedding_targets(t, tag_step=3.0)
    return torch.from_numpy(t.heatmaps), torch.from_numpy(tags), torch.from_numpy(svf)


def _match(decoded, poses):
    """Max abs keypoint error after pairing each known pose with its nearest decoded one."""
    assert decoded.shape[0] == poses.shape[0]
    errs = []
    for p in poses:
        d = np.abs(decoded[..., :2] - p[None, :, :2]).max(axis=(1, 2))
        errs.append(d.min())
    return max(errs)


def test_coordinate_round_trip():
    xy = np.array([[0.0, 0.0], [13.3, 200.7]])
    np.testing.assert_allclose(to_input_coords(to_output_coords(xy, 4), 4), xy)


@pytest.mark.parametrize("use_pgg", [False, True])
def test_targets_decode_back_exactly(use_pgg):
    poses = known_poses(np.random.default_rng(0))
    heat, tags, svf = _maps(poses)
    kp, scores = decode_spatial(heat, tags, svf, DecodeConfig(refine="gaussian", use_pgg=use_pgg), stride=4)
    assert _match(kp, poses) < 1e-2  # input pixels
    assert np.all(scores > 0.9)


def test_quarter_refinement_is_within_a_quarter_output_pixel():
    poses = known_poses(np.random.default_rng(1))
    heat, tags, svf = _maps(poses)
    kp, _ = decode_spatial(heat, tags, svf, DecodeConfig(refine="quarter"), stride=4)
    assert _match(kp, poses) <= 4 * 0.5 + 1e-3


@pytest.mark.parametrize("by", ["tags", "sie"])
def test_either_embedding_alone_groups_separated_people(by):
    poses = known_poses(np.random.default_rng(2))
    heat, tags, svf = _maps(poses)
    cfg = DecodeConfig(refine="gaussian", use_tags=by == "tags", sie_weight=0.0 if by == "tags" else 1.0)
    kp, _ = decode_spatial(heat, tags, svf, cfg, stride=4)
    assert _match(kp, poses) < 1e-2


def test_missing_joint_is_filled_from_mean_embedding():
    poses = known_poses(np.random.default_rng(3), people=2)
    heat, tags, svf = _maps(poses)
    heat[9] *= 0.05  # left wrists fall below the detection threshold
    kp, _ = decode_spatial(heat, tags, svf, DecodeConfig(refine="gaussian"), stride=4)
    assert _match(kp, poses) < 1e-2
    assert np.all(kp[:, 9, 2] < 0.1)  # the filled joints keep their (low) heat as score


def test_person_score_counts_the_detected_joints_unless_asked_for_all():
    poses = known_poses(np.random.default_rng(3), people=2)
    heat, tags, svf = _maps(poses)
    t = build_spatial_targets(poses, 64, 64, TargetConfig())
    weak = torch.from_numpy(t.instance == 1) & (torch.arange(17) >= 5)[:, None, None]
    heat[weak] *= 0.08  # person 1's body joints fall below the detection threshold: filled, not detected
    by = {}
    for rule in ("detected", "all"):
        cfg = DecodeConfig(
            person_score=rule, refine="gaussian", fill_window=0
        )  # whole map: the body is far below the head
        kp, sc = decode_spatial(heat, tags, svf, cfg, stride=4)
        assert _match(kp, poses) < 1e-2
        order = np.argsort(kp[:, 0, 0])  # person 0 is the left one
        by[rule] = (kp[order, :, 2], sc[order])
    heat_kp, score = by["detected"]
    assert np.all(heat_kp[0] > 0.5) and np.all(heat_kp[1, :5] > 0.5) and np.all(heat_kp[1, 5:] < 0.1)
    # person 1's 12 filled joints count 0: only its 5 detected head joints' heat, over 17
    np.testing.assert_allclose(score, [heat_kp[0].mean(), heat_kp[1, :5].sum() / 17], rtol=1e-5)
    heat_kp, score = by["all"]
    np.testing.assert_allclose(score, heat_kp.mean(axis=1), rtol=1e-5)  # the filled joints' heat counts
    assert by["all"][1][1] > by["detected"][1][1] and by["all"][1][0] == pytest.approx(by["detected"][1][0])
    with pytest.raises(ValueError, match="person_score"):
        DecodeConfig(person_score="max")


def test_find_peaks_nms_and_gaussian_refine():
    heat = torch.zeros(1, 9, 9)
    yy, xx = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    heat[0] = torch.exp(-((xx - 4.3) ** 2 + (yy - 3.8) ** 2) / 4.0)
    peaks = find_peaks(heat, DecodeConfig(top_k=3))
    assert peaks.scores[0, 0] > 0.9 and peaks.scores[0, 1] == 0  # one peak survives NMS
    joints = np.array([[[peaks.xs[0, 0].item(), peaks.ys[0, 0].item(), 1.0]]])
    ref = refine_locations(joints, heat, "gaussian")
    np.testing.assert_allclose(ref[0, 0, :2], [4.3, 3.8], atol=1e-4)


def test_multiscale_merge_shapes_and_averaging():
    poses = known_poses(np.random.default_rng(4))
    heat, tags, svf = _maps(poses)
    small = [
        torch.nn.functional.interpolate(m[None], scale_factor=0.5, mode="bilinear")[0]
        for m in (heat, tags, svf)
    ]
    small[2] = small[2] * 0.5
    h, t, s = merge_multiscale([(heat, tags, svf), tuple(small)], size=(64, 64))
    assert h.shape == (17, 64, 64) and t.shape == (17, 2, 64, 64) and s.shape == (2, 64, 64)
    kp, _ = decode_spatial(h, t, s, DecodeConfig(refine="quarter"), stride=4)
    assert _match(kp, poses) < 4.0


def test_flip_testing_unmirrors_the_mirrored_maps_and_decodes_back():
    poses = known_poses(np.random.default_rng(5))
    mirrored = poses[:, flip_permutation()].copy()  # the mirrored person's left is its right
    mirrored[..., 0] = 255.0 - mirrored[..., 0]  # pixel x -> W - 1 - x on the 256-wide input
    heat, tags, svf = _maps(poses)
    uh, ut, us = unflip_maps(*(m[None] for m in _maps(mirrored)))
    torch.testing.assert_close(uh[0], heat)  # the same Gaussians on the same cells, same joints
    cells = np.rint(to_output_coords(poses[..., :2], 4)).astype(int).reshape(-1, 2)
    torch.testing.assert_close(us[0][:, cells[:, 1], cells[:, 0]], svf[:, cells[:, 1], cells[:, 0]])
    merged = merge_multiscale([(heat, tags, svf), (uh[0], ut[0], us[0])], size=(64, 64))
    assert merged[1].shape == (17, 2, 64, 64)
    kp, _ = decode_spatial(*merged, DecodeConfig(refine="quarter"), stride=4)
    assert _match(kp, poses) < 1.0


def test_test_time_passes_are_mirror_equivariant():
    """Flip testing + scales on a random SpatialNet: mirroring the input mirrors the merged maps."""
    torch.manual_seed(0)
    decode = DecodeConfig(flip_test=True, scales=(1.0, 0.5))
    net = SpatialNet(
        SpatialNetConfig(backbone=HourglassConfig(stacks=1, width=16, depth=2), decode=decode)
    ).eval()
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    maps, features = net.infer(x)
    assert maps["heatmaps"].shape == (2, 17, 16, 24) and maps["svf"].shape == (2, 2, 16, 24)
    assert maps["tags"].shape == (2, 17, 4, 16, 24) and features.shape == (
        2,
        16,
        16,
        24,
    )  # 2 scales x 2 flips
    torch.testing.assert_close(features, net(x)[1])  # the plain pass's features (TemporalNet's input)
    other, _ = net.infer(x.flip(-1))
    h, t, s = unflip_maps(other["heatmaps"], other["tags"], other["svf"])
    torch.testing.assert_close(h, maps["heatmaps"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(s, maps["svf"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        t[:, :, [1, 0, 3, 2]], maps["tags"], atol=1e-5, rtol=1e-4
    )  # passes swap pairwise
    plain = dataclasses.replace(net.config, decode=DecodeConfig())
    net.config = plain
    torch.testing.assert_close(net.infer(x)[0]["heatmaps"], net(x)[0][-1]["heatmaps"])
    with pytest.raises(ValueError, match="scales"):
        DecodeConfig(scales=())


@pytest.mark.parametrize("use_pgg", [False, True])
def test_round_trip_scores_ap_1_through_posestream_eval(tmp_path, capsys, use_pgg):
    import json

    from posestream.models.poses import FramePoses, boxes_from_keypoints, write_jsonl
    from posestream.service.cli import main

    rng = np.random.default_rng(5)
    gt, pred = [], []
    for i in range(4):
        poses = known_poses(rng)
        gt.append(
            FramePoses(i, i / 25, 256, 256, poses, boxes_from_keypoints(poses), np.ones(3), np.arange(3))
        )
        kp, scores = decode_spatial(*_maps(poses), DecodeConfig(refine="gaussian", use_pgg=use_pgg), stride=4)
        pred.append(
            FramePoses(i, i / 25, 256, 256, kp, boxes_from_keypoints(kp), scores, np.full(len(kp), -1))
        )
    write_jsonl(tmp_path / "gt.jsonl", gt)
    write_jsonl(tmp_path / "pred.jsonl", pred)
    capsys.readouterr()
    assert (
        main(["eval", "--gt", str(tmp_path / "gt.jsonl"), "--pred", str(tmp_path / "pred.jsonl"), "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["AP"] == 1.0 and result["AR"] == 1.0


def test_fill_missing_searches_only_near_the_person():
    """A missing joint is taken from the person's window, never from a far-away pixel."""
    from posestream.models.decode import fill_missing

    poses = known_poses(np.random.default_rng(6), people=2)
    heat, tags, svf = _maps(poses)
    tags = tags.unsqueeze(1)  # (J, T=1, H, W)
    sie = torch.stack(torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="xy")) - svf
    # Person 0's detected joints: everything but the left wrist (9).
    out = to_output_coords(poses[0, :, :2], 4)
    joints = np.zeros((1, 17, 3))
    joints[0, :, :2], joints[0, :, 2] = np.round(out), 1.0
    joints[0, 9] = 0.0
    mean_tag = tags[:, :, int(joints[0, 0, 1]), int(joints[0, 0, 0])].mean(0, keepdim=True).double().numpy()
    mean_sie = sie[:, int(joints[0, 5, 1]), int(joints[0, 5, 0])][None].double().numpy()
    # A decoy with a perfect tag and SIE and full heat far from the person (beyond its window).
    heat[9, 2, 62], tags[9, :, 2, 62] = 5.0, torch.from_numpy(mean_tag[0]).float()
    sie[:, 2, 62] = torch.from_numpy(mean_sie[0]).float()
    cfg = DecodeConfig(fill_window=0.2)  # the person's box is ~37 cells tall; the decoy is ~40 cells away
    filled = fill_missing(joints, mean_tag, mean_sie, heat, tags, sie, cfg)
    np.testing.assert_allclose(filled[0, 9, :2], np.round(out[9]), atol=1.0)  # the true wrist
    whole = fill_missing(joints, mean_tag, mean_sie, heat, tags, sie, DecodeConfig(fill_window=0.0))
    np.testing.assert_array_equal(whole[0, 9, :2], [62, 2])  # whole-map search takes the decoy


def _duplicated_left_wrist(seed: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One person whose left-wrist heatmap also peaks at the right wrist (mirror confusion).

    The true left-wrist peak keeps full heat but its tag is off by 0.5, so plain greedy
    matching prefers the mirrored peak (perfect tag, 0.9 heat): both wrists land on one spot.
    """
    poses = known_poses(np.random.default_rng(seed), people=1)
    heat, tags, svf = _maps(poses)
    heat[9] = torch.maximum(heat[9], 0.9 * heat[10])
    x, y = np.round(to_output_coords(poses[0, 9, :2], 4)).astype(int)
    tags[9, y - 2 : y + 3, x - 2 : x + 3] += 0.5
    return poses, heat, tags, svf


def test_mirrored_duplicate_moves_to_its_own_peak():
    poses, heat, tags, svf = _duplicated_left_wrist(7)
    plain = DecodeConfig(refine="gaussian", min_joints=2)  # the lone unmatched true wrist is no person
    kp, _ = decode_spatial(heat, tags, svf, plain, stride=4)
    assert (
        kp.shape[0] == 1 and np.abs(kp[0, 9, :2] - poses[0, 10, :2]).max() < 2.0
    )  # the duplicate: left wrist on the right one
    separated = dataclasses.replace(plain, mirror_separation=4.0)
    kp, _ = decode_spatial(heat, tags, svf, separated, stride=4)
    assert np.abs(kp[0, 9, :2] - poses[0, 9, :2]).max() < 1.0  # moved to its own peak
    assert np.abs(kp[0, 10, :2] - poses[0, 10, :2]).max() < 1.0  # the right wrist (elbow nearer) kept
    assert _match(kp, poses) < 1.0


def test_mirror_separation_leaves_unconfirmed_pairs_alone():
    poses, heat, tags, svf = _duplicated_left_wrist(8)
    plain = DecodeConfig(refine="gaussian", min_joints=2)
    kp_plain, _ = decode_spatial(heat, tags, svf, plain, stride=4)
    # The own peak is farther from the left elbow than 0.5x the right forearm: no move.
    strict = dataclasses.replace(plain, mirror_separation=4.0, mirror_limb_ratio=0.5)
    np.testing.assert_array_equal(decode_spatial(heat, tags, svf, strict, stride=4)[0], kp_plain)
    # A weaker own peak is not enough evidence either.
    weak = heat.clone()
    weak[9] = torch.maximum(0.5 * _maps(poses)[0][9], 0.9 * heat[10])
    on = dataclasses.replace(plain, mirror_separation=4.0)
    np.testing.assert_array_equal(
        decode_spatial(weak, tags, svf, on, stride=4)[0], decode_spatial(weak, tags, svf, plain, stride=4)[0]
    )
    # Truly close joints (feet together, one peak each) stay together.
    together = poses.copy()
    together[0, 16, :2] = together[0, 15, :2] + 1.0
    heat, tags, svf = _maps(together)
    kp, _ = decode_spatial(heat, tags, svf, on, stride=4)
    assert _match(kp, together) < 1e-2


def test_mirror_separation_config_is_validated():
    with pytest.raises(ValueError, match="mirror_separation"):
        DecodeConfig(mirror_separation=-1.0)
    with pytest.raises(ValueError, match="mirror_limb_ratio"):
        DecodeConfig(mirror_limb_ratio=0.0)


def test_pose_nms_drops_the_weaker_copy_of_a_split_person_and_keeps_the_others():
    """Person 0's legs carry another tag, so grouping splits them off and ``fill_missing``
    rebuilds a second, weaker person over person 0's upper body; pose NMS removes that copy."""
    poses = known_poses(np.random.default_rng(0))
    heat, tags, svf = _maps(poses)
    t = build_spatial_targets(poses, 64, 64, TargetConfig())
    legs = torch.from_numpy(t.instance == 0) & (torch.arange(17) >= 11)[:, None, None]
    tags[legs] += 20.0
    kp_all, sc_all = decode_spatial(heat, tags, svf, DecodeConfig(refine="gaussian", nms_oks=1.0), stride=4)
    assert len(kp_all) == 4  # pose NMS off: seed 002's decoding keeps the copy
    kp, sc = decode_spatial(heat, tags, svf, DecodeConfig(refine="gaussian", nms_oks=0.4), stride=4)
    assert len(kp) == 3
    weakest = int(np.argmin(sc_all))
    np.testing.assert_array_equal(kp, np.delete(kp_all, weakest, axis=0))  # decode order kept
    np.testing.assert_array_equal(sc, np.delete(sc_all, weakest))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_nms_oks_outside_its_range_is_refused(bad):
    with pytest.raises(ValueError, match="nms_oks"):
        DecodeConfig(nms_oks=bad)
