"""Association costs between tracks (frame t-1) and detections (frame t).

Every cost term is a vectorised function ``(tracks, detections) -> (T, N)`` float64
matrix, lower meaning more alike. ``tracks`` is anything with the arrays of
``posestream.tracker.state.Tracks`` (the tracker's active tracks) and ``detections`` anything with
those of ``posestream.models.poses.FramePoses`` (a frame's people with their optional per-person
arrays); both use the shapes and pixel conventions given there. A term whose input field is ``None`` raises ``ValueError`` naming
the presets that need it. A NaN in a track's optional arrays (the track was started
from a detection without that field) gives NaN in its row; ``combined_cost`` treats it.

Terms (seed 000, section 3.3.3 and Table 4):

- ``psi_he``: squared L2 distance between the unit Human Embeddings, in [0, 4].
- ``psi_tie``: Eq. 9. For track i and detection j, over the joints k present in both
  (score > ``keypoint_threshold``)::

      psi_tie[i, j] = mean_k ( ||TIE_bwd_i[k] - SIE_j[k]|| + ||TIE_fwd_j[k] - SIE_i[k]|| ) / 2
                      / scale_ij

  i.e. how far (in person scales) each frame's prediction of the other frame's person
  centre lands from that centre. Three departures from Eq. 9, all on purpose: the mean
  runs over the joints present in both poses rather than all J (an absent joint has no
  meaningful TIE/SIE value); the distances are plain L2 instead of squared (a miss of
  two person sizes should cost twice one, not four times, next to Psi_HE's bounded
  range); and they are divided by the person scale
  ``scale_ij = (sqrt(area(box_i)) + sqrt(area(box_j))) / 2``: the paper's TIE/SIE live in
  the network's embedding units, ours are pixels, and without the normalisation a gate
  fitting a person 400 px tall would be meaningless for one 40 px tall. With it
  ``gate_tie = 1`` reads "the predictions miss by at most one person size on average".
  When the two poses share no present joint, the joint-wise comparison has nothing to
  pair, so each side's predictions are averaged over its own present joints first (the
  predicted centres are compared instead of the per-joint values).
- ``oks_cost``: 1 - OKS of the two poses (COCO's ``posestream.models.geometry.keypoint_similarity``),
  the object scale^2 being the mean of the two box areas (boxes, not COCO's segment
  areas, are what detections have), over the joints present in both; 1 when they share
  none.
- ``iou_cost``: 1 - IoU of the boxes.
- ``sie_cost``: Table 4's SIE baseline, assuming SIE changes little between frames:
  mean over shared joints of ||SIE_i[k] - SIE_j[k]|| / scale_ij.
- ``ke_cost``: Table 4's KE baseline, assuming KE changes little between frames:
  mean over shared joints of ||tags_i[k] - tags_j[k]|| (tag units, not normalised).

Joint-wise distances are computed in float32 (several times cheaper on these short
joint axes, and exact to far below a pixel); the returned matrices are float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from posestream.models.geometry import box_area, box_iou, keypoint_similarity, person_centre
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.tracker.config import PRESET_TERMS, TrackerConfig

# Floor on the person scale so that degenerate (zero-area) boxes cannot divide by zero.
MIN_SCALE_PX = 1.0


def psi_he(tracks: Any, dets: Any) -> np.ndarray:
    """Psi_HE: squared L2 distance between unit Human Embeddings.

    Args:
        tracks: ``.embeddings`` (T, E), unit rows (NaN rows allowed).
        dets: ``.embeddings`` (N, E), unit rows.
    Returns:
        (T, N) float64 in [0, 4].
    """
    return he_distance(
        _need(tracks, "embeddings", "tracks", "he"), _need(dets, "embeddings", "detections", "he")
    )


def he_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared L2 distances between the rows of (T, E) ``a`` and (N, E) ``b`` -> (T, N) float64.

    Meant for unit vectors (result in [0, 4]); NaN rows give NaN rows/columns.
    """
    # float32 on purpose: HE vectors can be long (3072 in seed 000) and float32 keeps the
    # product cheap; the distances are exact to ~1e-6, far below any gate.
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"HE dimension differs: tracks have {a.shape[1]}, detections {b.shape[1]}")
    sq_a = np.einsum("ij,ij->i", a, a).astype(np.float64)
    sq_b = np.einsum("ij,ij->i", b, b).astype(np.float64)
    d = sq_a[:, None] + sq_b[None, :] - 2.0 * (a @ b.T).astype(np.float64)
    return np.clip(d, 0.0, 4.0)


