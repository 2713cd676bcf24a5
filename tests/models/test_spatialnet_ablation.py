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


def test_table3_verdict_includes_the_real_dev_set_when_scored():
    aps = {"KE": (0.2, 0.3, 0.10), "SIE": (0.25, 0.5, 0.12), "KE+SIE": (0.26, 0.4, 0.11),
           "KE+SIE+aux": (0.27, 0.4, 0.13), A.PGG_NAME: (0.3, 0.45, 0.11)}  # fmt: skip
    rows = [
        {"variant": k, "AP": a, "oracle": {"AP": g}, "real_dev": {"AP": r}} for k, (a, g, r) in aps.items()
    ]
    ap, gt, real = A._verdict(rows, "table3")
    assert ap.startswith("- AP: full model (KE+SIE+aux+PGG) beats KE-only and SIE-only: yes")
    assert gt.startswith("- AP with ground-truth heatmaps: full model") and ": no;" in gt
    assert real.startswith("- real dev eval AP: full model") and ": no;" in real  # 0.11 < SIE's 0.12


def test_transfer_variants_share_one_frozen_pass_with_the_live_loss():
    """On the frozen pyramid, one shared pass per batch trains each variant exactly as its own would."""
    cfg = load_train_config("configs/spatialnet_ablation_transfer.yaml",
                            {"steps": 1, "real_fraction": 0.0, "batch_size": 2,
                             "synthetic": {"seed_base": 1000, "clips": 1, "frames": 2, "people": 5, "width": 640, "height": 480}})  # fmt: skip
    cfg, init, prior = A._initial_weights(cfg, None)
    args = argparse.Namespace(variants="table3")
    shared, live = A._initial_runs(args, cfg, init, prior), A._initial_runs(args, cfg, init, prior)
    batch = next(A._batches(cfg))
    features = A._shared_features(next(iter(shared.values())).net, batch, None)
    assert features.shape == (2, 24, 48, 64) and not features.requires_grad
    for name in A.VARIANTS:
        shared[name].step(batch, features)
        live[name].step(batch)
        assert torch.allclose(torch.tensor(shared[name].losses["total"]),
                              torch.tensor(live[name].losses["total"]), rtol=1e-5), name  # fmt: skip
    assert (
        A._section_name({"variants": "table3", "cfg": cfg, "init": None})
        == "spatialnet_ablation_movenet_transfer"
    )
