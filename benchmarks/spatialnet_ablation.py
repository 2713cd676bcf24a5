"""SpatialNet ablation on held-out synthetic video (the trend of seed 000 Table 3).

Five variants of one small SpatialNet, each trained with the same budget -- the same
number of optimiser steps on the very same batches, from the same initial weights:

- ``KE``: heatmaps + Keypoint Embedding (associative embedding, seed 002);
- ``SIE``: heatmaps + Spatial Instance Embedding only;
- ``KE+SIE``: both embeddings, no auxiliary ordinal tasks;
- ``KE+SIE+aux``: both, with the six ordinal tasks;
- ``KE+SIE+aux+PGG``: the paper's two stages inside the same budget: the KE+SIE+aux
  run's first ``steps - pgg_steps`` steps (weights and optimiser state are copied at
  that step), then ``pgg_steps`` steps fine-tuned with PGG's grouping loss; decoded with
  PGG-refined embeddings.

The variants train in lockstep, one batch at a time, so the synthetic rendering (a
large part of a CPU step) is paid once for all five. Every variant is then scored by
``posestream.models.train.evaluate_spatialnet`` (``posestream.tracker.metrics``, the code behind
``posestream eval``) on held-out clips whose seeds are never used in training.

Run from the repository root (one thread, about 2 s per lockstep step on a small CPU)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/spatialnet_ablation.py \\
        --config configs/spatialnet_ablation.yaml --results benchmarks/RESULTS.md

``--config configs/spatialnet_ablation_movenet.yaml`` runs the five variants on the frozen
MoveNet backbone (``SpatialNetConfig.features``) and records its own section.

``--variants tradeoff`` runs seed 004's tradeoff heatmap loss against seed 000's
unweighted Eq. 1 instead: the full model's switches (KE+SIE+aux) with
``LossWeights.det_background`` 1 and 0.1, the same batches, initial weights (``--init``: a
trained checkpoint to fine-tune from, default a fresh initialisation) and step budget, and
records its own section (``--real-dev`` also scores both on the real dev set's eval split).

``--results`` rewrites this benchmark's block of RESULTS.md (between its markers) with
the date, machine, command, budget and table; other sections are left alone.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import cpu_name, record_section  # noqa: E402
from posestream.models.data.datasets import SpatialTrainingSet, collate_spatial  # noqa: E402
from posestream.models.data.splits import HELD_OUT  # noqa: E402
from posestream.models.feature_cache import FeatureCache, movenet_sha256  # noqa: E402
from posestream.models.pose_prior import PosePrior  # noqa: E402
from posestream.models.spatialnet import SpatialNet, SpatialNetConfig  # noqa: E402
from posestream.models.targets import TargetConfig  # noqa: E402
from posestream.models.train import (  # noqa: E402
    TrainSpatialConfig,
    _batch_targets,
    batch_features,
    build_source,
    config_to_dict,
    evaluate_spatialnet,
    evaluate_spatialnet_oracles,
    load_train_config,
)
from posestream.tracker.metrics import evaluate  # noqa: E402

# name -> (use_ke, use_aux, use_sie); PGG is added to the last one by fine-tuning.
VARIANTS: dict[str, tuple[bool, bool, bool]] = {
    "KE": (True, False, False),
    "SIE": (False, False, True),
    "KE+SIE": (True, False, True),
    "KE+SIE+aux": (True, True, True),
}
PGG_NAME, PGG_FROM = "KE+SIE+aux+PGG", "KE+SIE+aux"
# seed 000 Table 3 (PoseTrack val AP, total) for the same rows.
PAPER_AP = {"KE": 70.9, "SIE": 71.3, "KE+SIE": 74.0, "KE+SIE+aux": 74.3, PGG_NAME: 77.0}
# seed 004's tradeoff loss against seed 000's Eq. 1: name -> LossWeights.det_background, both
# with the full model's switches (KE+SIE+aux; seed 004: background pixels weigh 0.1).
TRADEOFF: dict[str, float] = {"Eq. 1 (det_background 1)": 1.0, "tradeoff (det_background 0.1)": 0.1}
TRADEOFF_SWITCHES = VARIANTS["KE+SIE+aux"]
START_NAME = "start (--init, not fine-tuned)"
# What the second column set decodes with, per variant set: the ground truth's heatmaps (grouping
# alone, Table 3's variants differ there) or its embeddings (seed 004's "heatmap quality").
ORACLE_LABEL = {"table3": "AP, GT heatmaps", "tradeoff": "AP, GT grouping"}


def _file_name(variant: str) -> str:
    """A file name for a variant's weights (``KE+SIE`` -> ``KE_SIE``)."""
    return "".join(c if c.isalnum() else "_" for c in variant).strip("_")


