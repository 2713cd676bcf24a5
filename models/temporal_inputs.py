"""TemporalNet's pose-derived inputs and outputs, numpy: HE boxes, person centres, the rendered SIE
and TIE from a TVF. Shared by training (``posestream.models.train_temporal``) and online inference
(``posestream.models.temporal_inference``).

Units are whatever the keypoints are given in (cells inside TemporalNet, see
``posestream.models.temporalnet``).
"""

from __future__ import annotations

import numpy as np

from posestream.models.geometry import person_centre
from posestream.models.skeleton import NUM_KEYPOINTS

__all__ = ["human_boxes", "render_sie", "tie_from_tvf"]


def human_boxes(keypoints: np.ndarray, margin: float, min_score: float) -> np.ndarray:
    """HE boxes: (N, 17, 3) keypoints (any units) -> (N, 4) boxes around the joints with
    score > ``min_score`` (all joints when none passes), widened by ``margin`` of the box
    size on each side and to at least a third as wide as tall (a side view is narrow)."""
    kp = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    vis = kp[:, :, 2] > min_score
    vis = np.where(vis.any(axis=1, keepdims=True), vis, True)
    big = np.float32(1e9)
    x1 = np.where(vis, kp[:, :, 0], big).min(1)
    y1 = np.where(vis, kp[:, :, 1], big).min(1)
    x2 = np.where(vis, kp[:, :, 0], -big).max(1)
    y2 = np.where(vis, kp[:, :, 1], -big).max(1)
    bw, bh = x2 - x1, y2 - y1
    bw_min = np.maximum(bw, bh / 3.0)
    cx = (x1 + x2) / 2
    x1, x2 = cx - bw_min / 2, cx + bw_min / 2
    mx, my = bw_min * margin + 1e-3, bh * margin + 1e-3
    return np.stack((x1 - mx, y1 - my, x2 + mx, y2 + my), axis=1).astype(np.float32)


def render_sie(
    keypoints: np.ndarray, shape: tuple[int, int], radius: int, scale: float, min_score: float
) -> np.ndarray:
    """The SIE input channels of the TIE branch, rendered from grouped poses.

    Args:
        keypoints: (N, 17, 3) in cells (x, y, score); drawn in order, later people on top
            (pass them sorted by ascending score).
        shape: (H, W) of the map.
        radius: half-size of the square of cells drawn around each joint.
        scale: cells per unit of the offsets.
    Returns:
        (3, H, W) float32: ``(q - centre) / scale`` as (x, y) at each cell q near a joint
        of the person, and a 0/1 mask.
    """
    h, w = shape
    out = np.zeros((3, h, w), np.float32)
    kp = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    if not len(kp):
        return out
    centres = person_centre(kp, min_score)
    for person, c in zip(kp, centres, strict=True):
        for x, y, s in person:
            if s <= min_score:
                continue
            cx, cy = int(np.floor(x)), int(np.floor(y))
            x0, x1 = max(cx - radius, 0), min(cx + radius + 1, w)
            y0, y1 = max(cy - radius, 0), min(cy + radius + 1, h)
            if x0 >= x1 or y0 >= y1:
                continue
            qx = np.arange(x0, x1, dtype=np.float32) + 0.5
            qy = np.arange(y0, y1, dtype=np.float32) + 0.5
            out[0, y0:y1, x0:x1] = ((qx - c[0]) / scale)[None, :]
            out[1, y0:y1, x0:x1] = ((qy - c[1]) / scale)[:, None]
            out[2, y0:y1, x0:x1] = 1.0
    return out


def tie_from_tvf(points: np.ndarray, tvf: np.ndarray) -> np.ndarray:
    """TIE = location - TVF: the person's centre in the other frame, same units as the inputs."""
    return np.asarray(points, np.float32) - np.asarray(tvf, np.float32)
