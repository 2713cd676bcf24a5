"""Video decoding and encoding with PyAV (torch-free; the gateway uses it too).

Frames are RGB uint8 arrays of shape (H, W, 3). Timestamps are seconds from the
start of the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

log = logging.getLogger(__name__)


class VideoError(ValueError):
    """The file is not a video PyAV can decode, or it is damaged."""


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about its first video stream (its header; no frame decoded).

    Attributes:
        width, height: frame size in pixels (0 when the header does not say).
        fps: average frame rate (frames per second); 0.0 when unknown.
        frames: frame count from the container; 0 when the container does not say.
        codec: codec name, e.g. ``"h264"``.
        declared_frames: how many frames the container declares: ``frames`` when it states
            a count, else duration x average frame rate (an estimate), else 0.
        declared_by: ``"frame_count"``, ``"duration"`` or ``""`` (unknown): where
            ``declared_frames`` comes from.
    """

    width: int
    height: int
    fps: float
    frames: int
    codec: str
    declared_frames: int = 0
    declared_by: str = ""


def probe_video(path: str | Path) -> VideoInfo:
    """Read the header of a video file; raises ``VideoError`` when it is not one."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            frames = int(stream.frames or 0)
            declared, declared_by = frames, "frame_count" if frames else ""
            if not frames:
                seconds = None
                if stream.duration is not None and stream.time_base is not None:
                    seconds = float(stream.duration * stream.time_base)
                elif container.duration is not None:
                    seconds = container.duration / av.time_base
                if rate and seconds and seconds > 0:
                    declared, declared_by = int(round(seconds * float(rate))), "duration"
            return VideoInfo(
                width=int(stream.codec_context.width or 0),
                height=int(stream.codec_context.height or 0),
                fps=float(rate) if rate else 0.0,
                frames=frames,
                codec=str(stream.codec_context.name),
                declared_frames=declared,
                declared_by=declared_by,
            )
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: cannot open as video: {exc}") from None


def iter_video_frames(path: str | Path) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode a video file frame by frame.

    Yields:
        (frame_index, timestamp_seconds, rgb) with ``rgb`` (H, W, 3) uint8. The index
        counts decoded frames from 0; the timestamp comes from the frame's pts when the
        container has one, else ``index / fps``.
    Raises:
        VideoError: the file cannot be opened, has no video stream, or breaks while
            decoding (frames already yielded stay valid).
    """
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: cannot open as video: {exc}") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        index = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    ts = float(frame.pts * frame.time_base)
                else:
                    ts = index / fps if fps else 0.0
                yield index, ts, frame.to_ndarray(format="rgb24")
                index += 1
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: decoding failed after {index} frames: {exc}") from None
        if index == 0:
            raise VideoError(f"{path}: the video stream holds no decodable frame")


class VideoWriter:
    """Encode RGB frames to an H.264 MP4 (yuv420p, playable everywhere).

    Use as a context manager; frames must all have the size given at construction.
    Odd sizes are padded by one pixel on the right/bottom since yuv420p needs even
    dimensions.

    ``lossless=True`` writes FFV1 RGB instead (an ``.mkv`` or ``.avi`` path): the decoded
    frames equal the written ones bit for bit. Use it where a test needs the same input
    bytes on every run: x264's output for the same frames was seen to differ between runs.
    """

    def __init__(
        self, path: str | Path, width: int, height: int, fps: float, crf: int = 20, lossless: bool = False
    ) -> None:
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        if lossless and self.path.suffix.lower() not in (".mkv", ".avi"):
            raise ValueError(f"lossless (FFV1) video needs an .mkv or .avi path, got {self.path.name}")
        even = not lossless  # yuv420p needs even sizes; FFV1 RGB does not
        self._enc_w, self._enc_h = (
            self.width + even * (self.width % 2),
            self.height + even * (self.height % 2),
        )
        self._container = av.open(str(self.path), mode="w")
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("ffv1" if lossless else "libx264", rate=rate)
        self._stream.width, self._stream.height = self._enc_w, self._enc_h
        if lossless:
            self._stream.pix_fmt = "bgr0"
        else:
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        self.frames_written = 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"frame must be uint8 ({self.height}, {self.width}, 3), got {rgb.dtype} {rgb.shape}"
            )
        if (self._enc_w, self._enc_h) != (self.width, self.height):
            rgb = np.pad(
                rgb, ((0, self._enc_h - self.height), (0, self._enc_w - self.width), (0, 0)), mode="edge"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent)."""
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None  # type: ignore[assignment]

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
