"""Training loops and the CLI behind ``posestream train``.

``posestream train spatial --config cfg.yaml`` trains SpatialNet in the paper's two
stages (seed 000 section 3.4): first without PGG, then fine-tuned with PGG
(``stage: pgg`` with ``init_from`` pointing at the first stage's checkpoint).
Training is resumable (``out_dir/last.pt``), seeded, and logs every loss term.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import TypeAdapter
from torch.utils.data import DataLoader
from tqdm import tqdm

from posestream.models.checkpoints import resolve_device
from posestream.models.data.augment import (
    AugmentConfig,
    fit_affine,
    invert_affine,
    transform_keypoints,
    warp_image,
)
from posestream.models.data.datasets import (
    CocoKeypointSource,
    MixedPoseSource,
    SpatialTrainingSet,
    SyntheticDataConfig,
    SyntheticPoseSource,
    collate_spatial,
)
from posestream.models.data.pseudo_labels import PseudoLabelConfig, PseudoLabelSource, build_pseudo_labels
from posestream.models.decode import DecodeConfig
from posestream.models.feature_cache import FeatureCache, movenet_sha256
from posestream.models.pose_prior import PosePrior, fit_pose_prior
from posestream.models.poses import FramePoses, boxes_from_keypoints
from posestream.models.spatialnet import SpatialBatchTargets, SpatialNet, SpatialNetConfig
from posestream.models.targets import TargetConfig, build_spatial_targets, dense_embedding_targets

log = logging.getLogger(__name__)

EvaluateFn = Callable[[Sequence[FramePoses], Sequence[FramePoses]], dict[str, Any]]
"""Scores predicted frames against ground truth and returns at least ``"AP"``, ``"AP50"``,
``"AP75"`` and ``"AR"``: ``posestream.tracker.metrics.evaluate``. The caller (the CLI, a
benchmark) passes it in, so that models/ never imports the tracker above it."""


@dataclass(frozen=True)
class TrainSpatialConfig:
    """Everything a SpatialNet training run depends on (saved into every checkpoint).

    Attributes:
        model: network, loss and decoding parameters.
        stage: "base" (no PGG) or "pgg" (fine-tune with PGG; sets ``model.use_pgg``).
        init_from: checkpoint whose weights start this run (stage 2 starts from stage 1).
        data: "synthetic" or "coco".
        synthetic: synthetic clip range.
        coco_annotations, coco_images: COCO person-keypoints JSON and image folder.
        input_size: (width, height) of the network input; multiples of the hourglass's.
        eval_input_size: (width, height) whole frames are fitted into when evaluating
            (``--eval-seeds``); None = ``input_size``. Larger than ``input_size`` when
            training on zoomed-in crops (``augment.scale_range`` > 1) of full frames.
        augment: augmentation ranges.
        real_fraction: share of the training items that are pseudo-labelled real frames
            (``real``; issue 18), the rest being ``data``'s; 0 = none. Raising it shows the
            heads more real people, labelled only as well as the default estimator sees them.
        real: which real frames are pseudo-labelled and how their labels are weighted
            (``posestream.models.data.pseudo_labels.PseudoLabelConfig``); used when
            ``real_fraction`` > 0.
        feature_cache: with ``model.features: movenet``, keep the frozen pyramid's features of
            every training crop on disk (``out_dir/feature_cache``,
            ``posestream.models.feature_cache``) and read them back in later epochs instead of
            rendering and running MoveNet again. Crops are fixed per item, so the cache holds
            one entry per item and crop (about 150 KB each in float16).
        feature_cache_dtype: storage precision of the cached features (``FeatureCache``).
        lr: Adam learning rate (seed 000: 2e-4).
        lr_decay_steps: steps at which lr is multiplied by ``lr_decay`` (with ``time_limit_s``:
            fractions ``m / steps`` of the run, whichever of steps and time is further along).
        steps: optimiser steps in this stage (the most, with ``time_limit_s``).
        time_limit_s: stop after this many seconds of training (summed over resumes) even
            before ``steps``; None = no limit. Makes a run fit a fixed device lease; raising it
            trains longer. The lr decays by progress = max(step / steps, elapsed / limit).
        batch_size: images per step.
        crops_per_frame: differently augmented crops taken from each rendered source frame
            (``batch_size`` must be a multiple); raising it trades sample diversity for
            throughput when rendering, not the network, limits the step rate (GPU training).
        workers: DataLoader worker processes (0 = in the main process).
        seed: seeds the model initialisation and the sample order.
        device: "cpu", "cuda" or "auto".
        out_dir: where checkpoints go (``last.pt`` is updated every ``ckpt_every`` steps).
        log_every: steps between progress-bar loss updates.
        ckpt_every: steps between checkpoints.
    """

    model: SpatialNetConfig = field(default_factory=SpatialNetConfig)
    stage: Literal["base", "pgg"] = "base"
    init_from: str | None = None
    data: Literal["synthetic", "coco"] = "synthetic"
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    coco_annotations: str | None = None
    coco_images: str | None = None
    input_size: tuple[int, int] = (256, 192)
    eval_input_size: tuple[int, int] | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    real_fraction: float = 0.0
    real: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    feature_cache: bool = False
    feature_cache_dtype: Literal["float16", "float32"] = "float16"
    lr: float = 2e-4
    lr_decay_steps: tuple[int, ...] = ()
    lr_decay: float = 0.1
    steps: int = 1000
    time_limit_s: float | None = None
    batch_size: int = 8
    crops_per_frame: int = 1
    workers: int = 0
    seed: int = 0
    device: str = "auto"
    out_dir: str = "runs/spatialnet"
    log_every: int = 10
    ckpt_every: int = 200

    def __post_init__(self) -> None:
        m = self.model.size_multiple
        if self.input_size[0] % m or self.input_size[1] % m:
            raise ValueError(f"input_size {self.input_size} must be multiples of {m} for this backbone")
        if self.eval_input_size is not None and (self.eval_input_size[0] % m or self.eval_input_size[1] % m):
            raise ValueError(
                f"eval_input_size {self.eval_input_size} must be multiples of {m} for this backbone"
            )
        if self.data == "coco" and not (self.coco_annotations and self.coco_images):
            raise ValueError("data: coco needs coco_annotations and coco_images")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if self.crops_per_frame < 1 or self.batch_size % self.crops_per_frame:
            raise ValueError("batch_size must be a positive multiple of crops_per_frame")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError("time_limit_s must be > 0 (or null for no limit)")
        if not 0.0 <= self.real_fraction < 1.0:
            raise ValueError(f"real_fraction must be in [0, 1), got {self.real_fraction}")
        if self.feature_cache and self.model.features != "movenet":
            raise ValueError(
                "feature_cache caches the frozen MoveNet pyramid: it needs model.features: movenet"
            )


def load_train_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainSpatialConfig:
    """Read a YAML training config (any subset of fields), apply overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping")
    raw.update(overrides or {})
    cfg = TypeAdapter(TrainSpatialConfig).validate_python(raw)
    if cfg.stage == "pgg" and not cfg.model.use_pgg:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, use_pgg=True))
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-safe data."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def build_source(cfg: TrainSpatialConfig):  # noqa: ANN201 - a Sequence[PoseSample]
    """The training items: ``data``'s, mixed with pseudo-labelled real frames when ``real_fraction`` > 0.

    The real frames are labelled on first use (``build_pseudo_labels``, cached).
    """
    if cfg.data == "coco":
        source = CocoKeypointSource(cfg.coco_annotations, cfg.coco_images)  # type: ignore[arg-type]
    else:
        s = cfg.synthetic
        source = SyntheticPoseSource(
            s.seed_base, s.clips, s.frames, s.people, s.width, s.height, s.cache_clips
        )
    if cfg.real_fraction <= 0:
        return source
    real = PseudoLabelSource(build_pseudo_labels(cfg.real), cfg.real)
    return MixedPoseSource(source, real, cfg.real_fraction)


