"""Every MoveNet tracker with every ``--input-size`` list (issue 16 item 4), through the real CLI on vtest.avi.

TemporalNet reads stride-4 features of its training scale whatever scales the estimator
runs (``ModelPipeline._at_temporal_scale``): the estimator's own pass at that scale, or one
extra undecoded pass (``PoseEstimator.feature_pass``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posestream.models.data.real_clips import VTEST

TRACKERS = ("he+tie", "he", "tie", "oks", "iou")
SIZES = (("512",), pytest.param(("256", "512", "640"), marks=pytest.mark.slow), ())  # () = the default policy
FRAMES = 6


@pytest.fixture(scope="module")
def vtest() -> Path:
    path = VTEST.resolved()
    if not path.is_file():
        pytest.skip(f"{path} missing; install the Debian package opencv-doc")
    return path


@pytest.mark.weights
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "+".join(s) or "default")
@pytest.mark.parametrize("tracker", TRACKERS)
def test_every_tracker_runs_with_every_input_size_list(
    tracker: str, sizes: tuple[str, ...], vtest: Path, temporalnet_checkpoint: Path, tmp_path: Path
) -> None:
    from posestream.service.cli import main

    out = tmp_path / "poses.jsonl"
    args = ["track", str(vtest), "--tracker", tracker, "--max-frames", str(FRAMES), "--batch-size", "3",
            "--device", "cpu", "-q", "--out", str(out)]  # fmt: skip
    if sizes:
        args += ["--input-size", *sizes]
    assert main(args) == 0
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    assert [f["frame_index"] for f in frames] == list(range(FRAMES))
    ids = [[p["track_id"] for p in f["poses"]] for f in frames]
    # The first frames of vtest.avi: three pedestrians walking apart, nobody entering or leaving.
    # Every person is tracked from the first frame on, and each keeps its id: as many tracks as people.
    assert all(len(f) >= 3 for f in ids), ids
    assert all(t >= 0 for f in ids for t in f), ids
    assert {t for f in ids for t in f} == set(ids[0]), ids
    assert all(set(f) == set(ids[0]) for f in ids), ids


@pytest.mark.weights
def test_temporal_features_do_not_depend_on_the_scales_that_ran(vtest: Path, movenet_tflite: Path) -> None:
    """The extra pass of a 512-only estimator gives exactly the 256 features a 256 estimator returns."""
    import itertools

    import torch

    from posestream.models.data.video import iter_video_frames
    from posestream.models.estimator import EstimatorConfig, PoseEstimator

    torch.set_num_threads(1)
    frames = [rgb for _, _, rgb in itertools.islice(iter_video_frames(vtest), 2)]
    at_256 = PoseEstimator(EstimatorConfig(input_sizes=(256,), device="cpu"))(frames)
    features, heatmaps, canvas, transforms = PoseEstimator(
        EstimatorConfig(input_sizes=(512,), device="cpu")
    ).feature_pass(frames, 256)
    assert torch.equal(features, at_256.features) and torch.equal(heatmaps, at_256.heatmaps)
    assert np.array_equal(canvas, at_256.canvas) and transforms == at_256.transforms
