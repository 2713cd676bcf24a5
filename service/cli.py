"""The ``posestream`` command line.

Each subcommand imports its implementation only when it runs, so ``posestream eval``
never loads torch and ``posestream --help`` is instant. Exit codes: 0 success,
1 runtime failure (message on stderr), 2 bad usage or bad input, 3 (``track``) the input
video is truncated: results for every decoded frame are written, stderr says what is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

# The subcommand modules only build argument parsers; what a command needs (torch, uvicorn,
# ...) loads when it runs, so `posestream serve` and `posestream eval` never import torch.
from posestream.service import cli_data, cli_export, cli_service, cli_train, cli_weights
from posestream.service.cli_common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "CliError", "build_parser", "main"]

log = logging.getLogger("posestream")


def _cmd_synth(args: argparse.Namespace) -> int:
    from posestream.models.data.synthetic import SyntheticConfig, write_synthetic_clip

    try:
        config = SyntheticConfig(
            seed=args.seed,
            frames=args.frames,
            people=args.people,
            width=args.width,
            height=args.height,
            fps=args.fps,
            camera_motion=not args.static_camera,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    video, gt = write_synthetic_clip(Path(args.out), config, progress=not args.quiet)
    print(f"wrote {video} and {gt} ({config.frames} frames, {config.people} people, seed {config.seed})")
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from posestream.models.poses import PoseFormatError, read_jsonl
    from posestream.tracker.metrics import EvalConfig, evaluate, format_report

    frames = {}
    for name in ("gt", "pred"):
        path = Path(getattr(args, name))
        if not path.is_file():
            raise CliError(f"--{name}: no such file: {path}")
        try:
            frames[name] = read_jsonl(path)
        except PoseFormatError as exc:
            raise CliError(f"--{name}: {exc}") from None
    try:
        result = evaluate(frames["gt"], frames["pred"], EvalConfig(pred_min_score=args.min_score))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(result, indent=None if args.compact else 2, sort_keys=True))
    else:
        print(format_report(result))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="posestream", description="Online multi-person video pose tracking."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="make a synthetic multi-person video with exact ground truth")
    p.add_argument("--out", required=True, help="output folder (video.mp4 and gt.jsonl are written there)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same clip")
    p.add_argument("--frames", type=int, default=120, help="number of frames")
    p.add_argument("--people", type=int, default=4, help="number of people appearing over the clip")
    p.add_argument("--width", type=int, default=640, help="frame width in pixels")
    p.add_argument("--height", type=int, default=480, help="frame height in pixels")
    p.add_argument("--fps", type=float, default=25.0, help="frames per second")
    p.add_argument("--static-camera", action="store_true", help="no camera pan or zoom")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("eval", help="score predicted poses and tracks against ground truth (JSON Lines)")
    p.add_argument("--gt", required=True, help="ground-truth JSON Lines (score column = visibility)")
    p.add_argument("--pred", required=True, help="predicted JSON Lines")
    p.add_argument("--min-score", type=float, default=0.0, help="ignore predicted people scoring below this")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--compact", action="store_true", help="with --json: one line")
    p.set_defaults(func=_cmd_eval)

    cli_service.register(sub)  # track, serve, worker
    cli_weights.register(sub)  # weights fetch / verify / path
    cli_data.register(sub)  # data fetch / verify / path (real clips)
    cli_train.register(sub)  # train spatial / decode / temporal
    cli_export.register(sub)  # export poses.jsonl --format coco|posetrack|csv|mot
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``posestream`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"posestream {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