def _batch_targets(batch: dict[str, Any], device: torch.device) -> SpatialBatchTargets:
    weight = batch.get("heat_weight")
    return SpatialBatchTargets(
        heatmaps=batch["heatmaps"].to(device),
        joints=[j.to(device) for j in batch["joints"]],
        instance=batch["instance"].to(device),
        heat_weight=weight.to(device) if weight is not None else None,
    )


def batch_features(
    net: SpatialNet, batch: dict[str, Any], cache: FeatureCache, device: torch.device
) -> torch.Tensor:
    """The frozen pyramid's (B, 24, H/4, W/4) features of a ``collate_spatial`` batch built with a cache.

    Cached items' features come from the batch; the others' are computed (one pass over their
    images) and written to ``cache`` for the next epochs.
    """
    cached = batch["cached"]
    parts: list[torch.Tensor | None] = [None] * len(cached)
    if batch["image"] is not None:
        with torch.no_grad():
            live = net.frozen_features(net.normalise(batch["image"].to(device)))
        for n, i in enumerate((~cached).nonzero().flatten().tolist()):
            cache.save(batch["keys"][i], live[n], batch["keypoints"][i], batch["joint_weights"][i])
            parts[i] = live[n]
    if batch["features"] is not None:
        stored = batch["features"].to(device)
        for n, i in enumerate(cached.nonzero().flatten().tolist()):
            parts[i] = stored[n]
    return torch.stack(parts)  # type: ignore[arg-type]


