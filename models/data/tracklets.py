"""Unambiguous tracklets on real, unlabelled video: identities without labels (issue 16 item 5).

A detection at frame t continues the tracklet of a detection at t-1 only when the link
cannot be doubted: both are confident people, their boxes overlap strongly (IoU >=
``link_iou``), and neither has any other candidate (no other confident person of the other
frame overlaps it by more than ``ambiguous_iou``). Anything else ends the tracklet, and short
tracklets are dropped. What remains is a sparse but near-certain identity labelling: the same
tracklet in two frames is one person; two tracklets present in one frame are two people
(a person's tracklet may break in two, so tracklets of *different* frames prove nothing).

TemporalNet's fine-tuning on real clips takes its HE positives and negatives and TIE targets
from them, and ``benchmarks/tracking_ablation.py --real`` scores trackers against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from posestream.models.geometry import box_iou
from posestream.models.poses import FramePoses


@dataclass(frozen=True)
class TrackletConfig:
    """When two detections of consecutive frames are linked without doubt.

    Attributes:
        min_score: person score a detection needs to take part; raising it keeps fewer,
            surer people.
        link_iou: box IoU a link needs; raising it breaks tracklets at fast motion.
        ambiguous_iou: any other confident person overlapping either end by more than this
            makes the link ambiguous (no link); raising it accepts links near other people.
        min_length: frames a tracklet needs to be kept; raising it keeps fewer, longer ones.
    """

    min_score: float = 0.25
    link_iou: float = 0.5
    ambiguous_iou: float = 0.1
    min_length: int = 8

    def __post_init__(self) -> None:
        if not 0.0 <= self.ambiguous_iou < self.link_iou <= 1.0:
            raise ValueError("need 0 <= ambiguous_iou < link_iou <= 1")
        if self.min_length < 2:
            raise ValueError(f"min_length must be >= 2, got {self.min_length}")


def unambiguous_tracklets(
    frames: Sequence[FramePoses], config: TrackletConfig | None = None
) -> list[np.ndarray]:
    """Tracklet labels of every detection of consecutive ``frames`` (one clip, in order).

    Returns:
        one (N_t,) int64 array per frame: the tracklet (0, 1, ... in order of birth, after
        dropping short ones) of each detection, -1 for detections in no tracklet.
    """
    cfg = config if config is not None else TrackletConfig()
    labels: list[np.ndarray] = []
    next_id = 0
    prev_boxes = np.zeros((0, 4), np.float32)
    prev_ids = np.zeros(0, np.int64)
    for poses in frames:
        ok = np.asarray(poses.scores) >= cfg.min_score
        boxes = np.asarray(poses.boxes, np.float32)[ok]
        ids = np.full(len(boxes), -1, np.int64)
        if len(prev_boxes) and len(boxes):
            iou = box_iou(prev_boxes, boxes)
            cand = iou > cfg.ambiguous_iou
            for j in range(len(boxes)):
                rows = np.flatnonzero(cand[:, j])
                if len(rows) == 1 and cand[rows[0]].sum() == 1 and iou[rows[0], j] >= cfg.link_iou:
                    ids[j] = prev_ids[rows[0]]
        for j in np.flatnonzero(ids < 0):
            ids[j] = next_id
            next_id += 1
        full = np.full(len(poses.scores), -1, np.int64)
        full[ok] = ids
        labels.append(full)
        prev_boxes, prev_ids = boxes, ids
    counts = (
        np.bincount(np.concatenate(labels)[np.concatenate(labels) >= 0], minlength=next_id) if next_id else []
    )
    keep = np.flatnonzero(np.asarray(counts) >= cfg.min_length)
    remap = np.full(next_id + 1, -1, np.int64)  # index -1 (no tracklet) maps to -1 too
    remap[keep] = np.arange(len(keep))
    return [remap[lab] for lab in labels]


def tracklet_scores(
    tracklets: Sequence[np.ndarray], track_ids: Sequence[np.ndarray]
) -> dict[str, int | float]:
    """How a tracker's ids agree with the tracklets of the same detections.

    Args:
        tracklets: per frame (N_t,) tracklet labels (``unambiguous_tracklets``).
        track_ids: per frame (N_t,) the tracker's id of the same detections (-1 untracked).
    Returns:
        ``links``: consecutive-frame pairs inside tracklets; ``id_switches``: links whose two
        detections carry different tracker ids (both tracked); ``lost``: links whose later
        detection is untracked while the earlier one was tracked; ``tracklets``; ``fragmented``:
        tracklets whose tracked detections carry more than one id; ``ids_per_tracklet``: mean
        number of distinct ids over a tracklet's tracked detections; ``shared``: pairs of
        tracklets that are in one frame together (so two people) and yet carry a common id,
        the wrong merges and jumps that splits alone do not show (a tracker whose gates let
        an id wander from person to person can keep every tracklet whole).
    """
    last: dict[int, int] = {}
    ids_of: dict[int, set[int]] = {}
    span: dict[int, tuple[int, int]] = {}  # tracklet -> (first, last) frame; tracklets are contiguous
    links = switches = lost = 0
    for f, (lab, tid) in enumerate(zip(tracklets, track_ids, strict=True)):
        for k, t in zip(lab.tolist(), np.asarray(tid).tolist(), strict=True):
            if k < 0:
                continue
            span[k] = (span.get(k, (f, f))[0], f)
            if k in last:
                links += 1
                if last[k] >= 0 and t >= 0 and last[k] != t:
                    switches += 1
                elif last[k] >= 0 and t < 0:
                    lost += 1
            last[k] = t
            if t >= 0:
                ids_of.setdefault(k, set()).add(t)
    n = len(last)
    sizes = [len(ids_of.get(k, ())) for k in last]
    keys = sorted(ids_of)
    shared = sum(
        1
        for i, a in enumerate(keys)
        for b in keys[i + 1 :]
        if span[a][0] <= span[b][1] and span[b][0] <= span[a][1] and ids_of[a] & ids_of[b]
    )
    return {
        "links": links, "id_switches": switches, "lost": lost, "tracklets": n,
        "fragmented": sum(1 for s in sizes if s > 1), "shared": shared,
        "ids_per_tracklet": float(np.mean(sizes)) if sizes else 0.0,
    }  # fmt: skip