def _variant_config(
    base: SpatialNetConfig, use_ke: bool, use_aux: bool, use_sie: bool, pgg: bool
) -> SpatialNetConfig:
    return dataclasses.replace(base, use_ke=use_ke, use_aux=use_aux, use_sie=use_sie, use_pgg=pgg)


class _Run:
    """One variant's network, optimiser, schedule and running losses."""

    def __init__(
        self,
        name: str,
        config: SpatialNetConfig,
        cfg: TrainSpatialConfig,
        init: dict,
        prior: PosePrior | None = None,
    ) -> None:
        self.name = name
        self.net = SpatialNet(config)
        self.net.load_state_dict(init)  # the same initial weights for every variant
        self.net.pose_prior = prior  # the body-shape prior a trained start decodes with (None: fresh)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, list(cfg.lr_decay_steps), cfg.lr_decay)
        self.seconds = 0.0
        self.steps = 0
        self.losses: dict[str, float] = {}

    def fork(self, name: str, config: SpatialNetConfig, cfg: TrainSpatialConfig) -> _Run:
        """A copy continuing from this run's weights, optimiser and schedule with another config."""
        other = _Run(name, config, cfg, self.net.state_dict(), self.net.pose_prior)
        other.opt.load_state_dict(copy.deepcopy(self.opt.state_dict()))
        other.sched.load_state_dict(copy.deepcopy(self.sched.state_dict()))
        other.seconds, other.steps = self.seconds, self.steps
        return other

    def step(self, batch: dict, features: torch.Tensor | None = None) -> None:
        """One Adam step on ``batch``; from the frozen pyramid's ``features`` when given (shared)."""
        started = time.perf_counter()
        self.net.train()
        if features is not None:
            stacks, _ = self.net.forward_frozen(features)
        else:
            stacks, _ = self.net(self.net.normalise(batch["image"]))
        terms = self.net.loss(stacks, _batch_targets(batch, torch.device("cpu")))
        self.opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.opt.step()
        self.sched.step()
        self.seconds += time.perf_counter() - started
        self.steps += 1
        for k, v in terms.items():
            self.losses[k] = 0.9 * self.losses.get(k, v.item()) + 0.1 * v.item()


def _batches(cfg: TrainSpatialConfig, cache: FeatureCache | None = None):  # noqa: ANN202 - generator of collated batches
    """Endless collated batches of ``build_source(cfg)`` (pseudo-labelled real frames mixed in when
    the config asks), through ``cache`` when given, in a seeded order per epoch."""
    dataset = SpatialTrainingSet(build_source(cfg), cfg.input_size, cfg.seed, cfg.augment, TargetConfig(),
                                 cfg.crops_per_frame, cfg.real.background_weight, cache)  # fmt: skip
    epoch = 0
    while True:
        order = np.random.default_rng((cfg.seed, epoch)).permutation(len(dataset))
        loader = DataLoader(
            torch.utils.data.Subset(dataset, order.tolist()), batch_size=cfg.batch_size // cfg.crops_per_frame,
            shuffle=False,
            num_workers=0, collate_fn=collate_spatial, drop_last=True,
        )  # fmt: skip
        yield from loader
        epoch += 1


