"""Associative-embedding decoding of SpatialNet maps into poses (seed 002 section 3.3, seed 000).

Named stages, each usable and testable alone:

1. ``find_peaks``: max-pool NMS on the heatmaps, top-k per joint above a threshold;
2. ``read_embeddings``: KE tags and SIE at the peaks (after PGG when enabled,
   ``refine_with_pgg``);
3. ``group_joints``: greedy association joint by joint, head and torso first; each
   joint's detections are matched to the current people with the Hungarian
   algorithm on a combined tag + SIE distance, unmatched detections start people;
4. ``fill_missing``: a person's missing joint is the highest-heat pixel whose
   embedding is close to the person's mean (seed 002 "missing joints");
5. ``refine_locations``: quarter-pixel shift towards the higher neighbour (seed
   002), or the exact log-parabola peak of a Gaussian;
6. ``complete_with_prior`` (optional, not from the seeds): joints whose heat stays weak are
   put where a Gaussian body-shape prior (``posestream.models.pose_prior``) expects them given the
   person's confident joints;
7. person score = mean joint score.

Test-time augmentation (seed 002): ``merge_multiscale`` combines the maps of several
scales and of the mirrored image (``unflip_maps``): heatmaps and SVF averaged, tags
concatenated; ``DecodeConfig.scales`` and ``flip_test`` choose the passes
(``SpatialNet.infer`` runs them).
Maps are for one image at output resolution; poses come out in input pixels
(``posestream.models.targets.to_input_coords``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from posestream.models.geometry import box_area, greedy_oks_nms
from posestream.models.pgg import PGGConfig, pose_guided_grouping
from posestream.models.pose_prior import PosePrior
from posestream.models.poses import boxes_from_keypoints
from posestream.models.skeleton import KEYPOINT_INDEX, LIMB_PARENT, flip_permutation, mirror_pairs_outward
from posestream.models.targets import to_input_coords

# Head and torso first, then limbs outwards (seed 002).
DEFAULT_JOINT_ORDER: tuple[int, ...] = tuple(
    KEYPOINT_INDEX[n]
    for n in (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
        "left_hip", "right_hip", "left_elbow", "right_elbow", "left_knee", "right_knee",
        "left_wrist", "right_wrist", "left_ankle", "right_ankle",
    )
)  # fmt: skip


@dataclass(frozen=True)
class DecodeConfig:
    """Parameters of associative-embedding decoding.

    Attributes:
        top_k: peaks kept per joint type. Raising it allows more people per image at more cost.
        detection_threshold: heat a peak needs to be a detection. Raising it drops weak
            joints (fewer false joints, more missing ones).
        nms_kernel: max-pool window (output pixels) of peak NMS. Raising it suppresses
            nearby peaks of the same joint type (can merge close people's joints).
        match_threshold: largest combined embedding distance at which a detection joins a
            person. Raising it merges more readily; lowering it splits people.
        sie_weight: weight of the SIE distance (in units of ``pgg.sie_unit`` output pixels)
            against the tag distance. 0 decodes by KE alone; a very large value by SIE alone.
        use_tags: whether the KE tag distance counts (False decodes by SIE alone).
        use_pgg: refine KE/SIE with Pose-Guided Grouping before reading them.
        pgg: PGG parameters; its ``sie_unit`` is also the SIE distance unit here.
        fill_missing: add each person's missing joints from the heatmaps (seed 002).
        fill_window: ``fill_missing`` searches a person's missing joints only within its box
            (detected joints and SIE centre) grown by this many times the box's larger side
            on each side. Raising it finds joints farther from the rest of the person at
            more cost; 0 searches the whole map.
        fill_min_cells: the box side (output pixels) ``fill_window`` multiplies at least, so
            a person with one detected joint still gets a person-sized window.
        mirror_separation: a person's left and right joint of a pair (``FLIP_PAIRS``) closer
            than this many output pixels are taken as one detection read by both channels
            (each joint type is matched on its own, and a wrist heatmap often peaks at both
            wrists): the side whose limb parent is nearer keeps the spot, the other moves to
            its own heatmap's best other peak for that person (``separate_mirrored``).
            Raising it separates more pairs, also truly close ones (feet together, side
            views); 0 turns it off (seed 002's decoding).
        mirror_limb_ratio: how far ``separate_mirrored`` may move a joint: at most this many
            times the kept side's limb length (joint to its ``LIMB_PARENT``) from its own
            parent. Raising it accepts peaks farther from the limb (more moves, more wrong
            ones); left and right limbs are about equally long, so values near 1 are strict.
        refine: "quarter" (seed 002's quarter-pixel shift), "gaussian" (exact peak of a
            sampled Gaussian) or "none".
        prior_threshold: ``complete_with_prior``: a person's joints whose heat (after filling and
            refinement) is below this are replaced by the pose prior's conditional mean given
            its joints at or above it. 0 turns the stage off (seed 002's decoding; no prior
            needed). Raising it replaces more joints by the prior's guess: fewer wrong weak
            peaks, but also generic poses where a weak peak was right.
        prior_noise: the confident joints' assumed position error (output pixels, one standard
            deviation). Raising it trusts their exact places less and the mean shape more.
        prior_min_joints: people with fewer confident joints are left as they are (the prior
            needs enough of the body to place the rest; at least 2). Raising it completes
            fewer people, only those whose confident joints pin the body down well.
        person_score: how a person's score (what AP ranks people by) is made from its joints'
            heat. "detected" (seed 002): the mean over all J joints of the detected joints'
            heat, a joint that was not detected (filled, or absent) counting 0, so people with
            more found joints rank higher; "all": the mean heat of all J joints after
            ``fill_missing``, filled joints included.
        min_person_score: people whose score (``person_score``) is below this are dropped.
        min_joints: people with fewer detected (not filled) joints are dropped.
        nms_oks: greedy pose NMS after scoring (``greedy_oks_nms``): a person whose OKS with a
            higher-scoring person exceeds this is dropped as a duplicate (``fill_missing`` and
            the prior can rebuild a whole second copy of a person around a few stray joints).
            Raising it keeps more overlapping people, duplicates too; 1.0 turns it off (seed
            002's decoding). 0.5 was chosen on real data (``benchmarks/RESULTS.md``,
            spatialnet_pose_nms_real_dev): one person's duplicate detections were what swapped HE+TIE's
            tracks on real video. It is not in ``DECODE_GRID``: synthetic clips' heavily
            overlapping people make it cost validation AP there (0.427 -> 0.419).
        joint_order: the greedy association order.
        scales: test-time input scales (relative to the fitted input size) whose maps are
            merged before decoding (seed 002: heatmaps averaged, tags concatenated). More
            scales find people at more sizes; each scale s costs about s^2 network passes.
        flip_test: also run the mirrored input and merge its un-mirrored maps (seed 002).
            Steadier heatmaps and one more tag per joint, at twice the network's cost.
    """

    top_k: int = 30
    detection_threshold: float = 0.1
    nms_kernel: int = 3
    match_threshold: float = 1.0
    sie_weight: float = 1.0
    use_tags: bool = True
    use_pgg: bool = False
    pgg: PGGConfig = field(default_factory=PGGConfig)
    fill_missing: bool = True
    fill_window: float = 1.0
    fill_min_cells: float = 8.0
    mirror_separation: float = 0.0
    mirror_limb_ratio: float = 1.5
    refine: Literal["quarter", "gaussian", "none"] = "quarter"
    prior_threshold: float = 0.0
    prior_noise: float = 1.0
    prior_min_joints: int = 4
    person_score: Literal["detected", "all"] = "detected"
    min_person_score: float = 0.0
    min_joints: int = 1
    nms_oks: float = 0.5
    joint_order: tuple[int, ...] = DEFAULT_JOINT_ORDER
    scales: tuple[float, ...] = (1.0,)
    flip_test: bool = False

    def __post_init__(self) -> None:
        if not self.scales or any(not 0.0 < s <= 4.0 for s in self.scales):
            raise ValueError(f"scales must be a non-empty list of factors in (0, 4], got {self.scales}")
        if self.top_k < 1 or self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ValueError("top_k must be >= 1 and nms_kernel a positive odd number")
        if self.person_score not in ("detected", "all"):
            raise ValueError(f"person_score must be 'detected' or 'all', got {self.person_score!r}")
        if self.refine not in ("quarter", "gaussian", "none"):
            raise ValueError(f"refine must be 'quarter', 'gaussian' or 'none', got {self.refine!r}")
        if self.mirror_separation < 0 or self.mirror_limb_ratio <= 0:
            raise ValueError(
                f"mirror_separation must be >= 0 and mirror_limb_ratio > 0, got {self.mirror_separation}, "
                f"{self.mirror_limb_ratio}"
            )
        if self.prior_threshold < 0 or self.prior_noise <= 0 or self.prior_min_joints < 2:
            raise ValueError(
                f"prior_threshold must be >= 0, prior_noise > 0 and prior_min_joints >= 2, got "
                f"{self.prior_threshold}, {self.prior_noise}, {self.prior_min_joints}"
            )
        if not 0.0 < self.nms_oks <= 1.0:
            raise ValueError(f"nms_oks must be in (0, 1] (1 turns pose NMS off), got {self.nms_oks}")
        if not self.use_tags and self.sie_weight <= 0:
            raise ValueError("with use_tags=False, sie_weight must be > 0 (nothing left to group by)")


@dataclass(frozen=True)
class Peaks:
    """Top-k NMS peaks per joint. All (J, k): ``scores`` float, ``xs``/``ys`` long output pixels."""

    scores: torch.Tensor
    xs: torch.Tensor
    ys: torch.Tensor


def sie_from_svf(svf: torch.Tensor) -> torch.Tensor:
    """SIE(p) = p - S_hat(p): the predicted person centre at every pixel.

    Args:
        svf: (..., 2, H, W) spatial vector field (dx, dy) in output pixels.
    Returns:
        (..., 2, H, W) centres (x, y) in output pixels.
    """
    h, w = svf.shape[-2:]
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=svf.dtype, device=svf.device),
        torch.arange(w, dtype=svf.dtype, device=svf.device),
        indexing="ij",
    )
    return torch.stack([xs, ys]) - svf


def find_peaks(heatmaps: torch.Tensor, config: DecodeConfig) -> Peaks:
    """Stage 1: max-pool NMS and top-k per joint.

    Args:
        heatmaps: (J, H, W).
    """
    pooled = F.max_pool2d(heatmaps[None], config.nms_kernel, stride=1, padding=config.nms_kernel // 2)[0]
    nms = torch.where(pooled == heatmaps, heatmaps, torch.zeros_like(heatmaps))
    j, h, w = heatmaps.shape
    k = min(config.top_k, h * w)
    scores, idx = nms.reshape(j, -1).topk(k, dim=1)
    return Peaks(scores=scores, xs=idx % w, ys=idx // w)


def refine_with_pgg(
    heatmaps: torch.Tensor, tags: torch.Tensor, sie: torch.Tensor, config: PGGConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace KE and SIE at the pose-mask pixels by PGG's last iterate.

    Args:
        heatmaps: (J, H, W); tags: (J, T, H, W); sie: (2, H, W) centres in output pixels.
    Returns:
        refined (tags, sie) with the same shapes.
    """
    j, t, h, w = tags.shape
    (res,) = pose_guided_grouping(heatmaps[None], tags[None], sie[None], config)
    last = res.iterates[-1]
    tags = tags.clone().reshape(j, t, h * w)
    sie = sie.clone().reshape(2, h * w)
    tags[res.joint, :, res.index] = last[:t].T
    sie[:, res.index] = last[t:] * config.sie_unit
    return tags.reshape(j, t, h, w), sie.reshape(2, h, w)