def psi_tie(tracks: Any, dets: Any, *, keypoint_threshold: float = 0.2) -> np.ndarray:
    """Psi_TIE (seed 000 Eq. 9, in person scales; see the module docstring).

    Args:
        tracks: ``.keypoints`` (T, 17, 3), ``.boxes`` (T, 4), ``.sie`` (T, 17, 2) and
            ``.tie_bwd`` (T, 17, 2) (predicted centre at t) from the track's last frame.
        dets: ``.keypoints`` (N, 17, 3), ``.boxes`` (N, 4), ``.sie`` (N, 17, 2) and
            ``.tie_fwd`` (N, 17, 2) (predicted centre at t - 1).
    Returns:
        (T, N) float64 >= 0.
    """
    tb = _need(tracks, "tie_bwd", "tracks", "tie")
    ts = _need(tracks, "sie", "tracks", "tie")
    df = _need(dets, "tie_fwd", "detections", "tie")
    ds = _need(dets, "sie", "detections", "tie")
    wt, wd = _present(tracks, keypoint_threshold), _present(dets, keypoint_threshold)
    # Per joint: backward TIE of i vs SIE of j, plus forward TIE of j vs SIE of i.
    err = _pair_dist(tb, ds) + _pair_dist(ts, df)
    cost, missing = _shared_joint_mean(err, wt, wd)
    if missing.any():
        cost = _centre_fallback(cost, missing, [(tb, wt, ds, wd), (ts, wt, df, wd)])
    return cost * 0.5 / _pair_scale(tracks.boxes, dets.boxes)


def oks_cost(tracks: Any, dets: Any, *, keypoint_threshold: float = 0.2) -> np.ndarray:
    """1 - OKS between each track's last pose and each detected pose.

    Args:
        tracks: ``.keypoints`` (T, 17, 3), ``.boxes`` (T, 4).
        dets: ``.keypoints`` (N, 17, 3), ``.boxes`` (N, 4).
    Returns:
        (T, N) float64 in [0, 1]; 1 where the poses share no present joint.
    """
    kt = np.asarray(tracks.keypoints, dtype=np.float32)
    kd = np.asarray(dets.keypoints, dtype=np.float32)
    d = _pair_dist(kt[:, :, :2], kd[:, :, :2])
    area = np.maximum(
        (box_area(tracks.boxes)[:, None] + box_area(dets.boxes)[None, :]) * 0.5, MIN_SCALE_PX**2
    )
    sim = keypoint_similarity(d * d, area.astype(np.float32)[:, :, None], fast=True)
    oks, none_shared = _shared_joint_mean(
        sim, _present(tracks, keypoint_threshold), _present(dets, keypoint_threshold)
    )
    return np.where(none_shared, 1.0, 1.0 - oks)


def iou_cost(tracks: Any, dets: Any) -> np.ndarray:
    """1 - IoU of the boxes.

    Args:
        tracks: ``.boxes`` (T, 4) as (x1, y1, x2, y2).
        dets: ``.boxes`` (N, 4).
    Returns:
        (T, N) float64 in [0, 1].
    """
    return 1.0 - box_iou(tracks.boxes, dets.boxes)


