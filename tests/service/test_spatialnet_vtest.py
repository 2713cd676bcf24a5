"""``posestream track --model spatialnet`` on real video: vtest.avi frame 200, the MoveNet path's check.

The frame has 7 people walking on the paths and two yellow things (a cloth and a bag) that a
detector may mistake for crouching people. The shipped SpatialNet must report the 7 and neither
of the two, through the whole service path (decoder, refinement, tracker, JSON Lines)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.models.test_movenet_estimator import _finds_seven_not_the_cloth

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@pytest.mark.skipif(
    not VTEST.is_file(), reason="vtest.avi comes with Debian's opencv-doc (.ci/run installs it)"
)
def test_track_spatialnet_finds_the_seven_people_of_vtest_frame_200(tmp_path: Path) -> None:
    from posestream.models.data.video import VideoWriter, iter_video_frames
    from posestream.models.poses import read_jsonl
    from posestream.service.cli import main

    clip = tmp_path / "vtest200.mkv"  # frame 200 alone, losslessly: the pixels the test was written on
    (rgb,) = [rgb for _, _, rgb in itertools.islice(iter_video_frames(VTEST), 200, 201)]
    with VideoWriter(clip, rgb.shape[1], rgb.shape[0], 10.0, lossless=True) as writer:
        writer.write(rgb)
    out = tmp_path / "poses.jsonl"
    code = main(["track", str(clip), "--model", "spatialnet", "--tracker", "oks",
                 "--out", str(out), "--quiet", "--device", "cpu"])  # fmt: skip
    assert code == 0
    (frame,) = read_jsonl(out)
    _finds_seven_not_the_cloth(frame)
    assert len(set(frame.track_ids.tolist())) == 7
