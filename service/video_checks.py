"""What a video container declares (``posestream.models.data.video.probe_video``), against what decoded:
truncation and frame-size checks.

Torch-free: the gateway checks uploads with it, ``posestream track`` checks its input.
"""

from __future__ import annotations

from posestream.models.data.video import VideoInfo


def frame_too_large(width: int, height: int, max_pixels: int) -> str | None:
    """A message when a ``width`` x ``height`` frame exceeds ``max_pixels`` (width*height), else None."""
    if width * height > max_pixels:
        return f"frames are {width}x{height} = {width * height} pixels, above the limit of {max_pixels} (max_frame_pixels)"
    return None


def truncation(
    info: VideoInfo, decoded: int, decode_error: str | None, tolerance: float
) -> dict[str, object] | None:
    """The ``truncated_input`` warning fields when the video looks truncated, else None.

    Truncated means: decoding broke off with an error, or fewer frames decoded than an
    exact declared count, or than ``(1 - tolerance)`` of a duration-based estimate.
    """
    short = False
    if info.declared_by == "frame_count":
        short = decoded < info.declared_frames
    elif info.declared_by == "duration":
        short = decoded < info.declared_frames * (1.0 - tolerance)
    if not short and decode_error is None:
        return None
    if info.declared_by:
        what = f"the container declares {info.declared_frames} frames ({info.declared_by.replace('_', ' ')}) but {decoded} decoded"
    else:
        what = f"{decoded} frames decoded"
    if decode_error is not None:
        what += f"; decoding broke off: {decode_error}"
    return {
        "code": "truncated_input",
        "message": f"the video looks truncated: {what}",
        "declared_frames": info.declared_frames if info.declared_by else None,
        "declared_by": info.declared_by or None,
        "decoded_frames": decoded,
        "decode_error": decode_error,
    }
