"""SpatialNet training: augmentation keeps flip pairs right, a few steps lower the loss, runs resume."""

import dataclasses

import numpy as np
import pytest
import torch

from posestream.models.backbones.hourglass import HourglassConfig
from posestream.models.checkpoints import load_spatialnet
from posestream.models.data.augment import AugmentConfig, random_affine, transform_keypoints
from posestream.models.data.datasets import (
    PoseSample,
    SpatialTrainingSet,
    SyntheticPoseSource,
    collate_spatial,
)
from posestream.models.poses import read_jsonl
from posestream.models.skeleton import KEYPOINT_INDEX
from posestream.models.spatialnet import SpatialNet, SpatialNetConfig
from posestream.models.train import (
    GT_TAG_STEP,
    _batch_targets,
    evaluate_spatialnet,
    evaluate_spatialnet_oracles,
    load_train_config,
    lr_at,
    predict_frames,
    train_spatial,
    with_ground_truth,
)
from posestream.tracker.metrics import evaluate

TINY = {"backbone": {"stacks": 1, "width": 16, "depth": 2}}


def _tiny_checkpoint(tmp_path):
    """A two-step tiny SpatialNet training run's last.pt (for decode tuning and export tests)."""
    over = {
        "model": TINY, "input_size": [64, 64], "steps": 2, "batch_size": 2, "device": "cpu",
        "synthetic": {"clips": 1, "frames": 4, "people": 2, "width": 160, "height": 120}, "out_dir": str(tmp_path),
    }  # fmt: skip
    return train_spatial(load_train_config(None, over), progress=False)


def test_flip_swaps_left_and_right():
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, KEYPOINT_INDEX["left_wrist"]] = (10, 50, 2)
    kp[0, KEYPOINT_INDEX["right_wrist"]] = (90, 50, 2)
    cfg = AugmentConfig(flip_prob=1.0, scale_range=(1.0, 1.0), rotation_deg=0.0, translate_frac=0.0)
    m, flip = random_affine(100, 100, 100, 100, cfg, np.random.default_rng(0))
    out = transform_keypoints(kp, m, flip)
    assert flip
    # mirroring moves the wrist at x=10 to x=89; in the mirrored image that wrist is the
    # (mirrored) person's right wrist, so the labels swap along with the coordinates
    np.testing.assert_allclose(out[0, KEYPOINT_INDEX["right_wrist"], :2], (89, 50), atol=1e-4)
    np.testing.assert_allclose(out[0, KEYPOINT_INDEX["left_wrist"], :2], (9, 50), atol=1e-4)


def test_augmented_keypoints_follow_the_pixels():
    img = np.zeros((120, 160, 3), np.uint8)
    img[60, 40] = 255  # a single bright pixel at the keypoint
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, 0] = (40, 60, 2)
    ds = SpatialTrainingSet([PoseSample(img, kp)], (64, 64), seed=3, augment=AugmentConfig(flip_prob=0.0))
    item = ds[0]
    heat = item["heatmaps"][0]
    y, x = np.unravel_index(int(heat.argmax()), heat.shape)
    bright = item["image"].float().sum(0)
    by, bx = np.unravel_index(int(bright.argmax()), bright.shape)
    assert abs(x * 4 + 1.5 - bx) <= 4 and abs(y * 4 + 1.5 - by) <= 4


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    net = SpatialNet(load_train_config(None, {"model": TINY, "input_size": [64, 64]}).model)
    source = SyntheticPoseSource(seed_base=7, clips=1, frames=4, people=2, width=160, height=120)
    ds = SpatialTrainingSet(source, (64, 64), seed=0, augment=None)
    batch = collate_spatial([ds[i] for i in range(4)])
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        stacks, _ = net(net.normalise(batch["image"]))
        terms = net.loss(stacks, _batch_targets(batch, torch.device("cpu")))
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        losses.append(terms["total"].item())
    assert losses[-1] < 0.5 * losses[0]


