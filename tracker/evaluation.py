"""Accuracy of predicted poses and tracks against ground truth, with the standard libraries.

``evaluate(gt_frames, pred_frames, config)`` scores a predicted pose sequence
(``FramePoses`` per frame, e.g. read from JSON Lines) against ground truth and returns
one JSON-serialisable dict; ``format_report`` renders it for the terminal. Three families
of numbers are computed, each by the library the community uses for it, so that our
numbers mean what readers expect:

1. **COCO keypoint AP/AR** (pycocotools ``COCOeval``, ``iouType="keypoints"``). Each frame
   is one COCO image (``image_id = frame_index``), each person one annotation.

   - Ground-truth keypoint scores are COCO visibility codes (0 absent, 1 occluded,
     2 visible) and are passed through unchanged; only ``v > 0`` keypoints enter OKS.
   - OKS scale: there is no segmentation, so the annotation ``area`` is the
     ground-truth *box* area times ``EvalConfig.area_scale`` (default 1.0). COCO itself
     uses the segment area, which is smaller than the box (for a person, very roughly
     half), so with the default our OKS is more lenient than COCO's for the same pixel
     error, and our AP reads higher than a COCO AP of the same poses would. Set
     ``area_scale`` to about 0.5 to approximate COCO's stricter scale. The same area
     drives APm/APl (medium: 32^2 to 96^2 px^2, large: above 96^2).
   - A ground-truth person with no labelled keypoint (all visibility 0) is kept with
     ``num_keypoints = 0``, which COCOeval turns into an *ignored* annotation: it is not
     a positive, and a prediction that falls on it (COCO's box-based OKS for such people)
     is neither a true nor a false positive. This is COCO's own rule, and the tracking
     metrics below apply the same rule so that all three agree.
   - Predictions: keypoint scores go into the COCO ``v`` slot (COCOeval ignores
     prediction visibilities); the person ``score`` ranks detections. A predicted person
     none of whose keypoints has a score > 0 ("empty pose") is dropped from every metric:
     it says nothing about where a person is. Real models never output one; ground truth
     used as a prediction does, for its unlabelled people, whose COCO-style (0, 0)
     keypoints would otherwise be a false person at the image origin.
   - COCOeval keeps only the ``maxDets`` highest-scoring detections per image (20 for
     keypoints). We set ``params.maxDets = [EvalConfig.max_detections]`` explicitly and
     log a warning when a frame has more predictions than that. Because
     ``COCOeval.summarize`` hard-codes ``maxDets=20`` for keypoints (and prints), the
     summary numbers are read from ``COCOeval.eval`` exactly as ``summarize`` does
     (mean over entries > -1); a test pins them to ``summarize``'s ``stats``.
   - Undefined numbers (COCO's -1, e.g. APm when no person is medium-sized) are ``None``.

2. **CLEAR MOT and identity metrics** (py-motmetrics): one ``MOTAccumulator`` over the
   frames, ``metrics.create().compute``. Objects are the labelled ground-truth people
   (ids = their ``track_id``); hypotheses are the predicted people (ids = their
   ``track_id``). The distance is ``1 - OKS`` (same OKS as above: COCO sigmas from
   ``posestream.models.skeleton.OKS_SIGMAS``, ground-truth box area, ground-truth keypoints with
   visibility > 0); pairs with ``OKS < EvalConfig.mot_oks_threshold`` cannot match.

   - Untracked predictions (``track_id < 0``, normally -1) each get a fresh id that is
     never reused: they count as detections but carry no identity, so a person covered
     only by untracked predictions scores an ID switch in every frame after the first. That is
     what an untracked output is worth to a tracking metric; rejecting the file would
     make ``eval`` useless for detector-only runs whose AP one wants.
   - Ignore rule for unlabelled people: a prediction that cannot match any labelled
     person (OKS below the gate with all of them) but reaches the gate with an
     unlabelled one (COCO's box-based OKS) is removed from the tracking metrics, as
     COCOeval ignores it. This mirrors the distractor removal of MOTChallenge's
     evaluation, with COCOeval's preference for regular over ignored ground truth.
   - ``MOTP`` is reported as the mean OKS of matched pairs (``1 -`` motmetrics' mean
     distance), so higher is better, as in the PoseTrack tables.

3. **PoseTrack per-joint MOTA** (Andriluka et al. 2018; the ``poseval`` protocol, also
   accumulated with py-motmetrics). For each of the 17 joint types separately and each
   frame: objects are the ground-truth people whose joint is labelled (visibility > 0),
   hypotheses are the predicted people whose joint has score
   ``> EvalConfig.pred_joint_min_score``; they may match when
   ``||p - g|| <= EvalConfig.pckh_threshold * head_size`` (PCKh), with the normalised
   distance ``||p - g|| / head_size`` as cost. Ids are the people's track ids.

   - COCO has no head box, so ``head_size`` is ``posestream.models.skeleton.head_size`` of the
     ground-truth person (ear span, else 2x eye span, else shoulder span / 1.6); when
     none of those pairs is labelled we fall back to the box height / 8 (about one head
     height for a standing adult) and log how often that happened.
   - Per joint: MOTA = 1 - (misses + switches + false positives) / objects, precision
     and recall as motmetrics defines them (= poseval's), MOTP = 1 - mean normalised
     distance (poseval). "Total" MOTA / MOTP / precision / recall are the means over
     joint types with at least one labelled object; switches are summed. Unlike
     poseval, a frame with ground truth but no prediction counts every labelled joint
     as missed (poseval's placeholder update counts one miss and one false positive
     per joint type there).

Frames are paired by ``frame_index``. A ground-truth frame without a prediction counts
as all misses; a prediction frame absent from the ground truth is a ``ValueError``
(usually an offset or a wrong file, which silently ignoring would hide). Width/height
must agree for each frame.

Library compatibility (NumPy 2, pandas 3), in this one place: we do not patch either
library. motmetrics 1.4.0's ``distances.iou_matrix`` calls ``np.asfarray`` (removed in
NumPy 2.0) and ``MOTAccumulator.merge_event_dataframes`` calls ``DataFrame.append``
(removed in pandas 2.0): we build our own distance matrices (OKS, PCKh) and use one
accumulator per computation with ``MetricsHost.compute``, so neither function runs;
the rest of the path (``MOTAccumulator.update``, ``events``, ``compute`` of the metrics
we ask for, scipy's assignment solver) runs warning-free on NumPy 2.4 / pandas 3.
pycocotools 2.0.11 (``COCO``, ``loadRes``, ``COCOeval`` keypoints) has no NumPy 2 issue. ``tests/test_evaluation.py`` proves the numbers on a
hand-computed MOT case and on COCOeval's own summary.

This module is torch-free (tracker/ never imports torch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from posestream.models.poses import FramePoses
from posestream.models.skeleton import EDGES, KEYPOINT_NAMES, NUM_KEYPOINTS, OKS_SIGMAS, head_size

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

_PART_LABELS = {"head": "Head", "shoulders": "Shou", "elbows": "Elb", "wrists": "Wri", "hips": "Hip",
                "knees": "Knee", "ankles": "Ankl"}  # fmt: skip

# Head-size fallback when no ear, eye or shoulder pair is labelled: box height / 8,
# roughly one head height for a standing adult.
_HEAD_FROM_BOX_HEIGHT = 1.0 / 8.0

_MOT_METRICS = (
    "num_frames", "mota", "motp", "idf1", "idp", "idr", "precision", "recall",
    "num_switches", "num_false_positives", "num_misses", "num_objects", "num_predictions",
    "num_detections", "num_unique_objects", "mostly_tracked", "partially_tracked",
    "mostly_lost", "num_fragmentations",
)  # fmt: skip
_JOINT_METRICS = (
    "mota", "motp", "precision", "recall", "num_switches", "num_false_positives",
    "num_misses", "num_objects", "num_detections",
)  # fmt: skip


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


def keypoint_similarity(d2: np.ndarray, areas: np.ndarray, sigmas: np.ndarray = OKS_SIGMAS) -> np.ndarray:
    """COCO's per-keypoint OKS term ``exp(-d^2 / (2 area (2 sigma)^2))``, which ``oks_matrix`` averages.

    Args:
        d2: (..., 17) squared distances in pixels^2.
        areas: OKS scale areas in pixels^2, broadcastable against ``d2`` (e.g. (..., 1)).
        sigmas: (17,) per-keypoint falloff constants.
    Returns:
        (..., 17) float64 terms in [0, 1].
    """
    var = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    return np.exp(-np.asarray(d2, np.float64) / var / (np.asarray(areas, np.float64) + np.spacing(1)) / 2.0)


def oks_matrix(
    gt_keypoints: np.ndarray,
    gt_boxes: np.ndarray,
    gt_areas: np.ndarray,
    pred_keypoints: np.ndarray,
    sigmas: np.ndarray = OKS_SIGMAS,
) -> np.ndarray:
    """Object keypoint similarity between every ground-truth and predicted person.

    The same formula as ``COCOeval.computeOks``: ``mean_i exp(-d_i^2 / (2 area (2 sigma_i)^2))``
    over the ground-truth keypoints with visibility > 0. For a ground-truth person with no
    labelled keypoint, COCO's rule for ignored people is used instead: ``d_i`` is how far
    predicted keypoint i lies outside the ground-truth box grown by its width/height on
    every side, averaged over all keypoints.

    Args:
        gt_keypoints: (G, 17, 3) as (x, y, visibility) in original-frame pixels.
        gt_boxes: (G, 4) as (x1, y1, x2, y2) in pixels (used only for unlabelled people).
        gt_areas: (G,) OKS scale areas in pixels^2.
        pred_keypoints: (P, 17, 3) as (x, y, score) in pixels; scores are not used.
        sigmas: (17,) per-keypoint falloff constants.
    Returns:
        (G, P) float64 OKS in [0, 1].
    """
    gt = np.asarray(gt_keypoints, np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    pr = np.asarray(pred_keypoints, np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    areas = np.asarray(gt_areas, np.float64).reshape(-1)
    if gt.shape[0] == 0 or pr.shape[0] == 0:
        return np.zeros((gt.shape[0], pr.shape[0]))
    vis = gt[:, :, 2] > 0  # (G, 17)
    labelled = vis.any(axis=1)  # (G,)

    d = pr[None, :, :, :2] - gt[:, None, :, :2]  # (G, P, 17, 2)
    # COCO's distance to the 3x-grown box for people without labelled keypoints.
    w = (boxes[:, 2] - boxes[:, 0])[:, None, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None, None]
    x0, x1 = boxes[:, 0, None, None] - w, boxes[:, 0, None, None] + 2 * w
    y0, y1 = boxes[:, 1, None, None] - h, boxes[:, 1, None, None] + 2 * h
    px, py = pr[None, :, :, 0], pr[None, :, :, 1]
    out_x = np.maximum(0.0, x0 - px) + np.maximum(0.0, px - x1)
    out_y = np.maximum(0.0, y0 - py) + np.maximum(0.0, py - y1)
    d2 = np.where(labelled[:, None, None], d[..., 0] ** 2 + d[..., 1] ** 2, out_x**2 + out_y**2)

    weight = np.where(labelled[:, None], vis, True)[:, None, :]  # (G, 1, 17)
    return (keypoint_similarity(d2, areas[:, None, None], sigmas) * weight).sum(axis=-1) / weight.sum(axis=-1)


# ----------------------------------------------------------------------------- preparation


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
        labelled = (gt.keypoints[:, :, 2] > 0).any(axis=1)
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

        oks = oks_matrix(gt.keypoints, gt.boxes, areas, pred.keypoints)
        gate = oks >= config.mot_oks_threshold
        # COCOeval's order: a prediction belongs to a labelled person when it can; only
        # otherwise does an unlabelled (ignored) person absorb it.
        ignored = ~gate[labelled].any(axis=0) & gate[~labelled].any(axis=0)

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


# ----------------------------------------------------------------------------- COCO AP


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
    gt_anns, dt_anns = [], []
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


# ----------------------------------------------------------------------------- MOT


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


def _gt_head_sizes(f: _Frame) -> tuple[np.ndarray, int]:
    """(G,) head-size proxies in pixels and how many people needed the box fallback."""
    hs = head_size(f.gt_keypoints, min_score=0.0)
    fallback = ~np.isfinite(hs) & f.gt_labelled
    box_h = f.gt_boxes[:, 3] - f.gt_boxes[:, 1]
    hs = np.where(np.isfinite(hs), hs, box_h * _HEAD_FROM_BOX_HEIGHT)
    return hs, int(fallback.sum())


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


# ----------------------------------------------------------------------------- public API


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
