"""Issue 18 items 2 and 3: pseudo-labelled real frames for SpatialNet, and the frozen-pyramid feature cache.

- Pseudo-labels: joints the labeller is sure of are targets weighted by their confidence,
  unsure ones are ignored (weight 0, not background); the weights follow the keypoints
  through the augmentation (flip swaps them); only the real dev set's train images are
  labelled, from its ``images`` list, never its labels.
- Feature cache: a training step from cached features gives the same loss as the live step
  (and as the plain ``forward`` path), and entries are keyed by crop and MoveNet weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from posestream.models.backbones.hourglass import HourglassConfig
from posestream.models.data.augment import AugmentConfig
from posestream.models.data.datasets import (
    MixedPoseSource,
    PoseSample,
    SpatialTrainingSet,
    SyntheticPoseSource,
    collate_spatial,
)
from posestream.models.data.pseudo_labels import PseudoLabelConfig, PseudoLabelSource, real_dev_train_images
from posestream.models.data.splits import real_dev_split
from posestream.models.feature_cache import FeatureCache, movenet_sha256
from posestream.models.spatialnet import SpatialNet, SpatialNetConfig
from posestream.models.targets import TargetConfig, confidence_weights
from posestream.models.train import _batch_targets, spatial_step_loss

AUGMENT = AugmentConfig(flip_prob=0.5, scale_range=(1.0, 1.5), rotation_deg=10.0, translate_frac=0.2)


def _person(x0: float, y0: float) -> np.ndarray:
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0] = x0 + np.arange(17) * 2.0
    kp[:, 1] = y0 + np.arange(17) * 3.0
    kp[:, 2] = 0.9
    return kp


def test_confidence_weights_weigh_sure_joints_ignore_unsure_ones_and_keep_background():
    kp = _person(10.0, 10.0)[None]  # input pixels; stride 4
    weights = np.full((1, 17), 0.6, np.float32)
    weights[0, 5] = 0.0  # an unsure joint
    w = confidence_weights(kp, weights, 32, 32, TargetConfig(), background=0.8)
    assert w.shape == (17, 32, 32)
    x, y = (kp[0, 0, :2] + 0.5) / 4 - 0.5
    assert w[0, round(y), round(x)] == pytest.approx(0.6)
    x5, y5 = (kp[0, 5, :2] + 0.5) / 4 - 0.5
    assert w[5, round(y5), round(x5)] == 0.0
    assert w[0, 31, 31] == pytest.approx(0.8)  # far from every joint
    x16, y16 = (kp[0, 16, :2] + 0.5) / 4 - 0.5
    assert w[5, round(y16), round(x16)] == pytest.approx(0.8)  # joint 16's support is not joint 5's


def _labels_folder(tmp_path, frames):
    (tmp_path / "frames").mkdir()
    import cv2

    for i, _ in enumerate(frames):
        cv2.imwrite(str(tmp_path / "frames" / f"{i:05d}.jpg"), np.full((96, 128, 3), 100, np.uint8))
    entries = [{"key": f"clip/{i}", "file": f"frames/{i:05d}.jpg", "keypoints": kp.tolist(), "scores": sc}
               for i, (kp, sc) in enumerate(frames)]  # fmt: skip
    (tmp_path / "labels.json").write_text(json.dumps({"frames": entries}))
    return tmp_path


def test_pseudo_labels_keep_sure_people_and_joints_weighted_by_joint_times_person_score(tmp_path):
    sure, unsure = _person(10, 10), _person(60, 10)
    sure[3, 2] = 0.1  # one weak joint of a confident person
    folder = _labels_folder(tmp_path, [(np.stack([sure, unsure]), [0.8, 0.2])])
    src = PseudoLabelSource(folder, PseudoLabelConfig(min_person_score=0.3, min_joint_score=0.3))
    kp, w = src.labels(0)
    assert kp.shape == (2, 17, 3) and w.shape == (2, 17)
    assert kp[0, 0, 2] == 2 and w[0, 0] == pytest.approx(0.9 * 0.8)
    assert kp[0, 3, 2] == 0 and w[0, 3] == 0.0  # weak joint: not a target, ignored
    assert (kp[1, :, 2] == 0).all() and (w[1] == 0).all()  # unsure person: all ignored
    sample = src[0]
    assert sample.image.shape == (96, 128, 3) and sample.joint_weights is not None
    assert src.item_key(0).endswith("clip/0")


def test_joint_weights_follow_the_keypoints_through_a_flip():
    kp = _person(20, 10)[None]
    kp[..., 2] = 2.0
    jw = np.linspace(0.1, 0.9, 17, dtype=np.float32)[None]
    source = [PoseSample(np.zeros((96, 128, 3), np.uint8), kp, jw)]
    ds = SpatialTrainingSet(source, (128, 96), seed=0, augment=AugmentConfig(1.0, (1.0, 1.0), 0.0, 0.0))
    item = ds[0]
    w = item["heat_weight"].numpy()
    joints = item["joints"].numpy()[0]  # output pixels, after the flip
    from posestream.models.skeleton import flip_permutation

    perm = flip_permutation()
    for j in (5, 6, 9, 10):  # left/right shoulders and wrists swap
        x, y = joints[j, :2]
        assert w[j, round(y), round(x)] == pytest.approx(jw[0, perm[j]])


def test_real_dev_pseudo_labels_use_only_the_train_images_and_no_labels(tmp_path):
    split = real_dev_split()
    ids = sorted(split.train + split.eval)
    coco = {"images": [{"id": i, "file_name": f"x/{i}.jpg"} for i in ids]}  # no "annotations" at all
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    got = real_dev_train_images(tmp_path)
    assert sorted(i for i, _ in got) == sorted(split.train)
    assert not set(i for i, _ in got) & set(split.eval)


def test_mixed_source_draws_the_second_source_at_the_configured_share():
    first, second = list(range(70)), list(range(100, 110))
    mixed = MixedPoseSource(first, second, 0.3)
    assert len(mixed) == 100
    items = [mixed[i] for i in range(len(mixed))]
    assert sum(v >= 100 for v in items) == 30 and items[:70] == first
    with pytest.raises(ValueError):
        MixedPoseSource(first, second, 1.0)


@pytest.fixture(scope="module")
def tiny_net(movenet_tflite):
    torch.manual_seed(0)
    cfg = SpatialNetConfig(backbone=HourglassConfig(stacks=1, width=16, depth=2), features="movenet",
                           movenet_heatmaps=True)  # fmt: skip
    return SpatialNet(cfg, movenet_weights=movenet_tflite).eval()


def test_a_cached_training_step_gives_the_live_steps_loss(tiny_net, movenet_tflite, tmp_path):
    torch.set_num_threads(1)
    source = SyntheticPoseSource(seed_base=7, clips=1, frames=3, people=2, width=160, height=128)
    cache = FeatureCache(tmp_path / "cache", movenet_sha256(movenet_tflite), "float32")
    ds = SpatialTrainingSet(source, (128, 96), 0, AUGMENT, feature_cache=cache, crops_per_frame=2)
    live = collate_spatial([ds[i] for i in range(3)])
    assert live["features"] is None and live["image"].shape == (6, 3, 96, 128)
    plain = tiny_net.loss(
        tiny_net(tiny_net.normalise(live["image"]))[0], _batch_targets(live, torch.device("cpu"))
    )
    first = spatial_step_loss(tiny_net, live, torch.device("cpu"), cache)  # computes and stores
    assert len(cache) == 6  # one entry per item and crop
    cached = collate_spatial([ds[i] for i in range(3)])
    assert cached["image"] is None and cached["cached"].all()
    second = spatial_step_loss(tiny_net, cached, torch.device("cpu"), cache)
    for name in ("total", "det", "pull", "push", "aux", "sie"):
        assert torch.equal(first[name], second[name]), name
        torch.testing.assert_close(plain[name], first[name])
    assert float(first["total"].detach()) > 0
    # Another MoveNet file never reads these entries; another crop seed neither.
    assert FeatureCache(tmp_path / "cache", "0" * 64, "float32").load(cached["keys"][0]) is None
    other = SpatialTrainingSet(source, (128, 96), 1, AUGMENT, feature_cache=cache, crops_per_frame=2)
    assert "image" in other[0][0]


def test_a_half_cached_batch_keeps_its_items_in_order(tiny_net, movenet_tflite, tmp_path):
    source = SyntheticPoseSource(seed_base=7, clips=1, frames=4, people=2, width=160, height=128)
    cache = FeatureCache(tmp_path / "cache", movenet_sha256(movenet_tflite), "float16")
    ds = SpatialTrainingSet(source, (128, 96), 0, AUGMENT, feature_cache=cache)
    spatial_step_loss(tiny_net, collate_spatial([ds[1], ds[3]]), torch.device("cpu"), cache)
    mixed = collate_spatial([ds[i] for i in range(4)])
    assert mixed["cached"].tolist() == [False, True, False, True]
    from posestream.models.train import batch_features

    feats = batch_features(tiny_net, mixed, cache, torch.device("cpu"))
    plain = SpatialTrainingSet(source, (128, 96), 0, AUGMENT)  # the same crops, without a cache
    with torch.no_grad():
        live = tiny_net.frozen_features(tiny_net.normalise(torch.stack([plain[i]["image"] for i in (1, 3)])))
    torch.testing.assert_close(feats[[1, 3]], live, rtol=2e-3, atol=2e-3)  # float16 storage


def test_build_pseudo_labels_labels_real_frames_once(movenet_tflite, tmp_path):
    from posestream.models.data.pseudo_labels import build_pseudo_labels
    from posestream.models.data.real_clips import DataError, clip_path

    try:
        clip_path("vtest")
    except DataError as exc:
        pytest.skip(f"vtest.avi is not available: {exc}")
    cfg = PseudoLabelConfig(clips=("vtest:200:201",), frames_per_clip=1, real_dev_train=False,
                            cache_dir=str(tmp_path))  # fmt: skip
    folder = build_pseudo_labels(cfg)
    stamp = (folder / "labels.json").stat().st_mtime_ns
    src = PseudoLabelSource(folder, cfg)
    assert len(src) == 1 and src.frames[0]["key"] == "vtest/200"
    kp, w = src.labels(0)
    sample = src[0]
    assert sample.image.shape == (576, 768, 3)
    assert (w.max(axis=1) > 0).sum() >= 4  # vtest frame 200 has 7 people; most are found surely
    sure = kp[..., 2] > 0
    assert (kp[sure][:, 0] >= -1).all() and (kp[sure][:, 0] <= 768).all()
    assert build_pseudo_labels(cfg) == folder and (folder / "labels.json").stat().st_mtime_ns == stamp
