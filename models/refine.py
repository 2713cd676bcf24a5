"""Gated second-stage refinement: MoveNet SinglePose Thunder on a crop around each MultiPose person.

Naive refinement (Thunder's joints replacing MultiPose's in square 1.25x crops) makes real
video much worse: where people overlap, Thunder locks onto the neighbour. Here a Thunder
joint replaces MultiPose's only when every enabled gate passes (``RefineConfig``): the
person is not crowded (box IoU with every other person at most ``max_iou``), the Thunder
joint lies within ``max_shift`` person sizes of MultiPose's, Thunder is more confident
than MultiPose by ``score_margin``, and Thunder's whole pose is still this person's
(identity gate: its OKS with this person's MultiPose pose is at least ``min_identity_oks``
and higher than with any other person's). Before Thunder runs, the other people's pixels can be
painted over using their MultiPose skeletons (``mask_others``). All crops of a frame run
in one batch. The measured effect of each gate on the real dev set is in
``benchmarks/RESULTS.md`` (``benchmarks/refine_gates.py``); it decides ``enabled``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from posestream.models.geometry import oks_matrix
from posestream.models.skeleton import EDGES, NUM_KEYPOINTS
from posestream.models.thunder import THUNDER_INPUT_SIZE, MoveNetThunder

log = logging.getLogger(__name__)

__all__ = [
    "RefineConfig",
    "ThunderRefiner",
    "square_crops",
    "crop_batch",
    "mask_other_people",
    "gate_joints",
    "identity_gate",
    "person_sizes",
]


@dataclass(frozen=True)
class RefineConfig:
    """Which MultiPose people and joints Thunder may refine, and how the crops are made.

    Attributes:
        enabled: run the refinement at all. On by default: with the default gates (others
            masked + identity) it raises AP on the real dev set, on the default MultiPose
            policy, from 0.263 to 0.343 in total and from 0.194 to 0.260 on crowded images
            (``benchmarks/RESULTS.md``, "Gated Thunder refinement"); it costs one Thunder pass
            per person (batched per frame), about a third of the default's time on real video.
        crop_scale: the square crop's side is this times the longer side of the person's
            box, centred on the box. Raising it gives Thunder more context (and more
            neighbours) at a lower resolution per person.
        mask_others: paint the other people's pixels (their MultiPose skeletons, drawn as
            thick limbs) in the crop with the crop's mean colour, except where they cover
            the person's own skeleton, so Thunder cannot lock onto a neighbour.
        mask_width: thickness of the painted limbs as a fraction of each other person's
            size (``sqrt(box area)``). Raising it hides more of the neighbours (and more
            of the person where they overlap).
        keypoint_threshold: MultiPose joints scoring at least this count as seen: painted
            when masking, compared by the identity gate.
        max_iou: a person is refined only if its box IoU with every other person is at
            most this (1.0 = no crowd gate). Lowering it refines fewer, lonelier people.
        max_shift: a Thunder joint is accepted only within this many person sizes
            (``sqrt(box area)``) of MultiPose's joint (``inf`` = no distance gate).
            Raising it lets Thunder correct larger errors, and take more neighbours' joints.
        score_margin: a Thunder joint is accepted only if its score exceeds MultiPose's by
            this (``None`` = no score gate). Raising it accepts fewer joints.
        min_identity_oks: identity gate: a person's Thunder pose is used only if its OKS
            with the person's MultiPose pose (seen joints, box area as the scale) is at least
            this and above its OKS with every other person's MultiPose pose (``None`` = no
            identity gate). Raising it keeps only refinements that agree closely overall.
        min_person_score: people scoring below this are left alone.
        max_mean_joint_score: people whose MultiPose joints already score this much on
            average (mean over the 17 joints) are left alone: they are seen well, Thunder
            rarely moves their joints, and skipping them saves its pass (``None`` = refine
            them too). Measured on the real dev set (``benchmarks/RESULTS.md``): at 0.6 about
            the same AP for a fifth less time. Lowering it refines fewer people.
    """

    enabled: bool = True
    crop_scale: float = 1.25
    mask_others: bool = True
    mask_width: float = 0.12
    keypoint_threshold: float = 0.2
    max_iou: float = 1.0
    max_shift: float = math.inf
    score_margin: float | None = None
    min_identity_oks: float | None = 0.0
    min_person_score: float = 0.0
    max_mean_joint_score: float | None = 0.6

    def __post_init__(self) -> None:
        if self.crop_scale < 1.0:
            raise ValueError(f"crop_scale must be >= 1 (the crop holds the whole box), got {self.crop_scale}")
        if self.mask_width <= 0:
            raise ValueError(f"mask_width must be > 0, got {self.mask_width}")
        if not 0.0 <= self.max_iou <= 1.0:
            raise ValueError(f"max_iou must be in [0, 1], got {self.max_iou}")
        if self.min_identity_oks is not None and not 0.0 <= self.min_identity_oks <= 1.0:
            raise ValueError(f"min_identity_oks must be in [0, 1] or None, got {self.min_identity_oks}")
        if self.max_mean_joint_score is not None and not 0.0 < self.max_mean_joint_score <= 1.0:
            raise ValueError(
                f"max_mean_joint_score must be in (0, 1] or None, got {self.max_mean_joint_score}"
            )
        if not self.max_shift > 0:
            raise ValueError(f"max_shift must be > 0 person sizes (inf for no gate), got {self.max_shift}")


def person_sizes(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) boxes (x1, y1, x2, y2) -> (N,) ``sqrt(area)`` in pixels (COCO's OKS scale), >= 1."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.sqrt(np.clip(b[:, 2] - b[:, 0], 1, None) * np.clip(b[:, 3] - b[:, 1], 1, None))


def square_crops(boxes: np.ndarray, scale: float) -> np.ndarray:
    """(N, 4) person boxes -> (N, 3) square crops (x0, y0, side) in frame pixels, centred on each box."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.maximum(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]), 1.0) * scale
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    return np.stack([cx - side / 2, cy - side / 2, side], axis=1)