def test_train_resume_and_load(tmp_path):
    over = {
        "model": TINY, "input_size": [64, 64], "steps": 3, "batch_size": 2, "ckpt_every": 2, "device": "cpu",
        "synthetic": {"clips": 1, "frames": 4, "people": 2, "width": 160, "height": 120}, "out_dir": str(tmp_path),
    }  # fmt: skip
    last = train_spatial(load_train_config(None, over), progress=False)
    assert torch.load(last, weights_only=False)["step"] == 3
    last = train_spatial(load_train_config(None, {**over, "steps": 5}), progress=False)
    assert torch.load(last, weights_only=False)["step"] == 5
    net = load_spatialnet(last)
    preds = predict_frames(net, [np.zeros((120, 160, 3), np.uint8)], (64, 64), torch.device("cpu"))
    assert len(preds) == 1 and preds[0][0].shape[1:] == (17, 3)


def test_crops_per_frame_are_distinct_augmentations_of_one_frame():
    source = SyntheticPoseSource(seed_base=7, clips=1, frames=2, people=2, width=160, height=120)
    ds = SpatialTrainingSet(source, (64, 64), seed=0, augment=AugmentConfig(), crops_per_frame=3)
    item = ds[1]
    assert isinstance(item, list) and len(item) == 3
    assert not torch.equal(item[0]["image"], item[1]["image"])  # each crop its own random affine
    # the same source frame and crop index always give the same crop (seeded per (seed, i, c))
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(item, ds[1], strict=True))
    batch = collate_spatial([ds[0], item])
    assert batch["image"].shape == (6, 3, 64, 64) and len(batch["joints"]) == 6
    torch.testing.assert_close(batch["heatmaps"][3:], torch.stack([c["heatmaps"] for c in item]))
    with pytest.raises(ValueError, match="crops_per_frame"):
        SpatialTrainingSet(source, (64, 64), seed=0, augment=None, crops_per_frame=2)
    with pytest.raises(ValueError, match="multiple of crops_per_frame"):
        load_train_config(
            None, {"model": TINY, "input_size": [64, 64], "batch_size": 6, "crops_per_frame": 4}
        )


def test_lr_steps_down_by_step_or_by_elapsed_time_whichever_is_further():
    cfg = load_train_config(None, {"model": TINY, "input_size": [64, 64], "lr": 1e-3, "steps": 100,
                                   "lr_decay_steps": [50, 80], "lr_decay": 0.1})  # fmt: skip
    assert [lr_at(cfg, s, 1e9) for s in (0, 49, 50, 79, 80)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5])
    timed = dataclasses.replace(cfg, time_limit_s=10.0)
    assert lr_at(timed, 0, 4.9) == pytest.approx(1e-3)
    assert lr_at(timed, 0, 5.0) == pytest.approx(1e-4)  # half the time = half the steps
    assert lr_at(timed, 80, 1.0) == pytest.approx(1e-5)  # steps ahead of the clock
    with pytest.raises(ValueError, match="time_limit_s"):
        load_train_config(None, {"model": TINY, "input_size": [64, 64], "time_limit_s": 0})


def test_time_limit_stops_a_run_and_a_finished_run_resumes_to_no_steps(tmp_path):
    over = {
        "model": TINY, "input_size": [64, 64], "steps": 100000, "time_limit_s": 1.5, "batch_size": 2,
        "ckpt_every": 1000, "device": "cpu", "out_dir": str(tmp_path),
        "synthetic": {"clips": 1, "frames": 4, "people": 2, "width": 160, "height": 120},
    }  # fmt: skip
    cfg = load_train_config(None, over)
    last = train_spatial(cfg, progress=False)
    ckpt = torch.load(last, weights_only=False)
    assert 1 <= ckpt["step"] < 100000 and ckpt["elapsed_s"] >= 1.5  # saved when the limit hit
    again = train_spatial(cfg, progress=False)  # the budget is spent: nothing more to train
    after = torch.load(again, weights_only=False)
    assert after["step"] == ckpt["step"] and after["elapsed_s"] == ckpt["elapsed_s"]
    longer = train_spatial(dataclasses.replace(cfg, time_limit_s=ckpt["elapsed_s"] + 1.0), progress=False)
    assert torch.load(longer, weights_only=False)["step"] > ckpt["step"]  # a larger budget continues