def spatial_step_loss(net: SpatialNet, batch: dict[str, Any], device: torch.device,
                      cache: FeatureCache | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """One training batch's loss terms (``SpatialNet.loss``), through the feature cache when given."""
    if cache is not None:
        stacks, _ = net.forward_frozen(batch_features(net, batch, cache, device))
    else:
        stacks, _ = net(net.normalise(batch["image"].to(device, non_blocking=True)))
    return net.loss(stacks, _batch_targets(batch, device))


class _SeededOrder(torch.utils.data.Sampler[int]):
    """Endless sample indices: a fixed seeded permutation per epoch, from sample ``start`` on.

    One sampler for the whole run keeps the DataLoader's workers (and the synthetic clips
    they have built) alive across epochs; starting at ``step * frames_per_step`` makes a
    resumed run see the same order as an uninterrupted one.
    """

    def __init__(self, n: int, seed: int, start: int) -> None:
        self.n, self.seed, self.start = n, seed, start

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.n)
        while True:
            yield from np.random.default_rng((self.seed, epoch)).permutation(self.n)[offset:].tolist()
            epoch, offset = epoch + 1, 0


def lr_at(cfg: TrainSpatialConfig, step: int, elapsed_s: float) -> float:
    """The learning rate after ``step`` steps and ``elapsed_s`` seconds of training (step decay)."""
    progress = float(step)
    if cfg.time_limit_s is not None:
        progress = max(progress, elapsed_s / cfg.time_limit_s * cfg.steps)
    return cfg.lr * cfg.lr_decay ** sum(progress >= m for m in cfg.lr_decay_steps)