def _shared_features(net: SpatialNet, batch: dict, cache: FeatureCache | None) -> torch.Tensor:
    """The frozen pyramid's (B, 24, H/4, W/4) features of ``batch``, computed once for every variant."""
    if cache is not None:
        return batch_features(net, batch, cache, torch.device("cpu"))
    with torch.no_grad():
        return net.frozen_features(net.normalise(batch["image"]))


def _initial_weights(
    cfg: TrainSpatialConfig, init: str | None
) -> tuple[TrainSpatialConfig, dict, PosePrior | None]:
    """The state every variant starts from: a fresh seeded initialisation, or ``init``'s trained weights.

    With ``init`` the checkpoint's network (backbone size, features, tag size), decoding and
    pose prior replace the config's, so that its weights fit and decode as shipped; the data,
    budget and loss weights stay the config's.
    """
    if init is None:
        torch.manual_seed(cfg.seed)
        return cfg, SpatialNet(cfg.model).state_dict(), None
    from posestream.models.checkpoints import load_spatialnet

    net = load_spatialnet(init, "cpu")
    n = net.config
    model = dataclasses.replace(cfg.model, backbone=n.backbone, features=n.features, tag_dim=n.tag_dim,
                                decode=n.decode)  # fmt: skip
    return dataclasses.replace(cfg, model=model), net.state_dict(), net.pose_prior


def _initial_runs(
    args: argparse.Namespace, cfg: TrainSpatialConfig, init: dict, prior: PosePrior | None = None
) -> dict[str, _Run]:
    if args.variants == "tradeoff":
        ke, aux, sie = TRADEOFF_SWITCHES
        return {
            name: _Run(name, dataclasses.replace(
                _variant_config(cfg.model, ke, aux, sie, False),
                weights=dataclasses.replace(cfg.model.weights, det_background=background)), cfg, init, prior)
            for name, background in TRADEOFF.items()
        }  # fmt: skip
    return {
        name: _Run(name, _variant_config(cfg.model, ke, aux, sie, False), cfg, init, prior)
        for name, (ke, aux, sie) in VARIANTS.items()
    }


def _save(net: SpatialNet, path: Path) -> Path:
    """``net`` as a checkpoint ``load_spatialnet`` reads: config, weights and its pose prior (if any)."""
    ckpt: dict = {"config": config_to_dict(net.config), "model": net.state_dict()}
    if net.pose_prior is not None:
        ckpt["pose_prior"] = {"mean": torch.from_numpy(net.pose_prior.mean.copy()),
                              "cov": torch.from_numpy(net.pose_prior.cov.copy())}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def _real_dev_ap(net: SpatialNet, size: int, save_dir: Path) -> dict:
    """COCO keypoint AP of ``net`` (one pass at long side ``size``) on the real dev set's eval split."""
    from benchmarks.real_dev import evaluate as real_dev_evaluate
    from posestream.models.data.splits import real_dev_split
    from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator

    path = _save(net, save_dir / "real_dev_net.pt")
    est = SpatialNetEstimator(path, SpatialEstimatorConfig(input_size=size, device="cpu"))

    def predict(rgb: np.ndarray) -> list:
        poses = est([rgb]).poses[0]
        return list(zip(poses.keypoints, poses.scores.tolist(), strict=True))

    result = real_dev_evaluate(predict, image_ids=real_dev_split().eval)
    return {"AP": result["total"]["AP"], "AR": result["total"]["AR"], "originals": result["originals"]["AP"]}


