"""The real MoveNet pipeline through the service's ``FramePipeline`` interface (needs fetched weights)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@pytest.mark.weights
def test_movenet_pipeline_tracks_real_video() -> None:
    pytest.importorskip("torch")
    from models.weights import MOVENET_MULTIPOSE, verify

    try:
        verify(MOVENET_MULTIPOSE)
    except Exception as exc:  # not fetched here
        pytest.skip(f"MoveNet weights not available ({exc}); run `posestream weights fetch`")
    if not VTEST.is_file():
        pytest.skip("vtest.avi (Debian opencv-doc) not installed")
    from models.data.video import iter_video_frames
    from service.pipeline import build_pipeline, run_frames

    pipeline = build_pipeline("movenet", "oks", input_sizes=[512], device="cpu")
    frames = list(run_frames(pipeline, itertools.islice(iter_video_frames(VTEST), 6), batch_size=3))
    assert [p.frame_index for p, _ in frames] == list(range(6))
    assert all(p.width == 768 and p.height == 576 for p, _ in frames)
    # The people of the first frame get ids at once and keep them; an id never jumps across the frame.
    first = set(frames[0][0].track_ids.tolist())
    assert len(first) >= 3 and -1 not in first
    centres: dict[int, list] = {}
    for poses, _ in frames:
        assert first <= set(poses.track_ids.tolist())
        for tid, box in zip(poses.track_ids.tolist(), poses.boxes, strict=True):
            centres.setdefault(tid, []).append((box[:2] + box[2:]) / 2)
    for tid in first:
        steps = [float(((a - b) ** 2).sum() ** 0.5) for a, b in itertools.pairwise(centres[tid])]
        assert max(steps) < 20, (tid, steps)  # pedestrians move a few pixels per frame


def test_he_tie_without_temporalnet_says_what_to_do() -> None:
    pytest.importorskip("torch")
    from service.pipeline import build_pipeline

    with pytest.raises(ValueError, match="--tracker oks"):
        build_pipeline("movenet", "he+tie")
