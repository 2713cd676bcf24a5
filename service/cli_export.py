"""``posestream export``: a JSON Lines pose file in another format (``posestream.service.exports``).

Registered into ``posestream.service.cli`` through ``register(sub)``. The output is written to a
temporary file beside ``--out`` and renamed when complete, so a malformed input line never
leaves half a file behind.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from posestream.service.cli_common import EXIT_OK, CliError
from posestream.service.exports import EXPORT_FORMATS


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``posestream`` parser."""
    p = sub.add_parser(
        "export", help="convert a poses JSON Lines file to COCO, PoseTrack, CSV or MOT",
        epilog="Formats: " + "; ".join(f"{f.name}: {f.description}" for f in EXPORT_FORMATS.values())
        + ". Exit codes: 0 written; 2 bad arguments, a missing input or a malformed line (the message names "
        "the line), nothing written.",
    )  # fmt: skip
    p.add_argument("poses", help="JSON Lines poses (posestream track output or GET /v1/videos/{id}/poses)")
    p.add_argument("--format", required=True, choices=tuple(EXPORT_FORMATS), help="output format")
    p.add_argument("--out", default=None,
                   help="output file, '-' for standard output (default: POSES with the format's suffix, "
                   "e.g. poses.coco.json)")  # fmt: skip
    p.add_argument("--min-keypoint-score", type=float, default=None,
                   help="joints scoring at or below this are written as not visible (default: the tracker's "
                   "keypoint_threshold)")  # fmt: skip
    p.add_argument(
        "--video", default=None, help="video name in the JSON formats' file names (default: the input's stem)"
    )
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from posestream.models.poses import PoseFormatError, iter_jsonl
    from posestream.service.exports import iter_export

    src = Path(args.poses)
    if not src.is_file():
        raise CliError(f"no such file: {src}")
    fmt = EXPORT_FORMATS[args.format]
    stem = src.name.removesuffix(".jsonl").removesuffix(".poses")
    video = args.video or stem
    chunks = iter_export(
        fmt.name, lambda: iter_jsonl(src), video=video, min_keypoint_score=args.min_keypoint_score
    )
    try:
        if args.out == "-":
            # Everything is read before the first byte goes out, so a malformed line writes nothing.
            text = "".join(chunks)
            sys.stdout.write(text)
            return EXIT_OK
        out = Path(args.out) if args.out else src.with_name(stem + fmt.suffix)
        if out.resolve() == src.resolve():
            raise CliError(f"--out {out} is the input file")
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent if str(out.parent) else ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                for chunk in chunks:
                    fh.write(chunk)
            os.replace(tmp, out)
        except BaseException:
            os.unlink(tmp)
            raise
    except PoseFormatError as exc:
        raise CliError(f"{exc}; nothing written") from None
    except OSError as exc:
        raise CliError(f"cannot write the export: {exc}") from None
    print(f"{fmt.name} -> {out}")
    return EXIT_OK