def sie_cost(tracks: Any, dets: Any, *, keypoint_threshold: float = 0.2) -> np.ndarray:
    """Table 4's SIE smoothness baseline: centre drift between frames, in person scales.

    Args:
        tracks: ``.keypoints`` (T, 17, 3), ``.boxes`` (T, 4), ``.sie`` (T, 17, 2).
        dets: ``.keypoints`` (N, 17, 3), ``.boxes`` (N, 4), ``.sie`` (N, 17, 2).
    Returns:
        (T, N) float64 >= 0.
    """
    ts = _need(tracks, "sie", "tracks", "sie")
    ds = _need(dets, "sie", "detections", "sie")
    vt, vd = _present(tracks, keypoint_threshold), _present(dets, keypoint_threshold)
    err = _pair_dist(ts, ds)
    cost, missing = _shared_joint_mean(err, vt, vd)
    if missing.any():
        cost = _centre_fallback(cost, missing, [(ts, vt, ds, vd)])
    return cost / _pair_scale(tracks.boxes, dets.boxes)


def ke_cost(tracks: Any, dets: Any, *, keypoint_threshold: float = 0.2) -> np.ndarray:
    """Table 4's KE smoothness baseline: mean L2 between tag values at shared joints.

    Args:
        tracks: ``.keypoints`` (T, 17, 3), ``.tags`` (T, 17, D).
        dets: ``.keypoints`` (N, 17, 3), ``.tags`` (N, 17, D).
    Returns:
        (T, N) float64 >= 0, in tag units.
    """
    tt = _need(tracks, "tags", "tracks", "ke").astype(np.float64)
    dt = _need(dets, "tags", "detections", "ke").astype(np.float64)
    if tt.shape[2] != dt.shape[2]:
        raise ValueError(f"KE tag dimension differs: tracks have {tt.shape[2]}, detections {dt.shape[2]}")
    vt, vd = _present(tracks, keypoint_threshold), _present(dets, keypoint_threshold)
    diff = tt[:, None] - dt[None]
    err = np.sqrt((diff * diff).sum(axis=-1))
    cost, missing = _shared_joint_mean(err, vt, vd)
    if missing.any():
        cost = _centre_fallback(cost, missing, [(tt, vt, dt, vd)])
    return cost


def person_centre_sie(keypoints: np.ndarray, min_score: float = 0.2) -> np.ndarray:
    """Per-joint SIE for models without an SIE head: every joint holds its person's centre.

    The centre is ``posestream.models.geometry.person_centre`` (the mean of the keypoints
    with score > ``min_score``, of all keypoints when none passes), seed 000's person centre.

    Args:
        keypoints: (N, 17, 3) as (x, y, score) in pixels.
    Returns:
        (N, 17, 2) float32, the ``sie`` of ``FramePoses``.
    """
    centre = person_centre(keypoints, min_score)
    return np.repeat(centre[:, None, :], NUM_KEYPOINTS, axis=1).astype(np.float32)


TERMS: dict[str, Callable[[Any, Any, float], np.ndarray]] = {
    "he": lambda t, d, thr: psi_he(t, d),
    "tie": lambda t, d, thr: psi_tie(t, d, keypoint_threshold=thr),
    "oks": lambda t, d, thr: oks_cost(t, d, keypoint_threshold=thr),
    "iou": lambda t, d, thr: iou_cost(t, d),
    "sie": lambda t, d, thr: sie_cost(t, d, keypoint_threshold=thr),
    "ke": lambda t, d, thr: ke_cost(t, d, keypoint_threshold=thr),
}

# Detection fields each term reads (beyond keypoints, boxes, scores).
TERM_FIELDS: dict[str, tuple[str, ...]] = {
    "he": ("embeddings",),
    "tie": ("sie", "tie_fwd", "tie_bwd"),
    "oks": (),
    "iou": (),
    "sie": ("sie",),
    "ke": ("tags",),
}


def combined_cost(tracks: Any, dets: Any, config: TrackerConfig) -> np.ndarray:
    """The preset's weighted sum, e.g. ``lambda_he * Psi_HE + lambda_tie * Psi_TIE``, gated.

    A pair is impossible (``+inf``) when any of its terms exceeds that term's gate
    (``config.gate_*``). A NaN term (the track lacks that field) counts as exactly its
    gate: still possible, but the least attractive possible value.

    Returns:
        (T, N) float64; ``inf`` marks pairs that must not be matched.
    """
    n_t, n_d = len(tracks.keypoints), len(dets.keypoints)
    total = np.zeros((n_t, n_d))
    if n_t == 0 or n_d == 0:
        return total
    feasible = np.ones((n_t, n_d), dtype=bool)
    for term in config.terms:
        cost = TERMS[term](tracks, dets, config.keypoint_threshold)
        gate = config.gate(term)
        cost = np.where(np.isnan(cost), gate, cost)
        feasible &= cost <= gate
        total += config.weight(term) * cost
    return np.where(feasible, total, np.inf)


