"""The ablation benchmark's variant sets: same start, one difference each (benchmarks/spatialnet_ablation.py)."""

from __future__ import annotations

import argparse

import torch

from benchmarks import spatialnet_ablation as A
from posestream.models.train import load_train_config


def _runs(variants: str) -> dict[str, A._Run]:
    cfg = load_train_config("configs/spatialnet_ablation.yaml", {"steps": 2})
    cfg, init, prior = A._initial_weights(cfg, None)
    return A._initial_runs(argparse.Namespace(variants=variants), cfg, init, prior)


def test_tradeoff_variants_differ_only_in_background_weight():
    runs = _runs("tradeoff")
    assert list(runs) == list(A.TRADEOFF)
    base, trade = runs.values()
    assert {r.net.config.weights.det_background for r in runs.values()} == {1.0, 0.1}
    # Everything else about the two networks is the same: the switches, the other weights, the start.
    same = [(c.use_ke, c.use_aux, c.use_sie, c.use_pgg, c.weights.ke, c.weights.sie)
            for c in (base.net.config, trade.net.config)]  # fmt: skip
    assert same[0] == same[1] == (True, True, True, False, same[0][4], same[0][5])
    for (k, a), (_, b) in zip(base.net.state_dict().items(), trade.net.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_tradeoff_verdict_reads_the_numbers():
    rows = [
        {"variant": name, "AP": ap, "oracle": {"AP": gt}, "real_dev": {"AP": real}}
        for name, ap, gt, real in zip(A.TRADEOFF, (0.30, 0.25), (0.50, 0.55), (0.10, 0.10), strict=True)
    ]
    lines = A._verdict(rows, "tradeoff")
    assert lines[0].startswith(
        "- held-out synthetic AP: the tradeoff loss does not raise it (0.300 -> 0.250)"
    )
    assert "raises it (0.500 -> 0.550)" in lines[1]
    assert "does not raise it (0.100 -> 0.100)" in lines[2]


def test_table3_variants_share_their_start():
    runs = _runs("table3")
    assert list(runs) == list(A.VARIANTS)
    states = [r.net.state_dict() for r in runs.values()]
    assert all(torch.equal(states[0][k], s[k]) for s in states[1:] for k in states[0])
