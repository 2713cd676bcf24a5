"""What the tracker sees of one frame: the detected people as plain numpy arrays.

Coordinates are (x, y) in original-frame pixels, x to the right, y down (as in
``posestream.models.poses``). For N people:

- ``keypoints`` (N, 17, 3) float32: x, y, score.
- ``boxes`` (N, 4) float32: x1, y1, x2, y2.
- ``scores`` (N,) float32: person score.

Optional, from TemporalNet / SpatialNet (``None`` when the model does not produce them):

- ``embeddings`` (N, E) float32: Human Embedding (HE), L2-normalised here.
- ``sie`` (N, 17, 2) float32: Spatial Instance Embedding at each joint, i.e. the
  person's centre predicted from that joint, ``p - S_hat(p)``, in pixels. For the
  MoveNet path (no per-pixel SIE) use ``person_centre_sie``: every joint holds the
  person's centre.
- ``tie_fwd`` (N, 17, 2) float32: forward TIE at each joint (frame t): the predicted
  centre of the same person at t - 1, in pixels.
- ``tie_bwd`` (N, 17, 2) float32: backward TIE at each joint (frame t): the predicted
  centre of the same person at t + 1, in pixels. The tracker stores it on the track and
  uses it at the next step.
- ``tags`` (N, 17, D) float32: associative-embedding tag (KE) values at each joint;
  (N, 17) is accepted for D = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from posestream.models.skeleton import NUM_KEYPOINTS

if TYPE_CHECKING:
    from posestream.models.poses import FramePoses


@dataclass(frozen=True)
class FrameInfo:
    """Where detections came from; carried through to the tracked output."""

    frame_index: int
    timestamp: float
    width: int
    height: int


@dataclass(frozen=True, eq=False)
class Detections:
    """N detected people of one frame (shapes in the module docstring)."""

    keypoints: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray | None = None
    sie: np.ndarray | None = None
    tie_fwd: np.ndarray | None = None
    tie_bwd: np.ndarray | None = None
    tags: np.ndarray | None = None
    frame: FrameInfo | None = None

    def __post_init__(self) -> None:
        kp = _array("keypoints", self.keypoints, (-1, NUM_KEYPOINTS, 3))
        n = kp.shape[0]
        object.__setattr__(self, "keypoints", kp)
        object.__setattr__(self, "boxes", _array("boxes", self.boxes, (n, 4)))
        object.__setattr__(self, "scores", _array("scores", self.scores, (n,)))
        if self.embeddings is not None:
            emb = _array("embeddings", self.embeddings, (n, -1))
            if emb.shape[1] == 0:
                raise ValueError("embeddings must have at least one dimension per person, got shape (N, 0)")
            norm = np.linalg.norm(emb, axis=1, keepdims=True)
            if np.any(norm <= 0):
                raise ValueError(
                    "embeddings contains an all-zero HE vector, which has no direction; check the HE head"
                )
            object.__setattr__(self, "embeddings", (emb / norm).astype(np.float32))
        for name in ("sie", "tie_fwd", "tie_bwd"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _array(name, value, (n, NUM_KEYPOINTS, 2)))
        if self.tags is not None:
            tags = np.asarray(self.tags, dtype=np.float32)
            if tags.ndim == 2:
                tags = tags[:, :, None]
            object.__setattr__(self, "tags", _array("tags", tags, (n, NUM_KEYPOINTS, -1)))
            if self.tags.shape[2] == 0:
                raise ValueError("tags must have at least one value per joint, got shape (N, 17, 0)")

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
    def empty(cls, frame: FrameInfo | None = None) -> Detections:
        """A frame with nobody in it."""
        return cls(
            np.zeros((0, NUM_KEYPOINTS, 3), np.float32), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
            frame=frame,
        )  # fmt: skip

    @classmethod
    def from_frame_poses(
        cls,
        poses: FramePoses,
        *,
        embeddings: np.ndarray | None = None,
        sie: np.ndarray | None = None,
        tie_fwd: np.ndarray | None = None,
        tie_bwd: np.ndarray | None = None,
        tags: np.ndarray | None = None,
    ) -> Detections:
        """Detections from one frame of the pose contract plus the optional per-person arrays.

        The frame's index, timestamp and size travel along so that the tracked output can
        be turned back into a ``FramePoses``. Its track ids are ignored.
        """
        return cls(
            poses.keypoints, poses.boxes, poses.scores,
            embeddings=embeddings, sie=sie, tie_fwd=tie_fwd, tie_bwd=tie_bwd, tags=tags,
            frame=FrameInfo(poses.frame_index, poses.timestamp, poses.width, poses.height),
        )  # fmt: skip

    def select(self, index: np.ndarray) -> Detections:
        """A copy holding only the people picked by a boolean mask or an index array."""
        i = np.asarray(index)

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[i]

        return Detections(
            self.keypoints[i], self.boxes[i], self.scores[i], pick(self.embeddings), pick(self.sie),
            pick(self.tie_fwd), pick(self.tie_bwd), pick(self.tags), self.frame,
        )  # fmt: skip


def person_centre_sie(keypoints: np.ndarray, min_score: float = 0.2) -> np.ndarray:
    """Per-joint SIE for models without an SIE head: every joint holds its person's centre.

    The centre is the mean of the keypoints with score > ``min_score`` (of all keypoints
    when none passes), the same definition as seed 000's person centre.

    Args:
        keypoints: (N, 17, 3) as (x, y, score) in pixels.
    Returns:
        (N, 17, 2) float32.
    """
    kp = np.asarray(keypoints, dtype=np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    vis = kp[:, :, 2] > min_score
    vis = np.where(vis.any(axis=1, keepdims=True), vis, True)
    centre = (kp[:, :, :2] * vis[:, :, None]).sum(axis=1) / vis.sum(axis=1)[:, None]
    return np.repeat(centre[:, None, :], NUM_KEYPOINTS, axis=1).astype(np.float32)


def _array(name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not a numeric array: {exc}") from None
    if a.ndim != len(shape) or any(s >= 0 and s != d for s, d in zip(shape, a.shape, strict=True)):
        want = "(" + ", ".join("*" if s < 0 else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want} (one row per detected person), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinity; the tracker needs finite values")
    return a
