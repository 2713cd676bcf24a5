"""``posestream train recurrent``: seed 001's recurrent decoder on a frozen SpatialNet.

SpatialNet (``spatialnet``, a file in ``weights/``) runs once per synthetic training frame,
fitted whole into ``input_size`` (the plain pass: no flip, one scale); its last-stack
features and heatmaps are cached on disk (``FeatureCache``, keyed by the SpatialNet file's
sha256) with the frame's ground truth. Training then reads only the cache: random windows of
the cached maps (``crop``) or whole frames (``full_fraction``), their people's individual
heatmaps rebuilt from the ground truth, and ``unrolled_loss``. Time-boxed and resumable
(``work_dir/last.pt``); every ``eval_every_s`` of training the validation frames are decoded
and scored (AP and people-count accuracy) into the learning curve that goes into the card.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posestream.models.checkpoints import load_spatialnet
from posestream.models.data.augment import fit_affine, invert_affine, transform_keypoints, warp_image
from posestream.models.data.pseudo_labels import PseudoLabelConfig, PseudoLabelSource, build_pseudo_labels
from posestream.models.data.splits import DECODE_VALIDATION, RECURRENT_TRAIN
from posestream.models.feature_cache import FeatureCache
from posestream.models.poses import FramePoses, boxes_from_keypoints
from posestream.models.recurrent_decoder import (
    RecurrentDecoder,
    RecurrentDecoderConfig,
    load_recurrent_decoder,
    unrolled_loss,
)
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.models.spatialnet import STRIDE, SpatialNet
from posestream.models.targets import TargetConfig, build_spatial_targets, to_output_coords
from posestream.models.train import EvaluateFn
from posestream.models.weights import SPATIALNET_FOR_DECODER, checkpoint_path, sha256_file

log = logging.getLogger(__name__)

__all__ = [
    "TrainRecurrentConfig",
    "count_accuracy",
    "person_heatmaps",
    "plain_net",
    "visible_people",
    "plain_maps",
    "predict_recurrent",
    "recurrent_config",
    "train_recurrent",
]


@dataclass(frozen=True)
class TrainRecurrentConfig:
    """Everything a ``posestream train recurrent`` run depends on (saved into its card).

    Attributes:
        decoder: the decoder's sizes and loss (``RecurrentDecoderConfig``).
        spatialnet: the frozen SpatialNet, a file name in the weights folder.
        clips: synthetic training clips, seeds ``RECURRENT_TRAIN`` (not SpatialNet's own
            training clips, so its heatmaps look as they do on unseen video).
        people: people per clip, cycled over the clips (a spread of counts teaches the stop).
        clip_frames: frames per clip; ``frame_step``: every Nth of them is cached.
        input_size: (width, height) each frame is fitted into (SpatialNet's evaluation size).
        crop: (h, w) stride-4 cells of a training window; None = whole frames only.
        full_fraction: share of the steps that train on whole frames instead of windows.
            Raising it shows the stop head more crowded frames, at a higher cost per step.
        batch_size: images per step.
        lr: Adam learning rate; it drops by 10x at ``lr_drop`` of the time limit.
        lr_drop: fraction of ``time_limit_s`` after which lr is divided by 10 (raising it keeps
            the large rate longer).
        grad_clip: gradient norm clip (raising it lets rare large batches, crowded whole frames,
            move the weights further).
        time_limit_s: training seconds (summed over resumes); ``steps``: the most steps. A run
            resumed with a larger limit continues where it stopped (the lr drop moves with it).
        val_clips, val_frames, val_people: validation frames (seeds ``DECODE_VALIDATION``,
            ``val_frames`` per clip, each clip ``val_people[i % len]`` people).
        real_fraction: share of the steps whose batch is pseudo-labelled real frames (issue 18's
            ``posestream.models.data.pseudo_labels``: the default MoveNet estimator's confident
            people on the real training clips and the real dev set's train images; its labels are
            never read); 0 = synthetic only. Raising it shows the decoder SpatialNet's maps of
            real people, labelled only as well as MoveNet sees them (an unsure person is not a
            target, so emitting it is charged to the stop).
        real: which real frames and which of their people count (``PseudoLabelConfig``).
        init_from: an exported decoder (``out`` of an earlier run) whose weights start a new
            run (a fine-tuning stage); None = random initialisation. Ignored when resuming.
        eval_every_s: training seconds between learning-curve points.
        threads: torch CPU threads.
        seed: initialisation, window and noise draws.
        work_dir: the feature cache and ``last.pt``.
        out: the exported decoder (``weights/recurrent_spatialnet.pt``).
    """

    decoder: RecurrentDecoderConfig = field(default_factory=RecurrentDecoderConfig)
    spatialnet: str = SPATIALNET_FOR_DECODER["recurrent"]
    clips: int = 120
    people: tuple[int, ...] = (2, 4, 6, 8, 10, 12)
    clip_frames: int = 30
    frame_step: int = 3
    input_size: tuple[int, int] = (512, 384)
    crop: tuple[int, int] | None = (48, 64)
    full_fraction: float = 0.3
    batch_size: int = 4
    lr: float = 1e-3
    lr_drop: float = 0.8
    grad_clip: float = 10.0
    time_limit_s: float = 3600.0
    steps: int = 1_000_000
    val_clips: int = 4
    val_frames: int = 5
    val_people: tuple[int, ...] = (5, 10)
    real_fraction: float = 0.0
    real: PseudoLabelConfig = field(default_factory=lambda: PseudoLabelConfig(frames_per_clip=20))
    init_from: str | None = None
    eval_every_s: float = 300.0
    threads: int = 2
    seed: int = 0
    work_dir: str = "runs/recurrent"
    out: str = "weights/recurrent_spatialnet.pt"

    def __post_init__(self) -> None:
        if not 1 <= self.clips <= RECURRENT_TRAIN.count:
            raise ValueError(f"clips must be in 1..{RECURRENT_TRAIN.count}, got {self.clips}")
        if not 1 <= self.val_clips <= DECODE_VALIDATION.count:
            raise ValueError(f"val_clips must be in 1..{DECODE_VALIDATION.count}, got {self.val_clips}")
        if not self.people or min(self.people) < 1 or not self.val_people or min(self.val_people) < 1:
            raise ValueError("people and val_people need counts >= 1")
        if not 0.0 <= self.real_fraction < 1.0:
            raise ValueError(f"real_fraction must be in [0, 1), got {self.real_fraction}")
        if not 0.0 <= self.full_fraction <= 1.0:
            raise ValueError(f"full_fraction must be in [0, 1], got {self.full_fraction}")
        if self.crop is None and self.full_fraction < 1.0:
            raise ValueError("without crop every step is a whole frame: set full_fraction: 1")
        m = STRIDE * self.decoder.pool
        if self.crop is not None and (self.crop[0] % self.decoder.pool or self.crop[1] % self.decoder.pool):
            raise ValueError(f"crop {self.crop} (cells) must be multiples of pool {self.decoder.pool}")
        if self.input_size[0] % max(m, 32) or self.input_size[1] % max(m, 32):
            raise ValueError(f"input_size {self.input_size} must be multiples of {max(m, 32)}")
        if self.batch_size < 1 or self.steps < 1 or self.time_limit_s <= 0 or self.frame_step < 1:
            raise ValueError("batch_size, steps, frame_step must be >= 1 and time_limit_s > 0")


def recurrent_config(overrides: dict[str, Any] | None = None) -> TrainRecurrentConfig:
    """``TrainRecurrentConfig`` with top-level fields (and ``decoder.*`` keys) replaced."""
    overrides = dict(overrides or {})
    dec = {k.split(".", 1)[1]: overrides.pop(k) for k in list(overrides) if k.startswith("decoder.")}
    base = TrainRecurrentConfig()
    if dec:
        overrides["decoder"] = dataclasses.replace(base.decoder, **dec)
    return dataclasses.replace(base, **overrides)


def plain_net(net: SpatialNet) -> SpatialNet:
    """``net`` set to decode from its plain pass (one scale, no flip): what the decoder reads."""
    net.config = dataclasses.replace(
        net.config, decode=dataclasses.replace(net.config.decode, scales=(1.0,), flip_test=False)
    )
    return net.eval()


@torch.inference_mode()
def plain_maps(
    net: SpatialNet, frames: list[np.ndarray], input_size: tuple[int, int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray]]:
    """SpatialNet's plain pass on RGB frames each fitted into ``input_size`` (``fit_affine``).

    Returns:
        features (B, width, H/4, W/4), heatmaps (B, 17, H/4, W/4) in [0, 1] (on the CPU) and
        the B (2, 3) frame -> input matrices.
    """
    w, h = input_size
    mats = [fit_affine(f.shape[1], f.shape[0], w, h) for f in frames]
    x = torch.from_numpy(np.stack([warp_image(f, m, w, h) for f, m in zip(frames, mats, strict=True)]))
    stacks, features = net(net.normalise(x.permute(0, 3, 1, 2).to(device)))
    return features.float().cpu(), stacks[-1]["heatmaps"].float().clamp(0, 1).cpu(), mats


def _clip_frames(seed: int, people: int, frames: int):  # noqa: ANN202 - a SyntheticClip
    from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig

    return SyntheticClip.from_config(SyntheticConfig(seed=seed, frames=frames, people=people))


def _cached_frames(
    net: SpatialNet, cache: FeatureCache, seeds: list[tuple[int, int]], frame_ids: list[int],
    clip_frames: int, input_size: tuple[int, int], need_gt: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every (seed, people) clip's frames through SpatialNet, from the cache or computed into it.

    Returns per frame: ``maps`` (width + 17, H/4, W/4) float16 (features, then heatmaps),
    ``keypoints`` (K, 17, 3) in input pixels, and with ``need_gt`` (or when a frame was not
    cached) ``gt``, the frame's ``FramePoses``.
    """
    out = []
    w, h = input_size
    for n, (seed, people) in enumerate(seeds):
        keys = [f"recurrent/{seed}/{people}/{t}/{clip_frames}/{w}x{h}" for t in frame_ids]
        entries = [cache.load(k) for k in keys]
        rendered: list[tuple[np.ndarray | None, FramePoses | None]] = [(None, None)] * len(keys)
        if need_gt or any(e is None for e in entries):
            clip = _clip_frames(seed, people, clip_frames)
            rendered = [clip.render(t) for t in frame_ids]
        missing = [i for i, e in enumerate(entries) if e is None]
        if missing:
            feats, heats, mats = plain_maps(
                net, [rendered[i][0] for i in missing], input_size, torch.device("cpu")
            )
            for j, i in enumerate(missing):
                kp = transform_keypoints(rendered[i][1].keypoints, mats[j], flip=False)
                cache.save(keys[i], torch.cat([feats[j], heats[j]]), kp, None)
                entries[i] = cache.load(keys[i])
        for entry, (_, gt) in zip(entries, rendered, strict=True):
            out.append(
                {"maps": entry["features"].astype(np.float16), "keypoints": entry["keypoints"], "gt": gt}
            )
        if (n + 1) % 10 == 0:
            log.info("cached %d / %d clips", n + 1, len(seeds))
    return out


def _cached_real_frames(
    net: SpatialNet, cache: FeatureCache, cfg: TrainRecurrentConfig
) -> list[dict[str, Any]]:
    """The pseudo-labelled real frames through SpatialNet (``_cached_frames``' item layout, no ``gt``).

    Keypoints: the sure joints of the sure people visible (``PseudoLabelSource.labels``), in
    input pixels of the fitted frame.
    """
    source = PseudoLabelSource(build_pseudo_labels(cfg.real), cfg.real)
    w, h = cfg.input_size
    out = []
    for i in range(len(source)):
        key = f"recurrent-real/{source.item_key(i)}/{w}x{h}"
        entry = cache.load(key)
        if entry is None:
            sample = source[i]
            feats, heats, mats = plain_maps(net, [sample.image], cfg.input_size, torch.device("cpu"))
            kp = transform_keypoints(sample.keypoints, mats[0], flip=False)
            cache.save(key, torch.cat([feats[0], heats[0]]), kp, None)
            entry = cache.load(key)
        out.append({"maps": entry["features"].astype(np.float16), "keypoints": entry["keypoints"]})
    return out


def person_heatmaps(keypoints: np.ndarray, h: int, w: int, min_visible: int,
                    offset: tuple[int, int] = (0, 0)) -> torch.Tensor:  # fmt: skip
    """Each ground-truth person's own heatmaps in a window of the stride-4 maps.

    Args:
        keypoints: (K, 17, 3) (x, y, visibility) in input pixels of the whole frame.
        h, w: the window's size in cells; offset: its (y0, x0) top-left cell.
        min_visible: people with fewer visible joints inside the window are left out.
    Returns:
        (Z, 17, h, w) float32 Gaussians (``TargetConfig``), one person each.
    """
    kp = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3).copy()
    kp[..., 0] -= STRIDE * offset[1]
    kp[..., 1] -= STRIDE * offset[0]
    cells = to_output_coords(kp[..., :2], STRIDE)
    inside = (kp[..., 2] > 0) & (cells[..., 0] >= -0.5) & (cells[..., 0] < w - 0.5)
    inside &= (cells[..., 1] >= -0.5) & (cells[..., 1] < h - 0.5)
    maps = [build_spatial_targets(kp[k : k + 1], h, w, TargetConfig()).heatmaps
            for k in np.flatnonzero(inside.sum(axis=1) >= min_visible)]  # fmt: skip
    return torch.from_numpy(np.stack(maps)) if maps else torch.zeros((0, NUM_KEYPOINTS, h, w))


