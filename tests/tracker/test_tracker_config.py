"""TrackerConfig: seed 000 defaults and validation messages that say what to fix."""

import pytest

from posestream.tracker.config import PRESET_TERMS, TrackerConfig


def test_defaults_follow_seed_000():
    cfg = TrackerConfig()
    assert cfg.preset == "he+tie" and cfg.terms == ("he", "tie")
    assert (cfg.weight("he"), cfg.weight("tie")) == (3.0, 1.0)
    assert cfg.weight("oks") == 1.0


def test_every_preset_is_valid():
    for preset, terms in PRESET_TERMS.items():
        assert TrackerConfig(preset=preset).terms == terms


def test_zero_weight_switches_a_term_off():
    assert TrackerConfig(lambda_tie=0.0).terms == ("he",)
    with pytest.raises(ValueError, match="at least one lambda"):
        TrackerConfig(preset="he", lambda_he=0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "deepsort"}, "not a tracker preset; use one of"),
        ({"lambda_he": -1.0}, "lambda_he must be >= 0"),
        ({"gate_tie": 0.0}, "gate_tie must be > 0"),
        ({"n_init": 0}, "n_init must be an integer >= 1"),
        ({"max_missed": 1.5}, "max_missed must be an integer"),
        ({"gallery_size": -1}, "gallery_size must be an integer >= 0"),
        ({"embedding_momentum": 1.0}, r"embedding_momentum must be in \[0, 1\)"),
        ({"reid_max_distance": 5.0}, r"reid_max_distance must be in \[0, 4\]"),
        ({"keypoint_threshold": "high"}, "keypoint_threshold must be a number"),
        ({"report_tentative": 1}, "report_tentative must be True or False"),
    ],
)
def test_invalid_values_say_what_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrackerConfig(**kwargs)