def test_config_validation():
    with pytest.raises(ValueError, match="multiples of 16"):
        load_train_config(None, {"model": TINY, "input_size": [60, 64]})
    cfg = load_train_config(None, {"stage": "pgg", "model": TINY, "input_size": [64, 64]})
    assert cfg.model.use_pgg
    with pytest.raises(ValueError):
        SpatialNetConfig(use_ke=False, use_sie=False)
    assert HourglassConfig(depth=2).size_multiple == 16


def test_frozen_movenet_backbone_trains_only_the_hourglass(movenet_tflite, tmp_path):
    """The MoveNet option: frozen, out of checkpoints, identical after a step, reloadable."""
    cfg = load_train_config(None, {"model": {**TINY, "features": "movenet"}, "input_size": [64, 64]})
    assert cfg.model.size_multiple == 32  # MoveNet's multiple, not the depth-2 hourglass's 16
    with pytest.raises(ValueError, match="multiples of 32"):
        load_train_config(None, {"model": {**TINY, "features": "movenet"}, "input_size": [48, 64]})
    torch.manual_seed(0)
    net = SpatialNet(cfg.model, movenet_weights=movenet_tflite).train()
    frozen = net.backbone.stem[0].movenet
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    source = SyntheticPoseSource(seed_base=7, clips=1, frames=2, people=2, width=160, height=120)
    batch = collate_spatial([SpatialTrainingSet(source, (64, 64), seed=0, augment=None)[i] for i in range(2)])
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    stacks, features = net(net.normalise(batch["image"]))
    assert features.shape == (2, 16, 16, 16)
    net.loss(stacks, _batch_targets(batch, torch.device("cpu")))["total"].backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    state = net.state_dict()
    assert not any(".movenet." in k for k in state)  # none of Google's weights in our checkpoints
    path = tmp_path / "sn.pt"
    torch.save({"config": dataclasses.asdict(cfg.model), "model": state}, path)
    loaded = load_spatialnet(path)
    x = net.normalise(batch["image"])
    net.eval()
    torch.testing.assert_close(loaded(x)[0][-1]["heatmaps"], net(x)[0][-1]["heatmaps"])


def test_tune_decode_and_export_keep_the_chosen_parameters(tmp_path):
    from posestream.models.train import export_weights, tune_decode

    last = _tiny_checkpoint(tmp_path)
    net = load_spatialnet(last)
    grid = {"detection_threshold": (0.05, 0.5), "min_joints": (1, 4)}
    decode, trail = tune_decode(
        net, [8000], 2, (64, 64), torch.device("cpu"), grid=grid, rounds=1, evaluate=evaluate
    )
    assert net.config.decode == load_spatialnet(last).config.decode  # the net is left as it was
    assert [t["field"] for t in trail][0] == "start" and len(
        trail
    ) == 1 + 2 + 1  # min_joints=1 is the default: skipped
    best = max(t["AP"] for t in trail)
    assert best == trail[0]["AP"] or any(
        t["AP"] == best and getattr(decode, t["field"]) == t["value"] for t in trail
    )
    exported = load_spatialnet(export_weights(last, tmp_path / "w.pt", decode=decode))
    assert exported.config.decode == decode


def test_ground_truth_maps_replace_exactly_the_half_asked_for():
    kp = np.zeros((2, 17, 3), np.float32)
    kp[0, :, :2] = np.stack([np.linspace(20, 40, 17), np.linspace(10, 90, 17)], 1)
    kp[1, :, :2] = kp[0, :, :2] + (60, 0)
    kp[..., 2] = 2
    maps = {
        "heatmaps": torch.rand(1, 17, 32, 32),
        "tags": torch.rand(1, 17, 2, 32, 32),
        "svf": torch.rand(1, 2, 32, 32),
    }
    emb = with_ground_truth(maps, kp, heatmaps=False, embeddings=True)
    assert emb["heatmaps"] is maps["heatmaps"] and emb["tags"].shape == (1, 17, 1, 32, 32)
    heat = with_ground_truth(maps, kp, heatmaps=True, embeddings=False)
    assert heat["tags"] is maps["tags"] and heat["svf"] is maps["svf"]
    centres = (kp[..., :2] + 0.5) / 4 - 0.5  # output pixels
    for k in range(2):
        x, y = np.round(centres[k, 8]).astype(int)  # the cell nearest the joint: heat near 1
        assert heat["heatmaps"][0, 8, y, x] > 0.8
        assert emb["tags"][0, 8, 0, y, x] == (k + 1) * GT_TAG_STEP
        sie = np.array([x, y]) - emb["svf"][0, :, y, x].numpy()  # SIE = p - S(p): the person's centre
        np.testing.assert_allclose(sie, centres[k].mean(0), atol=1e-4)
    assert with_ground_truth(maps, kp, heatmaps=False, embeddings=False) is maps


