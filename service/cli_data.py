"""``posestream data``: fetch, locate and verify the real, unlabelled video clips (``posestream.models.data.real_clips``).

Registered by ``posestream.service.cli``; imports ``posestream.models.data.real_clips`` (no torch)
only when a subcommand runs.
"""

from __future__ import annotations

import argparse
import json

from posestream.service.cli_common import EXIT_FAILURE, EXIT_OK, CliError


def _check_names(names: list[str], fetchable_only: bool) -> None:
    from posestream.models.data.real_clips import LOCAL_CLIPS, WHEEL_SETS, clip_names

    known = list(WHEEL_SETS) + ([] if fetchable_only else [*clip_names(), *LOCAL_CLIPS])
    bad = [n for n in names if n not in known]
    if bad:
        what = "fetchable sets" if fetchable_only else "sets and clips"
        raise CliError(f"unknown name(s) {bad}; {what}: {sorted(set(known))}")


def _cmd_fetch(args: argparse.Namespace) -> int:
    from posestream.models.data.real_clips import WHEEL_SETS, DataError, fetch

    names = args.names or list(WHEEL_SETS)
    _check_names(names, fetchable_only=True)
    if args.wheel and len(names) != 1:
        raise CliError("--wheel needs exactly one set name")
    for name in names:
        spec = WHEEL_SETS[name]
        try:
            folder = fetch(spec, args.dir, force=args.force, wheel=args.wheel)
        except DataError as exc:
            raise CliError(str(exc), exit_code=EXIT_FAILURE) from None
        print(f"{spec.title} ({spec.licence}, {spec.requirement}): {folder}")
    return EXIT_OK


def _paths(names: list[str], directory: str | None, check: bool) -> list[tuple[str, str]]:
    from posestream.models.data.real_clips import WHEEL_SETS, clip_path, set_dir, verify

    out = []
    for name in names:
        if name in WHEEL_SETS:
            spec = WHEEL_SETS[name]
            out.append((name, str(verify(spec, directory) if check else set_dir(spec, directory))))
        else:
            out.append((name, str(clip_path(name, directory, check=check))))
    return out


def _cmd_path(args: argparse.Namespace) -> int:
    _check_names(args.names, fetchable_only=False)
    for _, path in _paths(args.names, args.dir, check=False):
        print(path)
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from posestream.models.data.real_clips import WHEEL_SETS, DataError

    names = args.names or list(WHEEL_SETS)
    _check_names(names, fetchable_only=False)
    try:
        rows = _paths(names, args.dir, check=True)
    except DataError as exc:
        raise CliError(str(exc), exit_code=EXIT_FAILURE) from None
    for name, path in rows:
        print(json.dumps({"name": name, "path": path, "ok": True}) if args.json else f"ok: {name} {path}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``posestream data {fetch,path,verify}``."""
    p = sub.add_parser(
        "data", help="fetch and check real, unlabelled video clips (pose2sim, sports2d, vtest)"
    )
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    def common(q: argparse.ArgumentParser, nargs: str, what: str) -> None:
        q.add_argument("names", nargs=nargs, metavar="NAME", help=what)
        q.add_argument(
            "--dir", default=None,
            help="cache folder (default: $POSESTREAM_DATA_DIR or data/cache in the repository)",
        )  # fmt: skip

    q = dsub.add_parser(
        "fetch", help="download the pinned wheels with pip, verify every sha256, cache the clips"
    )
    common(q, "*", "sets to fetch: pose2sim, sports2d (default: all)")
    q.add_argument("--force", action="store_true", help="download again even if the cache verifies")
    q.add_argument("--wheel", default=None, help="use this already-downloaded wheel instead of pip (offline)")
    q.set_defaults(func=_cmd_fetch)

    q = dsub.add_parser("path", help="print where a set or clip is (or will be)")
    common(q, "+", "sets (pose2sim, sports2d) or clips (pose2sim/cam01, sports2d/demo, vtest, realdev/...)")
    q.set_defaults(func=_cmd_path)

    q = dsub.add_parser("verify", help="check the sizes and sha256 of cached sets or known clips")
    common(q, "*", "sets or clips (default: the fetchable sets)")
    q.add_argument("--json", action="store_true", help="one JSON object per name")
    q.set_defaults(func=_cmd_verify)
