"""PoseTrack per-joint MOTA (the poseval protocol, with py-motmetrics; see ``posestream.tracker.metrics``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from posestream.models.geometry import head_size_or_box
from posestream.models.skeleton import KEYPOINT_NAMES, NUM_KEYPOINTS
from posestream.tracker.metrics.config import EvalConfig
from posestream.tracker.metrics.mot import _as_int, _motmetrics_summary
from posestream.tracker.metrics.pairing import _Frame

log = logging.getLogger(__name__)

# Body-part groups of the PoseTrack result table (poseval's Head/Shou/Elb/Wri/Hip/Knee/Ankl),
# with COCO's five face points standing in for PoseTrack's head top, neck and nose.
PART_GROUPS: dict[str, tuple[str, ...]] = {  # part -> its joints
    "head": ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
    "shoulders": ("left_shoulder", "right_shoulder"),
    "elbows": ("left_elbow", "right_elbow"),
    "wrists": ("left_wrist", "right_wrist"),
    "hips": ("left_hip", "right_hip"),
    "knees": ("left_knee", "right_knee"),
    "ankles": ("left_ankle", "right_ankle"),
}

_JOINT_METRICS = (
    "mota", "motp", "precision", "recall", "num_switches", "num_false_positives",
    "num_misses", "num_objects", "num_detections",
)  # fmt: skip


def _gt_head_sizes(f: _Frame) -> tuple[np.ndarray, int]:
    """(G,) head-size proxies in pixels and how many labelled people needed the box fallback."""
    hs, from_box = head_size_or_box(f.gt_keypoints, f.gt_boxes)
    return hs, int((from_box & f.gt_labelled).sum())


def _posetrack_metrics(frames: list[_Frame], config: EvalConfig) -> dict[str, Any]:
    import motmetrics

    accs = [motmetrics.MOTAccumulator(auto_id=False) for _ in range(NUM_KEYPOINTS)]
    n_fallback = 0
    for f in frames:
        hs, nf = _gt_head_sizes(f)
        n_fallback += nf
        p_keep = ~f.pred_ignored
        pk = f.pred_keypoints[p_keep]
        pids = f.pred_ids[p_keep]
        for j in range(NUM_KEYPOINTS):
            g = f.gt_labelled & (f.gt_keypoints[:, j, 2] > 0)
            # A head size of 0 (degenerate labels) would divide by zero: such a joint can never match.
            scale = hs[g]
            p = pk[:, j, 2] > config.pred_joint_min_score
            gxy = f.gt_keypoints[g][:, j, :2]  # (G_j, 2)
            pxy = pk[p][:, j, :2]  # (P_j, 2)
            d = np.linalg.norm(gxy[:, None, :] - pxy[None, :, :], axis=-1)  # (G_j, P_j) pixels
            with np.errstate(divide="ignore", invalid="ignore"):
                nd = d / scale[:, None]
            nd = np.where(np.isfinite(nd) & (nd <= config.pckh_threshold), nd, np.nan)
            accs[j].update(f.gt_ids[g], pids[p], nd, frameid=f.index)
    if n_fallback:
        log.info(
            "PoseTrack metrics: %d ground-truth people had no head-size proxy; used box height / 8",
            n_fallback,
        )

    per_joint: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(KEYPOINT_NAMES):
        s = _motmetrics_summary(accs[j], _JOINT_METRICS)
        defined = s["num_objects"] > 0
        per_joint[name] = {
            "MOTA": s["mota"] if defined else None,
            # poseval's MOTP: 1 - mean normalised distance of matched joints.
            "MOTP": None if s["motp"] is None else 1.0 - s["motp"],
            "precision": s["precision"],
            "recall": s["recall"] if defined else None,
            **{k: _as_int(s[k]) for k in _JOINT_METRICS if k.startswith("num_")},
        }

    def mean_of(key: str, names: Sequence[str]) -> float | None:
        vals = [per_joint[n][key] for n in names if per_joint[n][key] is not None]
        return float(np.mean(vals)) if vals else None

    per_part = {
        part: {key: mean_of(key, names) for key in ("MOTA", "MOTP", "precision", "recall")}
        for part, names in PART_GROUPS.items()
    }
    return {
        "MOTA": mean_of("MOTA", KEYPOINT_NAMES),
        "MOTP": mean_of("MOTP", KEYPOINT_NAMES),
        "precision": mean_of("precision", KEYPOINT_NAMES),
        "recall": mean_of("recall", KEYPOINT_NAMES),
        "num_switches": sum(v["num_switches"] for v in per_joint.values()),
        "pckh_threshold": config.pckh_threshold,
        "per_joint": per_joint,
        "per_part": per_part,
    }