def test_ground_truth_heatmaps_and_embeddings_decode_back_to_the_ground_truth():
    torch.manual_seed(0)
    net = SpatialNet(load_train_config(None, {"model": TINY}).model).eval()
    both = evaluate_spatialnet(
        net,
        [9005],
        2,
        (512, 384),
        torch.device("cpu"),
        gt_heatmaps=True,
        gt_embeddings=True,
        evaluate=evaluate,
    )
    assert both["AP"] == 1.0 and both["AR"] == 1.0
    # an untrained net's own heatmaps, or its embeddings grouping exact peaks, fall far short
    assert (
        evaluate_spatialnet(
            net, [9005], 2, (512, 384), torch.device("cpu"), gt_heatmaps=True, evaluate=evaluate
        )["AP"]
        < 0.9
    )
    assert (
        evaluate_spatialnet(net, [9005], 2, (512, 384), torch.device("cpu"), evaluate=evaluate)["AP"] < 0.05
    )


def test_oracles_from_one_pass_score_as_separate_evaluations(tmp_path):
    torch.manual_seed(0)
    net = SpatialNet(load_train_config(None, {"model": TINY}).model).eval()
    cpu = torch.device("cpu")
    oracles = {"network": (False, False), "GT heatmaps": (True, False), "both": (True, True)}
    together = evaluate_spatialnet_oracles(
        net, [9005], 2, (512, 384), cpu, oracles, write_dir=tmp_path, evaluate=evaluate
    )
    for name, (h, e) in oracles.items():
        assert together[name] == evaluate_spatialnet(
            net, [9005], 2, (512, 384), cpu, gt_heatmaps=h, gt_embeddings=e, evaluate=evaluate
        )
    # The first oracle's predictions are the ones written.
    assert (
        evaluate(read_jsonl(tmp_path / "gt.jsonl"), read_jsonl(tmp_path / "pred.jsonl"))["AP"]
        == together["network"]["AP"]
    )


