"""Decoding MoveNet-style head maps into people, written from seeds 003 and 004.

The TFLite file carries its own post-processing, which returns at most 6 people. This
module replaces it with named stages, each testable on its own, driven by a small frozen
``DecoderConfig``:

1. ``find_centers``: person-centre peaks by max-pool NMS on the centre heatmap, top-K
   (K = ``max_people``, default 20, not 6).
2. ``regress_keypoints``: each centre's 17 regressed keypoints (seed 004's pixel-wise
   keypoint regression: centre cell + regression vector).
3. ``person_boxes``: each centre's box from the box-size and box-offset heads.
4. ``absorb_keypoints``: for each regressed keypoint, the best keypoint-heatmap
   candidate of that type near it (seed 004's grouping by absorbing heatmap candidates),
   with the distance weighting the model was trained to be decoded with:
   ``heat(p) * exp(-|p - r|^2 / (distance_scale * max(h, w)))`` inside the person's box.
   Where no candidate scores above ``absorb_threshold`` the regressed location is kept
   (seed 004: "otherwise use p_k").
5. ``refine_with_offsets``: sub-pixel position = candidate cell + offset at that cell
   (seed 003, Eq. 3-4; the offsets are in cells, i.e. R = 1 cell).
6. ``score_poses``: per-person score = centre score x mean of the keypoint scores above
   ``keypoint_threshold`` (what the reference computes; a learned scorer -- seed 004's
   small OKS-predicting net -- plugs in through ``PoseRescorer``).
7. ``pose_nms``: greedy OKS non-maximum suppression between people (also used to merge
   the scales of multi-scale inference).

Coordinates: stages 1-5 work in feature cells, (x, y) order from stage 2 on (the model's
maps store (dy, dx) pairs; they are swapped once, in the stage that reads them). A cell
coordinate c maps to input pixel ``c * stride`` with 0 at the image's top-left *edge*
(continuous coordinates: pixel i spans [i, i + 1)), which is the model's own convention
(its reference output is ``(cell + offset) / map_size``, normalised to the image edge).
``decode`` returns input-pixel coordinates; ``posestream.models.estimator`` maps them to the frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from posestream.models.geometry import box_area, greedy_oks_nms
from posestream.models.heads import MOVENET_STRIDE
from posestream.models.skeleton import NUM_KEYPOINTS, flip_permutation

__all__ = [
    "DecoderConfig",
    "CenterPeaks",
    "DecodedPoses",
    "PoseRescorer",
    "find_centers",
    "regress_keypoints",
    "person_boxes",
    "absorb_keypoints",
    "refine_with_offsets",
    "score_poses",
    "pose_nms",
    "decode",
    "resample_maps",
    "fuse_maps",
]


@dataclass(frozen=True)
class DecoderConfig:
    """Parameters of the MoveNet decoder. Defaults reproduce the model's reference decoding,
    except ``max_people`` (reference: 6) and the two filters at the end.

    Attributes:
        max_people: K, the number of centre peaks decoded per image. Raising it lets
            crowded frames return more people at a small cost (each extra centre costs
            one weighted argmax over the keypoint heatmaps).
        center_nms_kernel: side (cells) of the max-pool window a centre peak must be the
            maximum of (reference: 5). Raising it merges nearby people into one
            centre; lowering it yields more duplicate centres on one person.
        center_threshold: centre peaks scoring below this are not decoded at all.
            Raising it saves time and drops weak/background people earlier; 0 decodes
            all K peaks as the reference does.
        distance_scale: keypoint candidates are weighted by
            ``exp(-d^2 / (distance_scale * max(h, w)))`` with d in cells from the
            regressed keypoint (reference: 0.3). Raising it trusts the heatmap over the
            regression (candidates farther away can be absorbed, also from neighbours);
            lowering it trusts the regression. The reference graph divides by
            ``min(h, w)`` of its (square) input; ``max`` is the same there and makes a
            tightly padded non-square input decode like the square letterbox of the
            same content.
        restrict_to_box: only candidates inside the person's predicted box are absorbed
            (reference behaviour). Turning it off lets keypoints leave a too-small box.
        candidates: ``"dense"`` considers every heatmap cell (reference behaviour);
            ``"peaks"`` only local maxima of the heatmap (seed 004's NMS'd candidates).
        peak_kernel: max-pool window (cells) defining a local maximum in ``"peaks"`` mode.
        absorb_threshold: when the best weighted candidate scores below this, the
            keypoint stays at its regressed location (seed 004's fallback). Raising it
            makes more weak keypoints fall back to the regression.
        keypoint_threshold: keypoints scoring above this count in the person score
            (reference: 0.127, stored as fp16 0.12695). Raising it makes the person score
            the mean of fewer, surer keypoints.
        min_pose_score: people scoring below this are dropped. Raising it removes false
            people (background blobs) and also faint real people.
        nms_oks: a person whose OKS with a higher-scoring person exceeds this is
            suppressed as a duplicate. Raising it keeps more overlapping people (and
            more duplicates); 1.0 disables suppression.
        nms_keypoint_threshold: keypoints scoring above this (in the higher-scoring pose)
            are the ones OKS compares.
    """

    max_people: int = 20
    center_nms_kernel: int = 5
    center_threshold: float = 0.05
    distance_scale: float = 0.3
    restrict_to_box: bool = True
    candidates: Literal["dense", "peaks"] = "dense"
    peak_kernel: int = 3
    absorb_threshold: float = 1e-3
    keypoint_threshold: float = 0.127
    min_pose_score: float = 0.15
    nms_oks: float = 0.5
    nms_keypoint_threshold: float = 0.2

    def __post_init__(self) -> None:
        if self.max_people < 1:
            raise ValueError(f"max_people must be >= 1, got {self.max_people}")
        for name in ("center_nms_kernel", "peak_kernel"):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{name} must be a positive odd number of cells, got {k}")
        if self.distance_scale <= 0:
            raise ValueError(f"distance_scale must be > 0, got {self.distance_scale}")
        if self.candidates not in ("dense", "peaks"):
            raise ValueError(f"candidates must be 'dense' or 'peaks', got {self.candidates!r}")
        for name in (
            "center_threshold", "absorb_threshold", "keypoint_threshold", "min_pose_score",
            "nms_oks", "nms_keypoint_threshold",
        ):  # fmt: skip
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")

    @classmethod
    def reference(cls) -> DecoderConfig:
        """The TFLite file's own decoding (6 people, no filtering) -- for parity checks."""
        return cls(max_people=6, center_threshold=0.0, absorb_threshold=0.0, min_pose_score=0.0, nms_oks=1.0)


@dataclass(frozen=True)
class CenterPeaks:
    """Top-K centre peaks per image: scores (B, K) float, xs / ys (B, K) int64 cell indices."""

    scores: torch.Tensor
    xs: torch.Tensor
    ys: torch.Tensor


@dataclass(frozen=True)
class DecodedPoses:
    """One image's people, in input pixels (continuous, 0 = the image's top-left edge).

    Attributes:
        keypoints: (N, 17, 3) float32 (x, y, score).
        boxes: (N, 4) float32 (x1, y1, x2, y2) from the box heads.
        scores: (N,) float32 person scores.
        centers: (N, 2) float32 (x, y) of the centre peak each person was decoded from.
    """

    keypoints: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    centers: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, index: np.ndarray) -> DecodedPoses:
        return DecodedPoses(self.keypoints[index], self.boxes[index], self.scores[index], self.centers[index])

    @staticmethod
    def concatenate(parts: list[DecodedPoses]) -> DecodedPoses:
        if not parts:
            return DecodedPoses(
                np.zeros((0, NUM_KEYPOINTS, 3), np.float32), np.zeros((0, 4), np.float32),
                np.zeros(0, np.float32), np.zeros((0, 2), np.float32),
            )  # fmt: skip
        return DecodedPoses(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("keypoints", "boxes", "scores", "centers")
            )
        )


