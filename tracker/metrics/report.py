"""``format_report``: ``evaluate``'s result as a terminal table."""

from __future__ import annotations

from typing import Any

from posestream.tracker.metrics.posetrack import PART_GROUPS

_PART_LABELS = {"head": "Head", "shoulders": "Shou", "elbows": "Elb", "wrists": "Wri", "hips": "Hip",
                "knees": "Knee", "ankles": "Ankl"}  # fmt: skip


def _pct(value: float | None, width: int = 6) -> str:
    return f"{'-':>{width}}" if value is None else f"{100.0 * value:>{width}.1f}"


def format_report(result: dict[str, Any]) -> str:
    """A terminal table of ``evaluate``'s result (percentages, '-' where undefined)."""
    c, cfg, pt = result["counts"], result["config"], result["posetrack"]
    lines = [
        f"frames: {c['gt_frames']} ground truth, {c['pred_frames']} predicted",
        f"people: {c['gt_people']} ground truth ({c['gt_people_unlabelled']} without labelled keypoints, ignored); "
        f"{c['pred_people']} predicted ({c['pred_people_untracked']} untracked, {c['pred_people_ignored']} on "
        f"unlabelled people) after dropping {c['pred_people_below_min_score']} below min score and "
        f"{c['pred_people_empty']} without keypoints",
        "",
        f"Pose estimation - COCO keypoint OKS (pycocotools; OKS area = box area x {cfg['area_scale']:g}, "
        f"maxDets {cfg['max_detections']})",
        "".join(f"{k:>6}" for k in ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75")),
        "".join(_pct(result[k]) for k in ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75")),
        "",
        f"Tracking - CLEAR MOT / identity (py-motmetrics, match when OKS >= {cfg['mot_oks_threshold']:g})",
        "".join(f"{k:>6}" for k in ("MOTA", "MOTP", "IDF1", "Prec", "Rec"))
        + "".join(f"{k:>7}" for k in ("IDsw", "FP", "FN", "GT", "MT", "PT", "ML")),
        "".join(_pct(result[k]) for k in ("MOTA", "MOTP", "IDF1", "precision", "recall"))
        + "".join(
            f"{result[k]:>7d}"
            for k in (
                "num_switches",
                "num_false_positives",
                "num_misses",
                "num_unique_objects",
                "mostly_tracked",
                "partially_tracked",
                "mostly_lost",
            )
        ),  # fmt: skip
        "",
        f"PoseTrack per-joint tracking (PCKh@{pt['pckh_threshold']:g} with a head-size proxy, "
        f"joint score > {cfg['pred_joint_min_score']:g}); ID switches over all joints: {pt['num_switches']}",
        f"{'':6}" + "".join(f"{_PART_LABELS[p]:>7}" for p in PART_GROUPS) + f"{'Total':>7}",
    ]
    for key, label in (("MOTA", "MOTA"), ("MOTP", "MOTP"), ("precision", "Prec"), ("recall", "Rec")):
        row = "".join(_pct(pt["per_part"][p][key], 7) for p in PART_GROUPS)
        lines.append(f"{label:<6}{row}{_pct(pt[key], 7)}")
    return "\n".join(lines)
