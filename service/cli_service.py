"""``posestream track``, ``posestream serve`` and ``posestream worker``.

Registered into ``posestream.service.cli`` through ``register(sub)``. Heavy imports (the gateway,
the worker, the models) happen only when a command runs, so ``posestream --help`` stays
instant and ``posestream serve`` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import logging
import sys
import time
from pathlib import Path
from typing import Any

from posestream.models.weights import SPATIAL_DECODERS
from posestream.service.cli_common import EXIT_OK, EXIT_TRUNCATED, CliError, track_summary
from posestream.service.settings import MODEL_NAMES
from posestream.tracker.config import PRESET_TERMS

log = logging.getLogger(__name__)


_TRACKERS = tuple(PRESET_TERMS)
_MODEL_HELP = (
    "pose estimator: movenet (default; real video), spatialnet (seed-faithful path), "
    "blobs (CPU test pipeline: tracks bright blobs, not people)"
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the service's subcommands to the ``posestream`` parser."""
    register_track(sub)
    register_serve(sub)
    register_worker(sub)


def _model_args(p: argparse.ArgumentParser, with_defaults_from_settings: bool) -> None:
    d = argparse.SUPPRESS if with_defaults_from_settings else None
    p.add_argument("--model", choices=MODEL_NAMES, default=d or "movenet", help=_MODEL_HELP)
    p.add_argument("--tracker", choices=_TRACKERS, default=d or "he+tie",
                   help="tracker preset: he+tie (TemporalNet, default), he, tie, the baselines sie, oks, iou, "
                   "and SpatialNet's KE baselines ke, ke+sie")  # fmt: skip
    p.add_argument("--input-size", dest="input_sizes", type=int, nargs="+", default=d,
                   help="network input size(s) in pixels, long side; several = multi-scale "
                   "(default: the estimator's 256 + 512 policy)")  # fmt: skip
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default=d or "auto", help="where the networks run"
    )
    p.add_argument("--decoder", choices=SPATIAL_DECODERS, default=d or SPATIAL_DECODERS[0],
                   help="with --model spatialnet: 'embedding' (KE + SIE grouping, default) or 'recurrent' "
                   "(seed 001's learned per-person decoder, weights/recurrent_spatialnet.pt)")  # fmt: skip
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=d,
                   help="gated Thunder refinement of each person's joints, with --model movenet or spatialnet "
                   "(default: on, POSESTREAM_REFINE); --no-refine keeps the model's own joints")  # fmt: skip


# ---- track ------------------------------------------------------------------------------------
def register_track(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track", help="track the people in a video file (no Redis needed)",
        epilog=f"Exit codes: 0 done; 2 bad input; {EXIT_TRUNCATED} the video is truncated (fewer frames decoded than "
        "its container declares, or decoding broke off): the output holds every frame that decoded, and a warning "
        "on stderr gives both counts. For a URL: 1 the source failed for good after its reconnect attempts (the "
        "output holds every frame read before).",
    )  # fmt: skip
    p.add_argument("video", help="input video (any container/codec PyAV reads), or a stream URL: rtsp://, "
                   "rtsps://, http(s):// file or HLS .m3u8 (reconnects with backoff; POSESTREAM_PULL_* settings)")  # fmt: skip
    p.add_argument("--out", default=None, help="JSON Lines output (default: VIDEO with .poses.jsonl)")
    p.add_argument("--render", default=None, metavar="MP4", help="also write an annotated H.264 MP4 here")
    _model_args(p, with_defaults_from_settings=False)
    p.add_argument("--batch-size", type=int, default=8, help="frames per pipeline batch")
    p.add_argument(
        "--max-frames", type=int, default=0, help="stop after this many frames (0: the whole video)"
    )
    p.add_argument("--smooth", action="store_true",
                   help="smooth each track's keypoints with a One-Euro filter (less jitter, some lag on fast "
                   "motion; parameters: POSESTREAM_TRACKER_OVERRIDES__SMOOTH_BETA etc., see the README)")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_track)


