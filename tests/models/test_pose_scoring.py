"""Seed 004's pose scoring net: feature shapes, training, held-out correlation, rejection."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from posestream.models.data.splits import HELD_OUT, SCORING_TRAIN, real_dev_split
from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig
from posestream.models.estimator import EstimatorConfig, PoseEstimator
from posestream.models.pose_scoring import (
    FEATURE_DIM,
    POSE_SCORING,
    PoseScorer,
    PoseScoringConfig,
    PoseScoringNet,
    candidate_oks,
    pose_features,
    spearman,
)
from posestream.models.skeleton import EDGES, NUM_KEYPOINTS
from posestream.models.train_scoring import (
    REAL_DEV_DIR,
    CandidateCollector,
    TrainScoringConfig,
    real_pairs,
    synthetic_frames,
    train_scoring,
)
from posestream.models.weights import checkpoint_path

# The shipped checkpoint's rank correlation of predicted with real OKS on held-out MoveNet
# candidates is recorded in its card (weights/README.md); this test re-measures it on a
# held-out clip the card did not use (measured 0.84 on 68 candidates) and asserts it stays above this floor.
SPEARMAN_FLOOR = 0.7
# Held-out synthetic clip for that check (HELD_OUT, beyond the card's first four clips).
CHECK_SEED = HELD_OUT.first + 4


def _pose(rng: np.random.Generator) -> np.ndarray:
    kp = np.zeros((NUM_KEYPOINTS, 3))
    kp[:, :2] = rng.uniform(0, 100, (NUM_KEYPOINTS, 2))
    kp[:, 2] = rng.uniform(0, 1, NUM_KEYPOINTS)
    return kp


def test_feature_shape_and_layout() -> None:
    kp = np.zeros((2, NUM_KEYPOINTS, 3))
    kp[0, :, 0] = np.arange(NUM_KEYPOINTS) * 2.0  # x spans 0..32, y = 0: scale 32
    kp[0, :, 2] = 0.5
    f = pose_features(kp)
    assert f.shape == (2, FEATURE_DIM) == (2, 74) and f.dtype == np.float32
    assert np.allclose(f[0, :NUM_KEYPOINTS], 0.5)
    a, b = EDGES[0]  # (15, 13): offset (30 - 26) / 32 along x
    assert f[0, NUM_KEYPOINTS] == pytest.approx(4.0 / 32.0)
    assert f[0, NUM_KEYPOINTS + len(EDGES)] == pytest.approx((2.0 * a - 2.0 * b) / 32.0)
    assert f[0, NUM_KEYPOINTS + len(EDGES) + 1] == 0.0
    assert np.all(np.isfinite(f[1]))  # a collapsed pose (all joints at one point): scale floor 1 px
    assert pose_features(np.zeros((0, NUM_KEYPOINTS, 3))).shape == (0, FEATURE_DIM)


def test_features_do_not_depend_on_image_scale_or_position() -> None:
    kp = _pose(np.random.default_rng(0))[None]
    moved = kp.copy()
    moved[..., :2] = moved[..., :2] * 3.5 + [40.0, -12.0]
    assert np.allclose(pose_features(kp), pose_features(moved), atol=1e-6)


def test_net_shapes_and_scorer_seam() -> None:
    net = PoseScoringNet(hidden=16)
    assert net(torch.zeros(5, FEATURE_DIM)).shape == (5,)
    scorer = PoseScorer(net)
    kp = np.stack([_pose(np.random.default_rng(i)) for i in range(3)])
    out = scorer(kp, np.zeros((3, 4)), np.zeros(3))
    assert out.shape == (3,) and out.dtype == np.float32 and np.all((out >= 0) & (out <= 1))
    assert scorer(np.zeros((0, NUM_KEYPOINTS, 3)), np.zeros((0, 4)), np.zeros(0)).shape == (0,)


def test_candidate_oks_and_spearman_by_hand() -> None:
    gt = np.zeros((1, NUM_KEYPOINTS, 3))
    gt[0, :, :2] = np.random.default_rng(1).uniform(0, 100, (NUM_KEYPOINTS, 2))
    gt[0, :, 2] = 2
    exact, far = gt.copy(), gt.copy()
    far[..., :2] += 500
    assert np.allclose(candidate_oks(np.concatenate((exact, far)), gt, np.array([1e4])), [1.0, 0.0])
    assert np.allclose(candidate_oks(exact, gt[:0], np.zeros(0)), [0.0])
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1.0)
    assert spearman(np.array([1, 1, 2.0]), np.array([5, 5, 9.0])) == pytest.approx(1.0)


def test_config_rejects_bad_threshold() -> None:
    with pytest.raises(ValueError, match="min_oks"):
        PoseScoringConfig(min_oks=1.5)
    with pytest.raises(ValueError, match="synthetic_clips"):
        TrainScoringConfig(synthetic_clips=SCORING_TRAIN.count + 1)


def test_training_lowers_the_loss_and_resumes(tmp_path: Path, movenet_tflite: Path) -> None:
    """``train_scoring`` end to end on MoveNet's candidates of one training clip (no real set)."""
    cfg = TrainScoringConfig(
        synthetic_clips=1, frame_step=25, held_out_clips=1, real_dev_dir=str(tmp_path / "absent"),
        hidden=32, epochs=60, time_limit_s=None, work_dir=str(tmp_path / "work"), out=str(tmp_path / "s.pt"),
    )  # fmt: skip
    path, card = train_scoring(cfg)
    losses = [c[2] for c in card["curve"]]
    assert card["epochs_done"] == 60 and card["train_pairs"]["real"] == 0
    assert losses[-1] < 0.5 * losses[0]
    assert PoseScorer.from_file(path).net.hidden == 32
    # The same command with more epochs continues from last.pt (the caches are reused).
    _, again = train_scoring(dataclasses.replace(cfg, epochs=70))
    assert again["epochs_done"] == 70 and again["curve"][0] == card["curve"][0]


