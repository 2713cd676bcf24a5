"""``posestream train temporal``: TemporalNet's HE and TIE heads on a frozen estimator, synthetic video.

The estimator is frozen MoveNet (the real-video default) or, with ``spatialnet:``, a
trained SpatialNet (the seed-faithful path: TemporalNet reads SpatialNet's last-stack
features and heatmaps, as in seed 000).

Data: synthetic clips (``posestream.models.data.synthetic``) with exact identities, seeds
``seed_base .. seed_base + clips - 1`` (default ``posestream.models.data.splits.TEMPORAL_TRAIN``,
5000..5039; the splits module names the validation and held-out seeds). Each frame is fitted to ``input_size`` and run
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

from posestream.models.backbones.movenet import FEATURE_CHANNELS
from posestream.models.data.datasets import SyntheticDataConfig
from posestream.models.data.real_clips import REAL_HELD_OUT_CLIPS, REAL_TRAIN_CLIPS
from posestream.models.data.splits import TEMPORAL_TRAIN
from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig
from posestream.models.data.tracklets import TrackletConfig
from posestream.models.geometry import person_centre
from posestream.models.roi_align import sample_points
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.models.temporal_inputs import human_boxes, render_sie
from posestream.models.temporal_loss import triplet_loss
from posestream.models.temporalnet import TemporalNet, TemporalNetConfig
from posestream.models.weights import (
    TEMPORALNET_MOVENET,
    TEMPORALNET_SPATIALNET,
    checkpoint_path,
    sha256_file,
)

log = logging.getLogger(__name__)

MIN_VISIBLE_TIE = 3  # joints a person needs in both frames to define both centres
MIN_VISIBLE_HE = 5  # joints a person needs for a meaningful HE box


@dataclass(frozen=True)
class RealClipsConfig:
    """Real, unlabelled clips the HE and TIE are fine-tuned on beside the synthetic ones.

    Identities come from ``posestream.models.data.tracklets.unambiguous_tracklets`` on the detections
    of the estimator the service runs (``EstimatorConfig()``): HE positives are the same
    tracklet in the other frame of a pair, negatives the other tracklets of the same frame
    only (``triplet_loss(negatives=...)``; a broken tracklet may be the same person as a
    later one); TIE targets are the tracklet's detected joints and centres.

    Attributes:
        train: clip specs (``posestream.models.data.real_clips.parse_clip_spec``) trained on.
        held_out: clip specs scored on the learning curve, never trained on.
        batch_size: real frame pairs per step, beside ``TrainTemporalConfig.batch_size`` synthetic ones.
        tracklets: when detections are linked into tracklets.
        joint_threshold: a detected joint scoring above this counts as visible (TIE targets,
            HE boxes); raising it trains on fewer, surer joints.
        eval_pairs: held-out frame pairs (gap ``eval_gap``) of the learning curve.
        eval_gap: frames between the two frames of a held-out pair.
    """

    train: tuple[str, ...] = REAL_TRAIN_CLIPS
    held_out: tuple[str, ...] = REAL_HELD_OUT_CLIPS
    batch_size: int = 4
    tracklets: TrackletConfig = field(default_factory=TrackletConfig)
    joint_threshold: float = 0.3
    eval_pairs: int = 150
    eval_gap: int = 5


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
        init: start from this TemporalNet checkpoint (fine-tuning; its architecture replaces
            ``model``); None = from scratch.
        real: real clips mixed in (MoveNet path only); None = synthetic only.
        work_dir: where the real clips' feature caches and the resumable state (``last.pt``,
            written every ``save_every_s``) live; a run whose ``last.pt`` exists resumes from
            it (delete the folder to start over). None = no caches, no resuming.
        save_every_s: seconds of training between two saves of ``last.pt``.
        eval_every: steps between two learning-curve points (real held-out scores).
    """

    model: TemporalNetConfig = field(default_factory=TemporalNetConfig)
    data: SyntheticDataConfig = field(
        default_factory=lambda: SyntheticDataConfig(
            seed_base=TEMPORAL_TRAIN.first, clips=TEMPORAL_TRAIN.count, frames=48, people=4
        )
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
    init: str | None = None
    real: RealClipsConfig | None = None
    work_dir: str | None = None
    save_every_s: float = 120.0
    eval_every: int = 100

    def __post_init__(self) -> None:
        if self.real is not None and self.spatialnet is not None:
            raise ValueError("real-clip fine-tuning runs on the MoveNet path only (no spatialnet)")
        if self.init is not None and not Path(self.init).is_file():
            raise ValueError(f"init checkpoint {self.init} not found")
        if self.eval_every < 1 or self.save_every_s <= 0:
            raise ValueError("eval_every must be >= 1 and save_every_s > 0")
        if self.steps < 1 or self.batch_size < 1 or self.max_gap < 1:
            raise ValueError("steps, batch_size and max_gap must be >= 1")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError("time_limit_s must be > 0 (or null for no limit)")
        if self.spatialnet is not None and not Path(self.spatialnet).is_file():
            raise ValueError(
                f"spatialnet weights {self.spatialnet} not found (train them with `posestream train spatial`)"
            )
        if self.out is None:
            name = TEMPORALNET_MOVENET if self.spatialnet is None else TEMPORALNET_SPATIALNET
            object.__setattr__(self, "out", str(checkpoint_path(name)))


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
        from posestream.models.spatial_estimator import SpatialEstimatorConfig

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
            Real clips: P tracklets, their detected joints, score 1 where above
            ``RealClipsConfig.joint_threshold`` (0 when the tracklet is absent).
        real: a real clip (pseudo labels from tracklets; HE negatives only within a frame).
    """

    features: torch.Tensor
    heatmaps: torch.Tensor
    rgb4: torch.Tensor
    sie: torch.Tensor
    keypoints: np.ndarray
    real: bool = False


def frozen_movenet(device: str | torch.device = "cpu") -> torch.nn.Module:
    from posestream.models.backbones.movenet import MoveNetMultiPose
    from posestream.models.weights import MOVENET_MULTIPOSE, verify

    return MoveNetMultiPose.from_tflite(verify(MOVENET_MULTIPOSE)).to(device).eval()


@torch.inference_mode()
def movenet_maps(
    model: torch.nn.Module, canvas: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, H, W, 3) uint8 canvas -> features (B, 24, h, w), heatmaps (B, 17, h, w), rgb4 (B, 3, h, w) float."""
    from posestream.models.heads import MOVENET_HEADS, activate_all

    device = next(model.parameters()).device
    x = torch.from_numpy(canvas).to(device).permute(0, 3, 1, 2).float()
    maps = activate_all(MOVENET_HEADS, model(x))
    return maps["features"], maps["keypoint_heatmap"], F.avg_pool2d(x, 4)


# frames -> features (B, C, h, w), heatmaps (B, 17, h, w), rgb4 (B, 3, h, w), one Letterbox per frame
FeatureSource = Callable[[list[np.ndarray]], tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[Any]]]


