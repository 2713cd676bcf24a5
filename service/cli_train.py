"""``posestream train``: argument parsing only; the training code (torch) loads when the command runs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

from posestream.models.data.splits import DECODE_VALIDATION, HELD_OUT, SPATIAL_TRAIN
from posestream.service.cli_common import CliError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``posestream train`` to the CLI."""
    p = sub.add_parser("train", help="train our networks")
    tsub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    s = tsub.add_parser("spatial", help="train SpatialNet (stage base or pgg) from a YAML config")
    s.add_argument("--config", help="YAML file with TrainSpatialConfig fields (models/train.py)")
    s.add_argument("--steps", type=int, help="override steps")
    s.add_argument("--out-dir", help="override out_dir")
    s.add_argument("--device", help="override device (cpu, cuda, auto)")
    s.add_argument(
        "--time-limit", type=float, help="override time_limit_s: stop after this many seconds of training"
    )
    s.add_argument("--no-resume", action="store_true", help="start over even if out_dir/last.pt exists")
    s.add_argument(
        "--eval-seeds",
        default="",
        help=f"comma-separated held-out synthetic seeds to score after training ({HELD_OUT})",
    )
    s.add_argument(
        "--eval-out", help="with --eval-seeds: also write gt.jsonl and pred.jsonl into this folder"
    )
    s.add_argument("--export", help="also write stripped fp16 weights here")
    s.add_argument(
        "--tune-decode-seeds",
        default="",
        help=f"comma-separated validation synthetic seeds ({DECODE_VALIDATION}): choose the decoding parameters there "
        "(coordinate ascent of AP) and store them with --export (never the --eval-seeds)",
    )
    _decode_options(s)
    s.set_defaults(func=_cmd_train_spatial)
    d = tsub.add_parser(
        "decode",
        help="re-choose the decoding parameters stored with trained SpatialNet weights (no training)",
    )
    d.add_argument("--weights", required=True, help="SpatialNet weights or checkpoint to start from")
    d.add_argument(
        "--tune-decode-seeds",
        required=True,
        help=f"comma-separated validation synthetic seeds to choose them on ({DECODE_VALIDATION})",
    )
    d.add_argument(
        "--export", required=True, help="write the weights with the chosen decoding here (may be --weights)"
    )
    d.add_argument(
        "--input-size", default="512x384", help="WxH whole frames are fitted into (default 512x384)"
    )
    d.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    d.add_argument(
        "--eval-seeds",
        default="",
        help=f"comma-separated held-out synthetic seeds to score afterwards ({HELD_OUT})",
    )
    d.add_argument(
        "--eval-out", help="with --eval-seeds: also write gt.jsonl and pred.jsonl into this folder"
    )
    _decode_options(d)
    d.set_defaults(func=_cmd_train_decode)
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
    t.add_argument(
        "--time-limit", type=float, help="override time_limit_s: stop after this many seconds of training"
    )
    t.add_argument(
        "--spatialnet",
        help="train on this SpatialNet's features and heatmaps (seed-faithful path) instead of MoveNet's",
    )
    t.set_defaults(func=_cmd_train_temporal)
    _register_scoring(tsub)
    _register_recurrent(tsub)


def _decode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pose-prior-seeds",
        default="",
        help=f"synthetic seeds (e.g. {SPATIAL_TRAIN.first}-{SPATIAL_TRAIN.first + 39}: training clips, {SPATIAL_TRAIN}) whose ground-truth poses fit the body-shape "
        "prior stored with --export (models/pose_prior.py); the decoding may then use it (prior_threshold)",
    )
    p.add_argument(
        "--tune-fields",
        default="",
        help="comma-separated decoding fields (posestream.models.train.DECODE_GRID) to tune; default all. Leaving out "
        "scales and flip_test keeps the merged heatmaps TemporalNet was trained on",
    )


def _decode_choices(args: argparse.Namespace, tune_seeds: list[int], eval_seeds: list[int]) -> dict:
    """``_tune_export_evaluate``'s prior seeds and grid from the shared options, checked."""
    from posestream.models.train import DECODE_GRID

    prior_seeds = _seeds(args.pose_prior_seeds)
    if set(prior_seeds) & (set(tune_seeds) | set(eval_seeds)):
        raise CliError("--pose-prior-seeds must not share seeds with --tune-decode-seeds or --eval-seeds")
    fields = [f.strip() for f in args.tune_fields.split(",") if f.strip()]
    unknown = sorted(set(fields) - set(DECODE_GRID))
    if unknown:
        raise CliError(f"--tune-fields: unknown decoding fields {unknown}; choose from {sorted(DECODE_GRID)}")
    if fields and not tune_seeds:
        raise CliError("--tune-fields needs --tune-decode-seeds")
    return {"prior_seeds": prior_seeds, "grid": {f: DECODE_GRID[f] for f in fields} or None}


def _needs_prior(decode, grid: dict | None) -> bool:  # noqa: ANN001 - a posestream.models.decode.DecodeConfig
    """Whether decoding with ``decode``, or tuning ``grid``'s fields, needs a pose prior."""
    from posestream.models.train import PRIOR_FIELDS

    return decode.prior_threshold > 0 or bool(set(grid or ()) & set(PRIOR_FIELDS))