def _batch(items: list[dict[str, Any]], cfg: TrainRecurrentConfig, rng: np.random.Generator, width: int,
           full: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:  # fmt: skip
    feats, heats, people = [], [], []
    for it in items:
        maps = it["maps"]
        hh, ww = maps.shape[-2:]
        if full or cfg.crop is None:
            y0, x0, ch, cw = 0, 0, hh, ww
        else:
            ch, cw = cfg.crop
            y0, x0 = int(rng.integers(0, hh - ch + 1)), int(rng.integers(0, ww - cw + 1))
        win = torch.from_numpy(maps[:, y0 : y0 + ch, x0 : x0 + cw].astype(np.float32))
        feats.append(win[:width])
        heats.append(win[width:])
        people.append(person_heatmaps(it["keypoints"], ch, cw, cfg.decoder.min_visible_joints, (y0, x0)))
    return torch.stack(feats), torch.stack(heats), people


def predict_recurrent(
    decoder: RecurrentDecoder, features: torch.Tensor, heatmaps: torch.Tensor, mats: list[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decode a batch of plain-pass maps; keypoints (P, 17, 3) in frame pixels, scores (P,)."""
    decoded = decoder.eval().decode_batch(features, heatmaps)
    return [(transform_keypoints(kp, invert_affine(m), flip=False), sc)
            for (kp, sc), m in zip(decoded, mats, strict=True)]  # fmt: skip


def count_accuracy(true_counts: list[int], predicted_counts: list[int]) -> dict[str, float]:
    """People-count accuracy: the share of frames with the exact count, and the mean absolute error."""
    t, p = np.asarray(true_counts), np.asarray(predicted_counts)
    if len(t) == 0:
        return {"count_exact": float("nan"), "count_mae": float("nan")}
    return {"count_exact": float(np.mean(t == p)), "count_mae": float(np.mean(np.abs(t - p)))}


def visible_people(keypoints: np.ndarray, width: int, height: int, min_visible: int) -> int:
    """Ground-truth people with at least ``min_visible`` visible joints inside a (width, height) frame."""
    kp = np.asarray(keypoints).reshape(-1, NUM_KEYPOINTS, 3)
    inside = (
        (kp[..., 2] > 0)
        & (kp[..., 0] >= 0)
        & (kp[..., 0] < width)
        & (kp[..., 1] >= 0)
        & (kp[..., 1] < height)
    )
    return int((inside.sum(axis=1) >= min_visible).sum())


def _validate(decoder: RecurrentDecoder, val: list[dict[str, Any]], width: int,
              evaluate: EvaluateFn | None, input_size: tuple[int, int]) -> dict[str, float]:  # fmt: skip
    preds, gts, true_n, pred_n = [], [], [], []
    for i, it in enumerate(val):
        maps = torch.from_numpy(it["maps"].astype(np.float32))[None]
        gt = it["gt"]
        mat = fit_affine(gt.width, gt.height, *input_size)
        ((kp, sc),) = predict_recurrent(decoder, maps[:, :width], maps[:, width:], [mat])
        preds.append(
            FramePoses(i, 0.0, gt.width, gt.height, kp, boxes_from_keypoints(kp), sc, np.full(len(kp), -1))
        )
        gts.append(FramePoses(i, 0.0, gt.width, gt.height, gt.keypoints, gt.boxes, gt.scores, gt.track_ids))
        true_n.append(visible_people(gt.keypoints, gt.width, gt.height, decoder.config.min_visible_joints))
        pred_n.append(len(kp))
    out = count_accuracy(true_n, pred_n)
    if evaluate is not None:
        out["AP"] = float(evaluate(gts, preds)["AP"])
    decoder.train()
    return out


# Fields a run may change when it resumes (``train_recurrent``).
_RESUME_FREE = ("time_limit_s", "steps", "eval_every_s", "threads", "out")


def train_recurrent(
    cfg: TrainRecurrentConfig, evaluate: EvaluateFn | None = None
) -> tuple[Path, dict[str, Any]]:
    """Build (or reuse) the cache, train (or resume) within the time limit, export ``cfg.out`` with its card.

    ``evaluate`` (``posestream.tracker.metrics.evaluate``, passed in by the CLI) adds the
    validation AP to the learning curve; without it the curve has the count accuracy only.
    """
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.work_dir)
    t0 = time.perf_counter()
    sp_path = checkpoint_path(cfg.spatialnet)
    sp_sha = sha256_file(sp_path)
    net = plain_net(load_spatialnet(sp_path, "cpu"))
    width = net.config.backbone.width
    if width != cfg.decoder.feature_channels:
        raise ValueError(f"{cfg.spatialnet} has {width}-channel features; decoder.feature_channels is "
                         f"{cfg.decoder.feature_channels}")  # fmt: skip
    cache = FeatureCache(work / "cache", sp_sha)
    train_seeds = [
        (s, cfg.people[i % len(cfg.people)]) for i, s in enumerate(RECURRENT_TRAIN.seeds(cfg.clips))
    ]
    train = _cached_frames(net, cache, train_seeds, list(range(0, cfg.clip_frames, cfg.frame_step)),
                           cfg.clip_frames, cfg.input_size)  # fmt: skip
    val_seeds = [(s, cfg.val_people[i % len(cfg.val_people)])
                 for i, s in enumerate(DECODE_VALIDATION.seeds(cfg.val_clips))]  # fmt: skip
    val = _cached_frames(
        net, cache, val_seeds, list(range(cfg.val_frames)), cfg.val_frames, cfg.input_size, True
    )
    real = _cached_real_frames(net, cache, cfg) if cfg.real_fraction > 0 else []
    cache_s = time.perf_counter() - t0
    log.info(
        "%d training (%d real) and %d validation frames ready in %.0f s",
        len(train),
        len(real),
        len(val),
        cache_s,
    )

    torch.manual_seed(cfg.seed)
    decoder = RecurrentDecoder(cfg.decoder)
    if cfg.init_from is not None:
        start, _ = load_recurrent_decoder(cfg.init_from)
        if start.config != cfg.decoder:
            raise ValueError(f"init_from {cfg.init_from} has another decoder config: {start.config}")
        decoder.load_state_dict(start.state_dict())
    opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, trained_s, curve, ema = 0, 0.0, [], None
    last = work / "last.pt"
    # What a resumed run must share with the saved one: not the time limit (a run is extended by
    # resuming it with a longer one), nor the bookkeeping fields.
    same = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _RESUME_FREE}
    key = json.dumps(same | {"spatialnet_sha256": sp_sha}, sort_keys=True, default=str)
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        if state["key"] == key:
            decoder.load_state_dict(state["decoder"])
            opt.load_state_dict(state["opt"])
            rng.bit_generator.state = state["rng"]
            gen.set_state(state["gen"])
            step, trained_s, curve, ema = state["step"], state["trained_s"], state["curve"], state["ema"]
            log.info("resumed from %s at step %d (%.0f s trained)", last, step, trained_s)
        else:
            log.info("%s is from another configuration: starting over", last)

    def save() -> None:
        work.mkdir(parents=True, exist_ok=True)
        tmp = last.with_suffix(".tmp")
        torch.save({"key": key, "decoder": decoder.state_dict(), "opt": opt.state_dict(),
                    "rng": rng.bit_generator.state, "gen": gen.get_state(), "step": step,
                    "trained_s": trained_s, "curve": curve, "ema": ema}, tmp)  # fmt: skip
        tmp.replace(last)

    decoder.train()
    if not curve:
        curve.append(
            {
                "step": 0,
                "train_s": 0.0,
                "loss": None,
                **_validate(decoder, val, width, evaluate, cfg.input_size),
            }
        )
    next_eval = curve[-1]["train_s"] + cfg.eval_every_s
    while step < cfg.steps and trained_s < cfg.time_limit_s:
        s0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (0.1 if trained_s >= cfg.lr_drop * cfg.time_limit_s else 1.0)
        full = bool(rng.random() < cfg.full_fraction)
        pool = real if real and rng.random() < cfg.real_fraction else train
        idx = rng.integers(0, len(pool), cfg.batch_size)
        feats, heats, people = _batch([pool[i] for i in idx], cfg, rng, width, full)
        opt.zero_grad()
        losses = unrolled_loss(decoder, decoder.prepare(feats, heats), people, gen)
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        trained_s += time.perf_counter() - s0
        ema = losses["total"] if ema is None else 0.98 * ema + 0.02 * losses["total"]
        if step % 20 == 0:
            log.info("step %d  %.0f s  loss %.2f (heat %.2f stop %.2f, %d steps)", step, trained_s, ema,
                     losses["heat"], losses["stop"], losses["steps"])  # fmt: skip
        if trained_s >= next_eval or trained_s >= cfg.time_limit_s or step >= cfg.steps:
            point = _validate(decoder, val, width, evaluate, cfg.input_size)
            curve.append(
                {"step": step, "train_s": round(trained_s, 1), "loss": round(float(ema), 3), **point}
            )
            log.info("curve: %s", curve[-1])
            next_eval = trained_s + cfg.eval_every_s
            save()
    save()
    card = {
        "what": "seed 001 recurrent decoder (ConvLSTM, learned stop) on the frozen SpatialNet's plain pass",
        "train_config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "spatialnet": cfg.spatialnet, "spatialnet_sha256": sp_sha,
        "train_seeds": f"{RECURRENT_TRAIN.first}..{RECURRENT_TRAIN.first + cfg.clips - 1}",
        "train_frames": len(train), "real_frames": len(real), "validation_seeds": str(DECODE_VALIDATION.seeds(cfg.val_clips)),
        "steps": step, "train_seconds": round(trained_s, 1), "cache_seconds": round(cache_s, 1),
        "threads": cfg.threads, "curve": curve,
    }  # fmt: skip
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"config": dataclasses.asdict(cfg.decoder), "state_dict": decoder.state_dict(), "card": card}, out
    )
    return out, card
