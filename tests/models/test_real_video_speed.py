"""``benchmarks/real_video_speed.py``: its greedy IoU reference tracker and its side-by-side runner.

No timing assertions: the runner is checked for what it reports (frames, ids, parts that add up).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import real_video_speed as S

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def _box(x: float, y: float, w: float = 40.0, h: float = 100.0) -> list[float]:
    return [x, y, x + w, y + h]


def test_greedy_tracker_keeps_ids_of_moving_people() -> None:
    t = S.GreedyIouTracker(min_iou=0.3, max_missed=2)
    first = t.update(np.array([_box(0, 0), _box(200, 0)]))
    assert list(first) == [0, 1]
    # Both move a little; listed in the other order: ids follow the boxes, not the order.
    assert list(t.update(np.array([_box(205, 2), _box(4, 1)]))) == [1, 0]
    assert list(t.update(np.zeros((0, 4)))) == []
    # Back after one missed frame (within max_missed): same id; a newcomer gets a new one.
    assert list(t.update(np.array([_box(6, 0), _box(500, 0)]))) == [0, 2]


def test_greedy_tracker_takes_the_highest_iou_pair_first() -> None:
    t = S.GreedyIouTracker(min_iou=0.1, max_missed=5)
    t.update(np.array([_box(0, 0)]))
    # Two candidates overlap track 0; the closer one (higher IoU) continues it, listed second.
    ids = t.update(np.array([_box(20, 0), _box(2, 0)]))
    assert ids[1] == 0 and ids[0] == 1


def test_greedy_tracker_drops_a_track_after_max_missed_frames() -> None:
    t = S.GreedyIouTracker(min_iou=0.3, max_missed=2)
    t.update(np.array([_box(0, 0)]))
    for _ in range(3):  # one more than max_missed
        t.update(np.zeros((0, 4)))
    assert list(t.update(np.array([_box(0, 0)]))) == [1]
    assert t.ids == [1]


@pytest.mark.weights
@pytest.mark.skipif(not VTEST.is_file(), reason=f"{VTEST} missing (apt-get install opencv-doc)")
def test_runner_times_reference_and_default_on_real_frames(
    movenet_tflite: Path, temporalnet_checkpoint: Path
) -> None:
    import torch

    from benchmarks.real_dev import tflite_predictor

    torch.set_num_threads(1)
    clips = S.load_clips(["vtest:200:202"])
    assert [len(v) for v in clips.values()] == [2]
    reference = S.ReferencePipeline(tflite_predictor(512, 1))
    pipelines = S.build_variants(["default"])
    clocks = {n: S.instrument(p) for n, p in pipelines.items()}
    result = S.run_side_by_side(reference, pipelines, clips, batch_size=2, rounds=1, clocks=clocks)
    assert result["frames"] == 2
    assert set(result["ms_per_frame"]) == {S.REFERENCE, "default"}
    assert all(v > 0 for v in result["ms_per_frame"].values())
    # vtest frame 200 has 7 people; both pipelines find and track several of them.
    for name in (S.REFERENCE, "default"):
        assert result["people"][name] >= 3
        assert result["tracks"][name]["vtest:200:202"] >= 3
    parts = dict(S.breakdown(clocks["default"], result["frames"]))
    # The default flips the 256 pass only (``flip_max_size``).
    assert {"network 256 (plain + mirrored)", "network 512"} <= set(parts)
    assert parts["Thunder refinement (crops, masks, network, gates)"] > 0
    assert parts["TemporalNet HE"] > 0 and parts["TemporalNet TIE"] > 0
    summed = sum(v for k, v in parts.items() if k not in ("total", "  of which Thunder network"))
    assert summed == pytest.approx(parts["total"], rel=1e-6)
    # The timed turn ran on the same ms as recorded for the row (the clock saw only timed calls).
    assert parts["total"] == pytest.approx(result["ms_per_frame"]["default"], rel=0.05)


def test_each_timed_variant_is_the_configuration_its_ap_comes_from() -> None:
    """The speed table's AP column reads real_dev.py rows by spec: each spec must build that variant."""
    import dataclasses

    from benchmarks import real_dev as R
    from posestream.models.estimator import EstimatorConfig
    from posestream.models.refine import RefineConfig

    base = EstimatorConfig(device="cpu")
    same_execution = {f: getattr(base, f) for f in S.EXECUTION_FIELDS}
    for name, (overrides, spec) in S.VARIANTS.items():
        timed = dataclasses.replace(S.variant_config(base, overrides), **same_execution)
        assert R.estimator_config(spec) == timed, name
    assert S.variant_config(base, {"refine": "all"}).refine == RefineConfig(max_mean_joint_score=None)
    assert R.estimator_config("est:256+512:confidence:flipall").flip_max_size is None
    # Specs name MultiPose alone unless they say ``refine``.
    assert not R.estimator_config("est:512").refine.enabled
    assert R.estimator_config("est:512:refine").refine == RefineConfig()
