"""``evaluate``: COCO, MOT and PoseTrack numbers of a predicted pose sequence in one dict
(the protocol is described in ``posestream.tracker.metrics``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from posestream.models.poses import FramePoses
from posestream.tracker.metrics.coco import _coco_metrics
from posestream.tracker.metrics.config import EvalConfig
from posestream.tracker.metrics.mot import _mot_metrics
from posestream.tracker.metrics.pairing import _pair_frames, _prepare
from posestream.tracker.metrics.posetrack import _posetrack_metrics


def evaluate(
    gt_frames: Sequence[FramePoses], pred_frames: Sequence[FramePoses], config: EvalConfig | None = None
) -> dict[str, Any]:
    """Score predicted poses and tracks against ground truth.

    Args:
        gt_frames: ground-truth frames; keypoints (N, 17, 3) as (x, y, visibility 0/1/2)
            in original-frame pixels, boxes (N, 4) (x1, y1, x2, y2), track ids >= 0.
        pred_frames: predicted frames of the same video; keypoints (N, 17, 3) as
            (x, y, score), person scores (N,), track ids (N,) (-1 = untracked).
        config: thresholds; ``EvalConfig()`` when None.
    Returns:
        A JSON-serialisable dict: COCO ``AP``, ``AP50``, ``AP75``, ``APm``, ``APl``,
        ``AR`` (+ ``AR50``, ``AR75``, ``ARm``, ``ARl``); MOT ``MOTA``, ``MOTP`` (mean OKS
        of matches), ``IDF1``, ``IDP``, ``IDR``, ``precision``, ``recall``,
        ``num_switches``, ``num_false_positives``, ``num_misses``, ``num_objects``,
        ``num_frames``, ``mostly_tracked``, ... ; ``posetrack``: ``MOTA``, ``MOTP``,
        ``precision``, ``recall`` (means over joint types), ``num_switches`` (sum),
        ``per_joint`` {joint name: {MOTA, MOTP, precision, recall, num_*}} and
        ``per_part`` (poseval's Head/Shou/.../Ankl means); ``counts``: frames and people
        seen, unlabelled, dropped (below ``pred_min_score``, without keypoints),
        untracked, ignored; ``config``: the thresholds used. Rates are fractions
        (1.0 = 100 %); undefined values (e.g. APm without medium-sized people, precision
        without predictions) are None.
    Raises:
        ValueError: prediction frames missing from the ground truth, frame sizes that
            differ, ground truth that is not visibility-coded or lacks unique track ids,
            or a predicted track id used twice in one frame. The message says which frame.
    """
    config = config or EvalConfig()
    pairs = _pair_frames(gt_frames, pred_frames)
    if not pairs:
        raise ValueError("the ground truth has no frames")
    frames, counts = _prepare(pairs, config)
    width_height = {gt.frame_index: (gt.width, gt.height) for gt, _ in pairs}
    result: dict[str, Any] = {}
    result.update(_coco_metrics(frames, width_height, config))
    result.update(_mot_metrics(frames, config))
    result["posetrack"] = _posetrack_metrics(frames, config)
    result["counts"] = {"gt_frames": len(pairs), "pred_frames": len(pred_frames), **counts}
    result["config"] = dataclasses.asdict(config)
    return result
