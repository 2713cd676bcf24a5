"""Annotated video: skeletons coloured by track id, the id written at each head (torch-free).

Drawing is ``posestream.models.data.draw.draw_poses`` (shared with the synthetic contact sheet);
``posestream.models.data.video`` decodes and encodes H.264.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from posestream.models.data.draw import draw_poses
from posestream.models.data.video import VideoWriter, iter_video_frames, probe_video
from posestream.models.poses import FramePoses


def render_frames(
    path: str | Path, frames: Iterable[tuple[np.ndarray, FramePoses]], width: int, height: int, fps: float
) -> int:
    """Encode ``(rgb, poses)`` pairs as an annotated H.264 MP4; returns the frame count."""
    with VideoWriter(path, width, height, fps or 25.0) as writer:
        for rgb, poses in frames:
            writer.write(draw_poses(rgb, poses))
        return writer.frames_written


def render_video(video: str | Path, poses: Iterable[FramePoses], out: str | Path) -> int:
    """Re-decode ``video`` and draw the matching ``poses`` (by frame index) onto it."""
    info = probe_video(video)
    by_index = {p.frame_index: p for p in poses}
    last = max(by_index, default=-1)

    def pairs() -> Iterator[tuple[np.ndarray, FramePoses]]:
        if last < 0:
            return
        # Stops after the last frame with poses, never decoding past it: a truncated video
        # breaks off right there, and its decoded part still renders.
        for index, ts, rgb in iter_video_frames(video):
            if index not in by_index:
                by_index[index] = FramePoses.empty(index, ts, rgb.shape[1], rgb.shape[0])
            yield rgb, by_index[index]
            if index >= last:
                return

    return render_frames(out, pairs(), info.width, info.height, info.fps)
