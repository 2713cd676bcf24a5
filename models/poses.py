"""The pose data contract: one frame's people as numpy arrays, and its JSON Lines form.

Coordinates are (x, y) in original-frame pixels, x to the right, y down. A frame's
people are stored column-wise:

- ``keypoints`` (N, 17, 3) float32: x, y, score. In ground truth the score column
  holds the visibility code (0 absent / out of frame, 1 occluded, 2 visible).
- ``boxes`` (N, 4) float32: x1, y1, x2, y2.
- ``scores`` (N,) float32: person score.
- ``track_ids`` (N,) int64: track id, -1 when untracked.

The on-disk and wire format is JSON Lines, one object per frame::

    {"frame_index": 0, "timestamp": 0.0, "width": 768, "height": 576,
     "poses": [{"track_id": 3, "score": 0.87, "box": [x1, y1, x2, y2],
                "keypoints": [[x, y, s], ... 17 ...]}]}

This module is torch-free so the tracker and the gateway can use it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from posestream.models.skeleton import NUM_KEYPOINTS

UNTRACKED = -1


class PoseFormatError(ValueError):
    """A pose record (a JSON Lines line or a dict) does not follow the contract."""


@dataclass(frozen=True)
class FramePoses:
    """All people in one video frame.

    Attributes:
        frame_index: 0-based index of the frame in its video or stream.
        timestamp: seconds from the start of the video.
        width, height: frame size in pixels.
        keypoints: (N, 17, 3) float32, (x, y, score) in pixels.
        boxes: (N, 4) float32, (x1, y1, x2, y2) in pixels.
        scores: (N,) float32 person scores.
        track_ids: (N,) int64, ``UNTRACKED`` (-1) when no track is assigned.
        extra: JSON-serialisable frame-level fields beyond the contract (e.g.
            ``"dropped"`` on the WebSocket); written out and read back unchanged.
    """

    frame_index: int
    timestamp: float
    width: int
    height: int
    keypoints: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints, dtype=np.float32).reshape(-1, NUM_KEYPOINTS, 3)
        n = kp.shape[0]
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(n, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        ids = np.asarray(self.track_ids, dtype=np.int64).reshape(n)
        if self.width <= 0 or self.height <= 0:
            raise PoseFormatError(f"frame size must be positive, got {self.width}x{self.height}")
        if self.frame_index < 0:
            raise PoseFormatError(f"frame_index must be >= 0, got {self.frame_index}")
        object.__setattr__(self, "keypoints", kp)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "track_ids", ids)

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @classmethod
    def empty(cls, frame_index: int, timestamp: float, width: int, height: int) -> FramePoses:
        """A frame with nobody in it."""
        return cls(
            frame_index, timestamp, width, height,
            np.zeros((0, NUM_KEYPOINTS, 3), np.float32), np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32), np.zeros(0, np.int64),
        )  # fmt: skip

    def select(self, mask_or_index: np.ndarray) -> FramePoses:
        """A copy holding only the people picked by a boolean mask or an index array."""
        i = np.asarray(mask_or_index)
        return FramePoses(
            self.frame_index, self.timestamp, self.width, self.height,
            self.keypoints[i], self.boxes[i], self.scores[i], self.track_ids[i], dict(self.extra),
        )  # fmt: skip

    def with_track_ids(self, track_ids: np.ndarray) -> FramePoses:
        """A copy with the given (N,) track ids."""
        return FramePoses(
            self.frame_index, self.timestamp, self.width, self.height,
            self.keypoints, self.boxes, self.scores, track_ids, dict(self.extra),
        )  # fmt: skip

    def to_dict(self, decimals: int = 2) -> dict[str, Any]:
        """The JSON object of this frame (the JSON Lines contract), floats rounded."""
        poses = []
        for i in range(len(self)):
            poses.append(
                {
                    "track_id": int(self.track_ids[i]),
                    "score": round(float(self.scores[i]), 4),
                    "box": [round(float(v), decimals) for v in self.boxes[i]],
                    "keypoints": [
                        [round(float(x), decimals), round(float(y), decimals), round(float(s), 4)]
                        for x, y, s in self.keypoints[i]
                    ],
                }
            )
        out: dict[str, Any] = {
            "frame_index": int(self.frame_index),
            "timestamp": round(float(self.timestamp), 6),
            "width": int(self.width),
            "height": int(self.height),
            "poses": poses,
        }
        for key, value in self.extra.items():
            if key in out:
                raise PoseFormatError(f"extra field {key!r} would overwrite a contract field")
            out[key] = value
        return out

    @classmethod
    def from_dict(cls, obj: Any) -> FramePoses:
        """Parse and validate one frame object; raises ``PoseFormatError`` saying what is wrong."""
        if not isinstance(obj, dict):
            raise PoseFormatError(f"a frame must be a JSON object, got {type(obj).__name__}")
        for key in ("frame_index", "timestamp", "width", "height", "poses"):
            if key not in obj:
                raise PoseFormatError(f"missing field {key!r}")
        frame_index = _as_int(obj["frame_index"], "frame_index")
        width = _as_int(obj["width"], "width")
        height = _as_int(obj["height"], "height")
        timestamp = _as_float(obj["timestamp"], "timestamp")
        poses = obj["poses"]
        if not isinstance(poses, list):
            raise PoseFormatError("'poses' must be a list")
        n = len(poses)
        kp = np.zeros((n, NUM_KEYPOINTS, 3), np.float32)
        boxes = np.zeros((n, 4), np.float32)
        scores = np.zeros(n, np.float32)
        ids = np.full(n, UNTRACKED, np.int64)
        for i, pose in enumerate(poses):
            where = f"poses[{i}]"
            if not isinstance(pose, dict):
                raise PoseFormatError(f"{where} must be an object")
            if "keypoints" not in pose:
                raise PoseFormatError(f"{where} is missing 'keypoints'")
            try:
                k = np.asarray(pose["keypoints"], dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise PoseFormatError(f"{where}.keypoints is not a numeric array: {exc}") from None
            if k.shape != (NUM_KEYPOINTS, 3):
                raise PoseFormatError(f"{where}.keypoints must have shape (17, 3), got {k.shape}")
            if not np.all(np.isfinite(k)):
                raise PoseFormatError(f"{where}.keypoints contains NaN or infinity")
            kp[i] = k
            if "box" in pose and pose["box"] is not None:
                try:
                    b = np.asarray(pose["box"], dtype=np.float64)
                except (TypeError, ValueError) as exc:
                    raise PoseFormatError(f"{where}.box is not a numeric array: {exc}") from None
                if b.shape != (4,) or not np.all(np.isfinite(b)):
                    raise PoseFormatError(f"{where}.box must be 4 finite numbers [x1, y1, x2, y2]")
                boxes[i] = b
            else:
                boxes[i] = boxes_from_keypoints(kp[i : i + 1])[0]
            scores[i] = _as_float(pose.get("score", 1.0), f"{where}.score")
            ids[i] = _as_int(pose.get("track_id", UNTRACKED), f"{where}.track_id")
        extra = {k: v for k, v in obj.items() if k not in ("frame_index", "timestamp", "width", "height", "poses")}
        try:
            return cls(frame_index, timestamp, width, height, kp, boxes, scores, ids, extra)
        except PoseFormatError:
            raise
        except ValueError as exc:  # reshape failures etc.
            raise PoseFormatError(str(exc)) from None


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise PoseFormatError(f"{name!r} must be an integer, got {value!r}")
    return int(value)


def _as_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PoseFormatError(f"{name!r} must be a finite number, got {value!r}")
    return float(value)


def boxes_from_keypoints(keypoints: np.ndarray, min_score: float = 0.0, margin: float = 0.0) -> np.ndarray:
    """Tight boxes around each person's keypoints with score > ``min_score``.

    Args:
        keypoints: (N, 17, 3) as (x, y, score) in pixels.
        min_score: keypoints with score <= this are ignored (all are used when none passes).
        margin: fraction of the box size added on each side.
    Returns:
        (N, 4) float32 boxes (x1, y1, x2, y2).
    """
    kp = np.asarray(keypoints, dtype=np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    out = np.zeros((kp.shape[0], 4), np.float32)
    for i, person in enumerate(kp):
        pts = person[person[:, 2] > min_score, :2]
        if len(pts) == 0:
            pts = person[:, :2]
        x1, y1 = pts.min(axis=0)
        x2, y2 = pts.max(axis=0)
        mx, my = (x2 - x1) * margin, (y2 - y1) * margin
        out[i] = (x1 - mx, y1 - my, x2 + mx, y2 + my)
    return out


def dumps_frame(frame: FramePoses) -> str:
    """One JSON Lines line (without the newline) for a frame."""
    return json.dumps(frame.to_dict(), separators=(",", ":"))


def loads_frame(line: str | bytes) -> FramePoses:
    """Parse one JSON Lines line; raises ``PoseFormatError`` on malformed input."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PoseFormatError(f"not valid JSON: {exc}") from None
    return FramePoses.from_dict(obj)