def _cmd_track(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from posestream.models.data.video import VideoError, iter_video_frames, probe_video
    from posestream.models.poses import dumps_frame
    from posestream.service.pipeline import build_pipeline, run_frames
    from posestream.service.pulls import is_url
    from posestream.service.settings import Settings
    from posestream.service.video_checks import truncation

    if is_url(args.video):
        from posestream.service.cli_pull import track_url

        return track_url(args)
    video = Path(args.video)
    if not video.is_file():
        raise CliError(f"no such file: {video}")
    if args.batch_size < 1:
        raise CliError("--batch-size must be >= 1")
    try:
        info = probe_video(video)
    except VideoError as exc:
        raise CliError(str(exc)) from None
    out = Path(args.out) if args.out else video.with_suffix(".poses.jsonl")
    try:
        settings = Settings()  # weights_dir, tracker_overrides, truncation_tolerance
    except ValidationError as exc:
        raise CliError(f"invalid POSESTREAM_* settings:\n{exc}") from None
    try:
        pipeline = build_pipeline(
            args.model, args.tracker, args.input_sizes, args.device,
            weights_dir=settings.weights_dir, tracker_overrides=settings.tracker_overrides,
            smooth=args.smooth or settings.smooth, decoder=args.decoder,
            refine=settings.refine if args.refine is None else args.refine,
        )  # fmt: skip
    except ValueError as exc:
        raise CliError(str(exc)) from None

    from tqdm import tqdm

    writer = None
    if args.render:
        from posestream.models.data.draw import draw_poses
        from posestream.models.data.video import VideoWriter

        writer = VideoWriter(args.render, info.width, info.height, info.fps or 25.0)
    frames = people = 0
    tracks: set[int] = set()
    start = time.perf_counter()
    bar = tqdm(
        total=(min(info.frames, args.max_frames) if args.max_frames > 0 else info.frames) or None,
        unit="frame",
        disable=args.quiet,
        dynamic_ncols=True,
    )
    error: str | None = None
    try:
        with open(out, "w", encoding="utf-8") as fh:
            try:
                source = iter_video_frames(video)
                if args.max_frames > 0:
                    source = itertools.islice(source, args.max_frames)
                for poses, rgb in run_frames(pipeline, source, batch_size=args.batch_size):
                    fh.write(dumps_frame(poses) + "\n")
                    if writer is not None:
                        writer.write(draw_poses(rgb, poses))
                    frames += 1
                    people += len(poses)
                    tracks.update(int(t) for t in poses.track_ids if t >= 0)
                    bar.update(1)
                    bar.set_postfix(
                        fps=f"{frames / max(time.perf_counter() - start, 1e-9):.1f}", refresh=False
                    )
            except VideoError as exc:
                error = str(exc)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    elapsed = time.perf_counter() - start
    print(track_summary(frames, people, len(tracks), elapsed, pipeline.name, out, args.render))
    limited = args.max_frames > 0 and frames >= args.max_frames
    warn = None if limited else truncation(info, frames, error, settings.truncation_tolerance)
    if warn is not None:
        print(f"posestream track: warning: {warn['message']}", file=sys.stderr)
        return EXIT_TRUNCATED
    return EXIT_OK


# ---- serve ------------------------------------------------------------------------------------
def register_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP/WebSocket gateway (settings from POSESTREAM_* variables)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=8000, help="port to bind")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from posestream.service.settings import get_settings

    try:
        get_settings()  # fail at start-up, with the variable's name, not on the first request
    except ValidationError as exc:
        raise CliError(f"invalid POSESTREAM_* settings:\n{exc}") from None
    from posestream.service.gateway.http import uvicorn_options

    # Typed as uvicorn.run's keywords (uvicorn_options is typed dict[str, object]).
    options: dict[str, Any] = uvicorn_options(get_settings())
    uvicorn.run(
        "posestream.service.gateway.app:create_app", factory=True, host=args.host, port=args.port,
        log_level=args.log_level, **options,
    )  # fmt: skip
    return EXIT_OK


# ---- worker -----------------------------------------------------------------------------------
def register_worker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker", help="run a pipeline worker on the Redis jobs stream (settings from POSESTREAM_*)"
    )
    _model_args(p, with_defaults_from_settings=True)
    p.add_argument("--batch-size", type=int, default=argparse.SUPPRESS, help="most frames per batch")
    p.add_argument("--batch-wait-ms", type=int, default=argparse.SUPPRESS, help="wait to fill a batch")
    p.add_argument(
        "--id", dest="worker_id", default=argparse.SUPPRESS, help="consumer name (default host-pid-random)"
    )
    p.add_argument("--metrics-port", dest="worker_metrics_port", type=int, default=argparse.SUPPRESS,
                   help="port of the Prometheus endpoint GET /metrics (default 9101; 0 = off; "
                   "workers sharing a host need one each)")  # fmt: skip
    p.add_argument("--metrics-addr", dest="worker_metrics_addr", default=argparse.SUPPRESS,
                   help="address the metrics endpoint binds (default 127.0.0.1; 0.0.0.0 to be scraped from "
                   "other hosts, as in docker-compose.yml)")  # fmt: skip
    p.add_argument("--debug-delay-ms", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_worker)


def _cmd_worker(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from posestream.service.pipeline import pipeline_from_settings
    from posestream.service.settings import Settings
    from posestream.service.worker.worker import run_worker

    overrides = {
        k: v for k, v in vars(args).items()
        if k in ("model", "tracker", "decoder", "refine", "input_sizes", "device", "batch_size", "batch_wait_ms", "worker_id", "debug_delay_ms",
                 "worker_metrics_port", "worker_metrics_addr")
    }  # fmt: skip
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise CliError(f"invalid settings:\n{exc}") from None
    if importlib.util.find_spec("torch") is None and settings.model != "blobs":
        raise CliError(f"--model {settings.model} needs torch, which is not installed in this environment")

    def factory():  # noqa: ANN202 - loads the models in the worker's main, never at import
        try:
            return pipeline_from_settings(settings)
        except ValueError as exc:
            raise CliError(str(exc)) from None

    return run_worker(settings, factory)
