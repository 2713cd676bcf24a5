"""The CPU test pipeline: coloured blobs -> pseudo-poses -> the real tracker step.

**Not a pose estimator.** It exists so the service (gateway, worker, Redis contract,
CLI) can be tested end to end on CPU without weights: it genuinely runs on the pixels
(threshold on brightness, ``cv2.connectedComponentsWithStats``) and emits one pose per
bright blob, its 17 keypoints laid out on the blob's box like a standing person, then
hands those detections to the real tracker (``posestream.tracker.session``, OKS or IoU preset),
so track ids, state and its serialisation are the production ones.

Test clips for it show a few bright solid-colour discs/rectangles moving over a dark
background (see ``tests/service/clips.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from posestream.models.poses import FramePoses
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.service.pipelines.base import FrameInput
from posestream.tracker.session import Detected

log = logging.getLogger(__name__)

# Where each COCO keypoint sits in a blob's box, as (u, v) fractions of width and height:
# a person facing the camera (their left on the image's right).
_TEMPLATE = np.array(
    [
        (0.50, 0.08), (0.56, 0.05), (0.44, 0.05), (0.62, 0.07), (0.38, 0.07),
        (0.68, 0.22), (0.32, 0.22), (0.76, 0.38), (0.24, 0.38), (0.80, 0.52), (0.20, 0.52),
        (0.62, 0.55), (0.38, 0.55), (0.62, 0.75), (0.38, 0.75), (0.62, 0.95), (0.38, 0.95),
    ],
    np.float32,
)  # fmt: skip
assert _TEMPLATE.shape == (NUM_KEYPOINTS, 2)

# The tracker presets blob detections support (they carry keypoints and boxes only).
BLOB_TRACKERS = ("iou", "oks")


@dataclass(frozen=True)
class BlobDetectorConfig:
    """Thresholds of the blob detector.

    Attributes:
        threshold: a pixel is foreground when its brightest channel is above this (0-255).
            Raise it for brighter backgrounds.
        min_area: components smaller than this many pixels are noise (JPEG ringing).
        max_blobs: at most this many blobs per frame (largest first).
    """

    threshold: int = 80
    min_area: int = 60
    max_blobs: int = 32

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 255:
            raise ValueError(f"threshold must be in [0, 255), got {self.threshold}")
        if self.min_area < 1 or self.max_blobs < 1:
            raise ValueError("min_area and max_blobs must be >= 1")


def detect_blobs(
    rgb: np.ndarray, config: BlobDetectorConfig = BlobDetectorConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bright blobs of one frame as pseudo-poses.

    Args:
        rgb: (H, W, 3) uint8.
    Returns:
        keypoints (N, 17, 3) float32 (x, y, score) in pixels, boxes (N, 4) float32
        (x1, y1, x2, y2) in pixels, scores (N,) float32 (fraction of the box the blob
        fills), largest blobs first.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    bright = rgb.max(axis=2)
    mask = (bright > config.threshold).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    comps = [stats[i] for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= config.min_area]
    comps.sort(key=lambda s: -int(s[cv2.CC_STAT_AREA]))
    comps = comps[: config.max_blobs]
    k = len(comps)
    keypoints = np.zeros((k, NUM_KEYPOINTS, 3), np.float32)
    boxes = np.zeros((k, 4), np.float32)
    scores = np.zeros(k, np.float32)
    for i, s in enumerate(comps):
        x, y, w, h, area = (float(v) for v in s[:5])
        boxes[i] = (x, y, x + w, y + h)
        scores[i] = min(1.0, area / max(w * h, 1.0))
        keypoints[i, :, 0] = x + _TEMPLATE[:, 0] * w
        keypoints[i, :, 1] = y + _TEMPLATE[:, 1] * h
        keypoints[i, :, 2] = scores[i]
    return keypoints, boxes, scores


class BlobDetector:
    """``Detector``: ``detect_blobs`` per frame, one pseudo-person per bright blob (keypoints and boxes only).

    Its detections carry no HE/TIE/SIE, so only the ``BLOB_TRACKERS`` presets can track them.

    Args:
        config: blob thresholds.
    """

    name = "blobs"

    def __init__(self, config: BlobDetectorConfig = BlobDetectorConfig()) -> None:
        self.config = config

    def detect(self, frames: Sequence[FrameInput]) -> list[Detected]:
        out = []
        for frame in frames:
            keypoints, boxes, scores = detect_blobs(frame.rgb, self.config)
            people = FramePoses(
                frame.frame_index, frame.timestamp, frame.width, frame.height, keypoints, boxes, scores
            )
            out.append(Detected(people))
        return out