def write_jsonl(path_or_file: str | Path | IO[str], frames: Iterable[FramePoses]) -> int:
    """Write frames as JSON Lines; returns the number of lines written."""
    if isinstance(path_or_file, (str, Path)):
        with open(path_or_file, "w", encoding="utf-8") as fh:
            return write_jsonl(fh, frames)
    n = 0
    for frame in frames:
        path_or_file.write(dumps_frame(frame) + "\n")
        n += 1
    return n


def iter_jsonl(path_or_file: str | Path | IO[str]) -> Iterator[FramePoses]:
    """Read JSON Lines frames one at a time, validating each.

    Blank lines are skipped. A malformed line raises ``PoseFormatError`` naming the file
    and line number. Frame indices must strictly increase.
    """
    if isinstance(path_or_file, (str, Path)):
        with open(path_or_file, encoding="utf-8") as fh:
            yield from _iter_lines(fh, str(path_or_file))
    else:
        yield from _iter_lines(path_or_file, getattr(path_or_file, "name", "<stream>"))


def _iter_lines(fh: IO[str], name: str) -> Iterator[FramePoses]:
    last = -1
    for lineno, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            frame = loads_frame(line)
        except PoseFormatError as exc:
            raise PoseFormatError(f"{name}:{lineno}: {exc}") from None
        if frame.frame_index <= last:
            raise PoseFormatError(
                f"{name}:{lineno}: frame_index {frame.frame_index} does not increase (previous {last})"
            )
        last = frame.frame_index
        yield frame


def read_jsonl(path_or_file: str | Path | IO[str]) -> list[FramePoses]:
    """All frames of a JSON Lines file (see ``iter_jsonl``)."""
    return list(iter_jsonl(path_or_file))
