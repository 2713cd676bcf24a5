"""``posestream train``: argument parsing only; the training code (torch) loads when the command runs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

from service.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``posestream train`` to the CLI."""
    p = sub.add_parser("train", help="train our networks")
    tsub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    s = tsub.add_parser("spatial", help="train SpatialNet (stage base or pgg) from a YAML config")
    s.add_argument("--config", help="YAML file with TrainSpatialConfig fields (models/train.py)")
    s.add_argument("--steps", type=int, help="override steps")
    s.add_argument("--out-dir", help="override out_dir")
    s.add_argument("--device", help="override device (cpu, cuda, auto)")
    s.add_argument("--time-limit", type=float, help="override time_limit_s: stop after this many seconds of training")
    s.add_argument("--no-resume", action="store_true", help="start over even if out_dir/last.pt exists")
    s.add_argument(
        "--eval-seeds", default="", help="comma-separated held-out synthetic seeds to score after training"
    )
    s.add_argument(
        "--eval-out", help="with --eval-seeds: also write gt.jsonl and pred.jsonl into this folder"
    )
    s.add_argument("--export", help="also write stripped fp16 weights here")
    s.add_argument(
        "--tune-decode-seeds",
        default="",
        help="comma-separated validation synthetic seeds: choose the decoding parameters there (coordinate "
        "ascent of AP) and store them with --export (never the --eval-seeds)",
    )
    s.set_defaults(func=_cmd_train_spatial)
    t = tsub.add_parser(
        "temporal",
        help="train TemporalNet's HE and TIE heads on frozen MoveNet (or SpatialNet) features, synthetic video",
    )
    t.add_argument("--config", help="YAML file with TrainTemporalConfig fields (models/train_temporal.py)")
    t.add_argument("--steps", type=int, help="override steps")
    t.add_argument("--clips", type=int, help="override data.clips (synthetic training clips)")
    t.add_argument(
        "--out",
        help="checkpoint path (default weights/temporalnet_movenet.pt, or weights/temporalnet_spatialnet.pt "
        "with --spatialnet)",
    )
    t.add_argument("--threads", type=int, help="override torch CPU threads (default 1)")
    t.add_argument("--device", help="override device (cpu, cuda, auto; default cpu)")
    t.add_argument("--time-limit", type=float, help="override time_limit_s: stop after this many seconds of training")
    t.add_argument(
        "--spatialnet",
        help="train on this SpatialNet's features and heatmaps (seed-faithful path) instead of MoveNet's",
    )
    t.set_defaults(func=_cmd_train_temporal)


def _cmd_train_spatial(args: argparse.Namespace) -> int:
    from models.train import (
        config_to_dict,
        evaluate_spatialnet,
        export_weights,
        load_spatialnet,
        load_train_config,
        resolve_device,
        train_spatial,
        tune_decode,
    )

    overrides = {
        k: v
        for k, v in (
            ("steps", args.steps),
            ("out_dir", args.out_dir),
            ("device", args.device),
            ("time_limit_s", args.time_limit),
        )
        if v
    }
    try:
        cfg = load_train_config(args.config, overrides)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    eval_seeds, tune_seeds = _seeds(args.eval_seeds), _seeds(args.tune_decode_seeds)
    if set(tune_seeds) & set(eval_seeds):
        raise CliError("--tune-decode-seeds and --eval-seeds must not share seeds")
    last = train_spatial(cfg, resume=not args.no_resume)
    print(f"checkpoint: {last}")
    device = resolve_device(cfg.device)
    size = cfg.eval_input_size or cfg.input_size
    net = load_spatialnet(last, device)
    decode = None
    if tune_seeds:
        decode, trail = tune_decode(net, tune_seeds, 8, size, device)
        print(
            json.dumps(
                {
                    "tuned_decode": config_to_dict(decode),
                    "validation_AP": round(max(t["AP"] for t in trail), 4),
                }
            )
        )
        net.config = dataclasses.replace(net.config, decode=decode)
    if args.export:
        print(f"weights: {export_weights(last, args.export, decode=decode)}")
        net = load_spatialnet(args.export, device)  # score exactly what ships (fp16 weights)
    if eval_seeds:
        metrics = evaluate_spatialnet(net, eval_seeds, 30, size, device, write_dir=args.eval_out)
        print(
            json.dumps({k: (None if v is None or math.isnan(v) else round(v, 4)) for k, v in metrics.items()})
        )
    return 0


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CliError(f"seeds must be comma-separated integers, got {text!r}") from None


def _cmd_train_temporal(args: argparse.Namespace) -> int:
    from models.train_temporal import load_temporal_config, train_temporal

    overrides: dict = {
        k: v
        for k, v in (
            ("steps", args.steps),
            ("out", args.out),
            ("threads", args.threads),
            ("spatialnet", args.spatialnet),
            ("device", args.device),
            ("time_limit_s", args.time_limit),
        )
        if v
    }
    if args.clips:
        overrides["data"] = {"clips": args.clips}
    try:
        cfg = load_temporal_config(args.config, overrides)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    try:
        path, card = train_temporal(cfg)
    except (OSError, ValueError) as exc:  # missing / unverifiable weights, bad sizes
        raise CliError(str(exc)) from None
    print(f"checkpoint: {path}")
    keys = ("train_seeds", "cache_seconds", "total_seconds", "steps_done", "device", "final_losses")
    print(json.dumps({k: card[k] for k in keys}))
    return 0
