"""``Settings.refine`` / ``--refine``: the gated Thunder refinement through the settings, the
composition root, both network estimators and the ``track`` CLI on real video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from posestream.service.settings import Settings

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def test_refine_setting_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().refine is True
    monkeypatch.setenv("POSESTREAM_REFINE", "false")
    assert Settings().refine is False
    monkeypatch.setenv("POSESTREAM_REFINE", "sometimes")
    with pytest.raises(ValidationError, match="refine"):
        Settings()


def test_refine_flag_parses_for_track_and_worker() -> None:
    from posestream.service.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["track", "v.mp4"]).refine is None  # None: Settings.refine decides
    assert parser.parse_args(["track", "v.mp4", "--no-refine"]).refine is False
    assert parser.parse_args(["track", "rtsp://h/s", "--refine"]).refine is True  # the pull path
    assert "refine" not in vars(parser.parse_args(["worker"]))  # absent: the worker's Settings decide
    assert parser.parse_args(["worker", "--no-refine"]).refine is False


@pytest.mark.weights
@pytest.mark.parametrize("model", ["movenet", "spatialnet"])
def test_refine_setting_reaches_the_estimator(model: str) -> None:
    from posestream.service.pipeline import build_pipeline, pipeline_from_settings

    on = pipeline_from_settings(Settings(model=model, tracker="oks", device="cpu", input_sizes=[256]))
    off = build_pipeline(model, "oks", [256], "cpu", refine=False)
    assert on.detector.estimator.refiner is not None  # type: ignore[attr-defined]
    assert off.detector.estimator.refiner is None  # type: ignore[attr-defined]


@pytest.mark.weights
@pytest.mark.slow
@pytest.mark.skipif(
    not VTEST.is_file(), reason="vtest.avi comes with Debian's opencv-doc (.ci/run installs it)"
)
def test_track_cli_no_refine_keeps_spatialnet_people_and_moves_only_joints(tmp_path: Path) -> None:
    """On real video the refined run reports the same people (boxes, scores and, with the box-only 'iou' tracker, ids) as ``--no-refine``,
    with some joints moved by Thunder and none moved farther than the refiner's distance gate."""
    import itertools

    from posestream.models.data.video import VideoWriter, iter_video_frames
    from posestream.models.refine import RefineConfig
    from posestream.service.cli import main

    # vtest.avi frames 50-52, losslessly (at frame 0 the shipped file's 3 people need no refinement).
    clip = tmp_path / "vtest50.mkv"
    frames = [rgb for _, _, rgb in itertools.islice(iter_video_frames(VTEST), 50, 53)]
    with VideoWriter(clip, frames[0].shape[1], frames[0].shape[0], 10.0, lossless=True) as writer:
        for rgb in frames:
            writer.write(rgb)
    outs = {}
    for flag in ("--refine", "--no-refine"):
        out = tmp_path / f"{flag}.jsonl"
        code = main(["track", str(clip), "--model", "spatialnet", "--tracker", "iou",
                     flag, "--out", str(out), "--quiet", "--device", "cpu"])  # fmt: skip
        assert code == 0
        outs[flag] = [json.loads(line) for line in out.read_text().splitlines()]
    refined, plain = outs["--refine"], outs["--no-refine"]
    assert len(refined) == len(plain) == 3
    moved = 0
    max_shift = RefineConfig().max_shift
    for fr, fp in zip(refined, plain, strict=True):
        assert len(fr["poses"]) == len(fp["poses"]) > 0
        for pr, pp in zip(fr["poses"], fp["poses"], strict=True):
            assert pr["track_id"] == pp["track_id"] and pr["score"] == pytest.approx(pp["score"])
            assert pr["box"] == pytest.approx(pp["box"])
            kr, kp = np.asarray(pr["keypoints"])[:, :2], np.asarray(pp["keypoints"])[:, :2]
            shift = np.linalg.norm(kr - kp, axis=1)
            x0, y0, x1, y1 = pp["box"]
            assert shift.max() <= max_shift * np.sqrt((x1 - x0) * (y1 - y0)) + 1e-3
            moved += int((shift > 0.5).sum())
    assert moved >= 3
