"""Pose and box geometry shared by the decoder, the tracker and the metrics (numpy only).

One definition of each measure, so that the decoder's pose NMS, the tracker's OKS cost and
the evaluation's OKS are the same formula:

- ``keypoint_similarity``: COCO's per-keypoint OKS term.
- ``oks_matrix``: object keypoint similarity between two sets of poses.
- ``box_area`` / ``box_iou``: box areas and intersection over union.
- ``person_centre``: a person's centre as the mean of its present keypoints.
- ``head_size`` / ``head_size_or_box``: the head-size proxy of PCKh-style thresholds.

Conventions: keypoints are (N, 17, 3) as (x, y, score) in pixels (in ground truth the
score column holds the visibility code 0/1/2), x to the right, y down; boxes are (N, 4) as
(x1, y1, x2, y2) in the same pixels; areas are in pixels^2. This module is torch-free so
the tracker and the gateway can use it.
"""

from __future__ import annotations

import numpy as np

from posestream.models.skeleton import KEYPOINT_INDEX, NUM_KEYPOINTS, OKS_SIGMAS

__all__ = [
    "box_area",
    "box_iou",
    "head_size",
    "head_size_or_box",
    "keypoint_similarity",
    "oks_matrix",
    "person_centre",
]

# -1 / (2 (2 sigma)^2) per joint in float32: the exponent factor of the float32 path.
_OKS_FACTOR_F32 = (-0.5 / (2.0 * OKS_SIGMAS) ** 2).astype(np.float32)

# Head size from the box when no ear, eye or shoulder pair is labelled: box height / 8,
# roughly one head height for a standing adult.
HEAD_FROM_BOX_HEIGHT = 1.0 / 8.0


def keypoint_similarity(
    d2: np.ndarray, areas: np.ndarray | float, sigmas: np.ndarray = OKS_SIGMAS, *, fast: bool = False
) -> np.ndarray:
    """COCO's per-keypoint OKS term ``exp(-d^2 / (2 area (2 sigma)^2))``, which ``oks_matrix`` averages.

    Args:
        d2: (..., 17) squared distances in pixels^2.
        areas: OKS scale areas in pixels^2 (the object scale squared), broadcastable
            against ``d2`` (e.g. (..., 1)).
        sigmas: (17,) per-keypoint falloff constants (default COCO's ``OKS_SIGMAS``).
        fast: compute in float32 as ``d2 * (-1 / (2 (2 sigma)^2)) / area`` (the tracker's
            per-frame cost, where float32 is several times cheaper and agrees with the
            float64 path to ~1e-6); ``areas`` must then be > 0. Otherwise float64 in
            ``COCOeval.computeOks``'s order of operations, with its ``eps`` added to the area.
    Returns:
        (..., 17) terms in [0, 1], float32 when ``fast`` else float64.
    """
    if fast:
        factor = _OKS_FACTOR_F32
        if sigmas is not OKS_SIGMAS:
            factor = (-0.5 / (2.0 * np.asarray(sigmas, np.float64)) ** 2).astype(np.float32)
        return np.exp(np.asarray(d2, np.float32) * factor / np.asarray(areas, np.float32))
    var = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    return np.exp(-np.asarray(d2, np.float64) / var / (np.asarray(areas, np.float64) + np.spacing(1)) / 2.0)