def read_embeddings(tags: torch.Tensor, sie: torch.Tensor, peaks: Peaks) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2: tag vectors and SIE centres at the peaks.

    Args:
        tags: (J, T, H, W); sie: (2, H, W).
    Returns:
        (J, k, T) tags and (J, k, 2) centres.
    """
    j = tags.shape[0]
    jj = torch.arange(j, device=tags.device)[:, None].expand_as(peaks.xs)
    tag_vals = tags[jj, :, peaks.ys, peaks.xs]  # (J, k, T)
    sie_vals = sie[:, peaks.ys, peaks.xs].permute(1, 2, 0)  # (J, k, 2)
    return tag_vals, sie_vals


def _distance(
    tag_a: np.ndarray, sie_a: np.ndarray, tag_b: np.ndarray, sie_b: np.ndarray, config: DecodeConfig
) -> np.ndarray:
    """Combined embedding distance between rows of a (P, .) and b (N, .) -> (P, N)."""
    d = np.zeros((tag_a.shape[0], tag_b.shape[0]))
    if config.use_tags:
        d += np.linalg.norm(tag_a[:, None] - tag_b[None], axis=-1)
    if config.sie_weight > 0:
        d += config.sie_weight * np.linalg.norm(sie_a[:, None] - sie_b[None], axis=-1) / config.pgg.sie_unit
    return d


@dataclass
class _People:
    """Working state of the greedy grouping (local to one ``group_joints`` call)."""

    joints: np.ndarray  # (P, J, 3) x, y, score in output pixels
    tag_sum: np.ndarray  # (P, T)
    sie_sum: np.ndarray  # (P, 2)
    count: np.ndarray  # (P,)


def group_joints(
    peaks: Peaks, tag_vals: torch.Tensor, sie_vals: torch.Tensor, config: DecodeConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage 3: greedy joint-by-joint association with Hungarian matching.

    Returns:
        joints (P, J, 3) (x, y, score) at integer output pixels (score 0 = missing),
        mean tags (P, T) and mean SIE centres (P, 2) of each person.
    """
    scores = peaks.scores.cpu().numpy()
    xs, ys = peaks.xs.cpu().numpy(), peaks.ys.cpu().numpy()
    tv, sv = tag_vals.detach().cpu().double().numpy(), sie_vals.detach().cpu().double().numpy()
    j, _, t = tv.shape
    people = _People(np.zeros((0, j, 3)), np.zeros((0, t)), np.zeros((0, 2)), np.zeros(0))

    def add(p: int, joint: int, d: int) -> None:
        people.joints[p, joint] = (xs[joint, d], ys[joint, d], scores[joint, d])
        people.tag_sum[p] += tv[joint, d]
        people.sie_sum[p] += sv[joint, d]
        people.count[p] += 1

    for joint in config.joint_order:
        dets = np.nonzero(scores[joint] > config.detection_threshold)[0]
        if dets.size == 0:
            continue
        n_people = people.joints.shape[0]
        matched = np.zeros(dets.size, bool)
        if n_people:
            cnt = people.count[:, None]
            dist = _distance(
                people.tag_sum / cnt, people.sie_sum / cnt, tv[joint, dets], sv[joint, dets], config
            )
            # Among near-equal distances prefer the stronger detection; gate impossible pairs.
            cost = dist - 1e-3 * scores[joint, dets][None]
            cost = np.where(dist < config.match_threshold, cost, 1e6)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                if dist[r, c] < config.match_threshold and people.joints[r, joint, 2] == 0:
                    add(r, joint, dets[c])
                    matched[c] = True
        for c in np.nonzero(~matched)[0]:
            people.joints = np.concatenate([people.joints, np.zeros((1, j, 3))])
            people.tag_sum = np.concatenate([people.tag_sum, np.zeros((1, t))])
            people.sie_sum = np.concatenate([people.sie_sum, np.zeros((1, 2))])
            people.count = np.concatenate([people.count, [0.0]])
            add(people.joints.shape[0] - 1, joint, dets[c])
    cnt = np.maximum(people.count, 1)[:, None]
    return people.joints, people.tag_sum / cnt, people.sie_sum / cnt