@pytest.mark.slow
def test_train_decode_cli_retunes_stored_weights_and_rejects_bad_input(tmp_path, capsys):
    """``posestream train decode`` re-chooses the decoding of existing weights without training."""
    import json

    from posestream.models.train import config_to_dict
    from posestream.service.cli import main

    last = str(_tiny_checkpoint(tmp_path))
    out = tmp_path / "w.pt"
    base = ["train", "decode", "--weights", last, "--export", str(out), "--input-size", "64x64"]
    capsys.readouterr()
    assert main([*base, "--tune-decode-seeds", "8000", "--eval-seeds", "9000"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    tuned, metrics = lines[0]["tuned_decode"], lines[1]
    exported = load_spatialnet(out)
    assert config_to_dict(exported.config.decode) == tuned  # what was printed is what is stored
    assert exported.config.backbone == load_spatialnet(last).config.backbone
    assert next(iter(torch.load(out, weights_only=True)["model"].values())).dtype == torch.float16
    assert set(metrics) >= {"AP", "AP50", "AP75", "AR"}
    for bad, message in (
        (["--tune-decode-seeds", "8000", "--input-size", "64by64"], "WxH"),
        (["--tune-decode-seeds", "8000", "--input-size", "60x60"], "multiples"),
        (["--tune-decode-seeds", "8000", "--eval-seeds", "8000"], "must not share"),
        (["--tune-decode-seeds", ""], "no seed"),
        (["--tune-decode-seeds", "8000", "--weights", str(tmp_path / "missing.pt")], "no such weights"),
        (["--tune-decode-seeds", "8000", "--device", "gpu"], "cannot load"),
    ):
        assert main([*base, *bad]) == 2
        assert message in capsys.readouterr().err


def test_train_decode_fits_stores_and_tunes_the_pose_prior(tmp_path, capsys):
    """``--pose-prior-seeds`` fits the body-shape prior into the export; ``--tune-fields`` limits the search."""
    import json

    from posestream.models.train import config_to_dict, export_weights, tune_decode
    from posestream.service.cli import main

    last = str(_tiny_checkpoint(tmp_path))
    net = load_spatialnet(last)
    assert net.pose_prior is None
    _, trail = tune_decode(
        net,
        [8000],
        2,
        (64, 64),
        torch.device("cpu"),
        grid={"prior_threshold": (0.0, 0.2)},
        rounds=1,
        evaluate=evaluate,
    )
    assert len(trail) == 1  # without a prior its fields are never tried
    out = tmp_path / "w.pt"
    base = ["train", "decode", "--weights", last, "--export", str(out), "--input-size", "64x64",
            "--tune-decode-seeds", "8000"]  # fmt: skip
    capsys.readouterr()
    assert (
        main([*base, "--pose-prior-seeds", "1000-1001", "--tune-fields", "prior_threshold,prior_noise"]) == 0
    )
    printed = capsys.readouterr().out
    tuned = json.loads(next(line for line in printed.splitlines() if line.startswith("{")))["tuned_decode"]
    exported = load_spatialnet(out)
    assert "fitted on the ground truth of 2 synthetic clips" in printed and exported.pose_prior is not None
    assert config_to_dict(exported.config.decode) == tuned
    start = config_to_dict(net.config.decode)
    assert {k for k in tuned if tuned[k] != start[k]} <= {"prior_threshold", "prior_noise"}
    again = tmp_path / "again.pt"  # re-exported without --pose-prior-seeds: the stored prior stays
    assert main(["train", "decode", "--weights", str(out), "--export", str(again), "--input-size", "64x64",
                 "--tune-decode-seeds", "8000", "--tune-fields", "min_joints"]) == 0  # fmt: skip
    np.testing.assert_array_equal(load_spatialnet(again).pose_prior.cov, exported.pose_prior.cov)
    capsys.readouterr()
    for bad, message in (
        (["--tune-fields", "bogus"], "unknown decoding fields"),
        (["--tune-fields", "prior_threshold"], "has no pose prior"),  # neither fitted nor stored
        (["--pose-prior-seeds", "8000"], "must not share"),
        (["--pose-prior-seeds", "1010-1000"], "ranges A-B"),
        (["--pose-prior-seeds", "1010-"], "ranges A-B"),
    ):
        assert main([*base, *bad]) == 2
        assert message in capsys.readouterr().err
    uses_prior = dataclasses.replace(net.config.decode, prior_threshold=0.2)
    with pytest.raises(ValueError, match="none was fitted or stored"):
        export_weights(last, tmp_path / "broken.pt", decode=uses_prior)  # a file that could not decode


def test_train_spatial_refuses_a_prior_decoding_without_prior_seeds_before_training(tmp_path, capsys):
    import yaml

    from posestream.service.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {**TINY, "decode": {"prior_threshold": 0.2}}, "input_size": [64, 64],
                                      "steps": 1, "batch_size": 2, "device": "cpu", "out_dir": str(tmp_path / "run")}))  # fmt: skip
    assert main(["train", "spatial", "--config", str(config)]) == 2
    assert "pass --pose-prior-seeds" in capsys.readouterr().err
    config.write_text(config.read_text().replace("prior_threshold: 0.2", "prior_threshold: 0.0"))
    assert main(["train", "spatial", "--config", str(config), "--tune-decode-seeds", "8000",
                 "--tune-fields", "prior_noise"]) == 2  # fmt: skip
    assert "pass --pose-prior-seeds" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before a step was trained
