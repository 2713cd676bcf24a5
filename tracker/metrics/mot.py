"""CLEAR MOT and identity metrics with py-motmetrics, matched by OKS (see ``posestream.tracker.metrics``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from posestream.tracker.metrics.config import EvalConfig
from posestream.tracker.metrics.pairing import _Frame

_MOT_METRICS = (
    "num_frames", "mota", "motp", "idf1", "idp", "idr", "precision", "recall",
    "num_switches", "num_false_positives", "num_misses", "num_objects", "num_predictions",
    "num_detections", "num_unique_objects", "mostly_tracked", "partially_tracked",
    "mostly_lost", "num_fragmentations",
)  # fmt: skip


def _plain(value: Any) -> float | int | None:
    """A motmetrics number as a JSON-safe Python value (None when undefined)."""
    v = float(value)
    if not math.isfinite(v):
        return None
    return int(v) if v.is_integer() and not isinstance(value, (float, np.floating)) else v


def _motmetrics_summary(acc: Any, metrics: Sequence[str]) -> dict[str, Any]:
    """Run ``motmetrics.metrics.create().compute`` on one accumulator; plain values out."""
    import motmetrics

    summary = motmetrics.metrics.create().compute(
        acc, metrics=list(metrics), return_dataframe=False, name="all"
    )
    return {name: _plain(summary[name]) for name in metrics}


def _mot_metrics(frames: list[_Frame], config: EvalConfig) -> dict[str, Any]:
    import motmetrics

    acc = motmetrics.MOTAccumulator(auto_id=False)
    for f in frames:
        g, p = f.gt_labelled, ~f.pred_ignored
        oks = f.oks[np.ix_(g, p)]
        dist = np.where(oks >= config.mot_oks_threshold, 1.0 - oks, np.nan)
        acc.update(f.gt_ids[g], f.pred_ids[p], dist, frameid=f.index)
    s = _motmetrics_summary(acc, _MOT_METRICS)
    return {
        "MOTA": s["mota"],
        "MOTP": None if s["motp"] is None else 1.0 - s["motp"],
        "IDF1": s["idf1"],
        "IDP": s["idp"],
        "IDR": s["idr"],
        "precision": s["precision"],
        "recall": s["recall"],
        **{k: _as_int(s[k]) for k in _MOT_METRICS if k.startswith("num_") or k.endswith("_tracked")},
        "mostly_lost": _as_int(s["mostly_lost"]),
    }


def _as_int(value: float | int | None) -> int:
    return 0 if value is None else int(value)