def train_spatial(cfg: TrainSpatialConfig, resume: bool = True, progress: bool = True) -> Path:
    """Run (or resume) one training stage; returns the path of the final checkpoint."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed input size: pick the fastest kernels once
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = SpatialNet(cfg.model).to(device)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=cfg.lr)  # not frozen MoveNet
    step, elapsed_before = 0, 0.0
    last = out / "last.pt"
    if resume and last.exists():
        ckpt = torch.load(last, map_location=device, weights_only=False)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, elapsed_before = int(ckpt["step"]), float(ckpt.get("elapsed_s", 0.0))
        log.info("resumed from %s at step %d", last, step)
    elif cfg.init_from:
        init = torch.load(cfg.init_from, map_location=device, weights_only=True)
        net.load_state_dict(init["model"])
        log.info("initialised from %s", cfg.init_from)

    k = cfg.crops_per_frame
    cache = (
        FeatureCache(out / "feature_cache", movenet_sha256(), cfg.feature_cache_dtype)
        if cfg.feature_cache
        else None
    )
    dataset = SpatialTrainingSet(build_source(cfg), cfg.input_size, cfg.seed, cfg.augment, TargetConfig(), k,
                                 cfg.real.background_weight, cache)  # fmt: skip
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size // k, sampler=_SeededOrder(len(dataset), cfg.seed, step * cfg.batch_size // k),
        num_workers=cfg.workers, collate_fn=collate_spatial, drop_last=True, pin_memory=device.type == "cuda",
    )  # fmt: skip

    net.train()
    bar = tqdm(
        total=cfg.steps, initial=step, disable=not progress, desc=f"spatialnet[{cfg.stage}]", unit="step"
    )
    started, first_step = time.time(), step
    running: dict[str, float] = {}

    def elapsed() -> float:
        return elapsed_before + time.time() - started

    def done() -> bool:
        return step >= cfg.steps or (cfg.time_limit_s is not None and elapsed() >= cfg.time_limit_s)

    for batch in loader if not done() else ():  # a finished run starts no DataLoader workers
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step, elapsed())
        terms = spatial_step_loss(net, batch, device, cache)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        step += 1
        for name, v in terms.items():
            running[name] = 0.9 * running.get(name, v.item()) + 0.1 * v.item()
        if step % cfg.log_every == 0 or step == cfg.steps:
            bar.set_postfix({name: f"{v:.3g}" for name, v in running.items()})
        bar.update(1)
        if step % cfg.ckpt_every == 0 or done():
            _save(last, net, opt, step, elapsed(), cfg, running)
        if done():
            break
    bar.close()
    log.info("trained %d steps in %.1f s", step - first_step, time.time() - started)
    return last


def _save(
    path: Path,
    net: SpatialNet,
    opt,
    step: int,
    elapsed_s: float,
    cfg: TrainSpatialConfig,
    losses: dict[str, float],
) -> None:  # noqa: ANN001
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": net.state_dict(), "optimizer": opt.state_dict(), "step": step, "elapsed_s": round(elapsed_s, 3), "config": config_to_dict(cfg.model), "train_config": config_to_dict(cfg), "losses": losses,
        },
        tmp,
    )  # fmt: skip
    tmp.replace(path)  # atomic: an interrupted save never leaves a broken last.pt


def export_weights(
    checkpoint: str | Path, out: str | Path, half: bool = True, decode: DecodeConfig | None = None,
    pose_prior: PosePrior | None = None,
) -> Path:  # fmt: skip
    """Strip a training checkpoint to ``{"config", "model"}`` (fp16 by default) for ``weights/``.

    ``decode`` replaces the decoding parameters stored with the weights (``tune_decode``);
    ``pose_prior`` (``fit_synthetic_pose_prior``) is stored as ``"pose_prior"`` (float64, it is
    small), replacing the checkpoint's own if it has one, which is kept otherwise.

    Raises:
        ValueError: the decoding would use the prior (``prior_threshold > 0``) and there is none.
    """
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    config = dict(ckpt["config"])
    if decode is not None:
        config["decode"] = config_to_dict(decode)
    out_dict: dict[str, Any] = {"config": config, "model": model}
    if pose_prior is not None:
        out_dict["pose_prior"] = {"mean": torch.from_numpy(pose_prior.mean.copy()),
                                  "cov": torch.from_numpy(pose_prior.cov.copy())}  # fmt: skip
    elif "pose_prior" in ckpt:
        out_dict["pose_prior"] = ckpt["pose_prior"]
    if config.get("decode", {}).get("prior_threshold", 0.0) > 0 and "pose_prior" not in out_dict:
        raise ValueError("the decoding uses a pose prior (prior_threshold > 0) but none was fitted or stored")
    torch.save(out_dict, out)
    return Path(out)


def synthetic_frames(
    seeds: list[int], frames: int, people: int = 5
) -> Iterator[tuple[np.ndarray, FramePoses]]:
    """The first ``frames`` frames of each seed's synthetic clip: RGB (H, W, 3) uint8 and ground truth."""
    from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig

    for seed in seeds:
        clip = SyntheticClip.from_config(SyntheticConfig(seed=seed, frames=frames, people=people))
        for t in range(frames):
            yield clip.render(t)


def fit_synthetic_pose_prior(seeds: list[int], frames: int = 30, people: int = 5) -> PosePrior:
    """``fit_pose_prior`` on the ground-truth poses of synthetic clips (use the training seeds)."""
    poses = [g.keypoints for _, g in synthetic_frames(seeds, frames, people) if len(g.keypoints)]
    return fit_pose_prior(np.concatenate(poses))