class PoseRescorer(Protocol):
    """Seam for a learned person score (seed 004's OKS-predicting net).

    Called with one image's candidates before filtering and NMS: keypoints (N, 17, 3) in
    input pixels with their scores (the heat values), boxes (N, 4), and the naive scores
    (N,); returns new (N,) scores.
    """

    def __call__(self, keypoints: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray: ...


# ---- stages ------------------------------------------------------------------------------


def find_centers(center_heatmap: torch.Tensor, config: DecoderConfig) -> CenterPeaks:
    """Stage 1: centre peaks by max-pool NMS, top-K.

    Args:
        center_heatmap: (B, 1, h, w) probabilities (after sigmoid).
    Returns:
        ``CenterPeaks`` with K = min(max_people, h * w); non-peaks score 0, so the
        trailing entries of a sparse image have score 0.
    """
    b, _, h, w = center_heatmap.shape
    k = config.center_nms_kernel
    pooled = F.max_pool2d(center_heatmap, k, stride=1, padding=k // 2)
    # The reference keeps cells within 1e-6 of the window maximum (|c - max| < 1.01e-6).
    peaks = torch.where((center_heatmap - pooled).abs() < 1.0132789611816406e-06, center_heatmap, 0.0)
    scores, idx = peaks.reshape(b, h * w).topk(min(config.max_people, h * w), dim=1)
    return CenterPeaks(scores, idx % w, torch.div(idx, w, rounding_mode="floor"))


def _gather_cells(maps: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """maps (B, C, h, w), xs / ys (B, K) -> (B, K, C) values at those cells."""
    b, c, h, w = maps.shape
    flat = (ys * w + xs).clamp_(0, h * w - 1)
    return maps.reshape(b, c, h * w).gather(2, flat[:, None, :].expand(b, c, flat.shape[1])).transpose(1, 2)


def regress_keypoints(keypoint_regression: torch.Tensor, peaks: CenterPeaks) -> torch.Tensor:
    """Stage 2: each centre's regressed keypoints.

    Args:
        keypoint_regression: (B, 34, h, w), 17 x (dy, dx) in cells.
    Returns:
        (B, K, 17, 2) float (x, y) in cells.
    """
    vec = _gather_cells(keypoint_regression, peaks.xs, peaks.ys)
    b, k, _ = vec.shape
    vec = vec.reshape(b, k, NUM_KEYPOINTS, 2)
    x = peaks.xs[:, :, None].to(vec.dtype) + vec[..., 1]
    y = peaks.ys[:, :, None].to(vec.dtype) + vec[..., 0]
    return torch.stack((x, y), dim=-1)


def person_boxes(box_scale: torch.Tensor, box_offset: torch.Tensor, peaks: CenterPeaks) -> torch.Tensor:
    """Stage 3: each centre's box, clipped to the map.

    Args:
        box_scale: (B, 2, h, w) (height, width) in cells, after ReLU.
        box_offset: (B, 2, h, w) (dy, dx) from the centre cell to the box centre.
    Returns:
        (B, K, 4) float (x1, y1, x2, y2) in cells, within [0, w] x [0, h].
    """
    _, _, h, w = box_scale.shape
    size = _gather_cells(box_scale, peaks.xs, peaks.ys)
    off = _gather_cells(box_offset, peaks.xs, peaks.ys)
    cy = peaks.ys.to(off.dtype) + off[..., 0]
    cx = peaks.xs.to(off.dtype) + off[..., 1]
    half_h, half_w = size[..., 0] / 2, size[..., 1] / 2
    return torch.stack(
        (
            (cx - half_w).clamp(0, w),
            (cy - half_h).clamp(0, h),
            (cx + half_w).clamp(0, w),
            (cy + half_h).clamp(0, h),
        ),
        dim=-1,
    )


def absorb_keypoints(
    keypoint_heatmap: torch.Tensor, regressed: torch.Tensor, boxes: torch.Tensor, config: DecoderConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 4: absorb, for each regressed keypoint, the best heatmap cell of its type.

    Args:
        keypoint_heatmap: (17, h, w) probabilities of ONE image.
        regressed: (N, 17, 2) (x, y) cells of that image's N people.
        boxes: (N, 4) (x1, y1, x2, y2) cells.
    Returns:
        cells (N, 17, 2) int64 (x, y) of the absorbed candidate, scores (N, 17) float
        (heat x this person's distance weight at the candidate), absorbed (N, 17) bool
        (False where the keypoint fell back to its regressed location).

    The keypoint score is the candidate's weighted heat *for this person*. The reference
    post-processing scores it with the best weight of any of its 6 people at that cell,
    which credits a person with a keypoint that really sits next to someone else's
    regression; positions are identical, scores equal unless people overlap.
    """
    nk, h, w = keypoint_heatmap.shape
    n = regressed.shape[0]
    dtype = keypoint_heatmap.dtype
    heat = keypoint_heatmap
    if config.candidates == "peaks":
        k = config.peak_kernel
        pooled = F.max_pool2d(heat[None], k, stride=1, padding=k // 2)[0]
        heat = torch.where(heat >= pooled, heat, 0.0)
    xs = torch.arange(w, device=heat.device, dtype=dtype)
    ys = torch.arange(h, device=heat.device, dtype=dtype)
    denom = config.distance_scale * max(h, w)
    # exp(-(dx^2 + dy^2) / s) = exp(-dx^2 / s) * exp(-dy^2 / s): separable per axis.
    wx = torch.exp(-((xs[None, None, :] - regressed[..., 0:1]) ** 2) / denom)  # (N, 17, w)
    wy = torch.exp(-((ys[None, None, :] - regressed[..., 1:2]) ** 2) / denom)  # (N, 17, h)
    if config.restrict_to_box:
        inx = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # (N, w)
        iny = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # (N, h)
        wx = wx * inx[:, None, :].to(dtype)
        wy = wy * iny[:, None, :].to(dtype)
    weighted = (heat[None] * wy[..., :, None]).mul_(wx[..., None, :])  # (N, 17, h, w)
    best, flat = weighted.reshape(n, nk, h * w).max(dim=2)
    cells = torch.stack((flat % w, torch.div(flat, w, rounding_mode="floor")), dim=-1)
    absorbed = (
        best > config.absorb_threshold
        if config.absorb_threshold > 0
        else torch.ones_like(best, dtype=torch.bool)
    )
    return cells, best, absorbed


def refine_with_offsets(keypoint_offset: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Stage 5: sub-pixel keypoints, cell + offset at that cell (seed 003, Eq. 3-4, R = 1 cell).

    Args:
        keypoint_offset: (34, h, w) of ONE image, 17 x (dy, dx) in cells.
        cells: (N, 17, 2) int64 (x, y).
    Returns:
        (N, 17, 2) float (x, y) in cells.
    """
    _, h, w = keypoint_offset.shape
    n = cells.shape[0]
    off = keypoint_offset.reshape(NUM_KEYPOINTS, 2, h * w)
    flat = (cells[..., 1] * w + cells[..., 0]).clamp(0, h * w - 1)  # (N, 17)
    kidx = torch.arange(NUM_KEYPOINTS, device=cells.device)[None, :].expand(n, NUM_KEYPOINTS)
    dy = off[kidx, 0, flat]
    dx = off[kidx, 1, flat]
    return torch.stack((cells[..., 0].to(off.dtype) + dx, cells[..., 1].to(off.dtype) + dy), dim=-1)


def score_poses(
    center_scores: torch.Tensor, keypoint_scores: torch.Tensor, config: DecoderConfig
) -> torch.Tensor:
    """Stage 6: centre score x mean of the keypoint scores above ``keypoint_threshold``.

    Args:
        center_scores: (..., ) centre peak values; keypoint_scores: (..., 17).
    Returns:
        (...) person scores (0 when no keypoint passes).
    """
    passing = keypoint_scores > config.keypoint_threshold
    total = torch.where(passing, keypoint_scores, 0.0).sum(-1)
    return center_scores * total / passing.sum(-1).clamp(min=1).to(total.dtype)


def pose_nms(poses: DecodedPoses, oks_threshold: float, keypoint_threshold: float) -> np.ndarray:
    """Stage 7: greedy OKS NMS (``greedy_oks_nms``); returns the kept indices, best first.

    Two poses are duplicates when OKS(higher, lower) > ``oks_threshold``, with the
    higher-scoring pose's box area as the object area and its keypoints above
    ``keypoint_threshold`` compared.
    """
    return greedy_oks_nms(
        poses.keypoints, poses.scores, box_area(poses.boxes), oks_threshold, keypoint_threshold
    )


# ---- all stages ----------------------------------------------------------------------------


def decode(
    maps: Mapping[str, torch.Tensor],
    config: DecoderConfig = DecoderConfig(),
    stride: int = MOVENET_STRIDE,
    rescorer: PoseRescorer | None = None,
) -> list[DecodedPoses]:
    """All stages for a batch of activated head maps.

    Args:
        maps: activated maps (``posestream.models.heads.activate_all``) keyed by MoveNet head name:
            ``keypoint_heatmap`` (B, 17, h, w), ``keypoint_offset`` (B, 34, h, w),
            ``center_heatmap`` (B, 1, h, w), ``keypoint_regression`` (B, 34, h, w),
            ``box_scale`` (B, 2, h, w), ``box_offset`` (B, 2, h, w). Any float dtype or
            device; decoding runs in float32 on the maps' device.
        config: decoder parameters.
        stride: input pixels per cell.
        rescorer: optional learned person score (see ``PoseRescorer``).
    Returns:
        One ``DecodedPoses`` per image, in input pixels, best first, after
        ``min_pose_score`` filtering and OKS NMS.
    """
    m = {k: v.float() for k, v in maps.items() if k != "features"}
    peaks = find_centers(m["center_heatmap"], config)
    regressed = regress_keypoints(m["keypoint_regression"], peaks)
    boxes = person_boxes(m["box_scale"], m["box_offset"], peaks)
    results = []
    for i in range(peaks.scores.shape[0]):
        sel = (
            torch.nonzero(peaks.scores[i] > config.center_threshold).flatten()
            if config.center_threshold > 0
            else None
        )
        if sel is None:
            sel = torch.arange(peaks.scores.shape[1], device=peaks.scores.device)
        if sel.numel() == 0:
            results.append(DecodedPoses.concatenate([]))
            continue
        reg_i, box_i = regressed[i, sel], boxes[i, sel]
        cells, kscores, absorbed = absorb_keypoints(m["keypoint_heatmap"][i], reg_i, box_i, config)
        refined = refine_with_offsets(m["keypoint_offset"][i], cells)
        xy = torch.where(absorbed[..., None], refined, reg_i)
        cscores = peaks.scores[i, sel]
        pscores = score_poses(cscores, kscores, config)
        centers = torch.stack((peaks.xs[i, sel], peaks.ys[i, sel]), dim=-1).to(xy.dtype)
        kp = torch.cat((xy * stride, kscores[..., None]), dim=-1)
        poses = DecodedPoses(
            kp.cpu().numpy().astype(np.float32),
            (box_i * stride).cpu().numpy().astype(np.float32),
            pscores.cpu().numpy().astype(np.float32),
            (centers * stride).cpu().numpy().astype(np.float32),
        )
        if rescorer is not None:
            poses = DecodedPoses(
                poses.keypoints,
                poses.boxes,
                np.asarray(rescorer(poses.keypoints, poses.boxes, poses.scores), np.float32),
                poses.centers,
            )
        if config.min_pose_score > 0:
            poses = poses.select(np.flatnonzero(poses.scores >= config.min_pose_score))
        results.append(poses.select(pose_nms(poses, config.nms_oks, config.nms_keypoint_threshold)))
    return results


# ---- maps of several passes on one grid (multi-scale and flip testing, seed 002) -----------

# Maps whose channels are (dy, dx) displacements in cells, interleaved per keypoint or single.
_DISPLACEMENTS = ("keypoint_offset", "keypoint_regression", "box_offset")
_FUSED = ("keypoint_heatmap", "center_heatmap", "box_scale") + _DISPLACEMENTS


def resample_maps(
    maps: Mapping[str, torch.Tensor],
    affine: np.ndarray,
    out_hw: tuple[int, int],
    flipped: bool = False,
    stride: int = MOVENET_STRIDE,
) -> dict[str, torch.Tensor]:
    """One pass's activated head maps resampled onto another pass's grid, in that grid's units.

    Args:
        maps: activated MoveNet maps (B, C, h, w) of the source pass (``decode``'s names).
        affine: (B, 4) float ``(ax, bx, ay, by)`` per frame: source input pixel
            ``x_s = ax * x_t + bx``, ``y_s = ay * y_t + by`` for target input pixel
            ``(x_t, y_t)``; ``ax < 0`` for a pass run on the mirrored frame.
        out_hw: (h, w) cells of the target grid.
        flipped: the source pass ran on the mirrored frame: left/right keypoint channels
            are exchanged (``posestream.models.skeleton.FLIP_PAIRS``). Must agree with ``ax < 0``.
        stride: input pixels per cell (both passes).
    Returns:
        The six decoder maps (float32, (B, C, h_t, w_t)), bilinearly sampled at each target
        cell's centre: heatmaps as they are, displacements divided by the scale (and
        mirrored), box sizes scaled. Outside the source canvas everything is 0.

    A cell's value describes its centre, ``(i + 0.5) * stride`` input pixels, while the
    keypoint and box offsets count from the cell's index (``decode``: keypoint = cell +
    offset, box centre = centre cell + box offset), so they are shifted by half a cell
    around the resampling (a mirrored offset becomes ``1 - offset``). The keypoint
    regression is compared with cell indices when keypoints are absorbed (index to
    index), so it is resampled as a plain vector: decoding mirrored maps then gives
    exactly the mirrored people.
    """
    a = torch.as_tensor(np.asarray(affine, np.float64).reshape(-1, 4), dtype=torch.float32)
    if bool((a[:, 0] < 0).any()) != flipped or bool((a[:, 0] < 0).any() and (a[:, 0] > 0).any()):
        raise ValueError("flipped must be True exactly when every frame's ax is negative")
    ref = maps["keypoint_heatmap"]
    dev = ref.device
    a = a.to(dev)
    b, _, h_s, w_s = ref.shape
    h_t, w_t = out_hw
    xt = (torch.arange(w_t, device=dev, dtype=torch.float32) + 0.5) * stride
    yt = (torch.arange(h_t, device=dev, dtype=torch.float32) + 0.5) * stride
    gx = (a[:, 0:1] * xt[None] + a[:, 1:2]) / (stride * w_s) * 2.0 - 1.0  # (B, w_t)
    gy = (a[:, 2:3] * yt[None] + a[:, 3:4]) / (stride * h_s) * 2.0 - 1.0  # (B, h_t)
    grid = torch.stack((gx[:, None, :].expand(b, h_t, w_t), gy[:, :, None].expand(b, h_t, w_t)), dim=-1)
    ax, ay = a[:, 0].view(b, 1, 1, 1), a[:, 2].view(b, 1, 1, 1)
    perm = torch.as_tensor(flip_permutation(), device=dev)
    out = {}
    for name in _FUSED:
        m = F.grid_sample(
            maps[name].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        if name == "keypoint_heatmap" and flipped:
            m = m[:, perm]
        elif name == "box_scale":
            m = torch.cat((m[:, 0:1] / ay.abs(), m[:, 1:2] / ax.abs()), dim=1)
        elif name in _DISPLACEMENTS:
            pairs = m.reshape(b, -1, 2, h_t, w_t)
            if flipped and pairs.shape[1] == NUM_KEYPOINTS:
                pairs = pairs[:, perm]
            shift = 0.0 if name == "keypoint_regression" else 0.5
            dy = (pairs[:, :, 0] - shift) / ay + shift
            dx = (pairs[:, :, 1] - shift) / ax + shift
            m = torch.stack((dy, dx), dim=2).reshape(b, -1, h_t, w_t)
        out[name] = m
    return out


def fuse_maps(passes: list[Mapping[str, torch.Tensor]], eps: float = 1e-6) -> dict[str, torch.Tensor]:
    """Average several passes' maps that lie on one grid (``resample_maps``) into one set to decode.

    Heatmaps are averaged (seed 002's multi-scale testing). Displacements and box sizes are
    averaged weighted by how sure each pass is where they are read: keypoint offsets by that
    keypoint's heat, the centre-cell fields (regression, box) by the centre heat, so a pass
    that barely sees a person does not pull its joints.
    """
    if not passes:
        raise ValueError("fuse_maps needs at least one pass")
    if len(passes) == 1:
        return {k: passes[0][k] for k in _FUSED}
    n = float(len(passes))
    out = {k: sum(p[k] for p in passes) / n for k in ("keypoint_heatmap", "center_heatmap")}

    def weighted(name: str, weight_of) -> torch.Tensor:
        num = den = None
        for p in passes:
            w = weight_of(p)
            v = p[name]
            shape = v.shape
            v = v.reshape(shape[0], w.shape[1], -1, *shape[2:])
            term = v * w[:, :, None]
            num = term if num is None else num + term
            den = w if den is None else den + w
        plain = sum(p[name] for p in passes) / n
        return torch.where(
            (den > eps)[:, :, None].expand_as(num).reshape(plain.shape),
            (num / den.clamp(min=eps)[:, :, None]).reshape(plain.shape),
            plain,
        )

    out["keypoint_offset"] = weighted("keypoint_offset", lambda p: p["keypoint_heatmap"])
    for name in ("keypoint_regression", "box_scale", "box_offset"):
        out[name] = weighted(name, lambda p: p["center_heatmap"])
    return out
