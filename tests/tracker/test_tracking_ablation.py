"""``benchmarks/tracking_ablation.py``'s row building and calibration choice (no models run)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import sys  # noqa: E402

from benchmarks.tracking_ablation import (  # noqa: E402
    _CachedTemporal,
    _row_settings,
    _temporal_rows,
    best_calibration,
    best_real_calibration,
    main,
    validation_clips,
    variants,
)


def test_rows_give_the_calibration_to_the_temporal_presets_only() -> None:
    rows = dict(variants(("oks", "he", "he+tie"), {"gate_he": 4.0}, {"gate_tie": 2.0}))
    assert rows["oks"].gate_he == 1.0 and rows["oks"].gate_tie == 2.0
    assert rows["he"].gate_he == 4.0 and rows["he+tie"].gate_he == 4.0
    assert rows["he+tie"].gate_tie == 2.0


def test_grid_rows_cover_every_combination_beside_an_oks_reference() -> None:
    rows = variants(("oks",), {"gate_he": 4.0}, {}, {"lambda_he": [0.5, 1.0], "gate_he": [2.0, 4.0]})
    labels = [label for label, _ in rows]
    assert labels[0] == "oks" and len(labels) == 5
    assert "he+tie lambda_he=0.5, gate_he=2.0" in labels
    cfg = dict(rows)["he+tie lambda_he=1.0, gate_he=2.0"]
    assert (cfg.preset, cfg.lambda_he, cfg.gate_he) == ("he+tie", 1.0, 2.0)  # the grid beats the calibration


def test_best_calibration_takes_the_best_idf1_then_mota_of_the_grid_rows() -> None:
    def row(label: str, idf1: float, mota: float, lam: float) -> dict:
        return {"tracker": label, "IDF1": idf1, "MOTA": mota, "IDs": 3, "settings": {"lambda_he": lam}}

    rows = [
        row("oks", 0.99, 0.99, 0.0),  # the reference row never wins
        row("he+tie lambda_he=1", 0.60, 0.50, 1.0),
        row("he+tie lambda_he=2", 0.70, 0.40, 2.0),
        row("he+tie lambda_he=3", 0.70, 0.45, 3.0),
    ]
    cal = best_calibration(rows, {"clips": ["val 5030"], "command": "x"}, "he+tie")
    assert cal["settings"] == {"lambda_he": 3.0}
    assert cal["scores"] == {"IDF1": 0.70, "MOTA": 0.45, "IDs": 3} and len(cal["grid"]) == 3


def test_real_rows_of_each_model_are_its_keypoint_presets_then_each_checkpoints_temporal_ones() -> None:
    """``--real --model spatialnet`` adds SpatialNet's KE / SIE rows; TemporalNet rows carry their card's
    settings, and a checkpoint of the other backbone is refused (load_temporal)."""
    from benchmarks.tracking_ablation import TEMPORALNET_SPATIAL_WEIGHTS, TEMPORALNET_WEIGHTS

    spatial = _temporal_rows([TEMPORALNET_SPATIAL_WEIGHTS], {}, "spatialnet")
    assert [label for label, _, _ in spatial] == ["oks", "iou", "sie", "ke", "ke+sie", "he", "tie", "he+tie"]
    assert all((t is None) == (label in ("oks", "iou", "sie", "ke", "ke+sie")) for label, _, t in spatial)
    settings = spatial[-1][2].tracker_settings
    assert settings and all(getattr(spatial[-1][1], k) == v for k, v in settings.items())
    movenet = _temporal_rows([TEMPORALNET_WEIGHTS], {"gate_tie": 9.0}, "movenet")
    assert [label for label, _, _ in movenet] == ["oks", "iou", "sie", "he", "tie", "he+tie"]
    assert all(cfg.gate_tie == 9.0 for _, cfg, _ in movenet)  # --set beats the card
    with pytest.raises(ValueError, match="trained on movenet features"):
        _temporal_rows([TEMPORALNET_WEIGHTS], {}, "spatialnet")


def test_real_grid_rows_are_box_references_then_the_grid_on_the_checkpoints_settings() -> None:
    from benchmarks.tracking_ablation import TEMPORALNET_SPATIAL_WEIGHTS

    rows = _temporal_rows([TEMPORALNET_SPATIAL_WEIGHTS], {}, "spatialnet", {"gate_tie": [2.0, 3.0]})
    assert [label for label, _, _ in rows] == ["oks", "iou", "he+tie gate_tie=2.0", "he+tie gate_tie=3.0"]
    assert rows[0][2] is None and rows[1][2] is None and rows[2][2] is rows[3][2] is not None
    settings = rows[2][2].tracker_settings
    assert rows[3][1].gate_tie == 3.0 and all(
        getattr(rows[3][1], k) == v for k, v in settings.items() if k != "gate_tie"
    )
    # a calibration written from a grid row keeps the card's other fields (gate_he), not only the grid's
    stored = _row_settings(rows[3][1], rows[3][2], {}, {"gate_tie": [2.0, 3.0]})
    assert stored == {**settings, "gate_tie": 3.0} and "gate_he" in stored
    assert _row_settings(rows[1][1], None, {}, {"gate_tie": [2.0]}) == {"gate_tie": 1.0}


def test_best_real_calibration_takes_the_fewest_broken_or_shared_tracklets_then_bad_links() -> None:
    def row(label: str, frag: int, shared: int, sw: int, lost: int, gate: float) -> dict:
        return {
            "tracker": label, "links": 100, "id_switches": sw, "lost": lost, "tracklets": 10,
            "fragmented": frag, "shared": shared, "settings": {"gate_tie": gate},
        }  # fmt: skip

    rows = [
        row("iou", 0, 0, 0, 0, 0.0),  # the reference rows never win
        row("he+tie gate_tie=2", 2, 0, 3, 0, 2.0),
        row("he+tie gate_tie=3", 1, 1, 1, 0, 3.0),  # as many bad tracklets as 2, fewer bad links
        row("he+tie gate_tie=4", 0, 3, 0, 0, 4.0),  # keeps every tracklet whole by sharing ids
    ]
    cal = best_real_calibration(rows, {"clips": ["vtest:0:400"], "command": "x"}, "he+tie")
    assert cal["settings"] == {"gate_tie": 3.0} and cal["scores"]["shared"] == 1 and len(cal["grid"]) == 3


def test_cached_temporal_serves_the_pipelines_calls_once_per_batch_pair() -> None:
    """``ModelDetector`` calls ``tvf_map`` then ``tie(..., tvf)`` (and the backward TIE with the same
    map): the cache must offer both, compute each pair's map once, and pass it on unchanged."""
    calls: list[tuple] = []

    class Inner:
        config = object()

        def tvf_map(self, prev, cur):  # noqa: ANN001, ANN202
            calls.append((prev, cur))
            return ("tvf", prev, cur)

        def tie(self, prev, cur, cur_kp, prev_kp, tvf=None):  # noqa: ANN001, ANN202
            return tvf

    cached = _CachedTemporal(Inner())  # type: ignore[arg-type]
    a, b, c = object(), object(), object()
    tvf = cached.tvf_map(a, b)
    assert cached.tvf_map(a, b) is tvf and cached.tie(a, b, None, None) is tvf
    assert cached.tie(a, b, None, None, tvf) is tvf and calls == [(a, b)]
    assert cached.tie(b, c, None, None) == ("tvf", b, c) and len(calls) == 2