def fill_missing(
    joints: np.ndarray, mean_tags: np.ndarray, mean_sie: np.ndarray,
    heatmaps: torch.Tensor, tags: torch.Tensor, sie: torch.Tensor, config: DecodeConfig,
) -> np.ndarray:  # fmt: skip
    """Stage 4: for each missing joint, the pixel maximising heat minus embedding distance.

    Each person is searched only inside its window (``fill_window``): the box around its
    detected joints and its mean SIE centre, grown on every side by ``fill_window`` times
    the box's larger side (at least ``fill_min_cells``). Searching the whole map for every
    missing joint of every person cost more than the network on spurious people.
    The filled joint's score is the heat at that pixel (it may be below the detection threshold).

    Args:
        joints: (P, J, 3) from ``group_joints``; mean_tags (P, T); mean_sie (P, 2) in output
            pixels; heatmaps (J, H, W); tags (J, T, H, W); sie (2, H, W).
    Returns:
        (P, J, 3) with missing joints filled.
    """
    out = joints.copy()
    if out.shape[0] == 0:
        return out
    heat = heatmaps.detach().cpu().double().numpy()
    tg = tags.detach().cpu().double().numpy()
    se = sie.detach().cpu().double().numpy()
    j, t, h, w = tg.shape
    for p in range(out.shape[0]):
        missing = np.nonzero(out[p, :, 2] == 0)[0]
        if missing.size == 0:
            continue
        x0, y0, x1, y1 = _fill_window(out[p], mean_sie[p], config, w, h)
        hw = (y1 - y0) * (x1 - x0)
        tag_pix = tg[missing, :, y0:y1, x0:x1].reshape(missing.size, t, hw)  # (m, T, hw)
        sie_pix = se[:, y0:y1, x0:x1].reshape(2, hw)  # (2, hw)
        dist = np.concatenate(
            [
                _distance(mean_tags[p][None], mean_sie[p][None], tag_pix[k].T, sie_pix.T, config)
                for k in range(missing.size)
            ]
        )  # (m, hw)
        local = heat[missing, y0:y1, x0:x1].reshape(missing.size, hw)
        best = (local - dist).argmax(axis=1)
        out[p, missing, 0] = x0 + best % (x1 - x0)
        out[p, missing, 1] = y0 + best // (x1 - x0)
        out[p, missing, 2] = local[np.arange(missing.size), best]
    return out


