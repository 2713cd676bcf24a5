"""The composition root's configuration: the tracker's precedence (default < card < settings), the
settings' tracker overrides from nested environment variables, the weights folder and the model list."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from posestream.service.settings import MODEL_NAMES, Settings


def test_tracker_precedence_default_then_card_then_settings() -> None:
    from posestream.service.pipeline import resolve_tracker_config
    from posestream.tracker.config import TrackerConfig

    default = TrackerConfig(preset="he+tie")
    card = {"gate_he": 2.5, "lambda_he": 0.75}
    assert resolve_tracker_config("he+tie") == default
    c = resolve_tracker_config("he+tie", card)
    assert (c.gate_he, c.lambda_he, c.lambda_tie) == (2.5, 0.75, default.lambda_tie)
    c = resolve_tracker_config("he+tie", card, {"gate_he": 1.5, "n_init": "5"})
    assert (c.gate_he, c.lambda_he, c.n_init) == (1.5, 0.75, 5)
    with pytest.raises(ValueError, match="unknown tracker field"):
        resolve_tracker_config("he+tie", card, {"gate_hee": 1.0})


def test_tracker_overrides_from_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSESTREAM_TRACKER", "iou")
    monkeypatch.setenv("POSESTREAM_TRACKER_OVERRIDES__GATE_IOU", "0.7")
    monkeypatch.setenv("POSESTREAM_TRACKER_OVERRIDES__N_INIT", "1")
    monkeypatch.setenv("POSESTREAM_TRACKER_OVERRIDES__REPORT_TENTATIVE", "true")
    settings = Settings()
    assert settings.tracker_overrides == {"gate_iou": 0.7, "n_init": 1, "report_tentative": True}
    assert isinstance(settings.tracker_overrides["n_init"], int)
    from posestream.service.pipeline import pipeline_from_settings

    config = pipeline_from_settings(settings.model_copy(update={"model": "blobs"})).tracker_config
    assert (config.preset, config.gate_iou, config.n_init, config.report_tentative) == ("iou", 0.7, 1, True)


def test_bad_tracker_overrides_fail_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSESTREAM_TRACKER_OVERRIDES__GATE_HEE", "0.5")
    with pytest.raises(ValidationError, match="unknown tracker field"):
        Settings()
    monkeypatch.delenv("POSESTREAM_TRACKER_OVERRIDES__GATE_HEE")
    monkeypatch.setenv("POSESTREAM_TRACKER_OVERRIDES__N_INIT", "many")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("POSESTREAM_TRACKER_OVERRIDES__N_INIT", "0")  # TrackerConfig's own range check
    with pytest.raises(ValidationError):
        Settings()
    with pytest.raises(ValidationError, match="preset"):
        Settings(tracker_overrides={"preset": "oks"})


def test_tracker_config_is_logged_once_with_its_sources(caplog: pytest.LogCaptureFixture) -> None:
    from posestream.service.pipeline import build_pipeline

    with caplog.at_level("INFO", logger="posestream.service.pipeline"):
        build_pipeline("blobs", "oks", tracker_overrides={"gate_oks": 0.5})
    lines = [r.getMessage() for r in caplog.records if r.name == "posestream.service.pipeline"]
    assert (
        len(lines) == 1 and "tracker oks" in lines[0] and "gate_oks=0.5 (settings, default 0.9)" in lines[0]
    )


def test_weights_dir_setting_and_checkpoint_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from posestream.models import weights as W

    monkeypatch.delenv(W.ENV_WEIGHTS_DIR, raising=False)
    checkout = Path(__file__).resolve().parents[2]
    assert Settings().weights_dir == W.weights_dir() == checkout / "weights"  # the source checkout's
    assert W.checkpoint_path(W.TEMPORALNET_MOVENET) == checkout / "weights" / "temporalnet_movenet.pt"
    assert W.cache_root() == checkout / "weights" / "cache"
    monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(tmp_path))
    assert Settings().weights_dir == tmp_path
    assert (
        W.checkpoint_path(W.SPATIALNET_MOVENET, Settings().weights_dir) == tmp_path / "spatialnet_movenet.pt"
    )
    assert (
        W.model_path(W.MOVENET_MULTIPOSE)
        == tmp_path / "cache" / "movenet_multipose_lightning" / "movenet.tflite"
    )
    with pytest.raises(ValueError, match="bare file name"):
        W.checkpoint_path("../elsewhere.pt", tmp_path)


def test_one_model_list_for_settings_cli_and_builder() -> None:
    from posestream.service.cli import build_parser

    assert MODEL_NAMES == ("movenet", "spatialnet", "blobs")
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("track", "worker"):
        model = next(a for a in sub.choices[command]._actions if a.dest == "model")
        assert tuple(model.choices) == MODEL_NAMES, command
    with pytest.raises(ValidationError):
        Settings(model="thunder")
    from posestream.service.pipeline import build_pipeline

    with pytest.raises(ValueError, match="movenet, spatialnet, blobs"):
        build_pipeline("thunder")
