"""An uploaded video's frames as the jobs carry them: decoded, size-checked, JPEG-encoded.

``check_video`` runs once on the upload (header size, then one decoded frame);
``EncodedFrames`` yields the frames the upload task queues, one per ``next`` (blocking:
it runs in a worker thread). The JPEG codec is ``posestream.service.frames``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from posestream.models.data.video import VideoError, iter_video_frames, probe_video
from posestream.service.frames import encode_jpeg
from posestream.service.video_checks import frame_too_large

__all__ = ["EncodedFrames", "FrameTooLarge", "check_video"]


class FrameTooLarge(Exception):
    """A frame of the video is larger than ``max_frame_pixels``."""


class EncodedFrames:
    """Decode + JPEG-encode one frame per ``next`` (runs in a worker thread).

    The first ``skip`` frames are decoded and dropped (not encoded) on the first ``next``:
    a resumed upload's frames whose results are already written.
    """

    def __init__(self, path: Path, quality: int, skip: int = 0, max_pixels: int = 0) -> None:
        self._it: Iterator[tuple[int, float, np.ndarray]] = iter_video_frames(path)
        self._quality = int(quality)
        self._skip = skip
        self._max_pixels = max_pixels

    def __iter__(self) -> EncodedFrames:
        return self

    def __next__(self) -> tuple[int, float, int, int, bytes]:
        while self._skip:
            next(self._it)
            self._skip -= 1
        index, ts, rgb = next(self._it)
        if self._max_pixels and (msg := frame_too_large(rgb.shape[1], rgb.shape[0], self._max_pixels)):
            raise FrameTooLarge(f"frame {index}: {msg}")  # the stream changed size mid-way
        try:
            jpeg = encode_jpeg(rgb, self._quality)
        except ValueError:
            raise VideoError(f"frame {index} could not be JPEG-encoded") from None
        return index, ts, rgb.shape[1], rgb.shape[0], jpeg

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close:
            close()


def check_video(path: Path, max_pixels: int) -> int:
    """Check the header's frame size, then decode the first frame; returns the declared frame count (0 if unknown).

    Raises ``FrameTooLarge`` (before any frame is decoded) or ``VideoError``.
    """
    decl = probe_video(path)
    if msg := frame_too_large(decl.width, decl.height, max_pixels):
        raise FrameTooLarge(msg)
    frames = iter_video_frames(path)
    try:
        next(frames)
    finally:
        frames.close()  # type: ignore[attr-defined]
    return decl.declared_frames
