"""COCO keypoint AP/AR with pycocotools' ``COCOeval`` (see ``posestream.tracker.metrics``)."""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

import numpy as np

from posestream.models.skeleton import EDGES, KEYPOINT_NAMES, OKS_SIGMAS
from posestream.tracker.metrics.config import EvalConfig
from posestream.tracker.metrics.pairing import _Frame

log = logging.getLogger(__name__)


def _run_cocoeval(frames: list[_Frame], width_height: dict[int, tuple[int, int]], config: EvalConfig) -> Any:
    """COCOeval (keypoints) evaluated and accumulated on the frames; None without labelled people."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    category = {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(KEYPOINT_NAMES),
        "skeleton": [[a + 1, b + 1] for a, b in EDGES],
    }
    images = [
        {"id": f.index, "width": width_height[f.index][0], "height": width_height[f.index][1]} for f in frames
    ]
    gt_anns: list[dict[str, Any]] = []
    dt_anns: list[dict[str, Any]] = []
    for f in frames:
        for g in range(len(f.gt_ids)):
            x1, y1, x2, y2 = (float(v) for v in f.gt_boxes[g])
            gt_anns.append(
                {
                    # COCOeval treats id 0 as "unmatched", so ids start at 1.
                    "id": len(gt_anns) + 1,
                    "image_id": f.index,
                    "category_id": 1,
                    "keypoints": f.gt_keypoints[g].ravel().tolist(),
                    "num_keypoints": int((f.gt_keypoints[g, :, 2] > 0).sum()),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(f.gt_areas[g]),
                    "iscrowd": 0,
                }
            )
        for p in range(len(f.pred_ids)):
            dt_anns.append(
                {
                    "image_id": f.index,
                    "category_id": 1,
                    "keypoints": f.pred_keypoints[p].ravel().tolist(),
                    "score": float(f.pred_scores[p]),
                }
            )
    if not any(a["num_keypoints"] > 0 for a in gt_anns):
        log.warning("no ground-truth person has a labelled keypoint; AP/AR are undefined")
        return None

    chatter = io.StringIO()  # pycocotools prints progress; the CLI prints its own report.
    with contextlib.redirect_stdout(chatter):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": [category]}
        coco_gt.createIndex()
        if dt_anns:
            coco_dt = coco_gt.loadRes(dt_anns)
        else:  # loadRes cannot take an empty list.
            coco_dt = COCO()
            coco_dt.dataset = {"images": images, "annotations": [], "categories": [category]}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        ev.params.imgIds = [f.index for f in frames]
        ev.params.catIds = [1]
        ev.params.kpt_oks_sigmas = np.asarray(OKS_SIGMAS, np.float64).copy()
        ev.params.maxDets = [config.max_detections]
        ev.evaluate()
        ev.accumulate()
    log.debug("pycocotools: %s", chatter.getvalue().strip())
    return ev


_COCO_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def _coco_metrics(
    frames: list[_Frame], width_height: dict[int, tuple[int, int]], config: EvalConfig
) -> dict[str, float | None]:
    ev = _run_cocoeval(frames, width_height, config)
    if ev is None:
        return dict.fromkeys(_COCO_KEYS)
    return {
        "AP": _coco_summary(ev, ap=True),
        "AP50": _coco_summary(ev, ap=True, iou=0.5),
        "AP75": _coco_summary(ev, ap=True, iou=0.75),
        "APm": _coco_summary(ev, ap=True, area="medium"),
        "APl": _coco_summary(ev, ap=True, area="large"),
        "AR": _coco_summary(ev, ap=False),
        "AR50": _coco_summary(ev, ap=False, iou=0.5),
        "AR75": _coco_summary(ev, ap=False, iou=0.75),
        "ARm": _coco_summary(ev, ap=False, area="medium"),
        "ARl": _coco_summary(ev, ap=False, area="large"),
    }


def _coco_summary(ev: Any, ap: bool, iou: float | None = None, area: str = "all") -> float | None:
    """One of COCOeval.summarize's numbers, read the way summarize reads it, at our maxDets.

    ``eval["precision"]`` is [T, R, K, A, M] and ``eval["recall"]`` is [T, K, A, M]
    (IoU thresholds, recall thresholds, categories, area ranges, maxDets); -1 marks
    undefined entries, which are left out of the mean.
    """
    p = ev.params
    a = p.areaRngLbl.index(area)
    s = ev.eval["precision"][..., a, -1] if ap else ev.eval["recall"][..., a, -1]
    if iou is not None:
        s = s[np.flatnonzero(np.isclose(p.iouThrs, iou))]
    valid = s[s > -1]
    # COCOeval divides by (tp + fp + eps), so a perfect score comes out as 1 - 2e-16;
    # 12 decimals is far below any meaningful difference and prints a perfect AP as 1.0.
    return round(float(valid.mean()), 12) if valid.size else None