def run(args: argparse.Namespace) -> tuple[list[dict], dict]:
    torch.set_num_threads(args.threads)
    cfg = load_train_config(args.config, {"steps": args.steps} if args.steps else None)
    if args.decay_at is not None:  # the decay follows the budget when --steps changes it
        cfg = dataclasses.replace(cfg, lr_decay_steps=(max(1, round(args.decay_at * cfg.steps)),))
    if args.lr is not None:
        cfg = dataclasses.replace(cfg, lr=args.lr)
    pgg_steps = min(args.pgg_steps, cfg.steps) if args.variants == "table3" else 0
    cfg, init, prior = _initial_weights(cfg, args.init)
    runs = _initial_runs(args, cfg, init, prior)
    frozen = cfg.model.features == "movenet"
    # The frozen MoveNet pyramid is the same in every variant: one pass per batch serves all of
    # them (through the recipe's feature cache when it has one), so each variant pays only for
    # what it trains.
    cache = (
        FeatureCache(
            Path(args.save_dir or "out/spatialnet_ablation") / "feature_cache",
            movenet_sha256(),
            cfg.feature_cache_dtype,
        )  # fmt: skip
        if frozen and cfg.feature_cache
        else None
    )
    data_seconds, frozen_seconds, started = 0.0, 0.0, time.time()
    batches = _batches(cfg, cache)
    for step in range(cfg.steps):
        if step == cfg.steps - pgg_steps and pgg_steps > 0:
            ke, aux, sie = VARIANTS[PGG_FROM]
            runs[PGG_NAME] = runs[PGG_FROM].fork(
                PGG_NAME, _variant_config(cfg.model, ke, aux, sie, True), cfg
            )
        t0 = time.perf_counter()
        batch = next(batches)
        data_seconds += time.perf_counter() - t0
        features = None
        if frozen:
            t0 = time.perf_counter()
            features = _shared_features(next(iter(runs.values())).net, batch, cache)
            frozen_seconds += time.perf_counter() - t0
        for r in runs.values():
            r.step(batch, features)
        if (step + 1) % args.log_every == 0 or step + 1 == cfg.steps:
            losses = "  ".join(
                f"{r.name}: det {r.losses['det']:.2e} total {r.losses['total']:.2e}" for r in runs.values()
            )
            print(f"step {step + 1}/{cfg.steps} ({time.time() - started:.0f} s)  {losses}", flush=True)
    train_wall = time.time() - started
    if args.save_dir:  # before evaluating, so a failed evaluation never costs the training
        for name, r in runs.items():
            _save(r.net, Path(args.save_dir) / f"{_file_name(name)}.pt")

    seeds = [int(s) for s in args.eval_seeds.split(",")]
    size = cfg.eval_input_size or cfg.input_size
    rows = []
    if args.init and args.variants == "tradeoff":  # where both fine-tunings started, scored the same way
        base = next(iter(runs.values()))
        runs = {START_NAME: _Run(START_NAME, base.net.config, cfg, init, prior), **runs}
    for name, r in runs.items():
        r.net.eval()
        t0 = time.perf_counter()
        if args.variants == "tradeoff":
            # Seed 004's "heatmap quality": the variant's own heatmaps grouped by the ground truth.
            scored = evaluate_spatialnet_oracles(
                r.net, seeds, args.eval_frames, size, torch.device("cpu"),
                {"own": (False, False), "gt_emb": (False, True)}, evaluate=evaluate,
            )  # fmt: skip
            metrics, oracle, paper = scored["own"], scored["gt_emb"], None
        else:
            metrics = evaluate_spatialnet(
                r.net, seeds, args.eval_frames, size, torch.device("cpu"), evaluate=evaluate
            )
            # The ground truth's heatmaps in place of the variant's (exact peaks) isolate its grouping.
            oracle = evaluate_spatialnet(
                r.net, seeds, args.eval_frames, size, torch.device("cpu"), gt_heatmaps=True, evaluate=evaluate
            )
            paper = PAPER_AP[name]
        row = {
            "variant": name,
            **metrics,
            "oracle": oracle,
            "train_s": r.seconds,
            "steps": r.steps,
            "paper": paper,
        }
        if args.real_dev:
            row["real_dev"] = _real_dev_ap(
                r.net, args.real_dev_size, Path(args.save_dir or "out/spatialnet_ablation")
            )
        row["eval_s"] = time.perf_counter() - t0
        rows.append(row)
        print(
            f"{name}: "
            + ", ".join(f"{k} {metrics[k]:.3f}" for k in ("AP", "AP50", "AP75", "AR"))
            + f"; {ORACLE_LABEL[args.variants]}: "
            + ", ".join(f"{k} {oracle[k]:.3f}" for k in ("AP", "AR"))
            + (f"; real dev eval AP {row['real_dev']['AP']:.3f}" if args.real_dev else ""),
            flush=True,
        )
    info = {"cfg": cfg, "pgg_steps": pgg_steps, "seeds": seeds, "size": size, "data_s": data_seconds,
            "frozen_s": frozen_seconds if frozen else None, "cached": cache is not None,
            "train_wall": train_wall, "variants": args.variants, "init": args.init,
            "real_dev_size": args.real_dev_size if args.real_dev else None}  # fmt: skip
    return rows, info


