"""``posestream train temporal``: TemporalNet's HE and TIE heads on a frozen estimator, synthetic video.

The estimator is frozen MoveNet (the real-video default) or, with ``spatialnet:``, a
trained SpatialNet (the seed-faithful path: TemporalNet reads SpatialNet's last-stack
features and heatmaps, as in seed 000).

Data: synthetic clips (``models.data.synthetic``) with exact identities, seeds
``seed_base .. seed_base + clips - 1`` (default 5000..5039; the held-out evaluation
seeds of ``benchmarks/tracking_ablation.py`` are 9000+ and the scripted scenes of the
tests are not random seeds at all). Each frame is fitted to ``input_size`` and run
once through the frozen estimator; its stride-4 features, keypoint heatmaps and colour
are cached in memory (fp16), so training only runs TemporalNet (CPU-friendly).

A step draws ``batch_size`` frame pairs (t, t') with 1 <= |t - t'| <= ``max_gap`` (seed
000: 5) from random clips, in random order (time reversal doubles the pairs):

- TIE (Eq. 7): L1 between the predicted and true forward TVF at the visible joints of
  frame t' (joint minus the person's centre at t) and backward TVF at the joints of t,
  for the people visible in both frames; the SIE inputs are rendered from the GT poses.
- HE (Eq. 6): triplet loss (margin 0.3) over the ROI embeddings of every sufficiently
  visible person in all 2 x batch frames (same identity within and across frames are
  positives; other people of the same or other clips are negatives).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from pydantic import TypeAdapter
from tqdm import tqdm

from models.backbones.movenet import FEATURE_CHANNELS
from models.data.datasets import SyntheticDataConfig
from models.data.synthetic import SyntheticClip, SyntheticConfig
from models.skeleton import NUM_KEYPOINTS
from models.temporalnet import (
    TemporalNet,
    TemporalNetConfig,
    human_boxes,
    person_centres,
    render_sie,
    sample_points,
    triplet_loss,
)

log = logging.getLogger(__name__)

MIN_VISIBLE_TIE = 3  # joints a person needs in both frames to define both centres
MIN_VISIBLE_HE = 5  # joints a person needs for a meaningful HE box


@dataclass(frozen=True)
class TrainTemporalConfig:
    """Everything a TemporalNet training run depends on (saved into the checkpoint card).

    Attributes:
        model: TemporalNet architecture (``input_size`` is also the MoveNet scale used).
        data: synthetic clip range.
        steps: optimiser steps.
        batch_size: frame pairs per step.
        max_gap: largest |t - t'| of a pair (seed 000: 5).
        lr: Adam learning rate (seed 000: 2e-4; higher here for a short CPU run).
        he_margin: triplet margin alpha (seed 000: 0.3).
        he_weight, tie_weight: loss weights.
        time_limit_s: stop after this many seconds of training (the cache build not counted)
            even before ``steps``; None = no limit. The cosine schedule then follows
            progress = max(step / steps, elapsed / limit), so a time-limited run still anneals.
        seed: seeds initialisation and sampling.
        threads: torch CPU threads.
        device: where the frozen estimator and TemporalNet run and the feature cache lives
            ("cpu", "cuda", "auto"; 30 clips x 48 frames of 128-channel SpatialNet features at
            512 take about 4.5 GB).
        out: checkpoint path; None = ``weights/temporalnet_movenet.pt``, or
            ``weights/temporalnet_spatialnet.pt`` with ``spatialnet`` (never the other one's).
        spatialnet: SpatialNet weights whose last-stack features and heatmaps TemporalNet
            learns on (``model.backbone`` and ``model.feature_channels`` follow them, and
            ``model.input_size`` defaults to the SpatialNet estimator's 512); None = frozen
            MoveNet's.
    """

    model: TemporalNetConfig = field(default_factory=TemporalNetConfig)
    data: SyntheticDataConfig = field(
        default_factory=lambda: SyntheticDataConfig(seed_base=5000, clips=40, frames=48, people=4)
    )
    steps: int = 1500
    batch_size: int = 8
    max_gap: int = 5
    lr: float = 1e-3
    he_margin: float = 0.3
    he_weight: float = 1.0
    tie_weight: float = 1.0
    time_limit_s: float | None = None
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    out: str | None = None
    spatialnet: str | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.max_gap < 1:
            raise ValueError("steps, batch_size and max_gap must be >= 1")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError("time_limit_s must be > 0 (or null for no limit)")
        if self.spatialnet is not None and not Path(self.spatialnet).is_file():
            raise ValueError(
                f"spatialnet weights {self.spatialnet} not found (train them with `posestream train spatial`)"
            )
        if self.out is None:
            name = "temporalnet_movenet.pt" if self.spatialnet is None else "temporalnet_spatialnet.pt"
            object.__setattr__(self, "out", str(Path("weights") / name))


def load_temporal_config(
    path: str | Path | None, overrides: dict[str, Any] | None = None
) -> TrainTemporalConfig:
    """Read a YAML config (any subset of fields), apply overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping")
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    if raw.get("spatialnet") and "input_size" not in (raw.get("model") or {}):
        from models.spatial_estimator import SpatialEstimatorConfig

        raw["model"] = {**(raw.get("model") or {}), "input_size": SpatialEstimatorConfig().input_size}
    return TypeAdapter(TrainTemporalConfig).validate_python(raw)


@dataclass
class ClipCache:
    """One clip's frozen-estimator inputs and GT, all on the stride-4 grid.

    Attributes:
        features: (T, C, h, w) float16 (C = ``TemporalNetConfig.feature_channels``).
        heatmaps: (T, 17, h, w) float16.
        rgb4: (T, 3, h, w) uint8, the input image average-pooled to stride 4.
        sie: (T, 3, h, w) float16, rendered from the GT poses.
        keypoints: (T, P, 17, 3) float32 GT in cells, score = visibility (0 when absent).
    """

    features: torch.Tensor
    heatmaps: torch.Tensor
    rgb4: torch.Tensor
    sie: torch.Tensor
    keypoints: np.ndarray


def frozen_movenet(device: str | torch.device = "cpu") -> torch.nn.Module:
    from models.backbones.movenet import MoveNetMultiPose
    from models.weights import MOVENET_MULTIPOSE, verify

    return MoveNetMultiPose.from_tflite(verify(MOVENET_MULTIPOSE)).to(device).eval()


@torch.inference_mode()
def movenet_maps(
    model: torch.nn.Module, canvas: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, H, W, 3) uint8 canvas -> features (B, 24, h, w), heatmaps (B, 17, h, w), rgb4 (B, 3, h, w) float."""
    from models.heads import MOVENET_HEADS, activate_all

    device = next(model.parameters()).device
    x = torch.from_numpy(canvas).to(device).permute(0, 3, 1, 2).float()
    maps = activate_all(MOVENET_HEADS, model(x))
    return maps["features"], maps["keypoint_heatmap"], F.avg_pool2d(x, 4)


# frames -> features (B, C, h, w), heatmaps (B, 17, h, w), rgb4 (B, 3, h, w), one Letterbox per frame
FeatureSource = Callable[[list[np.ndarray]], tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[Any]]]


def feature_source(cfg: TrainTemporalConfig) -> tuple[FeatureSource, TemporalNetConfig]:
    """The frozen estimator as ``frames -> (features, heatmaps, rgb4, Letterbox per frame)``
    at ``cfg.model.input_size``, and the model config with its feature layout filled in."""
    from models.train import resolve_device

    size, device = cfg.model.input_size, resolve_device(cfg.device)
    if cfg.spatialnet is None:
        from models.estimator import letterbox

        movenet = frozen_movenet(device)

        def run_movenet(
            frames: list[np.ndarray],
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[Any]]:
            canvas, transforms = letterbox(frames, size)
            return (*movenet_maps(movenet, canvas), transforms)

        return run_movenet, dataclasses.replace(
            cfg.model, backbone="movenet", feature_channels=FEATURE_CHANNELS
        )
    from models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator

    est = SpatialNetEstimator(cfg.spatialnet, SpatialEstimatorConfig(input_size=size, device=str(device)))

    def run_spatialnet(
        frames: list[np.ndarray],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[Any]]:
        out = est.maps(frames)
        rgb4 = F.avg_pool2d(torch.from_numpy(out.canvas).to(device).permute(0, 3, 1, 2).float(), 4)
        return out.features, out.last["heatmaps"].clamp(0, 1), rgb4, out.transforms

    model = dataclasses.replace(cfg.model, backbone="spatialnet", feature_channels=est.feature_channels)
    return run_spatialnet, model


def build_clip_cache(
    source: FeatureSource, seed: int, data: SyntheticDataConfig, cfg: TemporalNetConfig
) -> ClipCache:
    clip = SyntheticClip.from_config(
        SyntheticConfig(
            seed=seed, frames=data.frames, people=data.people, width=data.width, height=data.height
        )
    )
    rgbs, gts = zip(*(clip.render(t) for t in range(data.frames)), strict=True)
    ids = sorted({int(i) for g in gts for i in g.track_ids})
    col = {tid: j for j, tid in enumerate(ids)}
    feats, heats, colours = [], [], []
    lbs = []
    for i in range(0, len(rgbs), 16):
        f, h, c, transforms = source(list(rgbs[i : i + 16]))
        feats.append(f.half())
        heats.append(h.half())
        colours.append(c.round().to(torch.uint8))
        lbs += transforms
    features = torch.cat(feats)
    hh, ww = features.shape[-2:]
    kps = np.zeros((len(gts), len(ids), NUM_KEYPOINTS, 3), np.float32)
    sies = np.zeros((len(gts), 3, hh, ww), np.float16)
    for t, (g, lb) in enumerate(zip(gts, lbs, strict=True)):
        for tid, kp in zip(g.track_ids, g.keypoints, strict=True):
            cells = lb.to_input(kp[:, :2]) / lb.stride
            kps[t, col[int(tid)], :, :2] = cells
            kps[t, col[int(tid)], :, 2] = kp[:, 2] > 0
        present = kps[t][kps[t, :, :, 2].sum(1) >= 1]
        sies[t] = render_sie(present, (hh, ww), cfg.sie_radius, cfg.tvf_scale, 0.5)
    return ClipCache(features, torch.cat(heats), torch.cat(colours), torch.from_numpy(sies).to(features.device), kps)


def _tie_targets(kp_a: np.ndarray, kp_b: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 7 at frame b's joints: (points (M, 2) cells, targets (M, 2) = (p_b - c_a) / scale)
    for the people with >= MIN_VISIBLE_TIE visible joints in both frames."""
    va, vb = kp_a[:, :, 2] > 0.5, kp_b[:, :, 2] > 0.5
    ok = (va.sum(1) >= MIN_VISIBLE_TIE) & (vb.sum(1) >= MIN_VISIBLE_TIE)
    if not ok.any():
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    ca = person_centres(kp_a[ok], 0.5)
    pts = kp_b[ok][:, :, :2]
    tgt = (pts - ca[:, None, :]) / scale
    m = vb[ok]
    return pts[m].astype(np.float32), tgt[m].astype(np.float32)


def _frame_inputs(c: ClipCache, t: int) -> torch.Tensor:
    return torch.cat((c.features[t].float(), c.heatmaps[t].float(), c.sie[t].float()), dim=0)


def train_temporal(cfg: TrainTemporalConfig, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Build the cache, train, save ``cfg.out`` with a card; returns (path, card)."""
    from models.train import resolve_device

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    source, model_cfg = feature_source(cfg)
    seeds = list(range(cfg.data.seed_base, cfg.data.seed_base + cfg.data.clips))
    clips = [
        build_clip_cache(source, s, cfg.data, model_cfg)
        for s in tqdm(seeds, desc="cache", disable=not progress)
    ]
    del source
    t_cache = time.perf_counter() - t0
    log.info("cached %d clips in %.0f s", len(clips), t_cache)

    model = TemporalNet(model_cfg).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scale = model_cfg.tvf_scale
    t_train = time.perf_counter()
    history: list[dict[str, float]] = []
    bar = tqdm(range(cfg.steps), desc="train", disable=not progress)
    run = {"tie": 0.0, "he": 0.0}
    steps_done = 0
    for it in bar:
        progress = it / cfg.steps
        if cfg.time_limit_s is not None:
            progress = max(progress, (time.perf_counter() - t_train) / cfg.time_limit_s)
            if progress >= 1.0:
                log.info("time limit %.0f s reached after %d steps", cfg.time_limit_s, it)
                break
        for group in opt.param_groups:  # cosine from lr to lr / 20 (CosineAnnealingLR's curve)
            group["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))
        prev_in, cur_in, f_pts, f_tgt, b_pts, b_tgt = [], [], [], [], [], []
        he_feat, he_rgb, he_boxes, he_labels = [], [], [], []
        for _ in range(cfg.batch_size):
            ci = int(rng.integers(len(clips)))
            c = clips[ci]
            n = len(c.keypoints)
            ta = int(rng.integers(n))
            gap = int(rng.integers(1, cfg.max_gap + 1))
            tb = ta + gap if ta + gap < n else ta - gap
            if rng.random() < 0.5:
                ta, tb = tb, ta
            prev_in.append(_frame_inputs(c, ta))
            cur_in.append(_frame_inputs(c, tb))
            p, g = _tie_targets(c.keypoints[ta], c.keypoints[tb], scale)
            f_pts.append(torch.from_numpy(p))
            f_tgt.append(torch.from_numpy(g))
            p, g = _tie_targets(c.keypoints[tb], c.keypoints[ta], scale)
            b_pts.append(torch.from_numpy(p))
            b_tgt.append(torch.from_numpy(g))
            for t in (ta, tb):
                kp = c.keypoints[t]
                ok = (kp[:, :, 2] > 0.5).sum(1) >= MIN_VISIBLE_HE
                he_feat.append(c.features[t].float())
                he_rgb.append(c.rgb4[t])
                he_boxes.append(torch.from_numpy(human_boxes(kp[ok], model_cfg.box_margin, 0.5)))
                he_labels += [ci * 1000 + j for j in np.flatnonzero(ok)]
        tvf = model.tvf(torch.stack(prev_in).to(device), torch.stack(cur_in).to(device))
        pf = torch.cat(sample_points(tvf[:, 0:2], [p.to(device) for p in f_pts]))
        pb = torch.cat(sample_points(tvf[:, 2:4], [p.to(device) for p in b_pts]))
        tgt = torch.cat([torch.cat(f_tgt), torch.cat(b_tgt)]).to(device)
        loss_tie = F.l1_loss(torch.cat([pf, pb]), tgt) if len(tgt) else tvf.sum() * 0
        emb = model.embed(
            torch.stack(he_feat).to(device), torch.stack(he_rgb).to(device), [b.to(device) for b in he_boxes]
        )
        loss_he = triplet_loss(emb, torch.tensor(he_labels, device=device), cfg.he_margin)
        loss = cfg.tie_weight * loss_tie + cfg.he_weight * loss_he
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps_done = it + 1
        run["tie"] = 0.95 * run["tie"] + 0.05 * loss_tie.item() if it else loss_tie.item()
        run["he"] = 0.95 * run["he"] + 0.05 * loss_he.item() if it else loss_he.item()
        if it % 50 == 0 or it == cfg.steps - 1:
            bar.set_postfix(tie=f"{run['tie']:.4f}", he=f"{run['he']:.4f}")
            history.append({"step": it, "tie_l1": round(run["tie"], 5), "he_triplet": round(run["he"], 5)})
            log.info("step %d tie %.4f he %.4f", it, run["tie"], run["he"])
    if steps_done and (not history or history[-1]["step"] != steps_done - 1):
        history.append({"step": steps_done - 1, "tie_l1": round(run["tie"], 5), "he_triplet": round(run["he"], 5)})
    t_total = time.perf_counter() - t0
    model.eval().cpu()
    card = {
        "name": Path(cfg.out).stem,
        "backbone": (
            "MoveNet MultiPose Lightning (frozen), stride-4 FPN features + keypoint heatmaps"
            if cfg.spatialnet is None
            else f"SpatialNet {cfg.spatialnet} (frozen), last-stack features + heatmaps"
        ),
        # the model config as trained (``feature_source`` sets the backbone and its channels)
        "train_config": json.loads(json.dumps(asdict(dataclasses.replace(cfg, model=model_cfg)))),
        "train_seeds": [seeds[0], seeds[-1]],
        "cache_seconds": round(t_cache, 1),
        "total_seconds": round(t_total, 1),
        "threads": cfg.threads,
        "device": str(device),
        "steps_done": steps_done,
        "final_losses": history[-1] if history else {},
        "history": history,
    }
    path = model.save(cfg.out, card)
    log.info("saved %s after %.0f s", path, t_total)
    return path, card
