"""The synthetic seed splits (``posestream.models.data.splits``): one definition, read by training and the CLI."""

from __future__ import annotations

import pytest

from posestream.models.data import splits as S


def test_held_out_and_decode_validation_are_disjoint_from_every_training_range() -> None:
    trained = (S.SPATIAL_TRAIN, S.TEMPORAL_TRAIN, S.SCORING_TRAIN, S.RECURRENT_TRAIN)
    tuning = (*trained, S.TRACKER_VALIDATION, S.DECODE_VALIDATION)
    for r in tuning:
        assert not S.overlapping(r, S.HELD_OUT), r
    for r in (*trained, S.TRACKER_VALIDATION):
        assert not S.overlapping(r, S.DECODE_VALIDATION), r
    for i, a in enumerate(trained):  # no two networks train on the same clips
        for b in trained[i + 1 :]:
            assert not S.overlapping(a, b), (a, b)
    # Documented: the default TemporalNet run (40 clips) reaches the first 10 tracker-validation
    # seeds; the shipped checkpoints trained on 5000..5029 and 5000..5019 only.
    assert S.overlapping(S.TEMPORAL_TRAIN, S.TRACKER_VALIDATION) == range(5030, 5040)


def test_seed_range_basics() -> None:
    r = S.SeedRange(9000, 8)
    assert (r.last, list(r.seeds(2)), str(r)) == (9007, [9000, 9001], "9000..9007")
    assert 9007 in r and 9008 not in r
    with pytest.raises(ValueError):
        r.seeds(9)
    with pytest.raises(ValueError):
        S.SeedRange(0, 0)


def test_training_defaults_read_the_splits() -> None:
    pytest.importorskip("torch")
    from posestream.models.data.datasets import SyntheticDataConfig
    from posestream.models.train_temporal import TrainTemporalConfig

    assert (SyntheticDataConfig().seed_base, SyntheticDataConfig().clips) == (1000, 200)
    data = TrainTemporalConfig().data
    assert range(data.seed_base, data.seed_base + data.clips) == S.TEMPORAL_TRAIN.seeds()
