"""Seed 004's pose scoring: a small network that predicts each candidate pose's OKS.

The decoder's hand-made person score (centre heat x mean joint heat, seed 004's "naive
scoring scheme") ignores the pose's shape, so a mis-grouped pose (joints of two people,
or of the background) can outrank a real one. Seed 004 learns the OKS of each candidate
instead, from

- the K = 17 **heat values** h_k(p_k) of its joints (how visible each joint is), and
- its **shape**: for each of the 19 COCO sticks (i, j) (``skeleton.EDGES``) the relative
  offset p_i - p_j and the distance d_ij,

74 numbers in all, fed to two fully connected layers (each followed by a ReLU) and a
linear prediction layer, trained with the real OKS (against the ground truth) as the
target. The offsets and distances are divided by the person's scale (the longer side of
its joints' bounding box), so the feature is the same at every image size and input scale
(the seed's network is trained on one COCO scale; ours sees MoveNet candidates from 256
and 512 pixel inputs). The loss is the squared error to the real OKS (``scoring_loss``),
the target the seed names; the published code (HRNet-Bottom-up / DEKR's rescoring net)
uses the same mean squared error.

``PoseScorer`` is the trained net behind the decoder's ``PoseRescorer`` seam
(``posestream.models.movenet_decode``): it replaces each candidate's score with its
predicted OKS before the decoder's ``min_pose_score`` filter and OKS NMS, so the NMS and
the multi-scale merge keep the pose with the higher predicted OKS. ``PoseScoringConfig``
switches it on and sets the rejection threshold. Training: ``posestream.models.train_scoring``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from posestream.models.geometry import oks_matrix
from posestream.models.skeleton import EDGES, NUM_KEYPOINTS

__all__ = [
    "FEATURE_DIM",
    "POSE_SCORING",
    "PoseScoringConfig",
    "PoseScoringNet",
    "PoseScorer",
    "pose_features",
    "scoring_loss",
    "candidate_oks",
    "spearman",
]

# 17 heat values + 19 stick lengths + 19 stick offsets (x, y): seed 004's 74 dimensions.
FEATURE_DIM: int = NUM_KEYPOINTS + 3 * len(EDGES)
# File name of the shipped checkpoint in the weights folder (``weights/README.md`` has its card).
POSE_SCORING = "pose_scoring.pt"
_EDGE_A = np.array([a for a, _ in EDGES])
_EDGE_B = np.array([b for _, b in EDGES])


@dataclass(frozen=True)
class PoseScoringConfig:
    """Whether the person score is the learned predicted OKS, and what it rejects.

    Attributes:
        enabled: person score = the scoring net's predicted OKS (``PoseScorer``); False
            keeps the decoder's hand-made score (centre heat x mean joint heat). On by
            default only where it raised AP on both held-out sets (``benchmarks/RESULTS.md``,
            pose_scoring).
        weights: the checkpoint's file name in the weights folder
            (``posestream.models.weights.checkpoint_path``).
        min_oks: candidates whose predicted OKS is below this are rejected as false poses
            (it takes the place of ``DecoderConfig.min_pose_score``, whose scale is the
            hand-made score's). Raising it drops more false poses and, with them, more
            real but poorly localised people; COCO AP rewards keeping low-scored people,
            so keep it low for AP and raise it where false people cost more (tracking).
    """

    enabled: bool = False
    weights: str = POSE_SCORING
    min_oks: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_oks < 1.0:
            raise ValueError(f"min_oks must be in [0, 1), got {self.min_oks}")


def pose_features(keypoints: np.ndarray) -> np.ndarray:
    """Seed 004's heat value and shape feature of each pose.

    Args:
        keypoints: (N, 17, 3) (x, y, heat value) in pixels of any frame (input or original:
            the shape part is divided by the person's scale, so it does not depend on which).
    Returns:
        (N, 74) float32: columns 0..16 the heat values; 17..35 the 19 stick lengths
        ``|p_a - p_b| / s`` for ``(a, b)`` in ``skeleton.EDGES``; 36..73 the sticks' offsets
        ``(p_a - p_b) / s`` as (x, y) pairs in the same order; ``s`` = the longer side of
        the pose's joint bounding box (at least 1 pixel).
    """
    kp = np.asarray(keypoints, np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    if len(kp) == 0:
        return np.zeros((0, FEATURE_DIM), np.float32)
    xy = kp[..., :2]
    scale = np.maximum((xy.max(axis=1) - xy.min(axis=1)).max(axis=1), 1.0)  # (N,)
    offsets = (xy[:, _EDGE_A] - xy[:, _EDGE_B]) / scale[:, None, None]  # (N, 19, 2)
    lengths = np.linalg.norm(offsets, axis=-1)  # (N, 19)
    feats = np.concatenate((kp[..., 2], lengths, offsets.reshape(len(kp), -1)), axis=1)
    return feats.astype(np.float32)


class PoseScoringNet(nn.Module):
    """Two fully connected layers with ReLUs and a linear prediction layer: feature -> OKS.

    Args:
        hidden: width of the two hidden layers.
    Input (N, 74) ``pose_features``; output (N,) predicted OKS (not clipped: the training
    target is in [0, 1], ``PoseScorer`` clips).
    """

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.hidden = hidden
        self.layers = nn.Sequential(
            nn.Linear(FEATURE_DIM, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features).squeeze(-1)


def scoring_loss(predicted: torch.Tensor, oks: torch.Tensor) -> torch.Tensor:
    """Mean squared error of predicted (N,) to real (N,) OKS (seed 004: the real OKS is the target)."""
    return torch.mean((predicted - oks) ** 2)


def candidate_oks(candidates: np.ndarray, gt_keypoints: np.ndarray, gt_areas: np.ndarray) -> np.ndarray:
    """The training target: each candidate's best OKS against the labelled people of its image.

    Args:
        candidates: (P, 17, 3) (x, y, score) frame pixels.
        gt_keypoints: (G, 17, 3) (x, y, visibility) frame pixels; joints with v > 0 count.
        gt_areas: (G,) OKS scale areas (pixels^2).
    Returns:
        (P,) float32 in [0, 1]; 0 for every candidate when there is nobody labelled.
    """
    if len(gt_keypoints) == 0 or len(candidates) == 0:
        return np.zeros(len(candidates), np.float32)
    return oks_matrix(gt_keypoints, candidates, gt_areas).max(axis=0).astype(np.float32)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two (N,) arrays (ties get their mean rank)."""

    def ranks(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, np.float64)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        uniq, inverse = np.unique(v, return_inverse=True)
        sums = np.bincount(inverse, weights=r)
        return sums[inverse] / np.bincount(inverse)[inverse]

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


class PoseScorer:
    """The trained scoring net as the decoder's ``PoseRescorer``: candidates -> predicted OKS.

    Args:
        net: a trained ``PoseScoringNet`` (run on the CPU: 74 -> 128 -> 128 -> 1 for at most
            a few dozen candidates is microseconds of work, not worth a device copy).
        card: the checkpoint's card (training data, held-out scores), kept for reporting.
    """

    def __init__(self, net: PoseScoringNet, card: dict | None = None) -> None:
        self.net = net.eval()
        self.card = card or {}

    @classmethod
    def from_file(cls, path: str | Path) -> PoseScorer:
        """Load a checkpoint written by ``posestream train scoring``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"pose scoring weights not found: {path} (train them with `posestream train scoring`, "
                "or set EstimatorConfig.scoring.enabled=False)"
            )
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        net = PoseScoringNet(hidden=int(ckpt["config"]["hidden"]))
        net.load_state_dict(ckpt["state_dict"])
        return cls(net, ckpt.get("card"))

    @torch.inference_mode()
    def predict(self, keypoints: np.ndarray) -> np.ndarray:
        """(N, 17, 3) (x, y, heat value) pixels -> (N,) float32 predicted OKS in [0, 1]."""
        feats = torch.from_numpy(pose_features(keypoints))
        if len(feats) == 0:
            return np.zeros(0, np.float32)
        return self.net(feats).clamp(0.0, 1.0).numpy().astype(np.float32)

    def __call__(self, keypoints: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``PoseRescorer``: keypoints (N, 17, 3) input pixels, boxes (N, 4), naive scores (N,) ->
        (N,) predicted OKS (the boxes and naive scores are not features)."""
        return self.predict(keypoints)
