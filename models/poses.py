"""The pose data contract: one frame's people as numpy arrays, and its JSON Lines form.

Coordinates are (x, y) in original-frame pixels, x to the right, y down. A frame's
people are stored column-wise:

- ``keypoints`` (N, 17, 3) float32: x, y, score. In ground truth the score column
  holds the visibility code (0 absent / out of frame, 1 occluded, 2 visible).
- ``boxes`` (N, 4) float32: x1, y1, x2, y2.
- ``scores`` (N,) float32: person score.
- ``track_ids`` (N,) int64: track id, -1 when untracked.

Optionally, per person, what the tracker reads from TemporalNet / SpatialNet (``embeddings``
(N, E), ``sie`` / ``tie_fwd`` / ``tie_bwd`` (N, 17, 2), ``tags`` (N, 17, D); see
``FramePoses``). One type carries a frame's people from the decoder through the tracker
(``posestream.tracker.step.step`` returns the same frame with track ids) to the wire.

The on-disk and wire format is JSON Lines, one object per frame::

    {"frame_index": 0, "timestamp": 0.0, "width": 768, "height": 576,
     "poses": [{"track_id": 3, "score": 0.87, "box": [x1, y1, x2, y2],
                "keypoints": [[x, y, s], ... 17 ...]}]}

This module is torch-free so the tracker and the gateway can use it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from posestream.models.skeleton import NUM_KEYPOINTS

UNTRACKED = -1

# The per-person arrays (one row per person), in field order.
_PERSON_FIELDS = (
    "keypoints",
    "boxes",
    "scores",
    "track_ids",
    "embeddings",
    "sie",
    "tie_fwd",
    "tie_bwd",
    "tags",
)


class PoseFormatError(ValueError):
    """A pose record (a JSON Lines line or a dict) does not follow the contract."""


@dataclass(frozen=True)
class FramePoses:
    """All people in one video frame: what the decoder produces, the tracker reads and the wire carries.

    Attributes:
        frame_index: 0-based index of the frame in its video or stream.
        timestamp: seconds from the start of the video.
        width, height: frame size in pixels.
        keypoints: (N, 17, 3) float32, (x, y, score) in pixels.
        boxes: (N, 4) float32, (x1, y1, x2, y2) in pixels.
        scores: (N,) float32 person scores.
        track_ids: (N,) int64, ``UNTRACKED`` (-1) when no track is assigned (all -1 when
            not given).
        extra: JSON-serialisable frame-level fields beyond the contract (e.g.
            ``"dropped"`` on the WebSocket); written out and read back unchanged.

    Optional per-person arrays from TemporalNet / SpatialNet, read by the tracker
    (``posestream.tracker.step``; ``None`` when the model does not produce them). They are
    validated here (one row per person, finite), kept by ``select`` and ``with_track_ids``,
    and never written by ``to_dict``: the wire format carries only the contract above.

    Attributes:
        embeddings: (N, E) float32 Human Embedding (HE), L2-normalised here.
        sie: (N, 17, 2) float32 Spatial Instance Embedding at each joint, i.e. the person's
            centre predicted from that joint, ``p - S_hat(p)``, in pixels. For the MoveNet
            path (no per-pixel SIE) use ``posestream.tracker.costs.person_centre_sie``:
            every joint holds the person's centre.
        tie_fwd: (N, 17, 2) float32 forward TIE at each joint (frame t): the predicted
            centre of the same person at t - 1, in pixels.
        tie_bwd: (N, 17, 2) float32 backward TIE at each joint (frame t): the predicted
            centre of the same person at t + 1, in pixels. The tracker stores it on the
            track and uses it at the next step.
        tags: (N, 17, D) float32 associative-embedding tag (KE) values at each joint;
            (N, 17) is accepted for D = 1.
    """

    frame_index: int
    timestamp: float
    width: int
    height: int
    keypoints: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    # Optional to the constructor (None -> all UNTRACKED) but always an array after __post_init__,
    # so readers see np.ndarray; the dataclass default cannot say both.
    track_ids: np.ndarray = None  # type: ignore[assignment]
    extra: dict[str, Any] = field(default_factory=dict)
    embeddings: np.ndarray | None = None
    sie: np.ndarray | None = None
    tie_fwd: np.ndarray | None = None
    tie_bwd: np.ndarray | None = None
    tags: np.ndarray | None = None

    def __post_init__(self) -> None:
        kp = _reshaped("keypoints", self.keypoints, np.float32, (-1, NUM_KEYPOINTS, 3))
        n = kp.shape[0]
        boxes = _reshaped("boxes", self.boxes, np.float32, (n, 4))
        scores = _reshaped("scores", self.scores, np.float32, (n,))
        if self.track_ids is None:
            ids = np.full(n, UNTRACKED, np.int64)
        else:
            ids = _reshaped("track_ids", self.track_ids, np.int64, (n,))
        if self.width <= 0 or self.height <= 0:
            raise PoseFormatError(f"frame size must be positive, got {self.width}x{self.height}")
        if self.frame_index < 0:
            raise PoseFormatError(f"frame_index must be >= 0, got {self.frame_index}")
        object.__setattr__(self, "keypoints", kp)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "track_ids", ids)
        if self.embeddings is not None:
            emb = _person_array("embeddings", self.embeddings, (n, -1))
            if emb.shape[1] == 0:
                raise PoseFormatError(
                    "embeddings must have at least one dimension per person, got shape (N, 0)"
                )
            norm = np.linalg.norm(emb, axis=1, keepdims=True)
            if np.any(norm <= 0):
                raise PoseFormatError(
                    "embeddings contains an all-zero HE vector, which has no direction; check the HE head"
                )
            object.__setattr__(self, "embeddings", (emb / norm).astype(np.float32))
        for name in ("sie", "tie_fwd", "tie_bwd"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _person_array(name, value, (n, NUM_KEYPOINTS, 2)))
        if self.tags is not None:
            tags = np.asarray(self.tags, dtype=np.float32)
            if tags.ndim == 2:
                tags = tags[:, :, None]
            object.__setattr__(self, "tags", _person_array("tags", tags, (n, NUM_KEYPOINTS, -1)))
            if self.tags.shape[2] == 0:
                raise PoseFormatError("tags must have at least one value per joint, got shape (N, 17, 0)")

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def embedding_dim(self) -> int:
        """E, or 0 when there are no embeddings."""
        return 0 if self.embeddings is None else int(self.embeddings.shape[1])

    @property
    def tag_dim(self) -> int:
        """D, or 0 when there are no tags."""
        return 0 if self.tags is None else int(self.tags.shape[2])

    @classmethod
    def empty(cls, frame_index: int, timestamp: float, width: int, height: int) -> FramePoses:
        """A frame with nobody in it."""
        return cls(
            frame_index, timestamp, width, height,
            np.zeros((0, NUM_KEYPOINTS, 3), np.float32), np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32), np.zeros(0, np.int64),
        )  # fmt: skip

    def select(self, mask_or_index: np.ndarray) -> FramePoses:
        """A copy holding only the people picked by a boolean mask or an index array
        (the optional per-person arrays too)."""
        i = np.asarray(mask_or_index)
        if i.ndim == 0:  # one index: a frame of one person
            i = i[None]
        picked = {name: getattr(self, name)[i] for name in _PERSON_FIELDS if getattr(self, name) is not None}
        return self._validated_copy(**picked)

    def with_track_ids(self, track_ids: np.ndarray) -> FramePoses:
        """A copy with the given (N,) track ids; everything else, optional arrays included, kept."""
        return self._validated_copy(track_ids=_reshaped("track_ids", track_ids, np.int64, (len(self),)))

    def with_keypoints(self, keypoints: np.ndarray) -> FramePoses:
        """A copy with the given (N, 17, 3) keypoints (e.g. smoothed); everything else kept."""
        kp = _reshaped("keypoints", keypoints, np.float32, (len(self), NUM_KEYPOINTS, 3))
        if not np.isfinite(kp).all():
            raise PoseFormatError("keypoints contains NaN or infinity")
        return self._validated_copy(keypoints=kp)

    def _validated_copy(self, **changes: Any) -> FramePoses:
        """A copy with ``changes`` that are already valid (rows of this frame's validated arrays),
        made without ``__post_init__`` so that the HE rows are not normalised a second time."""
        new = object.__new__(FramePoses)
        for f in dataclasses.fields(self):
            object.__setattr__(new, f.name, changes.get(f.name, getattr(self, f.name)))
        object.__setattr__(new, "extra", dict(self.extra))
        return new

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
        extra = {
            k: v for k, v in obj.items() if k not in ("frame_index", "timestamp", "width", "height", "poses")
        }
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


def _reshaped(name: str, value: Any, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as ``dtype`` reshaped to ``shape`` (-1: any), or a ``PoseFormatError`` saying the shape."""
    a = np.asarray(value, dtype=dtype)
    try:
        return a.reshape(shape)
    except ValueError:
        want = (
            "(" + ", ".join("N" if s < 0 else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        )
        raise PoseFormatError(f"{name} must have shape {want} (one row per person), got {a.shape}") from None


def _person_array(name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    """An optional per-person array as float32 of exactly ``shape`` (-1: any), finite."""
    try:
        a = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PoseFormatError(f"{name} is not a numeric array: {exc}") from None
    if a.ndim != len(shape) or any(s >= 0 and s != d for s, d in zip(shape, a.shape, strict=True)):
        want = "(" + ", ".join("*" if s < 0 else str(s) for s in shape) + ")"
        raise PoseFormatError(f"{name} must have shape {want} (one row per detected person), got {a.shape}")
    if not np.isfinite(a).all():
        raise PoseFormatError(f"{name} contains NaN or infinity; the tracker needs finite values")
    return a


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