def _table(rows: list[dict], variants: str) -> list[str]:
    oracle = ORACLE_LABEL[variants]
    real = "real_dev" in rows[0]
    lines = [
        f"| variant | AP | AP50 | AP75 | AR | {oracle} | {oracle.replace('AP', 'AR', 1)} "
        + ("| real dev eval AP | real dev eval AR | real dev originals AP " if real else "")
        + "| steps | train time (s) "
        + ("| paper AP (Table 3) |" if variants == "table3" else "|"),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if real else "") + "---:|---:|"
        + ("---:|" if variants == "table3" else ""),
    ]  # fmt: skip
    for r in rows:
        g = r["oracle"]
        cells = [
            r["variant"],
            *(f"{r[k]:.3f}" for k in ("AP", "AP50", "AP75", "AR")),
            f"{g['AP']:.3f}",
            f"{g['AR']:.3f}",
        ]
        if real:
            cells += [f"{r['real_dev'][k]:.3f}" for k in ("AP", "AR", "originals")]
        cells += [str(r["steps"]), f"{r['train_s']:.0f}"]
        if variants == "table3":
            cells.append(f"{r['paper']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _verdict(rows: list[dict], variants: str) -> list[str]:
    """Whether the paper's trend holds here, in words (the numbers are in the table)."""
    if variants == "tradeoff":
        base, trade = ({r["variant"]: r for r in rows}[name] for name in TRADEOFF)  # the start row aside
        checks = [("held-out synthetic AP", lambda r: r["AP"]),
                  ("held-out synthetic AP with ground-truth grouping (seed 004's heatmap quality)",
                   lambda r: r["oracle"]["AP"])]  # fmt: skip
        if "real_dev" in base:
            checks.append(("real dev eval AP", lambda r: r["real_dev"]["AP"]))
        return [f"- {label}: the tradeoff loss {'raises' if get(trade) > get(base) else 'does not raise'} it "
                f"({get(base):.3f} -> {get(trade):.3f})." for label, get in checks]  # fmt: skip
    out = []
    checks = [("AP", lambda r: r["AP"]), ("AP with ground-truth heatmaps", lambda r: r["oracle"]["AP"])]
    if "real_dev" in rows[0]:
        checks.append(("real dev eval AP", lambda r: r["real_dev"]["AP"]))
    for label, get in checks:
        ap = {r["variant"]: get(r) for r in rows}
        full = ap.get(PGG_NAME)
        if full is None or "KE" not in ap or "SIE" not in ap:
            continue
        beats = full > ap["KE"] and full > ap["SIE"]
        order = " > ".join(f"{k} ({v:.3f})" for k, v in sorted(ap.items(), key=lambda kv: -kv[1]))
        out.append(f"- {label}: full model ({PGG_NAME}) beats KE-only and SIE-only: {'yes' if beats else 'no'}; "
                   f"order: {order}.")  # fmt: skip
    return out


def _real_data_line(cfg: TrainSpatialConfig) -> str:
    r = cfg.real
    return (f"- pseudo-labelled real frames: {cfg.real_fraction:.0%} of the items (`real_fraction`), "
            f"{r.frames_per_clip} evenly spaced frames of each of {', '.join(f'`{c}`' for c in r.clips)}"
            + (" and the real dev set's train-split images (pixels only)" if r.real_dev_train else "")
            + f"; labels: the default MoveNet estimator's people scoring >= {r.min_person_score:g}, their joints "
            f"scoring >= {r.min_joint_score:g} weighted by confidence, the rest ignored "
            "(`posestream.models.data.pseudo_labels`).")  # fmt: skip


def _transfer_line() -> str:
    return ("- head transfer (`movenet_heatmaps`): every variant's heatmaps start as MoveNet's pretrained keypoint "
            "heat on the same pyramid and its hourglass learns a residual, so the variants differ in the grouping "
            "heads they learn (KE, SIE, the ordinal tasks, PGG), as in seed 000 Table 3.")  # fmt: skip


def _section_name(info: dict) -> str:
    """The RESULTS.md block a run writes: one per variant set, backbone and start."""
    name = "spatialnet_ablation" if info["variants"] == "table3" else "spatialnet_tradeoff"
    if info["cfg"].model.features == "movenet":
        name += "_movenet"
    if info["cfg"].model.movenet_heatmaps:  # issue 18's recipe: MoveNet's heatmap head transferred
        name += "_transfer"
    return name + ("_finetune" if info["init"] else "")


def _write_results(path: Path, rows: list[dict], info: dict, command: str) -> None:
    cfg: TrainSpatialConfig = info["cfg"]
    bb = cfg.model.backbone
    w = cfg.model.weights
    s = cfg.synthetic
    on_movenet = cfg.model.features == "movenet"
    transfer = cfg.model.movenet_heatmaps
    tradeoff = info["variants"] == "tradeoff"
    title = "SpatialNet tradeoff heatmap loss (seed 004)" if tradeoff else "SpatialNet ablation"
    start = f"fine-tuned from `{info['init']}`" if info["init"] else "the same fresh initialisation"
    if tradeoff:
        variants = (f"Both variants train KE+SIE+aux (no PGG); they differ only in `LossWeights.det_background` "
                    f"(heatmap pixels outside the keypoint regions weigh {', '.join(f'{v:g}' for v in TRADEOFF.values())}).")  # fmt: skip
        oracle = ("- `AP, GT grouping`: each network's own heatmaps grouped by the ground truth's embeddings "
                  "(the joints found, placed and filled by its heatmaps; seed 004's 'heatmap quality', the "
                  "figure its Table 4 says the tradeoff loss raises, 71.8 -> 73.2).")  # fmt: skip
    else:
        variants = (f"`{PGG_NAME}` = `{PGG_FROM}` for {cfg.steps - info['pgg_steps']} steps, then {info['pgg_steps']} "
                    "steps with PGG's grouping loss (R = 1), decoded with PGG.")  # fmt: skip
        oracle = ("- `AP, GT heatmaps`: the same networks decoded with the ground truth's heatmaps in place of their "
                  "own (exact peaks), which isolates the grouping by KE / SIE / PGG that the variants differ in.")  # fmt: skip
    real = (f"- real dev: the eval split of `configs/real_dev_split.json` (never trained on), one pass per image at "
            f"long side {info['real_dev_size']} (`SpatialNetEstimator`, no flip or scales), scored by "
            "`benchmarks/real_dev.py`'s `evaluate` (originals and downscaled copies).") if info["real_dev_size"] else None  # fmt: skip
    lines = [
        f"## {title} on held-out synthetic video (`benchmarks/spatialnet_ablation.py`)"
        + (", frozen-MoveNet backbone" if on_movenet else "")
        + (", MoveNet heatmap head transferred, pseudo-labelled real frames" if transfer else "")
        + (", fine-tuned" if info["init"] else ""),
        "",
        f"- date: {dt.date.today().isoformat()}; machine: {cpu_name()}, {os.cpu_count()} logical CPUs (shared), "
        f"{torch.get_num_threads()} torch thread; Python {platform.python_version()}, torch {torch.__version__}",
        f"- command: `{command}`",
        f"- budget per variant: {cfg.steps} steps of batch {cfg.batch_size} ({cfg.input_size[0]}x{cfg.input_size[1]} "
        f"crops), the same batches for all, {start}; {bb.stacks}-stack width-{bb.width} depth-{bb.depth} "
        f"hourglass{' on the frozen MoveNet FPN features' if on_movenet else ''}; Adam lr {cfg.lr:g} (x{cfg.lr_decay:g} at {list(cfg.lr_decay_steps)}); loss weights det "
        f"{w.det:g} : KE {w.ke:g} : aux {w.aux:g} : SIE {w.sie:g} : PGG {w.pgg:g}. " + variants,
        f"- training data: synthetic clips seeds {s.seed_base}..{s.seed_base + s.clips - 1} ({s.frames} frames, "
        f"{s.people} people, {s.width}x{s.height}); held-out: seeds {', '.join(map(str, info['seeds']))} "
        f"(never used in training), whole frames fitted into {info['size'][0]}x{info['size'][1]}; "
        "AP/AR from `posestream.tracker.metrics` (the code behind `posestream eval`).",
        *([_real_data_line(cfg)] if cfg.real_fraction > 0 else []),
        *([_transfer_line()] if transfer else []),
        oracle,
        *([real] if real else []),
        f"- wall time: {info['train_wall']:.0f} s of lockstep training ({info['data_s']:.0f} s of it rendering and "
        "augmenting the shared batches"
        + (f", {info['frozen_s']:.0f} s the frozen MoveNet pass, run once per batch for all variants"
           + (" and read back from the feature cache after the first epoch" if info["cached"] else "")
           if info["frozen_s"] is not None else "")
        + ") plus evaluation; `train time` is each variant's own share (its trainable part).",
        "",
        *_table(rows, info["variants"]),
        "",
        *_verdict(rows, info["variants"]),
    ]  # fmt: skip
    record_section(_section_name(info), "\n".join(lines), path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config",
        default="configs/spatialnet_ablation.yaml",
        help="TrainSpatialConfig YAML (shared by all variants)",
    )
    p.add_argument("--steps", type=int, help="override the config's steps (the budget of every variant)")
    p.add_argument(
        "--decay-at",
        type=float,
        default=0.8,
        help="decay lr at this fraction of the steps (overrides lr_decay_steps)",
    )
    p.add_argument(
        "--pgg-steps", type=int, default=150, help="last steps of the +PGG variant trained with PGG"
    )
    p.add_argument(
        "--eval-seeds", default=",".join(map(str, HELD_OUT.seeds(4))), help="held-out synthetic clip seeds"
    )
    p.add_argument("--eval-frames", type=int, default=20, help="frames scored per held-out clip")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--save-dir", help="also save each variant's weights here")
    p.add_argument(
        "--variants",
        choices=("table3", "tradeoff"),
        default="table3",
        help="seed 000 Table 3's five variants, or seed 004's tradeoff heatmap loss against Eq. 1",
    )
    p.add_argument("--init", help="SpatialNet checkpoint every variant starts from (default: a fresh init)")
    p.add_argument("--lr", type=float, help="override the config's learning rate (e.g. lower with --init)")
    p.add_argument(
        "--real-dev", action="store_true", help="also score each variant on the real dev set's eval split"
    )
    p.add_argument("--real-dev-size", type=int, default=512, help="long side of the real dev pass")
    p.add_argument("--results", type=Path, help="rewrite this benchmark's block of this RESULTS.md")
    args = p.parse_args()
    rows, info = run(args)
    print("\n".join(_table(rows, args.variants)))
    if args.results:
        command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/spatialnet_ablation.py " + " ".join(
            sys.argv[1:]
        )
        _write_results(args.results, rows, info, command)


if __name__ == "__main__":
    main()