def crop_batch(rgb: np.ndarray, crops: np.ndarray, size: int = THUNDER_INPUT_SIZE) -> np.ndarray:
    """Resample each square crop of an RGB uint8 frame to (size, size); outside the frame is black.

    Returns (N, size, size, 3) uint8. Crop pixel (u, v) shows frame point
    ``(x0 + (u + 0.5) * side / size - 0.5, ...)`` (pixel centres aligned).
    """
    out = np.zeros((len(crops), size, size, 3), np.uint8)
    for i, (x0, y0, side) in enumerate(crops):
        s = size / side
        m = np.array([[s, 0, -x0 * s + 0.5 * s - 0.5], [0, s, -y0 * s + 0.5 * s - 0.5]], np.float64)
        out[i] = cv2.warpAffine(
            rgb, m, (size, size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
        )  # fmt: skip
    return out


def _skeleton_mask(shape: tuple[int, int], xy: np.ndarray, ok: np.ndarray, thickness: float) -> np.ndarray:
    """Thick limbs and joint discs of one person (crop pixels) as a uint8 mask."""
    mask = np.zeros(shape, np.uint8)
    t = max(1, int(round(thickness)))
    pts = np.round(xy).astype(np.int64).clip(-(1 << 15), 1 << 15)
    for a, b in EDGES:
        if ok[a] and ok[b]:
            cv2.line(mask, tuple(map(int, pts[a])), tuple(map(int, pts[b])), 1, t)
    for k in np.flatnonzero(ok):
        cv2.circle(mask, tuple(map(int, pts[k])), max(1, t // 2 + 1), 1, -1)
    return mask


def mask_other_people(
    crop: np.ndarray,
    square: np.ndarray,
    index: int,
    keypoints: np.ndarray,
    sizes: np.ndarray,
    config: RefineConfig,
) -> np.ndarray:
    """Paint every other person's skeleton in ``crop`` (person ``index``'s crop) with its mean colour.

    Args:
        crop: (S, S, 3) uint8 crop of ``square`` (x0, y0, side in frame pixels).
        index: the person the crop is for; its own skeleton is never painted.
        keypoints: (N, 17, 3) (x, y, score) frame pixels of all people.
        sizes: (N,) person sizes (``person_sizes``).
    Returns: a new (S, S, 3) uint8 crop.
    """
    size = crop.shape[0]
    x0, y0, side = square
    s = size / side
    paint = np.zeros((size, size), np.uint8)
    for j in range(len(keypoints)):
        if j == index:
            continue
        ok = keypoints[j, :, 2] >= config.keypoint_threshold
        if not ok.any():
            continue
        xy = (keypoints[j, :, :2] - (x0, y0)) * s
        if (xy[ok] < -size).all() or (xy[ok] > 2 * size).all():
            continue
        paint |= _skeleton_mask((size, size), xy, ok, config.mask_width * sizes[j] * s)
    if not paint.any():
        return crop
    own_ok = keypoints[index, :, 2] >= config.keypoint_threshold
    own = _skeleton_mask(
        (size, size), (keypoints[index, :, :2] - (x0, y0)) * s, own_ok, config.mask_width * sizes[index] * s
    )
    paint &= 1 - own
    out = crop.copy()
    out[paint.astype(bool)] = crop.reshape(-1, 3).mean(0).astype(np.uint8)
    return out


def gate_joints(
    multipose: np.ndarray,
    thunder: np.ndarray,
    sizes: np.ndarray,
    refinable: np.ndarray,
    config: RefineConfig,
) -> np.ndarray:
    """Which Thunder joints replace MultiPose's.

    Args:
        multipose, thunder: (N, 17, 3) (x, y, score) frame pixels.
        sizes: (N,) person sizes in pixels.
        refinable: (N,) bool, people that passed the person-level gates.
    Returns: (N, 17) bool.
    """
    accept = np.broadcast_to(np.asarray(refinable, bool)[:, None], multipose.shape[:2]).copy()
    if math.isfinite(config.max_shift):
        shift = np.linalg.norm(thunder[..., :2] - multipose[..., :2], axis=-1)
        accept &= shift <= config.max_shift * np.asarray(sizes)[:, None]
    if config.score_margin is not None:
        accept &= thunder[..., 2] > multipose[..., 2] + config.score_margin
    return accept


def identity_gate(
    keypoints: np.ndarray, boxes: np.ndarray, thunder: np.ndarray, idx: np.ndarray, config: RefineConfig
) -> np.ndarray:
    """(M,) bool: whether Thunder's pose for person ``idx[m]`` is still that person.

    Args:
        keypoints: (N, 17, 3) MultiPose poses of the frame; boxes: (N, 4).
        thunder: (M, 17, 3) Thunder poses for people ``idx`` (frame pixels).
    """
    m = len(idx)
    if config.min_identity_oks is None or m == 0:
        return np.ones(m, bool)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    areas = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1.0)
    oks = oks_matrix(keypoints, thunder, areas, config.keypoint_threshold)  # (N, M)
    own = oks[idx, np.arange(m)]
    others = oks.copy()
    others[idx, np.arange(m)] = -1.0
    return (own >= config.min_identity_oks) & (own > others.max(0))


class ThunderRefiner:
    """Runs the gated refinement on one frame's MultiPose people (all crops in one batch).

    Args:
        config: ``RefineConfig``.
        weights: Thunder's ``model.json``; default: the verified cache (``posestream weights fetch``).
        device, dtype: where Thunder runs.
        channels_last: NHWC memory layout (the crops are NHWC already; ~25% faster on CPU).
    """

    def __init__(
        self,
        config: RefineConfig,
        weights: str | Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        channels_last: bool = True,
    ) -> None:
        self.config = config
        if weights is None:
            from posestream.models.weights import MOVENET_THUNDER, verify

            weights = verify(MOVENET_THUNDER)
        self.device = torch.device(device)
        self.dtype = dtype
        model = MoveNetThunder.from_tfjs(weights).to(self.device, dtype)
        self.model = (model.to(memory_format=torch.channels_last) if channels_last else model).eval()
        self.channels_last = channels_last

    @torch.inference_mode()
    def thunder_on_crops(self, crops: np.ndarray, squares: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 crops of ``squares`` (x0, y0, side) -> (N, 17, 3) (x, y, score) frame px."""
        if len(crops) == 0:
            return np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).to(self.dtype)  # NHWC memory
        if not self.channels_last:
            x = x.contiguous()
        out = self.model(x).float().cpu().numpy()  # (N, 17, 3) (y, x, score) in [0, 1]
        sq = np.asarray(squares, np.float64)
        xs = sq[:, None, 0] + out[..., 1] * sq[:, None, 2]
        ys = sq[:, None, 1] + out[..., 0] * sq[:, None, 2]
        return np.stack([xs, ys, out[..., 2]], axis=-1).astype(np.float32)

    def __call__(
        self,
        rgb: np.ndarray,
        keypoints: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray,
        iou: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Refine one frame's people.

        Args:
            rgb: (H, W, 3) uint8 frame.
            keypoints: (N, 17, 3) MultiPose (x, y, score), frame pixels.
            boxes: (N, 4) (x1, y1, x2, y2) frame pixels.
            scores: (N,) person scores.
            iou: (N, N) box IoU between the people (``posestream.models.geometry.box_iou``).
        Returns:
            (keypoints (N, 17, 3) with accepted joints' (x, y) replaced by Thunder's, scores
            unchanged (the tracker's and decoder's thresholds are tuned on MultiPose's),
            accepted (N, 17) bool).
        """
        kp = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
        n = len(kp)
        accepted = np.zeros((n, NUM_KEYPOINTS), bool)
        if n == 0:
            return kp.copy(), accepted
        refinable = self.refinable(np.asarray(scores), np.asarray(iou, np.float64).reshape(n, n), kp)
        if not refinable.any():
            return kp.copy(), accepted
        idx = np.flatnonzero(refinable)
        thunder = self.predict(rgb, kp, boxes, idx)
        sizes = person_sizes(boxes)
        same = identity_gate(kp, boxes, thunder, idx, self.config)
        accepted[idx] = gate_joints(kp[idx], thunder, sizes[idx], same, self.config)
        out = kp.copy()
        sel = accepted[idx]
        rows = out[idx]
        rows[sel, :2] = thunder[sel, :2]  # scores stay MultiPose's: downstream thresholds are tuned on them
        out[idx] = rows
        return out, accepted

    def refinable(
        self, scores: np.ndarray, iou: np.ndarray, keypoints: np.ndarray | None = None
    ) -> np.ndarray:
        """(N,) bool: people passing the person-level gates (score, crowd, already confident).

        Args:
            scores: (N,) person scores; iou: (N, N) box IoU; keypoints: (N, 17, 3) MultiPose
                joints for the confidence gate (``max_mean_joint_score``; skipped when None).
        """
        n = len(scores)
        ok = scores >= self.config.min_person_score
        limit = self.config.max_mean_joint_score
        if keypoints is not None and limit is not None:
            ok &= np.asarray(keypoints)[:, :, 2].mean(1) < limit
        if n > 1 and self.config.max_iou < 1.0:
            others = iou.copy()
            np.fill_diagonal(others, 0.0)
            ok &= others.max(1) <= self.config.max_iou
        return ok

    def predict(
        self, rgb: np.ndarray, keypoints: np.ndarray, boxes: np.ndarray, idx: np.ndarray
    ) -> np.ndarray:
        """Thunder's (x, y, score) frame-pixel joints for people ``idx``: (len(idx), 17, 3), one batch."""
        squares = square_crops(np.asarray(boxes)[idx], self.config.crop_scale)
        crops = crop_batch(rgb, squares)
        if self.config.mask_others and len(keypoints) > 1:
            sizes = person_sizes(boxes)
            for row, i in enumerate(idx):
                crops[row] = mask_other_people(
                    crops[row], squares[row], int(i), keypoints, sizes, self.config
                )
        return self.thunder_on_crops(crops, squares)
