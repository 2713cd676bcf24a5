"""``EvalConfig``: the thresholds of ``posestream.tracker.metrics.evaluate``."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class EvalConfig:
    """Thresholds of ``evaluate``; the defaults follow COCO and PoseTrack where they say."""

    pred_min_score: float = 0.0
    """Predicted people with ``score`` below this are dropped before every metric. Raising
    it removes low-confidence people: fewer false positives in MOTA, but AP/AR can only
    lose recall (AP already ranks by score)."""

    pred_joint_min_score: float = 0.3
    """A predicted joint takes part in the PoseTrack per-joint MOTA when its score is
    ``>`` this. Raising it drops uncertain joints: fewer false positives, more misses.
    Ground truth used as a prediction (scores 0/1/2) keeps exactly its labelled joints
    for any value in [0, 1)."""

    mot_oks_threshold: float = 0.5
    """A ground-truth and a predicted person can be matched in the MOT metrics (and the
    unlabelled-person ignore rule) only when their OKS is ``>=`` this. Raising it demands
    tighter poses for a prediction to count as tracking the person: more misses and false
    positives, lower MOTA/IDF1, higher MOTP."""

    pckh_threshold: float = 0.5
    """A predicted joint may match a ground-truth joint of the same type in the PoseTrack
    metrics when their distance is ``<=`` this times the ground-truth person's head size
    (PCKh@0.5 in PoseTrack). Raising it is more lenient: more matches, higher MOTA."""

    max_detections: int = 20
    """COCOeval keeps at most this many highest-scoring predictions per frame
    (``params.maxDets``; 20 is COCO's keypoint setting, keep it to compare with COCO
    numbers). Raising it lets crowded frames count more predictions toward AP/AR."""

    area_scale: float = 1.0
    """OKS scale area = ground-truth box area times this (for AP, the MOT matching, and
    the APm/APl ranges). Raising it makes OKS more lenient for the same pixel error; about
    0.5 approximates COCO, whose areas are segment areas."""

    def __post_init__(self) -> None:
        for name in ("pred_min_score", "pred_joint_min_score"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"EvalConfig.{name} must be a finite number, got {getattr(self, name)!r}")
        if not 0.0 < self.mot_oks_threshold <= 1.0:
            raise ValueError(
                f"EvalConfig.mot_oks_threshold must be in (0, 1], got {self.mot_oks_threshold!r}"
            )
        if not (math.isfinite(self.pckh_threshold) and self.pckh_threshold > 0):
            raise ValueError(
                f"EvalConfig.pckh_threshold must be a positive number, got {self.pckh_threshold!r}"
            )
        if (
            isinstance(self.max_detections, bool)
            or not isinstance(self.max_detections, int)
            or self.max_detections < 1
        ):
            raise ValueError(
                f"EvalConfig.max_detections must be an integer >= 1, got {self.max_detections!r}"
            )
        if not (math.isfinite(self.area_scale) and self.area_scale > 0):
            raise ValueError(f"EvalConfig.area_scale must be a positive number, got {self.area_scale!r}")
