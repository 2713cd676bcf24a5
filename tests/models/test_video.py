"""Video writing: the lossless mode gives back the written frames bit for bit; bad paths are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from posestream.models.data.video import VideoWriter, iter_video_frames


def test_lossless_video_round_trips_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (37, 51, 3), dtype=np.uint8) for _ in range(5)]  # odd sizes, noise
    with VideoWriter(tmp_path / "clip.mkv", 51, 37, 25.0, lossless=True) as writer:
        for rgb in frames:
            writer.write(rgb)
    decoded = [rgb for _, _, rgb in iter_video_frames(tmp_path / "clip.mkv")]
    assert len(decoded) == len(frames)
    for got, want in zip(decoded, frames, strict=True):
        np.testing.assert_array_equal(got, want)


def test_lossy_video_is_close_but_not_exact(tmp_path: Path) -> None:
    """H.264 keeps a smooth frame close (so the lossless test above is not trivially true)."""
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (48, 1, 3))
    with VideoWriter(tmp_path / "clip.mp4", 64, 48, 25.0) as writer:
        for _ in range(3):
            writer.write(ramp)
    decoded = [rgb for _, _, rgb in iter_video_frames(tmp_path / "clip.mp4")]
    err = np.abs(decoded[0].astype(int) - ramp.astype(int))
    assert err.max() > 0 and err.mean() < 3


def test_lossless_needs_a_container_that_holds_ffv1(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mkv or .avi"):
        VideoWriter(tmp_path / "clip.mp4", 64, 48, 25.0, lossless=True)
