"""Pose results (the JSON Lines contract of ``posestream.models.poses``) in the formats other tools read.

``EXPORT_FORMATS`` is the one list of formats; ``posestream export`` and
``GET /v1/videos/{id}/poses?format=...`` both read it. Every format is written as a stream of
text chunks (``iter_export``) from a function that reads the frames afresh each time it is
called, so a long video is never held in memory: the JSON formats read the frames twice
(the images first, then the annotations).

Conventions shared by the formats:

- Coordinates are frame pixels, x right, y down, as in the JSON Lines; COCO-style boxes are
  ``[x, y, w, h]`` from the pose's ``[x1, y1, x2, y2]``.
- Image ids are ``frame_index + 1`` (COCO and PoseTrack tools treat id 0 as missing), one
  image per frame, including frames without people; MOT frames are ``frame_index + 1``
  too (the format counts from 1).
- Track ids are written as the service reports them (from 0). People without a track id
  (-1: tentative) are kept in ``coco`` and ``csv`` (track_id -1) and left out of
  ``posetrack`` and ``mot``, whose readers take every row for a track.
- A joint counts as visible when its score is above ``min_keypoint_score`` (default the
  tracker's ``keypoint_threshold``); COCO and PoseTrack write it ``[x, y, 2]``, the others
  ``[0, 0, 0]`` (the formats' "not labelled"). The raw per-joint scores are kept in
  ``keypoint_scores`` (COCO, mmpose's name) and ``scores`` (PoseTrack's name).

The formats:

- ``coco``: a COCO keypoints file (``images``, ``annotations``, ``categories``) that
  ``pycocotools.coco.COCO`` loads as a dataset and whose ``annotations`` list ``COCO.loadRes``
  takes as results (each has ``score``); extra fields: ``track_id``, ``keypoint_scores``,
  and per image ``frame_index`` and ``timestamp``. Joints in COCO order. ``area`` (the OKS
  scale COCOeval reads from ground truth) is the box's area: there is no segmentation.
- ``posetrack``: a PoseTrack 2018 file (``images`` with ``vid_id``, ``frame_id``,
  ``nframes``, ``is_labeled``; ``annotations`` with ``track_id``, ``keypoints``, ``scores``,
  ``bbox``; ``categories`` with PoseTrack's 17 joint names). PoseTrack's joints are COCO's
  with the eyes replaced by ``head_bottom`` and ``head_top``, which MoveNet does not
  predict: those two are written absent ``[0, 0, 0]`` with score 0 (not guessed from the
  eyes), every other joint in its PoseTrack slot. PoseTrack's head metrics therefore
  score 0 on these files; the body joints are exact.
- ``csv``: one row per person and frame: ``frame_index, timestamp, track_id, score, x1, y1,
  x2, y2`` and ``<joint>_x, <joint>_y, <joint>_score`` for the 17 COCO joints (raw values).
- ``mot``: MOTChallenge text, one line per tracked person and frame:
  ``frame, id, bb_left, bb_top, bb_width, bb_height, conf, -1, -1, -1``, with the box's
  corner in MOTChallenge's 1-based pixels (its ground truth's convention; readers such as
  motmetrics subtract 1 again) and ``conf`` the person score.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal, get_args

import numpy as np

from posestream.models.poses import FramePoses
from posestream.models.skeleton import EDGES, KEYPOINT_INDEX, KEYPOINT_NAMES
from posestream.tracker.config import TrackerConfig

__all__ = [
    "EXPORT_FORMATS", "POSETRACK_KEYPOINT_NAMES", "ExportFormat", "ExportFormatName", "export_to", "iter_export",
]  # fmt: skip

ExportFormatName = Literal["coco", "posetrack", "csv", "mot"]


@dataclass(frozen=True)
class ExportFormat:
    """One export format: how it is served and named."""

    name: str
    media_type: str
    suffix: str
    """Appended to the input's stem for the default output name (``poses.jsonl`` -> ``poses.coco.json``)."""
    description: str


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "coco", "application/json", ".coco.json", "COCO keypoints (images, annotations with track_id)"
        ),
        ExportFormat(
            "posetrack", "application/json", ".posetrack.json", "PoseTrack 2018 (images, annotations)"
        ),
        ExportFormat("csv", "text/csv", ".csv", "one row per person and frame"),
        ExportFormat("mot", "text/plain", ".mot.txt", "MOTChallenge boxes: frame,id,x,y,w,h,conf,-1,-1,-1"),
    )
}
assert tuple(EXPORT_FORMATS) == get_args(ExportFormatName)

