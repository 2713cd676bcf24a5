"""Seed 001's recurrent decoder: ConvLSTM shapes, the Hungarian-matched loss, the stop target,
the unrolling and within-image batching, training, decoding, and the CLI's errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posestream.models.recurrent_decoder import (
    ConvLSTMCell,
    RecurrentDecoder,
    RecurrentDecoderConfig,
    decode_sequence,
    match_people,
    matched_heat_loss,
    stop_targets,
    unrolled_loss,
)
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.models.targets import TargetConfig, build_spatial_targets, to_input_coords
from posestream.models.train_recurrent import count_accuracy, person_heatmaps, visible_people

J = NUM_KEYPOINTS
SMALL = RecurrentDecoderConfig(feature_channels=4, project_channels=8, hidden=(8, 4), max_steps=6)


def test_convlstm_shapes_and_state() -> None:
    cell = ConvLSTMCell(5, 7, kernel=3)
    x = torch.randn(2, 5, 6, 9)
    h0 = torch.zeros(2, 7, 6, 9)
    h, c = cell(x, (h0, h0.clone()))
    assert h.shape == c.shape == (2, 7, 6, 9)
    assert h.abs().max() < 1  # o * tanh(c)
    h2, _ = cell(x, (h, c), bias=torch.ones(2, 28))
    assert h2.shape == h.shape and not torch.allclose(h2, h)


def test_decoder_step_shapes() -> None:
    dec = RecurrentDecoder(SMALL)
    ctx = dec.prepare(torch.randn(3, 4, 12, 16), torch.rand(3, J, 12, 16))
    assert ctx.inputs.shape == (3, 8, 6, 8)  # pool 2
    state, pooled = dec.initial_state(ctx)
    heat, logit, state, pooled = dec.person(ctx, state, pooled, torch.Generator().manual_seed(0))
    assert heat.shape == (3, J, 12, 16) and logit.shape == (3,) and pooled.shape == (3, 12)
    assert [s[0].shape for s in state] == [(3, 8, 6, 8), (3, 4, 6, 8)]
    # The output selects from SpatialNet's heatmaps: never above them.
    assert bool((heat <= ctx.heatmaps + 1e-6).all())
    with pytest.raises(ValueError, match="multiple of pool"):
        dec.prepare(torch.randn(1, 4, 11, 16), torch.rand(1, J, 11, 16))


def _one_joint_map(y: int, x: int, value: float, size: int = 5) -> torch.Tensor:
    m = torch.zeros(J, size, size)
    m[0, y, x] = value
    return m


def test_hungarian_loss_hand_computed_and_order_free() -> None:
    gt = torch.stack([_one_joint_map(1, 1, 1.0), _one_joint_map(3, 3, 1.0)])
    pred = torch.stack([_one_joint_map(1, 1, 0.5), _one_joint_map(3, 3, 0.8)])
    loss, rows, cols = matched_heat_loss(pred, gt)
    # (0.5 - 1)^2 + (0.8 - 1)^2; the other pairing would cost 0.25 + 1 + 0.64 + 1.
    assert float(loss) == pytest.approx(0.29, abs=1e-6)
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 1]
    swapped, rows, cols = matched_heat_loss(pred.flip(0), gt)
    assert float(swapped) == pytest.approx(0.29, abs=1e-6)
    assert cols.tolist() == [1, 0]
    # More predictions than people: only min(T, Z) pairs, the best ones.
    extra = torch.cat([pred, _one_joint_map(0, 4, 0.3)[None]])
    assert len(match_people(extra, gt)[0]) == 2
    assert float(matched_heat_loss(extra, gt)[0]) == pytest.approx(0.29, abs=1e-6)
    assert float(matched_heat_loss(pred[:0], gt)[0]) == 0.0


def test_stop_targets() -> None:
    assert stop_targets(3, 1).tolist() == [1, 1, 1, 0]  # under-estimate: Z + 1 long
    assert stop_targets(3, 3).tolist() == [1, 1, 1, 0]
    assert stop_targets(2, 4).tolist() == [1, 1, 0, 0, 0]  # over-estimate: Z_hat + 1 long
    assert stop_targets(0, 0).tolist() == [0]
    with pytest.raises(ValueError):
        stop_targets(-1, 0)


def _scene(rng: np.random.Generator, n: int, h: int = 16, w: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """n people of 17 joints in a (h, w) map: (n, J, h, w) own heatmaps and (J, h, w) their max."""
    kp = np.zeros((n, J, 3), np.float32)
    for k in range(n):
        kp[k, :, 0] = rng.uniform(2, 4 * w - 8)
        kp[k, :, 1] = rng.uniform(2, 4 * h - 8)
        kp[k, :, :2] += rng.normal(0, 4, (J, 2))
        kp[k, :, 2] = 2
    people = torch.from_numpy(np.stack([build_spatial_targets(kp[k : k + 1], h, w, TargetConfig()).heatmaps
                                        for k in range(n)]))  # fmt: skip
    return people, people.amax(0)


def test_unroll_length_follows_the_stop_target() -> None:
    rng = np.random.default_rng(0)
    scenes = [_scene(rng, n) for n in (1, 3)]
    people = [p for p, _ in scenes]
    heat = torch.stack([m for _, m in scenes])
    feats = torch.randn(2, 4, 16, 16)
    dec = RecurrentDecoder(SMALL)
    with torch.no_grad():  # P_t ~ 1 everywhere: nobody stops, the unroll runs to max_steps
        dec.stop.bias.fill_(20.0)
    out = unrolled_loss(dec, dec.prepare(feats, heat), people, backward=False)
    assert out["steps"] == SMALL.max_steps
    with torch.no_grad():  # P_t ~ 0: each image runs its Z + 1 steps of the stop target, the batch max(Z) + 1
        dec.stop.bias.fill_(-20.0)
    out = unrolled_loss(dec, dec.prepare(feats, heat), people, backward=False)
    assert out["steps"] == 3 + 1
    # P_t ~ 0 < omega on every step, and confident_heat_loss: no heatmap is penalised.
    assert out["heat"] == 0.0 and out["stop"] > 0


def test_within_image_batching_same_loss_and_gradients_flow() -> None:
    rng = np.random.default_rng(1)
    people, heat = _scene(rng, 1)
    feats = torch.randn(1, 4, 16, 16)
    torch.manual_seed(0)
    dec = RecurrentDecoder(SMALL)
    results = {}
    for every in (1, 8):
        d = RecurrentDecoder(SMALL)
        d.load_state_dict(dec.state_dict())
        d.config = RecurrentDecoderConfig(**{**SMALL.__dict__, "backprop_every": every})
        out = unrolled_loss(d, d.prepare(feats, heat[None]), [people], torch.Generator().manual_seed(3))
        grads = [p.grad for p in d.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        results[every] = out
    # One person: cutting the graph every step changes no forward value.
    assert results[1]["total"] == pytest.approx(results[8]["total"], rel=1e-5)
    assert results[1]["steps"] == results[8]["steps"]


def test_within_image_batching_assigns_each_person_once() -> None:
    rng = np.random.default_rng(4)
    people, heat = _scene(rng, 3)
    cfg = RecurrentDecoderConfig(**{**SMALL.__dict__, "backprop_every": 1, "confident_heat_loss": False})
    dec = RecurrentDecoder(cfg)
    with torch.no_grad():  # nobody stops: the unroll runs max_steps (6) past the 3 people
        dec.stop.bias.fill_(20.0)
    out = unrolled_loss(dec, dec.prepare(torch.randn(1, 4, 16, 16), heat[None]), [people])
    # One person per one-step chunk, each matched once against those not yet assigned.
    assert out["steps"] == cfg.max_steps and out["matched"] == 3
    assert dec.project.weight.grad is not None and dec.project.weight.grad.abs().sum() > 0


def test_training_lowers_the_loss() -> None:
    rng = np.random.default_rng(2)
    scenes = [_scene(rng, n) for n in (1, 2, 3, 2)]
    people = [p for p, _ in scenes]
    heat = torch.stack([m for _, m in scenes])
    feats = torch.randn(4, 4, 16, 16)
    torch.manual_seed(0)
    # Every step t < Z gets the heatmap loss, so a falling P_t cannot hide it.
    dec = RecurrentDecoder(RecurrentDecoderConfig(**{**SMALL.__dict__, "confident_heat_loss": False}))
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    heat_losses, stop_losses = [], []
    for _ in range(40):
        opt.zero_grad()
        out = unrolled_loss(dec, dec.prepare(feats, heat), people, gen)
        heat_losses.append(out["heat"])
        stop_losses.append(out["stop"])
        opt.step()
    assert np.mean(heat_losses[-5:]) < 0.7 * np.mean(heat_losses[:5]), heat_losses
    assert np.mean(stop_losses[-5:]) < np.mean(stop_losses[:5]), stop_losses


def _gaussian_person(centres: np.ndarray, h: int = 20, w: int = 24) -> torch.Tensor:
    """(J, h, w) maps, one exp(-d^2 / 4) peak per joint at ``centres`` (J, 2) output cells."""
    ys, xs = np.mgrid[0:h, 0:w]
    maps = [np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 4.0) for cx, cy in centres]
    return torch.from_numpy(np.stack(maps).astype(np.float32))


def test_decode_constructed_sequence() -> None:
    rng = np.random.default_rng(3)
    a = np.stack([rng.uniform(3, 20, J), rng.uniform(3, 16, J)], axis=1)
    b = np.stack([rng.uniform(3, 20, J), rng.uniform(3, 16, J)], axis=1)
    person_b = _gaussian_person(b)
    person_b[5] *= 0.01  # one joint below joint_threshold (0.015)
    heats = torch.stack([_gaussian_person(a), person_b, _gaussian_person(a)])
    kp, scores = decode_sequence(heats, torch.tensor([0.9, 0.8, 0.1]), RecurrentDecoderConfig())
    assert kp.shape == (2, J, 3) and scores.shape == (2,)
    np.testing.assert_allclose(kp[0, :, :2], to_input_coords(a, 4), atol=0.05)
    np.testing.assert_allclose(
        np.delete(kp[1, :, :2], 5, 0), to_input_coords(np.delete(b, 5, 0), 4), atol=0.05
    )
    assert kp[1, 5, 2] == 0.0 and (np.delete(kp[1, :, 2], 5) > 0.9).all()
    assert scores[0] == pytest.approx(0.9 * kp[0, :, 2].mean(), rel=1e-5)
    assert scores[1] == pytest.approx(0.8 * kp[1, :, 2].mean(), rel=1e-5)
    # Decoding stops at the first P_t below omega, whatever comes after.
    kp, _ = decode_sequence(heats, torch.tensor([0.9, 0.1, 0.9]), RecurrentDecoderConfig())
    assert len(kp) == 1
    kp, _ = decode_sequence(heats, torch.tensor([0.2, 0.9, 0.9]), RecurrentDecoderConfig())
    assert len(kp) == 0
    assert RecurrentDecoderConfig().stop_threshold == pytest.approx(1 / (1 + math.e))  # sigmoid(-1)


def test_run_stops_per_image() -> None:
    dec = RecurrentDecoder(SMALL).eval()
    with torch.no_grad():
        dec.stop.bias.fill_(-20.0)
    out = dec.run(torch.randn(2, 4, 16, 16), torch.rand(2, J, 16, 16))
    assert [len(p) for _, p in out] == [1, 1]  # the first step already says stop
    assert dec.decode_batch(torch.randn(1, 4, 16, 16), torch.rand(1, J, 16, 16))[0][0].shape == (0, J, 3)


def test_person_heatmaps_window_and_counts() -> None:
    kp = np.zeros((2, J, 3), np.float32)
    kp[0, :, :2], kp[0, :, 2] = (40.0, 40.0), 2
    kp[1, :, :2], kp[1, :, 2] = (200.0, 40.0), 2
    full = person_heatmaps(kp, 24, 64, 3)
    assert full.shape == (2, J, 24, 64)
    win = person_heatmaps(kp, 24, 32, 3, offset=(0, 32))  # cells 32..63: only the second person
    assert win.shape == (1, J, 24, 32)
    # The window's peak is the whole map's, shifted by the offset.
    assert torch.allclose(win[0], full[1][:, :, 32:])
    assert visible_people(kp, 100, 100, 3) == 1
    assert count_accuracy([2, 3, 5], [2, 4, 5]) == {
        "count_exact": pytest.approx(2 / 3),
        "count_mae": pytest.approx(1 / 3),
    }


def test_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    from posestream.service.cli import main

    assert main(["train", "recurrent", "--clips", "0"]) == 2
    assert "clips must be in 1..200" in capsys.readouterr().err
    assert main(["train", "recurrent", "--batch-size", "0"]) == 2
    assert "batch_size" in capsys.readouterr().err


def test_train_config_validation_and_overrides() -> None:
    from posestream.models.train_recurrent import recurrent_config

    cfg = recurrent_config({"decoder.max_steps": 7, "real_fraction": 0.25, "time_limit_s": 60})
    assert cfg.decoder.max_steps == 7 and cfg.decoder.hidden == (32, 16) and cfg.real_fraction == 0.25
    for bad, match in (
        ({"real_fraction": 1.0}, "real_fraction"),
        ({"crop": None}, "full_fraction: 1"),
        ({"crop": (47, 64)}, "multiples of pool"),
        ({"input_size": (500, 384)}, "multiples of 32"),
        ({"val_clips": 99}, "val_clips"),
        ({"people": ()}, "people"),
    ):
        with pytest.raises(ValueError, match=match):
            recurrent_config(bad)
    with pytest.raises(ValueError, match="stop_threshold"):
        RecurrentDecoderConfig(stop_threshold=1.0)