def separate_mirrored(
    joints: np.ndarray, mean_tags: np.ndarray, mean_sie: np.ndarray, peaks: Peaks,
    heatmaps: torch.Tensor, tags: torch.Tensor, sie: torch.Tensor, config: DecodeConfig,
) -> np.ndarray:  # fmt: skip
    """Stage 4b: a person's left and right joint of a pair do not share one spot.

    Joint types are matched one at a time, so when the left-wrist heatmap also peaks at the
    right wrist (mirror confusion, common at the limb ends) both wrists of a person can land
    on the same peak. For each pair (``mirror_pairs_outward``, torso first) whose joints and
    both ``LIMB_PARENT`` s were found and whose joints are closer than
    ``config.mirror_separation``: the side whose parent is nearer the shared spot keeps it
    (the side with more heat there when the parents themselves are that close); the other
    moves to one of its own ``find_peaks`` peaks above the detection threshold, in the
    person's ``fill_missing`` window, that is

    - at least the separation away from the kept joint,
    - no weaker than its own heat at the shared spot,
    - within ``mirror_limb_ratio`` times the kept limb's length of its own parent,
    - within ``match_threshold`` of the person's embedding,

    the one with the most heat minus embedding distance. Without one the pair stays as it was.

    Args:
        joints: (P, J, 3) (x, y, score) at integer output pixels, score 0 = missing;
            mean_tags (P, T); mean_sie (P, 2) in output pixels; peaks: ``find_peaks`` of
            ``heatmaps`` (J, H, W); tags (J, T, H, W); sie (2, H, W).
    Returns:
        (P, J, 3); a moved joint's score is the heat at its new pixel.
    """
    out = joints.copy()
    sep = config.mirror_separation
    if sep <= 0 or out.shape[0] == 0:
        return out
    heat = heatmaps.detach().cpu()
    h, w = heat.shape[1:]
    tg = tags.detach().cpu().numpy()
    se = sie.detach().cpu().numpy()
    strong = (peaks.scores > config.detection_threshold).cpu().numpy()
    peak_xs, peak_ys, peak_heat = peaks.xs.cpu().numpy(), peaks.ys.cpu().numpy(), peaks.scores.cpu().numpy()
    pairs = mirror_pairs_outward()
    for p in range(out.shape[0]):
        person = out[p]
        for k, o in pairs:
            pk, po = LIMB_PARENT[k], LIMB_PARENT[o]
            if pk < 0 or min(person[k, 2], person[o, 2], person[pk, 2], person[po, 2]) <= 0:
                continue  # only limbs whose parents were found can be checked
            if np.hypot(*(person[k, :2] - person[o, :2])) >= sep:
                continue
            keeper, mover = _mirror_keeper(person, k, o, heat, sep)
            x0, y0, x1, y1 = _fill_window(person, mean_sie[p], config, w, h)
            xs, ys = peak_xs[mover], peak_ys[mover]
            take = strong[mover] & (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
            take &= np.hypot(xs - person[keeper, 0], ys - person[keeper, 1]) >= sep
            if not take.any():
                continue
            xs, ys, cand = xs[take], ys[take], peak_heat[mover, take].astype(np.float64)
            limb = max(float(np.hypot(*(person[keeper, :2] - person[LIMB_PARENT[keeper], :2]))), 1.0)
            reach = np.hypot(xs - person[LIMB_PARENT[mover], 0], ys - person[LIMB_PARENT[mover], 1])
            shared = float(heat[mover, int(person[mover, 1]), int(person[mover, 0])])
            tag_c, sie_c = tg[mover][:, ys, xs].T.astype(np.float64), se[:, ys, xs].T.astype(np.float64)
            dist = _distance(mean_tags[p][None], mean_sie[p][None], tag_c, sie_c, config)[0]
            ok = (
                (dist < config.match_threshold)
                & (cand >= shared)
                & (reach <= config.mirror_limb_ratio * limb)
            )
            gain = np.where(ok, cand - dist, -np.inf)
            best = int(gain.argmax())
            if np.isfinite(gain[best]):
                person[mover] = (xs[best], ys[best], cand[best])
    return out


def _mirror_keeper(person: np.ndarray, k: int, o: int, heat: torch.Tensor, sep: float) -> tuple[int, int]:
    """(keeper, mover) of the mirrored pair (k, o) sharing a spot: see ``separate_mirrored``."""
    x, y = int(person[k, 0]), int(person[k, 1])
    pk, po = LIMB_PARENT[k], LIMB_PARENT[o]
    if np.hypot(*(person[pk, :2] - person[po, :2])) >= sep:
        near_k = np.hypot(*(person[pk, :2] - person[k, :2])) <= np.hypot(*(person[po, :2] - person[k, :2]))
    else:
        near_k = bool(heat[k, y, x] >= heat[o, y, x])
    return (k, o) if near_k else (o, k)


def _fill_window(
    person: np.ndarray, centre: np.ndarray, config: DecodeConfig, w: int, h: int
) -> tuple[int, int, int, int]:
    """``fill_missing``'s search window (x0, y0, x1, y1), end-exclusive, in output pixels."""
    if config.fill_window <= 0:
        return 0, 0, w, h
    found = person[person[:, 2] > 0, :2]
    pts = np.concatenate([found, centre[None]]) if np.all(np.isfinite(centre)) else found
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    grow = config.fill_window * max(float((hi - lo).max()), config.fill_min_cells)
    x0, y0 = (np.floor(lo - grow)).astype(int)
    x1, y1 = (np.ceil(hi + grow)).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def refine_locations(joints: np.ndarray, heatmaps: torch.Tensor, mode: str) -> np.ndarray:
    """Stage 5: sub-pixel refinement of integer peak locations.

    "quarter": shift 0.25 px towards the higher horizontal / vertical neighbour (seed 002).
    "gaussian": the vertex of the parabola through the log-heat at the peak and its two
    neighbours per axis — exact for a sampled Gaussian ``exp(-d^2 / sigma^2)``.

    Args:
        joints: (P, J, 3) at integer output pixels; heatmaps: (J, H, W).
    Returns:
        (P, J, 3) refined (scores unchanged).
    """
    out = joints.astype(np.float64).copy()
    if mode == "none" or out.shape[0] == 0:
        return out
    heat = heatmaps.detach().cpu().double().numpy()
    _, h, w = heat.shape
    eps = 1e-10
    for p, joint in zip(*np.nonzero(out[..., 2] > 0), strict=True):
        x, y = int(out[p, joint, 0]), int(out[p, joint, 1])
        hm = heat[joint]
        for axis, (lo, hi, c) in enumerate(
            [
                (hm[y, x - 1] if x > 0 else None, hm[y, x + 1] if x < w - 1 else None, hm[y, x]),
                (hm[y - 1, x] if y > 0 else None, hm[y + 1, x] if y < h - 1 else None, hm[y, x]),
            ]
        ):
            if lo is None or hi is None:
                continue
            if mode == "quarter":
                shift = 0.25 * np.sign(hi - lo)
            else:
                a, b, cc = np.log(max(lo, eps)), np.log(max(hi, eps)), np.log(max(c, eps))
                denom = a - 2 * cc + b
                shift = 0.5 * (a - b) / denom if denom < -1e-12 else 0.0
                shift = float(np.clip(shift, -0.5, 0.5))
            out[p, joint, axis] += shift
    return out


def complete_with_prior(
    joints: np.ndarray, heatmaps: torch.Tensor, prior: PosePrior | None, config: DecodeConfig
) -> np.ndarray:
    """Stage 6: weak joints where the pose prior expects them (``config.prior_threshold``).

    For each person with at least ``prior_min_joints`` joints whose heat is at or above the
    threshold, every other joint moves to the prior's conditional mean given those
    (``PosePrior.complete``, noise ``prior_noise`` output pixels); its score becomes the heat
    at its new place. The conditional mean may lie off the map (a joint outside the frame,
    as the ground truth has them); such a joint keeps that place with score 0. People the
    prior cannot place are left as they are. The person score (``person_score``) is made
    from the grouping's detections before this stage, so it does not change.

    Args:
        joints: (P, J, 3) (x, y, score) in output pixels, after ``refine_locations``;
            heatmaps (J, H, W); prior: required when the stage is on.
    Returns:
        (P, J, 3).
    """
    out = joints.astype(np.float64).copy()
    if config.prior_threshold <= 0 or out.shape[0] == 0:
        return out
    if prior is None:
        raise ValueError(
            "DecodeConfig.prior_threshold > 0 needs a pose prior (posestream.models.pose_prior) with the weights"
        )
    _, h, w = heatmaps.shape
    for person in out:
        reliable = person[:, 2] >= config.prior_threshold
        if reliable.sum() < config.prior_min_joints or reliable.all():
            continue
        placed = prior.complete(person[:, :2], reliable, config.prior_noise)
        if placed is None:
            continue
        for j in np.nonzero(~reliable)[0]:
            x, y = placed[j]
            xi, yi = int(round(x)), int(round(y))
            person[j] = (x, y, float(heatmaps[j, yi, xi]) if 0 <= xi < w and 0 <= yi < h else 0.0)
    return out


def decode_spatial(
    heatmaps: torch.Tensor, tags: torch.Tensor, svf: torch.Tensor, config: DecodeConfig, stride: int,
    prior: PosePrior | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """All stages for one image.

    Args:
        heatmaps: (J, H, W) in [0, 1]; tags: (J, H, W) or (J, T, H, W); svf: (2, H, W)
            spatial vector field (SIE = p - svf), all at output resolution.
        stride: input pixels per output pixel.
        prior: the body-shape prior ``complete_with_prior`` uses (only with
            ``config.prior_threshold > 0``).
    Returns:
        keypoints (P, J, 3) as (x, y, score) in input pixels, person scores (P,).
    """
    if tags.dim() == 3:
        tags = tags.unsqueeze(1)
    sie = sie_from_svf(svf)
    if config.use_pgg:
        tags, sie = refine_with_pgg(heatmaps, tags, sie, config.pgg)
    peaks = find_peaks(heatmaps, config)
    tag_vals, sie_vals = read_embeddings(tags, sie, peaks)
    joints, mean_tags, mean_sie = group_joints(peaks, tag_vals, sie_vals, config)
    found = joints[..., 2].copy()  # (P, J) heat of the detected joints, 0 for the others
    detected = (found > 0).sum(axis=1)
    if config.fill_missing:
        joints = fill_missing(joints, mean_tags, mean_sie, heatmaps, tags, sie, config)
    joints = separate_mirrored(joints, mean_tags, mean_sie, peaks, heatmaps, tags, sie, config)
    joints = refine_locations(joints, heatmaps, config.refine)
    joints = complete_with_prior(joints, heatmaps, prior, config)
    scores = (found if config.person_score == "detected" else joints[..., 2]).mean(axis=1)
    keep = (scores >= config.min_person_score) & (detected >= config.min_joints)
    joints, scores = joints[keep], scores[keep]
    if config.nms_oks < 1.0:  # duplicates of one person (OKS is scale-free: output pixels will do)
        areas = box_area(boxes_from_keypoints(joints, min_score=config.detection_threshold))
        kept = np.sort(greedy_oks_nms(joints, scores, areas, config.nms_oks, config.detection_threshold))
        joints, scores = joints[kept], scores[kept]
    joints[..., :2] = to_input_coords(joints[..., :2], stride)
    return joints.astype(np.float32), scores.astype(np.float32)


def merge_multiscale(
    outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seed 002 multi-scale testing: heatmaps averaged, tags concatenated.

    Args:
        outputs: per pass (heatmaps (B, J, h, w), tags (B, J, T, h, w), svf (B, 2, h, w)), each
            for the image resized by that pass's scale (and un-mirrored, ``unflip_maps``);
            the batch dimension B is optional (all passes alike), and tags may be (B, J, h, w).
        size: (H, W) common output size (the scale-1 output size).
    Returns:
        (heatmaps (B, J, H, W), tags (B, J, T * S, H, W), svf (B, 2, H, W)) without B when the
        inputs had none; SVF vectors are rescaled to the common resolution and averaged.
    """
    batched = outputs[0][0].dim() == 4

    def up(m: torch.Tensor) -> torch.Tensor:
        return F.interpolate(m, size=size, mode="bilinear", align_corners=False)

    heats, tags, svfs = [], [], []
    for heat, tag, svf in outputs:
        if not batched:
            heat, tag, svf = heat[None], tag[None], svf[None]
        if tag.dim() == 4:
            tag = tag.unsqueeze(2)
        b, j, t = tag.shape[:3]
        scale_x, scale_y = size[1] / heat.shape[-1], size[0] / heat.shape[-2]
        heats.append(up(heat))
        tags.append(up(tag.reshape(b, j * t, *tag.shape[-2:])).reshape(b, j, t, *size))
        s = up(svf)
        svfs.append(torch.stack([s[:, 0] * scale_x, s[:, 1] * scale_y], dim=1))
    heat, tag, svf = torch.stack(heats).mean(0), torch.cat(tags, dim=2), torch.stack(svfs).mean(0)
    return (heat, tag, svf) if batched else (heat[0], tag[0], svf[0])


def unflip_maps(
    heatmaps: torch.Tensor, tags: torch.Tensor, svf: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maps of a horizontally mirrored input brought back to the original image (flip testing).

    Output cell x of the mirrored input's maps covers cell w - 1 - x of the original (stride-4
    cells are centred on input pixel 4x + 1.5), and its left joints are the original's right
    ones; the SVF's x component (p - centre) changes sign.

    Args:
        heatmaps: (B, J, h, w); tags: (B, J, T, h, w); svf: (B, 2, h, w), of the mirrored input.
    Returns:
        the same shapes, in the original image's frame and joint order.
    """
    perm = torch.from_numpy(flip_permutation()).to(heatmaps.device)
    svf = svf.flip(-1)
    return heatmaps.flip(-1)[:, perm], tags.flip(-1)[:, perm], torch.stack([-svf[:, 0], svf[:, 1]], dim=1)
