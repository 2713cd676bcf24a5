"""What a video container declares, against what decoded: truncation and frame-size checks.

Torch-free (PyAV only): the gateway checks uploads with it, ``posestream track`` checks
its input. Sizes are pixels of the first video stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

from models.data.video import VideoError


@dataclass(frozen=True)
class Declared:
    """What the container says about its first video stream.

    Attributes:
        width, height: frame size in pixels (0 when unknown).
        frames: declared frame count (0 when the container states neither a count nor a duration).
        source: ``"frame_count"`` (the container's exact count), ``"duration"`` (duration x
            average frame rate, an estimate) or ``""`` (unknown).
    """

    width: int
    height: int
    frames: int
    source: str


def declared(path: str | Path) -> Declared:
    """Read the container header of ``path`` (no frame is decoded); raises ``VideoError``."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
            if stream.frames:
                return Declared(width, height, int(stream.frames), "frame_count")
            rate = stream.average_rate or stream.guessed_rate
            seconds = None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / av.time_base
            if rate and seconds and seconds > 0:
                return Declared(width, height, int(round(seconds * float(rate))), "duration")
            return Declared(width, height, 0, "")
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: cannot open as video: {exc}") from None


def frame_too_large(width: int, height: int, max_pixels: int) -> str | None:
    """A message when a ``width`` x ``height`` frame exceeds ``max_pixels`` (width*height), else None."""
    if width * height > max_pixels:
        return f"frames are {width}x{height} = {width * height} pixels, above the limit of {max_pixels} (max_frame_pixels)"
    return None


def truncation(
    decl: Declared, decoded: int, decode_error: str | None, tolerance: float
) -> dict[str, object] | None:
    """The ``truncated_input`` warning fields when the video looks truncated, else None.

    Truncated means: decoding broke off with an error, or fewer frames decoded than an
    exact declared count, or than ``(1 - tolerance)`` of a duration-based estimate.
    """
    short = False
    if decl.source == "frame_count":
        short = decoded < decl.frames
    elif decl.source == "duration":
        short = decoded < decl.frames * (1.0 - tolerance)
    if not short and decode_error is None:
        return None
    if decl.source:
        what = f"the container declares {decl.frames} frames ({decl.source.replace('_', ' ')}) but {decoded} decoded"
    else:
        what = f"{decoded} frames decoded"
    if decode_error is not None:
        what += f"; decoding broke off: {decode_error}"
    return {
        "code": "truncated_input",
        "message": f"the video looks truncated: {what}",
        "declared_frames": decl.frames if decl.source else None,
        "declared_by": decl.source or None,
        "decoded_frames": decoded,
        "decode_error": decode_error,
    }
