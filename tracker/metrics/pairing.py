"""Frames paired by index, validated and filtered, with the OKS of every ground-truth/predicted pair.

The result (``_Frame`` per frame) is what the COCO, MOT and PoseTrack modules score; the
rules (unlabelled people, empty poses, fresh ids for untracked predictions) are described
in ``posestream.tracker.metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from posestream.models.geometry import oks_matrix
from posestream.models.poses import FramePoses
from posestream.tracker.metrics.config import EvalConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Frame:
    """One evaluated frame after validation, filtering and id assignment.

    ``gt_*`` hold every ground-truth person (labelled or not), keypoints as (x, y,
    visibility) in pixels; ``pred_*`` the predicted people that passed ``pred_min_score``
    and have at least one keypoint scored > 0, with fresh ids for untracked ones;
    ``oks`` is ``oks_matrix`` of the two; ``pred_ignored`` marks predictions the tracking
    metrics drop (unlabelled-person rule).
    """

    index: int
    gt_keypoints: np.ndarray  # (G, 17, 3)
    gt_boxes: np.ndarray  # (G, 4)
    gt_areas: np.ndarray  # (G,)
    gt_ids: np.ndarray  # (G,)
    gt_labelled: np.ndarray  # (G,) bool
    pred_keypoints: np.ndarray  # (P, 17, 3)
    pred_scores: np.ndarray  # (P,)
    pred_ids: np.ndarray  # (P,)
    oks: np.ndarray  # (G, P)
    pred_ignored: np.ndarray  # (P,) bool


def _pair_frames(
    gt_frames: Sequence[FramePoses], pred_frames: Sequence[FramePoses]
) -> list[tuple[FramePoses, FramePoses | None]]:
    gt_by_index: dict[int, FramePoses] = {}
    for f in gt_frames:
        if f.frame_index in gt_by_index:
            raise ValueError(f"ground truth has frame_index {f.frame_index} twice")
        gt_by_index[f.frame_index] = f
    pred_by_index: dict[int, FramePoses] = {}
    for f in pred_frames:
        if f.frame_index in pred_by_index:
            raise ValueError(f"predictions have frame_index {f.frame_index} twice")
        pred_by_index[f.frame_index] = f
    extra = sorted(set(pred_by_index) - set(gt_by_index))
    if extra:
        shown = ", ".join(map(str, extra[:10])) + (f", ... ({len(extra)} in all)" if len(extra) > 10 else "")
        raise ValueError(
            f"predictions have frames that the ground truth lacks (frame_index {shown}); "
            "check that both files come from the same video, or drop those frames from the predictions"
        )
    pairs = []
    for i in sorted(gt_by_index):
        gt, pred = gt_by_index[i], pred_by_index.get(i)
        if pred is not None and (pred.width, pred.height) != (gt.width, gt.height):
            raise ValueError(
                f"frame {i}: prediction frame size {pred.width}x{pred.height} differs from the ground "
                f"truth's {gt.width}x{gt.height}; keypoints must be in original-frame pixels of the same video"
            )
        pairs.append((gt, pred))
    return pairs


def _validate_gt(frame: FramePoses) -> None:
    vis = frame.keypoints[:, :, 2]
    bad = ~np.isin(vis, (0.0, 1.0, 2.0))
    if bad.any():
        values = sorted({float(v) for v in vis[bad]})[:5]
        raise ValueError(
            f"ground-truth frame {frame.frame_index}: keypoint scores must be visibility codes 0/1/2, "
            f"found {values}; were --gt and --pred swapped?"
        )
    ids = frame.track_ids
    if (ids < 0).any():
        raise ValueError(
            f"ground-truth frame {frame.frame_index}: every person needs a track_id >= 0 "
            f"(found {sorted(set(ids[ids < 0].tolist()))}); tracking metrics need identities"
        )
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"ground-truth frame {frame.frame_index}: track_id {int(uniq[counts > 1][0])} appears twice"
        )


def _prepare(
    pairs: list[tuple[FramePoses, FramePoses | None]], config: EvalConfig
) -> tuple[list[_Frame], dict[str, int]]:
    # Fresh ids for untracked predictions start above every real id so they never collide.
    max_id = max((int(p.track_ids.max()) for _, p in pairs if p is not None and len(p)), default=-1)
    next_fresh = max(max_id, -1) + 1
    counts = dict.fromkeys(
        ("gt_people", "gt_people_unlabelled", "pred_people", "pred_people_below_min_score",
         "pred_people_empty", "pred_people_untracked", "pred_people_ignored",
         "frames_over_max_detections"),
        0,
    )  # fmt: skip
    frames = []
    for gt, pred in pairs:
        _validate_gt(gt)
        # numpy's stubs type ``any(axis=...)`` as ``np.bool | NDArray``; with an axis of a 2-D
        # array it is always an array (casts only, no conversion).
        labelled = cast(np.ndarray, (gt.keypoints[:, :, 2] > 0).any(axis=1))
        w = np.clip(gt.boxes[:, 2] - gt.boxes[:, 0], 0, None).astype(np.float64)
        h = np.clip(gt.boxes[:, 3] - gt.boxes[:, 1], 0, None).astype(np.float64)
        areas = w * h * config.area_scale
        if pred is None:
            pred = FramePoses.empty(gt.frame_index, gt.timestamp, gt.width, gt.height)
        keep = pred.scores >= config.pred_min_score
        counts["pred_people_below_min_score"] += int((~keep).sum())
        empty = ~(pred.keypoints[:, :, 2] > 0).any(axis=1)
        counts["pred_people_empty"] += int((empty & keep).sum())
        pred = pred.select(keep & ~empty)
        ids = pred.track_ids.copy()
        tracked = ids >= 0
        uniq, c = np.unique(ids[tracked], return_counts=True)
        if (c > 1).any():
            raise ValueError(
                f"prediction frame {pred.frame_index}: track_id {int(uniq[c > 1][0])} is given to two people; "
                "a tracker must not output one id twice in a frame"
            )
        n_untracked = int((~tracked).sum())
        ids[~tracked] = np.arange(next_fresh, next_fresh + n_untracked)
        next_fresh += n_untracked
        if len(pred) > config.max_detections:
            counts["frames_over_max_detections"] += 1

        oks = oks_matrix(gt.keypoints, pred.keypoints, areas, ref_boxes=gt.boxes)
        gate = oks >= config.mot_oks_threshold
        # COCOeval's order: a prediction belongs to a labelled person when it can; only
        # otherwise does an unlabelled (ignored) person absorb it.
        ignored = cast(np.ndarray, ~gate[labelled].any(axis=0) & gate[~labelled].any(axis=0))

        counts["gt_people"] += len(gt)
        counts["gt_people_unlabelled"] += int((~labelled).sum())
        counts["pred_people"] += len(pred)
        counts["pred_people_untracked"] += n_untracked
        counts["pred_people_ignored"] += int(ignored.sum())
        frames.append(
            _Frame(
                gt.frame_index, gt.keypoints.astype(np.float64), gt.boxes.astype(np.float64), areas,
                gt.track_ids, labelled, pred.keypoints.astype(np.float64), pred.scores.astype(np.float64),
                ids, oks, ignored,
            )
        )  # fmt: skip
    if counts["pred_people_untracked"]:
        # All untracked is a detection-only evaluation (AP is what it is for): no cause for alarm.
        level = logging.INFO if counts["pred_people_untracked"] == counts["pred_people"] else logging.WARNING
        log.log(
            level,
            "%d predicted people have no track id; each got a fresh id, so they count as ID switches",
            counts["pred_people_untracked"],
        )
    if counts["frames_over_max_detections"]:
        log.warning(
            "%d frames have more than max_detections=%d predictions; COCOeval keeps only the top-scoring ones",
            counts["frames_over_max_detections"],
            config.max_detections,
        )
    return frames, counts