def check_detection_fields(dets: Any, config: TrackerConfig) -> None:
    """Raise ``ValueError`` when the detections lack a field the configured preset needs."""
    for term in config.terms:
        for name in TERM_FIELDS[term]:
            if getattr(dets, name, None) is None:
                raise ValueError(_missing_message("detections", name, term, config.preset))


def _need(obj: Any, name: str, side: str, term: str) -> np.ndarray:
    value = getattr(obj, name, None)
    if value is None:
        raise ValueError(_missing_message(side, name, term, None))
    return np.asarray(value)


def _missing_message(side: str, name: str, term: str, preset: str | None) -> str:
    users = sorted(p for p, terms in PRESET_TERMS.items() if term in terms)
    which = f"tracker preset {preset!r}" if preset else "the cost term " + repr(term)
    return (
        f"{which} needs {side}.{name}, which is None (presets using it: {users}); build the "
        f"FramePoses with {name}=... from the model that produces it, or choose a preset "
        f"that needs only keypoints and boxes ('oks' or 'iou')"
    )


def _present(poses: Any, threshold: float) -> np.ndarray:
    """(K, 17) float32 weights: 1 where the keypoint score is > threshold, else 0."""
    return (np.asarray(poses.keypoints)[:, :, 2] > threshold).astype(np.float32)


def _pair_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, 17, 2) and (N, 17, 2) points -> (T, N, 17) float32 joint-wise distances.

    float32 and written out per coordinate: several times cheaper than float64 or
    np.linalg.norm / np.hypot on these short joint axes, and exact to well below a pixel.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    dx = a[:, None, :, 0] - b[None, :, :, 0]
    dy = a[:, None, :, 1] - b[None, :, :, 1]
    dx *= dx
    dy *= dy
    dx += dy
    return np.sqrt(dx, out=dx)


def _pair_scale(boxes_t: Any, boxes_d: Any) -> np.ndarray:
    s = (np.sqrt(box_area(boxes_t))[:, None] + np.sqrt(box_area(boxes_d))[None, :]) * 0.5
    return np.maximum(s, MIN_SCALE_PX)


def _shared_joint_mean(
    values: np.ndarray, present_t: np.ndarray, present_d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of (T, N, 17) values over the joints present in both poses.

    ``present_t`` (T, 17) and ``present_d`` (N, 17) are 0/1 weights. Returns the (T, N)
    means (0 where no joint is shared; NaN where a shared value is NaN) and the (T, N)
    mask of pairs that share no joint.
    """
    count = (present_t @ present_d.T).astype(np.float64)
    weighted = values * present_t[:, None, :]
    weighted *= present_d[None, :, :]
    total = weighted.sum(axis=-1, dtype=np.float64)
    return total / np.maximum(count, 1.0), count == 0


def _joint_mean(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(K, 17, C) -> (K, C): mean over the present joints (all joints when none is)."""
    w = np.where(present.any(axis=1, keepdims=True), present, 1.0)
    return (values * w[:, :, None]).sum(axis=1) / w.sum(axis=1)[:, None]


def _centre_fallback(
    cost: np.ndarray,
    missing: np.ndarray,
    pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Fill the pairs without shared joints: compare each side's joint-averaged values.

    The result is summed over ``pairs``, like the joint-wise errors it stands in for.
    """
    fallback = np.zeros(cost.shape)
    for track_values, present_t, det_values, present_d in pairs:
        a = _joint_mean(track_values, present_t)
        b = _joint_mean(det_values, present_d)
        diff = a[:, None] - b[None]
        fallback += np.sqrt((diff * diff).sum(axis=-1))
    return np.where(missing, fallback, cost)
