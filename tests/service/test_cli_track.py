"""``posestream track`` end to end on a real clip (the CPU test pipeline; no Redis)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from posestream.models.data.video import iter_video_frames
from posestream.models.poses import read_jsonl
from tests.service.clips import write_clip
from tests.service.helpers import lane_ids

ROOT = Path(__file__).resolve().parents[2]
# The console entry point (``python -m posestream.service.cli`` would load posestream.service.cli twice).
POSESTREAM = [sys.executable, "-c", "import sys; from posestream.service.cli import main; sys.exit(main())"]


def test_track_writes_json_lines_and_an_annotated_mp4(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=24)
    out, render = tmp_path / "poses.jsonl", tmp_path / "annotated.mp4"
    proc = subprocess.run(
        [*POSESTREAM, "track", str(clip), "--model", "blobs", "--tracker", "iou",
         "--out", str(out), "--render", str(render), "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "24 frames, 3.00 people per frame, 3 tracks" in proc.stdout
    frames = read_jsonl(out)
    assert [f.frame_index for f in frames] == list(range(24))
    assert all(len(v) == 1 for v in lane_ids([f.to_dict() for f in frames]).values())
    assert sum(1 for _ in iter_video_frames(render)) == 24


def test_track_rejects_a_file_that_is_not_a_video(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"nope" * 10)
    proc = subprocess.run(
        [*POSESTREAM, "track", str(junk), "--model", "blobs"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "cannot open as video" in proc.stderr