def feature_source(cfg: TrainTemporalConfig) -> tuple[FeatureSource, TemporalNetConfig]:
    """The frozen estimator as ``frames -> (features, heatmaps, rgb4, Letterbox per frame)``
    at ``cfg.model.input_size``, and the model config with its feature layout filled in."""
    from posestream.models.checkpoints import resolve_device

    size, device = cfg.model.input_size, resolve_device(cfg.device)
    if cfg.spatialnet is None:
        from posestream.models.estimator import letterbox

        movenet = frozen_movenet(device)

        def run_movenet(
            frames: list[np.ndarray],
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[Any]]:
            canvas, transforms = letterbox(frames, size)
            return (*movenet_maps(movenet, canvas), transforms)

        return run_movenet, dataclasses.replace(
            cfg.model, backbone="movenet", feature_channels=FEATURE_CHANNELS
        )
    from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator

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
    return ClipCache(
        features, torch.cat(heats), torch.cat(colours), torch.from_numpy(sies).to(features.device), kps
    )


def _tie_targets(kp_a: np.ndarray, kp_b: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 7 at frame b's joints: (points (M, 2) cells, targets (M, 2) = (p_b - c_a) / scale)
    for the people with >= MIN_VISIBLE_TIE visible joints in both frames."""
    va, vb = kp_a[:, :, 2] > 0.5, kp_b[:, :, 2] > 0.5
    ok = (va.sum(1) >= MIN_VISIBLE_TIE) & (vb.sum(1) >= MIN_VISIBLE_TIE)
    if not ok.any():
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    ca = person_centre(kp_a[ok], 0.5)
    pts = kp_b[ok][:, :, :2]
    tgt = (pts - ca[:, None, :]) / scale
    m = vb[ok]
    return pts[m].astype(np.float32), tgt[m].astype(np.float32)


def _frame_inputs(c: ClipCache, t: int) -> torch.Tensor:
    return torch.cat((c.features[t].float(), c.heatmaps[t].float(), c.sie[t].float()), dim=0)


def build_real_cache(
    spec: str, estimator: Any, cfg: TemporalNetConfig, real: RealClipsConfig, chunk: int = 8
) -> ClipCache:
    """One real clip range: detections of ``estimator`` (a ``PoseEstimator``), its features at
    ``cfg.input_size`` (``PoseEstimator.feature_pass``), tracklet keypoints in cells, and the SIE
    rendered from all detections as the service renders it (``TemporalInference.contexts``)."""
    from posestream.models.data.real_clips import iter_clip_frames
    from posestream.models.data.tracklets import unambiguous_tracklets

    poses, feats, heats, colours, lbs = [], [], [], [], []
    buf: list[tuple[int, float, np.ndarray]] = []

    def flush() -> None:
        rgbs = [b[2] for b in buf]
        est = estimator(rgbs, [b[0] for b in buf], [b[1] for b in buf])
        f, h, canvas, transforms = estimator.feature_pass(rgbs, cfg.input_size)
        poses.extend(est.poses)
        feats.append(f.float().cpu().half())
        heats.append(h.float().cpu().half())
        x = torch.from_numpy(canvas).permute(0, 3, 1, 2).float()
        colours.append(F.avg_pool2d(x, 4).round().to(torch.uint8))
        lbs.extend(transforms)
        buf.clear()

    for item in iter_clip_frames(spec):
        buf.append(item)
        if len(buf) == chunk:
            flush()
    if buf:
        flush()
    labels = unambiguous_tracklets(poses, real.tracklets)
    n_tracklets = max((int(lab.max()) + 1 for lab in labels if len(lab)), default=0)
    features = torch.cat(feats)
    hh, ww = features.shape[-2:]
    kps = np.zeros((len(poses), n_tracklets, NUM_KEYPOINTS, 3), np.float32)
    sies = np.zeros((len(poses), 3, hh, ww), np.float16)
    for t, (p, lab, lb) in enumerate(zip(poses, labels, lbs, strict=True)):
        kp = np.asarray(p.keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
        cells = np.concatenate((lb.to_input(kp[:, :, :2]) / lb.stride, kp[:, :, 2:]), axis=-1)
        for j in np.flatnonzero(lab >= 0):
            kps[t, lab[j], :, :2] = cells[j, :, :2]
            kps[t, lab[j], :, 2] = cells[j, :, 2] > real.joint_threshold
        order = np.argsort(np.asarray(p.scores), kind="stable")  # as TemporalInference.contexts draws them
        sies[t] = render_sie(cells[order], (hh, ww), cfg.sie_radius, cfg.tvf_scale, cfg.keypoint_threshold)
    log.info("%s: %d frames, %d tracklets (%d tracklet detections of %d)", spec, len(poses), n_tracklets,
             int(sum((lab >= 0).sum() for lab in labels)), int(sum(len(lab) for lab in labels)))  # fmt: skip
    return ClipCache(features, torch.cat(heats), torch.cat(colours), torch.from_numpy(sies), kps, real=True)


def _real_caches(
    cfg: TrainTemporalConfig, model_cfg: TemporalNetConfig, specs: tuple[str, ...]
) -> list[ClipCache]:
    """``build_real_cache`` of each spec, kept in ``cfg.work_dir`` (reused by a resumed run)."""
    assert cfg.real is not None
    out, estimator = [], None
    for spec in specs:
        path = (
            Path(cfg.work_dir) / f"real_{spec.replace('/', '_').replace(':', '_')}.pt"
            if cfg.work_dir
            else None
        )
        if path is not None and path.is_file():
            d = torch.load(path, map_location="cpu", weights_only=False)
            out.append(ClipCache(**d))
            continue
        if estimator is None:
            from posestream.models.estimator import EstimatorConfig, PoseEstimator

            estimator = PoseEstimator(EstimatorConfig(device="cpu"))
        cache = build_real_cache(spec, estimator, model_cfg, cfg.real)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(dataclasses.asdict(cache), path)
        out.append(cache)
    return out


def _pair_frames(n: int, rng: np.random.Generator, max_gap: int) -> tuple[int, int]:
    ta = int(rng.integers(n))
    gap = int(rng.integers(1, max_gap + 1))
    tb = ta + gap if ta + gap < n else max(ta - gap, 0)
    return (tb, ta) if rng.random() < 0.5 else (ta, tb)


@torch.no_grad()
def real_held_out_scores(
    model: TemporalNet, clips: list[ClipCache], pairs: list[tuple[int, int, int]]
) -> dict[str, float]:
    """Learning-curve scores on held-out real tracklets (``pairs``: (clip, t, t') frame pairs).

    ``reid``: fraction of the tracklet people of t (>= MIN_VISIBLE_HE joints) whose nearest HE
    among the tracklet people of t' (at least two of them) is their own tracklet; ``tie_l1``:
    L1 of the TIE at the joints against the tracklets' centre motion (units of ``tvf_scale``).
    """
    was = model.training
    model.eval()
    cfg = model.config
    hits = total = 0
    l1, n_l1 = 0.0, 0
    for ci, ta, tb in pairs:
        c = clips[ci]
        ka, kb = c.keypoints[ta], c.keypoints[tb]
        oka = (ka[:, :, 2] > 0.5).sum(1) >= MIN_VISIBLE_HE
        okb = (kb[:, :, 2] > 0.5).sum(1) >= MIN_VISIBLE_HE
        if okb.sum() >= 2 and (oka & okb).any():
            ea, eb = (
                model.embed(c.features[t : t + 1].float(), c.rgb4[t : t + 1],
                            [torch.from_numpy(human_boxes(k[ok], cfg.box_margin, 0.5))])
                for t, k, ok in ((ta, ka, oka), (tb, kb, okb))
            )  # fmt: skip
            ia, ib = np.flatnonzero(oka), np.flatnonzero(okb)
            nearest = ib[torch.cdist(ea, eb).argmin(1).numpy()]
            both = np.isin(ia, ib)
            hits += int((nearest[both] == ia[both]).sum())
            total += int(both.sum())
        p, g = _tie_targets(ka, kb, cfg.tvf_scale)
        if len(p):
            tvf = model.tvf(_frame_inputs(c, ta)[None], _frame_inputs(c, tb)[None])
            pred = sample_points(tvf[:, 0:2], [torch.from_numpy(p)])[0]
            l1 += float((pred - torch.from_numpy(g)).abs().sum())
            n_l1 += g.size
    model.train(was)
    return {"real_reid": round(hits / max(total, 1), 4), "real_reid_n": total,
            "real_tie_l1": round(l1 / max(n_l1, 1), 5)}  # fmt: skip


def _held_out_pairs(clips: list[ClipCache], n: int, gap: int, seed: int) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed + 12345)
    pairs = []
    for _ in range(n):
        ci = int(rng.integers(len(clips)))
        m = len(clips[ci].keypoints)
        if m > gap:
            ta = int(rng.integers(m - gap))
            pairs.append((ci, ta, ta + gap))
    return pairs


def _he_items(
    c: ClipCache, t: int, label_base: int, group: int, box_margin: float
) -> tuple[torch.Tensor, list[int], list[int]]:
    kp = c.keypoints[t]
    ok = (kp[:, :, 2] > 0.5).sum(1) >= MIN_VISIBLE_HE
    boxes = torch.from_numpy(human_boxes(kp[ok], box_margin, 0.5))
    idx = np.flatnonzero(ok)
    return boxes, [label_base + int(j) for j in idx], [group] * len(idx)


def train_temporal(cfg: TrainTemporalConfig, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Build the caches, train (or resume from ``cfg.work_dir/last.pt``), save ``cfg.out`` with a card."""
    from posestream.models.checkpoints import resolve_device

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    init_card: dict[str, Any] = {}
    if cfg.init is not None:
        model, init_card = TemporalNet.load_with_card(cfg.init)
        model_cfg = model.config
        cfg = dataclasses.replace(cfg, model=model_cfg)
    source, model_cfg = feature_source(cfg)
    seeds = list(range(cfg.data.seed_base, cfg.data.seed_base + cfg.data.clips))
    clips = [
        build_clip_cache(source, s, cfg.data, model_cfg)
        for s in tqdm(seeds, desc="cache", disable=not progress)
    ]
    del source
    real_clips = _real_caches(cfg, model_cfg, cfg.real.train) if cfg.real else []
    held_out = _real_caches(cfg, model_cfg, cfg.real.held_out) if cfg.real else []
    eval_pairs = (
        _held_out_pairs(held_out, cfg.real.eval_pairs, cfg.real.eval_gap, cfg.seed) if cfg.real else []
    )
    t_cache = time.perf_counter() - t0
    log.info(
        "cached %d synthetic and %d + %d real clips in %.0f s",
        len(clips),
        len(real_clips),
        len(held_out),
        t_cache,
    )

    if cfg.init is None:
        model = TemporalNet(model_cfg)
    model = model.to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scale = model_cfg.tvf_scale
    history: list[dict[str, float]] = []
    run = {"tie": 0.0, "he": 0.0, "tie_real": 0.0, "he_real": 0.0}
    start_step, trained_s = 0, 0.0
    last = Path(cfg.work_dir) / "last.pt" if cfg.work_dir else None
    if last is not None and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        start_step, trained_s, history, run = (
            state["step"],
            state["trained_s"],
            state["history"],
            state["run"],
        )
        log.info("resumed from %s at step %d (%.0f s trained)", last, start_step, trained_s)
    elif eval_pairs:
        history.append({"step": 0, **real_held_out_scores(model, held_out, eval_pairs)})
        log.info("step 0 %s", history[-1])

    def save_state(step: int) -> None:
        if last is None:
            return
        last.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                 "torch_rng": torch.get_rng_state(), "step": step, "trained_s": trained_s, "history": history,
                 "run": run}  # fmt: skip
        torch.save(state, last.with_suffix(".tmp"))
        last.with_suffix(".tmp").replace(last)

    t_seg = time.perf_counter()
    t_saved = t_seg
    base_s = trained_s
    bar = tqdm(
        range(start_step, cfg.steps), desc="train", disable=not progress, initial=start_step, total=cfg.steps
    )
    steps_done = start_step
    for it in bar:
        trained_s = base_s + time.perf_counter() - t_seg
        frac = it / cfg.steps
        if cfg.time_limit_s is not None:
            frac = max(frac, trained_s / cfg.time_limit_s)
            if frac >= 1.0:
                log.info("time limit %.0f s reached after %d steps", cfg.time_limit_s, it)
                break
        for group in opt.param_groups:  # cosine from lr to lr / 20 (CosineAnnealingLR's curve)
            group["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac)))
        # --- synthetic pairs: one batch (all frames share the clip size)
        prev_in, cur_in, f_pts, f_tgt, b_pts, b_tgt = [], [], [], [], [], []
        he_feat, he_rgb, he_boxes, he_labels = [], [], [], []
        for _ in range(cfg.batch_size):
            ci = int(rng.integers(len(clips)))
            c = clips[ci]
            ta, tb = _pair_frames(len(c.keypoints), rng, cfg.max_gap)
            prev_in.append(_frame_inputs(c, ta))
            cur_in.append(_frame_inputs(c, tb))
            for (p, g), pts, tgts in (
                (_tie_targets(c.keypoints[ta], c.keypoints[tb], scale), f_pts, f_tgt),
                (_tie_targets(c.keypoints[tb], c.keypoints[ta], scale), b_pts, b_tgt),
            ):
                pts.append(torch.from_numpy(p))
                tgts.append(torch.from_numpy(g))
            for t in (ta, tb):
                boxes, labels, _ = _he_items(c, t, ci * 1000, -1, model_cfg.box_margin)
                he_feat.append(c.features[t].float())
                he_rgb.append(c.rgb4[t])
                he_boxes.append(boxes)
                he_labels += labels
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
        # --- real pairs: one pair at a time (clip sizes differ); HE negatives within a frame only
        loss_tie_r = loss_he_r = torch.zeros((), device=device)
        if real_clips:
            r_emb, r_labels, r_groups, r_pred, r_tgt = [], [], [], [], []
            for k in range(cfg.real.batch_size):  # type: ignore[union-attr]
                ci = int(rng.integers(len(real_clips)))
                c = real_clips[ci]
                ta, tb = _pair_frames(len(c.keypoints), rng, cfg.max_gap)
                tvf_r = model.tvf(
                    _frame_inputs(c, ta)[None].to(device), _frame_inputs(c, tb)[None].to(device)
                )
                for ch, (p, g) in ((0, _tie_targets(c.keypoints[ta], c.keypoints[tb], scale)),
                                   (2, _tie_targets(c.keypoints[tb], c.keypoints[ta], scale))):  # fmt: skip
                    if len(p):
                        r_pred.append(
                            sample_points(tvf_r[:, ch : ch + 2], [torch.from_numpy(p).to(device)])[0]
                        )
                        r_tgt.append(torch.from_numpy(g).to(device))
                boxes, feats_, rgbs_ = [], [], []
                for side, t in enumerate((ta, tb)):
                    b, labels, groups = _he_items(
                        c, t, 10**6 + ci * 10**4, (k * 2 + side), model_cfg.box_margin
                    )
                    boxes.append(b.to(device))
                    feats_.append(c.features[t].float())
                    rgbs_.append(c.rgb4[t])
                    r_labels += labels
                    r_groups += groups
                if sum(len(b) for b in boxes):
                    r_emb.append(
                        model.embed(torch.stack(feats_).to(device), torch.stack(rgbs_).to(device), boxes)
                    )
            if r_tgt:
                loss_tie_r = F.l1_loss(torch.cat(r_pred), torch.cat(r_tgt))
            if r_emb:
                groups_t = torch.tensor(r_groups + [-1] * len(he_labels), device=device)
                same_frame = groups_t[:, None] == groups_t[None, :]
                synthetic = groups_t < 0
                negatives = same_frame | synthetic[:, None] | synthetic[None, :]
                all_emb = torch.cat([*r_emb, emb])
                all_labels = torch.tensor(r_labels + he_labels, device=device)
                loss_he_r = triplet_loss(all_emb, all_labels, cfg.he_margin, negatives=negatives)
            # the combined triplet loss holds the synthetic triplets too (and cross-domain negatives)
            he_total = loss_he_r if r_emb else loss_he
            loss = cfg.tie_weight * (loss_tie + loss_tie_r) + cfg.he_weight * he_total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps_done = it + 1
        for key, value in (
            ("tie", loss_tie),
            ("he", loss_he),
            ("tie_real", loss_tie_r),
            ("he_real", loss_he_r),
        ):
            run[key] = 0.95 * run[key] + 0.05 * value.item() if it else value.item()
        if it % 50 == 0 or it == cfg.steps - 1:
            bar.set_postfix(tie=f"{run['tie']:.4f}", he=f"{run['he']:.4f}")
            point: dict[str, float] = {
                "step": it,
                "tie_l1": round(run["tie"], 5),
                "he_triplet": round(run["he"], 5),
            }
            if real_clips:
                point |= {
                    "tie_l1_real": round(run["tie_real"], 5),
                    "he_triplet_real": round(run["he_real"], 5),
                }
            if eval_pairs and it and it % cfg.eval_every == 0:
                point |= real_held_out_scores(model, held_out, eval_pairs)
            point["seconds"] = round(base_s + time.perf_counter() - t_seg, 1)
            history.append(point)
            log.info("step %d %s", it, point)
        if time.perf_counter() - t_saved >= cfg.save_every_s:
            trained_s = base_s + time.perf_counter() - t_seg
            save_state(steps_done)
            t_saved = time.perf_counter()
    trained_s = base_s + time.perf_counter() - t_seg
    final = {"step": steps_done - 1, "tie_l1": round(run["tie"], 5), "he_triplet": round(run["he"], 5)}
    if real_clips:
        final |= {"tie_l1_real": round(run["tie_real"], 5), "he_triplet_real": round(run["he_real"], 5)}
    if eval_pairs:
        final |= real_held_out_scores(model, held_out, eval_pairs)
    final["seconds"] = round(trained_s, 1)
    if steps_done and (not history or history[-1]["step"] != steps_done - 1 or eval_pairs):
        history.append(final)
    save_state(steps_done)
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
        "train_seconds": round(trained_s, 1),
        "threads": cfg.threads,
        "device": str(device),
        "steps_done": steps_done,
        "final_losses": history[-1] if history else {},
        "history": history,
    }
    if cfg.spatialnet is not None:  # the pipeline refuses to pair this file with another SpatialNet
        card["spatialnet_sha256"] = sha256_file(cfg.spatialnet)
    if cfg.init is not None:
        card["init"] = {"path": cfg.init, "train_seeds": init_card.get("train_seeds"),
                        "steps_done": init_card.get("steps_done")}  # fmt: skip
        if init_card.get("tracker"):
            card["tracker"] = init_card["tracker"]
    if cfg.real is not None:
        card["real_clips"] = {"train": list(cfg.real.train), "held_out": list(cfg.real.held_out)}
    path = model.save(cfg.out, card)
    log.info("saved %s after %.0f s", path, t_total)
    return path, card