def oks_matrix(
    ref_keypoints: np.ndarray,
    keypoints: np.ndarray,
    ref_areas: np.ndarray,
    min_score: float = 0.0,
    *,
    ref_boxes: np.ndarray | None = None,
    sigmas: np.ndarray = OKS_SIGMAS,
) -> np.ndarray:
    """Object keypoint similarity of every reference pose (the "ground truth") with every other pose.

    ``OKS[i, j] = mean_k keypoint_similarity(||p_jk - r_ik||^2, area_i)`` over the keypoints
    k of reference i with score > ``min_score`` (COCO: the labelled ones, visibility > 0);
    the other poses' scores are not used. A reference with no such keypoint gets 0, or,
    when ``ref_boxes`` is given, COCO's rule for ignored people (``COCOeval.computeOks``):
    ``d_k`` is how far keypoint k of the other pose lies outside the reference box grown by
    its width/height on every side, averaged over all 17 keypoints.

    Args:
        ref_keypoints: (G, 17, 3) (x, y, score or visibility) in pixels.
        keypoints: (P, 17, 3) (x, y, score) in pixels.
        ref_areas: (G,) OKS scale areas of the references in pixels^2.
        min_score: a reference keypoint counts when its score is > this.
        ref_boxes: (G, 4) (x1, y1, x2, y2) of the references, for COCO's rule for
            references without a counted keypoint.
        sigmas: (17,) per-keypoint falloff constants.
    Returns:
        (G, P) float64 OKS in [0, 1].
    """
    ref = np.asarray(ref_keypoints, np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    other = np.asarray(keypoints, np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    areas = np.asarray(ref_areas, np.float64).reshape(-1)
    if ref.shape[0] == 0 or other.shape[0] == 0:
        return np.zeros((ref.shape[0], other.shape[0]))
    vis = ref[:, :, 2] > min_score  # (G, 17)
    labelled = vis.any(axis=1)  # (G,)
    d = other[None, :, :, :2] - ref[:, None, :, :2]  # (G, P, 17, 2)
    d2 = d[..., 0] ** 2 + d[..., 1] ** 2
    if ref_boxes is None:
        weight = vis[:, None, :]
        count = weight.sum(axis=-1)
        sim = (keypoint_similarity(d2, areas[:, None, None], sigmas) * weight).sum(axis=-1)
        return np.where(count > 0, sim / np.maximum(count, 1), 0.0)
    boxes = np.asarray(ref_boxes, np.float64).reshape(-1, 4)
    # COCO's distance to the 3x-grown box for references without counted keypoints.
    w = (boxes[:, 2] - boxes[:, 0])[:, None, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None, None]
    x0, x1 = boxes[:, 0, None, None] - w, boxes[:, 0, None, None] + 2 * w
    y0, y1 = boxes[:, 1, None, None] - h, boxes[:, 1, None, None] + 2 * h
    px, py = other[None, :, :, 0], other[None, :, :, 1]
    out_x = np.maximum(0.0, x0 - px) + np.maximum(0.0, px - x1)
    out_y = np.maximum(0.0, y0 - py) + np.maximum(0.0, py - y1)
    d2 = np.where(labelled[:, None, None], d2, out_x**2 + out_y**2)
    weight = np.where(labelled[:, None], vis, True)[:, None, :]  # (G, 1, 17)
    return (keypoint_similarity(d2, areas[:, None, None], sigmas) * weight).sum(axis=-1) / weight.sum(axis=-1)


def greedy_oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    oks_threshold: float,
    keypoint_threshold: float,
) -> np.ndarray:
    """Greedy pose NMS: the indices of the people kept, best score first.

    A person is dropped when its OKS with a kept, higher-scoring person exceeds
    ``oks_threshold``; that person's keypoints with score > ``keypoint_threshold`` are
    compared, with its ``areas`` entry as the OKS object area.

    Args:
        keypoints: (N, 17, 3) (x, y, score), any pixel frame shared by all people.
        scores: (N,) person scores; areas: (N,) object areas in that frame's pixels^2.
        oks_threshold: >= 1.0 keeps everyone (only sorts).
    Returns:
        (K,) int64 indices into the N people.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    if len(order) == 0 or oks_threshold >= 1.0:
        return order.astype(np.int64)
    kp = np.asarray(keypoints)[order]
    oks = oks_matrix(kp, kp, np.maximum(np.asarray(areas, np.float64)[order], 1.0), keypoint_threshold)
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        suppressed |= oks[i] > oks_threshold
    return np.asarray(keep, dtype=np.int64)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) boxes (x1, y1, x2, y2) -> (N,) float64 areas in pixels^2 (0 for inverted sides)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: (N, 4) boxes (x1, y1, x2, y2) in pixels.
        b: (M, 4) boxes.
    Returns:
        (N, M) float64 in [0, 1]; 0 where the union is empty (two zero-area boxes).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def person_centre(keypoints: np.ndarray, min_score: float = 0.2) -> np.ndarray:
    """Each person's centre: the mean of its keypoints with score > ``min_score`` (of all 17
    when none passes), seed 000's person centre (what MoveNet's centre head predicts).

    Args:
        keypoints: (N, 17, 3) as (x, y, score) in pixels (or cells: the unit is kept).
        min_score: a keypoint counts when its score is > this.
    Returns:
        (N, 2) float64 (x, y), in the keypoints' unit.
    """
    kp = np.asarray(keypoints, dtype=np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    vis = kp[:, :, 2] > min_score
    vis = np.where(vis.any(axis=1, keepdims=True), vis, True)
    return (kp[:, :, :2] * vis[:, :, None]).sum(axis=1) / vis.sum(axis=1)[:, None]


def head_size(keypoints: np.ndarray, min_score: float = 0.0) -> np.ndarray:
    """Head-size proxy per person for PCKh-style thresholds (COCO has no head top).

    Uses the ear-to-ear span when both ears are present, else 2x the eye span, else
    the shoulder span / 1.6 (a typical adult ratio), else NaN.

    Args:
        keypoints: (N, 17, 3) as (x, y, score) in pixels.
        min_score: a keypoint counts as present when its score is > this.
    Returns:
        (N,) float64 head sizes in pixels (NaN where no proxy is available).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    out = np.full(kp.shape[0], np.nan)
    candidates = (
        (KEYPOINT_INDEX["left_ear"], KEYPOINT_INDEX["right_ear"], 1.0),
        (KEYPOINT_INDEX["left_eye"], KEYPOINT_INDEX["right_eye"], 2.0),
        (KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"], 1.0 / 1.6),
    )
    for a, b, factor in candidates:
        ok = np.isnan(out) & (kp[:, a, 2] > min_score) & (kp[:, b, 2] > min_score)
        span = np.linalg.norm(kp[:, a, :2] - kp[:, b, :2], axis=-1) * factor
        out = np.where(ok & (span > 0), span, out)
    return out


def head_size_or_box(keypoints: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head size the PoseTrack metrics use: ``head_size`` of the labelled keypoints
    (visibility > 0), else the box height / 8 (``HEAD_FROM_BOX_HEIGHT``).

    Args:
        keypoints: (N, 17, 3) as (x, y, visibility) in pixels.
        boxes: (N, 4) (x1, y1, x2, y2) in pixels.
    Returns:
        (N,) float64 head sizes in pixels, and the (N,) bool mask of the people whose
        size came from the box.
    """
    hs = head_size(keypoints, min_score=0.0)
    from_box = ~np.isfinite(hs)
    b = np.asarray(boxes).reshape(-1, 4)
    box_h = b[:, 3] - b[:, 1]
    return np.where(from_box, box_h * HEAD_FROM_BOX_HEIGHT, hs), from_box