# PoseTrack 2018's joint order: COCO's, with head_bottom and head_top in the eyes' slots.
POSETRACK_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "head_bottom", "head_top", *KEYPOINT_NAMES[3:],
)  # fmt: skip
# For each PoseTrack slot, the COCO joint written there (-1: not predicted, written absent).
_POSETRACK_FROM_COCO = np.array([KEYPOINT_INDEX.get(name, -1) for name in POSETRACK_KEYPOINT_NAMES])
_SKELETON_1_BASED = [[a + 1, b + 1] for a, b in EDGES]

Frames = Callable[[], Iterable[FramePoses]]


def iter_export(
    fmt: str, frames: Frames, *, video: str = "video", min_keypoint_score: float | None = None
) -> Iterator[str]:
    """The export of ``frames`` in format ``fmt`` as text chunks.

    Args:
        fmt: a key of ``EXPORT_FORMATS``.
        frames: returns a fresh iterator over the frames each call (the JSON formats call it twice).
        video: the video's name, used in the JSON formats' ``file_name`` and ``vid_id`` fields.
        min_keypoint_score: a joint is visible when its score is above this (default
            ``TrackerConfig().keypoint_threshold``).
    Raises:
        ValueError: an unknown format (before anything is read).
        posestream.models.poses.PoseFormatError: a malformed frame, from ``frames``.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    threshold = (
        TrackerConfig().keypoint_threshold if min_keypoint_score is None else float(min_keypoint_score)
    )
    if fmt == "coco":
        return _coco(frames, video, threshold)
    if fmt == "posetrack":
        return _posetrack(frames, video, threshold)
    if fmt == "csv":
        return _csv(frames)
    return _mot(frames)


def export_to(out: IO[str], fmt: str, frames: Frames, **options: Any) -> None:
    """Write ``iter_export(fmt, frames, **options)`` to the text file ``out``."""
    for chunk in iter_export(fmt, frames, **options):
        out.write(chunk)


def _r(v: float, decimals: int = 2) -> float:
    return round(float(v), decimals)


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [_r(x1), _r(y1), _r(x2 - x1), _r(y2 - y1)]


def _flat_keypoints(kp: np.ndarray, threshold: float) -> tuple[list[float], int]:
    """(51 numbers [x, y, v] with v = 2 for visible joints and [0, 0, 0] otherwise, visible count)."""
    out: list[float] = []
    n = 0
    for x, y, s in kp:
        if s > threshold:
            out += [_r(x), _r(y), 2]
            n += 1
        else:
            out += [0, 0, 0]
    return out, n


def _json_file(
    frames: Frames,
    image: Callable[[FramePoses, int], dict[str, Any]],
    annotations: Callable[[FramePoses, int], Iterator[dict[str, Any]]],
    categories: list[dict[str, Any]],
) -> Iterator[str]:
    """``{"images": [...], "annotations": [...], "categories": [...]}`` written in chunks:
    the images (small) from a first pass, then the annotations one by one from a second."""
    images = [image(f, n) for n, f in enumerate(frames())]
    nframes = len(images)
    for im in images:
        if "nframes" in im:
            im["nframes"] = nframes
    yield '{"images": ['
    yield ",\n".join(json.dumps(im, separators=(",", ":")) for im in images)
    yield '],\n"annotations": ['
    first = True
    ann_id = 1
    for f in frames():
        for ann in annotations(f, ann_id):
            yield ("" if first else ",\n") + json.dumps(ann, separators=(",", ":"))
            first = False
            ann_id += 1
    yield '],\n"categories": ' + json.dumps(categories) + "}\n"


def _coco(frames: Frames, video: str, threshold: float) -> Iterator[str]:
    def image(f: FramePoses, _: int) -> dict[str, Any]:
        return {
            "id": f.frame_index + 1, "file_name": f"{video}/{f.frame_index:06d}.jpg", "width": f.width,
            "height": f.height, "frame_index": f.frame_index, "timestamp": f.timestamp,
        }  # fmt: skip

    def annotations(f: FramePoses, first_id: int) -> Iterator[dict[str, Any]]:
        for i in range(len(f)):
            kp, n_vis = _flat_keypoints(f.keypoints[i], threshold)
            bbox = _xywh(f.boxes[i])
            yield {
                "id": first_id + i, "image_id": f.frame_index + 1, "category_id": 1, "track_id": int(f.track_ids[i]),
                "keypoints": kp, "num_keypoints": n_vis, "keypoint_scores": [_r(s, 4) for s in f.keypoints[i, :, 2]],
                "bbox": bbox, "area": _r(bbox[2] * bbox[3]), "iscrowd": 0, "score": _r(f.scores[i], 4),
            }  # fmt: skip

    categories = [{
        "id": 1, "name": "person", "supercategory": "person",
        "keypoints": list(KEYPOINT_NAMES), "skeleton": _SKELETON_1_BASED,
    }]  # fmt: skip
    return _json_file(frames, image, annotations, categories)


def _posetrack(frames: Frames, video: str, threshold: float) -> Iterator[str]:
    def image(f: FramePoses, _: int) -> dict[str, Any]:
        return {
            "id": f.frame_index + 1, "frame_id": f.frame_index + 1, "vid_id": video,
            "file_name": f"images/{video}/{f.frame_index:06d}.jpg", "width": f.width, "height": f.height,
            "nframes": 0, "is_labeled": True, "ignore_regions_x": [], "ignore_regions_y": [],
        }  # fmt: skip

    def annotations(f: FramePoses, first_id: int) -> Iterator[dict[str, Any]]:
        n = 0
        for i in np.flatnonzero(f.track_ids >= 0):
            coco = f.keypoints[i]
            kp = np.zeros((len(POSETRACK_KEYPOINT_NAMES), 3), np.float32)
            have = _POSETRACK_FROM_COCO >= 0
            kp[have] = coco[_POSETRACK_FROM_COCO[have]]
            flat, _ = _flat_keypoints(kp, threshold)
            yield {
                "id": first_id + n, "image_id": f.frame_index + 1, "category_id": 1,
                "track_id": int(f.track_ids[i]), "keypoints": flat, "scores": [_r(s, 4) for s in kp[:, 2]],
                "bbox": _xywh(f.boxes[i]), "score": _r(f.scores[i], 4),
            }  # fmt: skip
            n += 1

    categories = [{
        "id": 1, "name": "person", "supercategory": "person",
        "keypoints": list(POSETRACK_KEYPOINT_NAMES), "skeleton": _SKELETON_1_BASED,
    }]  # fmt: skip
    return _json_file(frames, image, annotations, categories)


CSV_COLUMNS: tuple[str, ...] = (
    "frame_index", "timestamp", "track_id", "score", "x1", "y1", "x2", "y2",
    *(f"{name}_{c}" for name in KEYPOINT_NAMES for c in ("x", "y", "score")),
)  # fmt: skip


def _csv(frames: Frames) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for f in frames():
        for i in range(len(f)):
            writer.writerow([
                f.frame_index, f.timestamp, int(f.track_ids[i]), _r(f.scores[i], 4),
                *(_r(v) for v in f.boxes[i]),
                *(v for x, y, s in f.keypoints[i] for v in (_r(x), _r(y), _r(s, 4))),
            ])  # fmt: skip
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


def _mot(frames: Frames) -> Iterator[str]:
    for f in frames():
        lines = []
        for i in np.flatnonzero(f.track_ids >= 0):
            x, y, w, h = _xywh(f.boxes[i] + np.array([1, 1, 1, 1], np.float32))  # MOT counts pixels from 1
            lines.append(
                f"{f.frame_index + 1},{int(f.track_ids[i])},{x},{y},{w},{h},{_r(f.scores[i], 4)},-1,-1,-1\n"
            )
        if lines:
            yield "".join(lines)