def test_real_train_split_pairs(tmp_path: Path, movenet_tflite: Path) -> None:
    if not (REAL_DEV_DIR / "annotations.json").is_file():
        pytest.skip(f"real dev set not at {REAL_DEV_DIR}")
    split = real_dev_split()
    assert not set(split.train) & set(split.eval) and len(split.train) + len(split.eval) == 25
    kp, oks = real_pairs(REAL_DEV_DIR, (10,), (1.0,), tmp_path, CandidateCollector(movenet_tflite))[:2]
    assert kp.shape[1:] == (NUM_KEYPOINTS, 3) and len(kp) == len(oks) > 0
    assert np.all((oks >= 0) & (oks <= 1)) and oks.max() > 0.5  # MoveNet finds the people of mhp/10112


def test_shipped_weights_rank_held_out_poses(movenet_tflite: Path) -> None:
    """Predicted vs real OKS of MoveNet's candidates on a held-out clip: Spearman above the floor."""
    path = checkpoint_path(POSE_SCORING)
    scorer = PoseScorer.from_file(path)
    collect = CandidateCollector(movenet_tflite)
    kps, oks = [], []
    for rgb, gt, areas in synthetic_frames(CHECK_SEED, 100, 10):
        cand = collect(rgb)
        kps.append(cand)
        oks.append(candidate_oks(cand, gt, areas))
    kp, target = np.concatenate(kps), np.concatenate(oks)
    rho = spearman(scorer.predict(kp), target)
    print(f"held-out seed {CHECK_SEED}: {len(target)} candidates, Spearman {rho:.3f}")
    assert len(target) >= 50
    assert rho > SPEARMAN_FLOOR


def test_rejection_threshold(movenet_tflite: Path) -> None:
    clip = SyntheticClip.from_config(SyntheticConfig(seed=HELD_OUT.first, frames=10, people=5, occluders=2))
    rgb, _ = clip.render(0)
    base = dict(device="cpu", input_sizes=(256,), flip=False)
    counts = {}
    for t in (0.0, 0.6):
        est = PoseEstimator(
            EstimatorConfig(**base, scoring=PoseScoringConfig(enabled=True, min_oks=t)), movenet_tflite
        )
        assert isinstance(est.rescorer, PoseScorer) and est.config.decoder.min_pose_score == t
        scores = est([rgb]).poses[0].scores
        assert np.all(scores <= 1.0)
        assert np.all(scores >= t)
        counts[t] = len(scores)
    assert counts[0.6] < counts[0.0]
    off = PoseEstimator(EstimatorConfig(**base, scoring=PoseScoringConfig(enabled=False)), movenet_tflite)
    assert off.rescorer is None


def test_cli_rejects_bad_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    from posestream.service.cli import main

    assert main(["train", "scoring", "--clips", str(SCORING_TRAIN.count + 1)]) == 2
    assert "synthetic_clips must be 1..40" in capsys.readouterr().err


def test_rejection_threshold_on_the_spatialnet_path(movenet_tflite: Path) -> None:
    from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator
    from posestream.models.weights import SPATIALNET_MOVENET

    weights = checkpoint_path(SPATIALNET_MOVENET)
    if not weights.is_file():
        pytest.skip(f"{weights} missing")
    clip = SyntheticClip.from_config(SyntheticConfig(seed=HELD_OUT.first, frames=10, people=5, occluders=2))
    rgb, _ = clip.render(0)
    scoring = PoseScoringConfig(enabled=True, min_oks=0.0)
    est = SpatialNetEstimator(weights, SpatialEstimatorConfig(device="cpu", scoring=scoring))
    assert isinstance(est.scorer, PoseScorer)
    poses = est([rgb]).poses[0]
    assert len(poses) > 0 and np.all(np.diff(poses.scores) <= 0)  # best first, by predicted OKS
    # Scored on input pixels before joints are clipped to the frame: equal up to that clipping.
    assert np.allclose(poses.scores, est.scorer.predict(poses.keypoints), atol=0.05)
    # A threshold between the lowest and highest predicted OKS must drop exactly the people under it.
    cut = float(poses.scores.min() + poses.scores.max()) / 2
    assert poses.scores.min() < cut
    est.config = SpatialEstimatorConfig(device="cpu", scoring=dataclasses.replace(scoring, min_oks=cut))
    strict = est([rgb]).poses[0]
    assert np.all(strict.scores >= cut) and len(strict) == int((poses.scores >= cut).sum()) < len(poses)