def _cmd_train_spatial(args: argparse.Namespace) -> int:
    from posestream.models.train import load_train_config, train_spatial

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
    choices = _decode_choices(args, tune_seeds, eval_seeds)
    if (
        _needs_prior(cfg.model.decode, choices["grid"]) and not choices["prior_seeds"]
    ):  # a new checkpoint has none
        raise CliError("the decoding would use a pose prior (prior_threshold > 0 or a prior_ field to tune): "
                       "pass --pose-prior-seeds")  # fmt: skip
    last = train_spatial(cfg, resume=not args.no_resume)
    print(f"checkpoint: {last}")
    size = cfg.eval_input_size or cfg.input_size
    choices["prior_clips"] = (cfg.synthetic.frames, cfg.synthetic.people)
    _tune_export_evaluate(
        last, size, cfg.device, tune_seeds, args.export, eval_seeds, args.eval_out, **choices
    )
    return 0


def _cmd_train_decode(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        w, h = (int(v) for v in args.input_size.lower().split("x"))
    except ValueError:
        raise CliError(f"--input-size must be WxH, e.g. 512x384, got {args.input_size!r}") from None
    eval_seeds, tune_seeds = _seeds(args.eval_seeds), _seeds(args.tune_decode_seeds)
    if not tune_seeds:
        raise CliError("--tune-decode-seeds names no seed")
    if set(tune_seeds) & set(eval_seeds):
        raise CliError("--tune-decode-seeds and --eval-seeds must not share seeds")
    choices = _decode_choices(args, tune_seeds, eval_seeds)
    if not Path(args.weights).is_file():
        raise CliError(f"no such weights file: {args.weights}")
    _tune_export_evaluate(
        args.weights, (w, h), args.device, tune_seeds, args.export, eval_seeds, args.eval_out, **choices
    )
    return 0


def _tune_export_evaluate(
    source: str | Path, size: tuple[int, int], device_name: str, tune_seeds: list[int], export: str | None,
    eval_seeds: list[int], eval_out: str | None, prior_seeds: list[int] | None = None,
    grid: dict | None = None, prior_clips: tuple[int, int] = (30, 5),
) -> None:  # fmt: skip
    """Fit the pose prior on ``prior_seeds`` (if any; ``prior_clips``: frames and people per clip,
    those of the training data), choose the decoding on ``tune_seeds`` (if any; ``grid``: the
    fields to try, default all), export the weights with both, score ``eval_seeds``."""
    from posestream.models.checkpoints import load_spatialnet, resolve_device
    from posestream.models.train import (
        config_to_dict,
        evaluate_spatialnet,
        export_weights,
        fit_synthetic_pose_prior,
        tune_decode,
    )
    from posestream.tracker.metrics import evaluate

    try:
        device = resolve_device(device_name)
        net = load_spatialnet(source, device)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise CliError(f"cannot load SpatialNet weights from {source}: {exc}") from None
    if size[0] % net.config.size_multiple or size[1] % net.config.size_multiple:
        raise CliError(f"input size {size} must be multiples of {net.config.size_multiple} for this network")
    prior = None
    if prior_seeds:
        try:
            prior = net.pose_prior = fit_synthetic_pose_prior(prior_seeds, *prior_clips)
        except ValueError as exc:
            raise CliError(f"--pose-prior-seeds: {exc}") from None
        print(f"pose prior: fitted on the ground truth of {len(prior_seeds)} synthetic clips")
    if net.pose_prior is None and _needs_prior(net.config.decode, grid):
        raise CliError(f"{source} has no pose prior to tune or decode with: pass --pose-prior-seeds")
    decode = None
    if tune_seeds:
        decode, trail = tune_decode(net, tune_seeds, 8, size, device, grid=grid, evaluate=evaluate)
        print(
            json.dumps(
                {
                    "tuned_decode": config_to_dict(decode),
                    "validation_AP": round(max(t["AP"] for t in trail), 4),
                }
            )
        )
        net.config = dataclasses.replace(net.config, decode=decode)
    if export:
        try:
            print(f"weights: {export_weights(source, export, decode=decode, pose_prior=prior)}")
        except ValueError as exc:
            raise CliError(str(exc)) from None
        net = load_spatialnet(export, device)  # score exactly what ships (fp16 weights)
    if eval_seeds:
        metrics = evaluate_spatialnet(
            net, eval_seeds, 30, size, device, write_dir=eval_out, evaluate=evaluate
        )
        print(
            json.dumps({k: (None if v is None or math.isnan(v) else round(v, 4)) for k, v in metrics.items()})
        )


MAX_SEEDS = 100_000  # more clips than any run renders; a typo like 1000-10000000 stops here


def _seeds(text: str) -> list[int]:
    """Comma-separated seeds, each an integer or an inclusive range ``A-B``; repeats count once."""
    out: dict[int, None] = {}
    try:
        for item in (s.strip() for s in text.split(",")):
            if not item:
                continue
            lo, dash, hi = item.partition("-")
            first, last = int(lo), int(hi) if dash else int(lo)
            if last < first or len(out) + last - first >= MAX_SEEDS:
                raise ValueError(item)
            out.update(dict.fromkeys(range(first, last + 1)))
    except ValueError:
        raise CliError(
            f"seeds must be comma-separated integers or ranges A-B (A <= B, at most {MAX_SEEDS} in all), got {text!r}"
        ) from None
    return list(out)


def _cmd_train_temporal(args: argparse.Namespace) -> int:
    from posestream.models.train_temporal import load_temporal_config, train_temporal

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


def _register_scoring(tsub: argparse._SubParsersAction) -> None:
    sc = tsub.add_parser(
        "scoring",
        help="train seed 004's pose scoring net (predicted OKS) on MoveNet candidates of synthetic clips "
        "and the real dev set's train split",
    )
    sc.add_argument("--clips", type=int, help="synthetic training clips (default 40, seeds SCORING_TRAIN)")
    sc.add_argument("--frame-step", type=int, help="every Nth frame of each clip (default 5)")
    sc.add_argument("--epochs", type=int, help="training epochs over the cached pairs (default 300)")
    sc.add_argument("--time-limit", type=float, help="stop training after this many seconds (default 300)")
    sc.add_argument("--work-dir", help="caches and resumable state (default runs/pose_scoring)")
    sc.add_argument("--out", help="checkpoint path (default weights/pose_scoring.pt)")
    sc.add_argument("--threads", type=int, help="torch CPU threads (default 1)")
    sc.set_defaults(func=_cmd_train_scoring)


def _cmd_train_scoring(args: argparse.Namespace) -> int:
    from posestream.models.train_scoring import scoring_config, train_scoring

    pairs = (
        ("synthetic_clips", args.clips), ("frame_step", args.frame_step), ("epochs", args.epochs),
        ("time_limit_s", args.time_limit), ("work_dir", args.work_dir), ("out", args.out),
        ("threads", args.threads),
    )  # fmt: skip
    try:
        cfg = scoring_config({k: v for k, v in pairs if v is not None})
        path, card = train_scoring(cfg)
    except (OSError, ValueError) as exc:  # bad overrides, missing MoveNet weights
        raise CliError(str(exc)) from None
    print(f"checkpoint: {path}")
    keys = ("train_pairs", "epochs_done", "cache_seconds", "train_seconds", "final_loss")
    print(json.dumps({k: card[k] for k in (*keys, "held_out_synthetic", "held_out_real_dev_eval")}))
    return 0


def _register_recurrent(tsub: argparse._SubParsersAction) -> None:
    r = tsub.add_parser(
        "recurrent",
        help="train seed 001's recurrent per-person decoder (ConvLSTM, learned stop) on a frozen SpatialNet",
    )
    r.add_argument("--clips", type=int, help="synthetic training clips (default 120, seeds RECURRENT_TRAIN)")
    r.add_argument("--time-limit", type=float, help="training seconds, summed over resumes (default 3600)")
    r.add_argument("--batch-size", type=int, help="images per step (default 4)")
    r.add_argument(
        "--spatialnet",
        help="the frozen SpatialNet, a file in weights/ (default spatialnet_movenet_stage4.pt: the "
        "one --decoder recurrent runs on)",
    )
    r.add_argument("--work-dir", help="feature cache and resumable state (default runs/recurrent)")
    r.add_argument("--out", help="exported decoder (default weights/recurrent_spatialnet.pt)")
    r.add_argument("--threads", type=int, help="torch CPU threads (default 2)")
    r.add_argument(
        "--real-fraction",
        type=float,
        help="share of steps on pseudo-labelled real frames (default 0; needs `posestream data fetch`)",
    )
    r.add_argument("--init-from", help="start from this exported decoder (a fine-tuning stage)")
    r.add_argument(
        "--eval-every", type=float, help="training seconds between learning-curve points (default 300)"
    )
    r.set_defaults(func=_cmd_train_recurrent)


def _cmd_train_recurrent(args: argparse.Namespace) -> int:
    from posestream.models.train_recurrent import recurrent_config, train_recurrent
    from posestream.tracker.metrics import evaluate

    pairs = (
        ("clips", args.clips), ("time_limit_s", args.time_limit), ("batch_size", args.batch_size),
        ("spatialnet", args.spatialnet), ("work_dir", args.work_dir), ("out", args.out),
        ("threads", args.threads), ("eval_every_s", args.eval_every),
        ("real_fraction", args.real_fraction), ("init_from", args.init_from),
    )  # fmt: skip
    try:
        cfg = recurrent_config({k: v for k, v in pairs if v is not None})
        path, card = train_recurrent(cfg, evaluate=evaluate)
    except (OSError, ValueError) as exc:  # bad overrides, missing weights
        raise CliError(str(exc)) from None
    print(f"checkpoint: {path}")
    print(json.dumps({k: card[k] for k in ("train_frames", "steps", "train_seconds", "cache_seconds")}
                     | {"last": card["curve"][-1]}))  # fmt: skip
    return 0