# Values ``tune_decode`` tries per field (the others held at their current best).
DECODE_GRID: dict[str, tuple[Any, ...]] = {
    "detection_threshold": (0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    "match_threshold": (0.5, 1.0, 1.5, 2.0, 3.0, 4.0),
    "sie_weight": (0.1, 0.2, 0.3, 0.5, 1.0, 2.0),
    "nms_kernel": (3, 5, 7),
    "min_joints": (1, 2, 3, 5),
    "flip_test": (False, True),
    # Scales < 1 let the heads see people whole who are taller than the training crops.
    "scales": ((1.0,), (1.0, 1.25), (0.75, 1.0, 1.25), (0.625, 0.75, 1.0, 1.25), (0.5, 0.75, 1.0, 1.25)),
    "refine": ("quarter", "gaussian"),
    "person_score": ("detected", "all"),
    # Mirror confusion at the limb ends: a person's left and right wrist (etc.) on one peak.
    "mirror_separation": (0.0, 3.0, 4.0, 6.0, 8.0),
    "mirror_limb_ratio": (1.25, 1.5, 2.0),
    # Weak joints placed by the body-shape prior (only tried when the network has one).
    "prior_threshold": (0.0, 0.15, 0.2, 0.25, 0.3),
    "prior_noise": (0.5, 1.0, 2.0),
    "prior_min_joints": (3, 4, 6),
}

# The fields of ``complete_with_prior`` (``tune_decode`` skips them without a prior).
PRIOR_FIELDS = tuple(f for f in DECODE_GRID if f.startswith("prior_"))


@torch.inference_mode()
def tune_decode(
    net: SpatialNet, seeds: list[int], frames: int, input_size: tuple[int, int], device: torch.device,
    grid: dict[str, tuple[Any, ...]] | None = None, rounds: int = 2, *, evaluate: EvaluateFn,
) -> tuple[DecodeConfig, list[dict[str, Any]]]:  # fmt: skip
    """Choose decoding parameters by coordinate ascent of AP on (validation) synthetic clips.

    ``evaluate`` scores the candidates (``posestream.tracker.metrics.evaluate``; see ``EvaluateFn``).

    The network runs once per frame and set of test-time passes (``scales``, ``flip_test``);
    each candidate only re-decodes. Use seeds that are neither trained on nor held out for
    the reported scores. The pose-prior fields (``PRIOR_FIELDS``) are tried only when
    ``net.pose_prior`` is set.

    Returns:
        the best ``DecodeConfig`` (fields of ``grid`` changed, the rest as ``net``'s) and the
        trail of ``{"field", "value", "AP"}`` of every candidate tried.
    """
    rendered = list(synthetic_frames(seeds, frames))
    fitted: dict[tuple[tuple[float, ...], bool], list[tuple[dict[str, torch.Tensor], np.ndarray]]] = {}
    gts = [FramePoses(i, 0.0, g.width, g.height, g.keypoints, g.boxes, g.scores, g.track_ids)
           for i, (_, g) in enumerate(rendered)]  # fmt: skip
    original = net.config
    scores: dict[DecodeConfig, float] = {}  # a candidate seen in an earlier round is not decoded again

    def ap(decode: DecodeConfig) -> float:
        if decode not in scores:
            net.config = dataclasses.replace(original, decode=decode)
            passes = (decode.scales, decode.flip_test)
            if passes not in fitted:
                fitted[passes] = fitted_maps(net, [rgb for rgb, _ in rendered], input_size, device)
            preds = [
                FramePoses(i, 0.0, g.width, g.height, kp, boxes_from_keypoints(kp), sc, np.full(len(kp), -1))
                for i, (g, (kp, sc)) in enumerate(zip(gts, decode_fitted(net, fitted[passes]), strict=True))
            ]
            scores[decode] = float(evaluate(gts, preds)["AP"])
        return scores[decode]

    try:
        best, trail = coordinate_ascent(
            original.decode, ap, grid, rounds, has_prior=net.pose_prior is not None
        )
    finally:
        net.config = original
    return best, trail


def coordinate_ascent(
    start: DecodeConfig, ap: Callable[[DecodeConfig], float], grid: dict[str, tuple[Any, ...]] | None = None,
    rounds: int = 2, *, has_prior: bool,
) -> tuple[DecodeConfig, list[dict[str, Any]]]:  # fmt: skip
    """Coordinate ascent of ``ap`` over ``grid`` (default ``DECODE_GRID``) from ``start``.

    Each round tries every value of every field with the others held at the best so far and
    keeps a candidate only if it scores strictly higher. ``PRIOR_FIELDS`` are skipped without
    a prior (``has_prior`` False), and the prior's other fields while ``prior_threshold`` is 0.

    Returns:
        the best decoding and the trail of ``{"field", "value", "AP"}`` of every candidate tried.
    """
    best = start
    best_ap = ap(best)
    trail: list[dict[str, Any]] = [{"field": "start", "value": None, "AP": best_ap}]
    for _ in range(rounds):
        for name, values in (grid or DECODE_GRID).items():
            if name in PRIOR_FIELDS and (
                not has_prior or (name != "prior_threshold" and best.prior_threshold <= 0)
            ):
                continue  # no prior to try, or the stage is off and the field changes nothing
            for value in values:
                if getattr(best, name) == value:
                    continue
                candidate = dataclasses.replace(best, **{name: value})
                score = ap(candidate)
                trail.append({"field": name, "value": value, "AP": score})
                if score > best_ap:
                    best, best_ap = candidate, score
    log.info("tuned decode: AP %.4f with %s", best_ap, best)
    return best, trail


@torch.inference_mode()
def fitted_maps(net: SpatialNet, frames: list[np.ndarray], input_size: tuple[int, int],
                device: torch.device, batch_size: int = 8) -> list[tuple[dict[str, torch.Tensor], np.ndarray]]:  # fmt: skip
    """Run SpatialNet on RGB frames each fitted into ``input_size`` (``fit_affine``).

    Test-time passes (``net.config.decode`` scales and flip) are merged (``SpatialNet.infer``).

    Returns:
        per frame: its last-stack maps by head name, each (1, ...) on the CPU, and its
        (2, 3) frame -> input matrix.
    """
    out = []
    w, h = input_size
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        mats = [fit_affine(f.shape[1], f.shape[0], w, h) for f in chunk]
        x = torch.from_numpy(np.stack([warp_image(f, m, w, h) for f, m in zip(chunk, mats, strict=True)]))
        maps, _ = net.infer(net.normalise(x.permute(0, 3, 1, 2).to(device)))
        for i, m in enumerate(mats):
            out.append(({k: v[i : i + 1].cpu() for k, v in maps.items()}, m))
    return out


def decode_fitted(
    net: SpatialNet, fitted: list[tuple[dict[str, torch.Tensor], np.ndarray]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decode ``fitted_maps`` with ``net.config``'s decoding; keypoints (P, 17, 3) in frame pixels, scores (P,)."""
    out = []
    for maps, m in fitted:
        ((kp, sc),) = net.decode_batch(maps)
        out.append((transform_keypoints(kp, invert_affine(m), flip=False), sc))
    return out


def predict_frames(net: SpatialNet, frames: list[np.ndarray], input_size: tuple[int, int],
                   device: torch.device, batch_size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Run SpatialNet on RGB frames; keypoints come back in each frame's own pixels.

    Returns:
        per frame: keypoints (P, 17, 3) and scores (P,).
    """
    return decode_fitted(net, fitted_maps(net, frames, input_size, device, batch_size))


# Tag of the ground-truth person k in ``with_ground_truth`` maps: (k + 1) * GT_TAG_STEP, 0 off people.
# Far beyond any ``DecodeConfig.match_threshold``, so ground-truth tags never merge two people.
GT_TAG_STEP = 100.0


def with_ground_truth(
    maps: dict[str, torch.Tensor], keypoints: np.ndarray, heatmaps: bool, embeddings: bool
) -> dict[str, torch.Tensor]:
    """One image's maps with the ground truth's heatmaps and/or embeddings in place of the network's.

    An error analysis: with exact heatmaps (peaks) what is left is the grouping; with exact
    embeddings (KE tags ``(k + 1) * GT_TAG_STEP`` and the SVF towards person k's centre,
    ``dense_embedding_targets``) what is left is the detection and localisation of joints.
    With both, decoding returns the ground truth itself. The ground-truth embeddings exist only
    on each joint's Gaussian support (0 elsewhere), so ``fill_missing`` can only place a missing
    joint there: with exact embeddings the filled joints borrow the true location, and the AP is
    an upper bound on what the network's heatmaps allow.

    Args:
        maps: last-stack maps of one image, each (1, ...) at output resolution: "heatmaps"
            (1, J, H, W), "tags" (1, J, T, H, W) or (1, J, H, W), "svf" (1, 2, H, W).
        keypoints: (K, J, 3) ground truth (x, y, visibility) in network-input pixels.
    Returns:
        a new dict; the replaced tags are (1, J, 1, H, W).
    """
    if not (heatmaps or embeddings):
        return maps
    h, w = maps["heatmaps"].shape[-2:]
    targets = build_spatial_targets(keypoints, h, w, TargetConfig())
    out = dict(maps)
    if heatmaps:
        out["heatmaps"] = torch.from_numpy(targets.heatmaps)[None]
    if embeddings:
        _, svf = dense_embedding_targets(targets)
        tags = np.where(targets.instance >= 0, (targets.instance + 1) * GT_TAG_STEP, 0.0).astype(np.float32)
        out["tags"] = torch.from_numpy(tags)[None, :, None]
        out["svf"] = torch.from_numpy(svf)[None]
    return out


def evaluate_spatialnet(net: SpatialNet, seeds: list[int], frames: int, input_size: tuple[int, int],
                        device: torch.device, people: int = 5, write_dir: str | Path | None = None,
                        gt_heatmaps: bool = False, gt_embeddings: bool = False, *, evaluate: EvaluateFn,
                        ) -> dict[str, Any]:  # fmt: skip
    """AP etc. (``evaluate``: ``posestream.tracker.metrics.evaluate``) of SpatialNet on held-out synthetic clips.

    Predictions are untracked, so only the COCO keypoint metrics are meaningful here.
    With ``write_dir`` the ground truth and predictions are also written there as
    ``gt.jsonl`` and ``pred.jsonl``, so ``posestream eval --gt ... --pred ...`` scores
    the same frames. ``gt_heatmaps`` / ``gt_embeddings`` decode with the ground truth's
    maps in place of the network's (``with_ground_truth``), to see which half loses the AP.
    """
    return evaluate_spatialnet_oracles(
        net,
        seeds,
        frames,
        input_size,
        device,
        {"": (gt_heatmaps, gt_embeddings)},
        people,
        write_dir,
        evaluate=evaluate,
    )[""]


def evaluate_spatialnet_oracles(net: SpatialNet, seeds: list[int], frames: int, input_size: tuple[int, int],
                                device: torch.device, oracles: dict[str, tuple[bool, bool]], people: int = 5,
                                write_dir: str | Path | None = None, *, evaluate: EvaluateFn,
                                ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """``evaluate_spatialnet`` for several oracles at the cost of one network pass per frame.

    Args:
        oracles: name -> (gt_heatmaps, gt_embeddings) (see ``with_ground_truth``); each is
            decoded from the same fitted maps.
        write_dir: where the first oracle's ground truth and predictions are written.
        evaluate: the scoring function (``EvaluateFn``).
    Returns:
        name -> {"AP", "AP50", "AP75", "AR"}.
    """
    from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig

    gt_all: list[FramePoses] = []
    pred_all: dict[str, list[FramePoses]] = {name: [] for name in oracles}
    offset = 0
    for seed in seeds:
        clip = SyntheticClip.from_config(SyntheticConfig(seed=seed, frames=frames, people=people))
        rendered = [clip.render(t) for t in range(frames)]
        fitted = fitted_maps(net, [r[0] for r in rendered], input_size, device)
        for name, (gt_heatmaps, gt_embeddings) in oracles.items():
            preds = decode_fitted(net, [
                (with_ground_truth(maps, transform_keypoints(gt.keypoints, m, False), gt_heatmaps, gt_embeddings), m)
                for (maps, m), (_, gt) in zip(fitted, rendered, strict=True)
            ])  # fmt: skip
            for (_rgb, gt), (kp, sc) in zip(rendered, preds, strict=True):
                pred_all[name].append(FramePoses(offset + gt.frame_index, gt.timestamp, gt.width, gt.height, kp,
                                                 boxes_from_keypoints(kp), sc, np.full(len(kp), -1)))  # fmt: skip
        for _rgb, gt in rendered:
            gt_all.append(FramePoses(offset + gt.frame_index, gt.timestamp, gt.width, gt.height, gt.keypoints,
                                     gt.boxes, gt.scores, gt.track_ids + 1000 * seed))  # fmt: skip
        offset += frames
    if write_dir is not None:
        from posestream.models.poses import write_jsonl

        Path(write_dir).mkdir(parents=True, exist_ok=True)
        write_jsonl(Path(write_dir) / "gt.jsonl", gt_all)
        write_jsonl(Path(write_dir) / "pred.jsonl", pred_all[next(iter(oracles))])
    results = {name: evaluate(gt_all, preds) for name, preds in pred_all.items()}
    return {name: {k: r[k] for k in ("AP", "AP50", "AP75", "AR")} for name, r in results.items()}
