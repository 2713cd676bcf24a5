"""Test clips for the service: bright discs and boxes moving over a dark background.

Made with PyAV (``posestream.models.data.video.VideoWriter``, H.264 MP4). The blob test pipeline
(``posestream.service.pipelines.blobs``) sees one "person" per shape; the shapes never touch, so a
correct tracker keeps exactly one id per shape for the whole clip.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from posestream.models.data.video import VideoWriter

COLOURS = ((255, 60, 60), (60, 255, 60), (80, 120, 255), (255, 220, 40))


def shapes_frame(t: int, width: int = 320, height: int = 240, n: int = 3) -> np.ndarray:
    """Frame ``t`` (RGB uint8): ``n`` shapes, each in its own horizontal lane, moving slowly."""
    img = np.full((height, width, 3), 12, np.uint8)
    lane = height // n
    for i in range(n):
        span = width - 80
        phase = (t * (2 + i) + 37 * i) % (2 * span)
        x = 40 + (phase if phase < span else 2 * span - phase)
        y = lane * i + lane // 2
        if i % 2 == 0:
            cv2.circle(img, (int(x), int(y)), min(18, lane // 3), COLOURS[i % 4], -1)
        else:
            cv2.rectangle(
                img,
                (int(x) - 14, y - min(20, lane // 3)),
                (int(x) + 14, y + min(20, lane // 3)),
                COLOURS[i % 4],
                -1,
            )
    return img


def write_clip(
    path: Path,
    frames: int = 30,
    width: int = 320,
    height: int = 240,
    fps: float = 25.0,
    n: int = 3,
    lossless: bool = False,
) -> Path:
    """Write the shapes clip (H.264 MP4, or FFV1 with ``lossless`` for bit-exact frames; see ``VideoWriter``)."""
    with VideoWriter(path, width, height, fps, lossless=lossless) as writer:
        for t in range(frames):
            writer.write(shapes_frame(t, width, height, n))
    return path


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()