def test_validation_clips_are_consecutive_seeds_from_5030_and_bounded() -> None:
    assert [name for name, _ in validation_clips(5)] == [f"val {s}" for s in range(5030, 5035)]
    with pytest.raises(ValueError, match="1..20"):
        validation_clips(0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--validation-clips", "5"], "needs --validation"),
        (["--validation", "--validation-clips", "21"], "must be 1..20"),
        (["--grid", "lambda_he=1,2"], "validation clips only"),
        (["--validation", "--grid", "preset=1"], "numeric TrackerConfig field"),
        (["--real", "--validation"], "--real scores"),
        (["--real", "--validation", "--grid", "lambda_he=1,2"], "--real scores"),
        (["--real", "--grid", "lambda_he=1,2"], "validation clips only"),
        (["--real-clips", "train"], "--real-clips needs --real"),
        (["--real", "--calibrate", "--set", "gate_tie=2"], "--calibrate needs --grid"),
        (["--temporal", "no/such.pt"], "no such file"),
        (["--temporal", "a.pt", "--temporal", "b.pt"], "need --real"),
    ],
)
def test_bad_flags_exit_2_before_any_model_runs(monkeypatch, capsys, argv, message) -> None:
    monkeypatch.setattr(sys, "argv", ["tracking_ablation.py", *argv])
    assert main() == 2
    assert message in capsys.readouterr().err
