"""Choosing SpatialNet's decoding on real images: the coordinate ascent, and the real dev
train-split tuner scoring exactly as ``benchmarks/real_dev.py`` does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks import real_dev as R
from benchmarks import tune_real_decode as T
from posestream.models.decode import DecodeConfig
from posestream.models.train import DECODE_GRID, coordinate_ascent


def test_coordinate_ascent_finds_the_grid_optimum_and_keeps_only_strict_gains() -> None:
    grid = {"detection_threshold": (0.05, 0.1, 0.3), "nms_kernel": (3, 5, 7), "prior_threshold": (0.0, 0.2)}

    def ap(d: DecodeConfig) -> float:  # best at (0.1, 7); nms 5 and 3 tie, the prior never helps
        return -abs(d.detection_threshold - 0.1) - (0.0 if d.nms_kernel == 7 else 0.01) - d.prior_threshold

    start = DecodeConfig(detection_threshold=0.3, nms_kernel=5, prior_threshold=0.0)
    best, trail = coordinate_ascent(start, ap, grid, rounds=2, has_prior=False)
    assert (best.detection_threshold, best.nms_kernel) == (0.1, 7)
    assert trail[0] == {"field": "start", "value": None, "AP": ap(start)}
    assert all(t["field"] != "prior_threshold" for t in trail)  # no prior: its fields are not tried
    assert not any(t["field"] == "nms_kernel" and t["value"] == 3 and t["AP"] > ap(best) for t in trail)
    # Round 1: thresholds 0.05, 0.1, then 0.3 again against the new best 0.1, kernels 3 and 7;
    # round 2: thresholds 0.05 and 0.3, kernels 3 and 5.
    assert [t["value"] for t in trail[1:]] == [0.05, 0.1, 0.3, 3, 7, 0.05, 0.3, 3, 5]
    with_prior, _ = coordinate_ascent(start, ap, grid, rounds=1, has_prior=True)
    assert with_prior.prior_threshold == 0.0


def test_tuner_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert T.main(["--weights", str(tmp_path / "missing.pt")]) == 2
    assert "no such weights file" in capsys.readouterr().err


@pytest.mark.weights
@pytest.mark.skipif(
    not (R.DATA_DIR / "annotations.json").is_file(),
    reason=f"the real dev set is not at {R.DATA_DIR} (it lives beside the clone in ../shared; never in the repo)",
)
def test_tuner_scores_the_stored_decoding_as_real_dev_does(tmp_path: Path) -> None:
    from posestream.models.data.splits import real_dev_split
    from posestream.models.weights import SPATIALNET_MOVENET, checkpoint_path

    weights = checkpoint_path(SPATIALNET_MOVENET)
    ids = list(real_dev_split().train)[:2]
    assert not set(ids) & set(real_dev_split().eval)
    # Long side 256 keeps the test short (the network runs once per image and copy here).
    best, trail = T.tune(weights, ids, size=256, fields=["min_joints"], rounds=1)
    reference = R.evaluate(R.spatialnet_predictor(f"spatialnet:{weights}:256"), image_ids=ids)["total"]["AP"]
    assert trail[0]["AP"] == pytest.approx(reference, abs=1e-9)
    assert {t["field"] for t in trail[1:]} == {"min_joints"}
    # One round over DECODE_GRID's values in order: each value unlike the best so far is tried,
    # and a candidate is kept only if it scores strictly higher.
    stored = torch.load(weights, map_location="cpu", weights_only=False)["config"]["decode"]["min_joints"]
    value, top, rest = stored, trail[0]["AP"], iter(trail[1:])
    for candidate in DECODE_GRID["min_joints"]:
        if candidate == value:
            continue
        step = next(rest)
        assert step["value"] == candidate
        if step["AP"] > top:
            value, top = candidate, step["AP"]
    assert next(rest, None) is None and best.min_joints == value
    with pytest.raises(ValueError, match="unknown decode fields"):
        T.tune(weights, ids, size=256, fields=["min_joint"], rounds=1)
