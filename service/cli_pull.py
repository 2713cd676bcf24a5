"""``posestream track URL``: track a pulled stream (RTSP, HTTP(S) file, HLS) into JSON Lines, as for files.

Called by ``cli_service._cmd_track`` when its input is a URL. The stream is read with
``posestream.service.pulls.PullSource`` (reconnects with backoff, the ``POSESTREAM_PULL_*``
settings); loopback and private addresses are allowed here (the user runs the command on
their own network), unlike the gateway's default. Every frame is processed (the CLI never
drops); ``--max-frames`` or Ctrl-C ends a live stream, keeping every line written.

Exit codes: 0 the source ended (or ``--max-frames``); 1 the source failed for good (the output
holds every frame read before); 2 a URL that cannot be pulled; 130 interrupted.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from posestream.service.cli_common import EXIT_FAILURE, EXIT_OK, CliError, track_summary


def default_out(url: str) -> Path:
    """``NAME.poses.jsonl`` in the current folder, NAME from the URL's last path part (``stream`` if none)."""
    name = Path(urlsplit(url).path).stem or "stream"
    return Path(f"{name}.poses.jsonl")


def track_url(args: argparse.Namespace) -> int:
    """Run ``posestream track`` on a URL (``args`` as parsed by ``cli_service.register_track``)."""
    from pydantic import ValidationError

    from posestream.models.poses import dumps_frame
    from posestream.service.pipeline import build_pipeline, run_frames
    from posestream.service.pulls import PullError, PullFailed, PullSource, config_from_settings, redact
    from posestream.service.settings import Settings

    if args.batch_size < 1:
        raise CliError("--batch-size must be >= 1")
    try:
        settings = Settings()
    except ValidationError as exc:
        raise CliError(f"invalid POSESTREAM_* settings:\n{exc}") from None
    try:
        source = PullSource(args.video, config_from_settings(settings, realtime=False, allow_private=True))
    except PullError as exc:
        raise CliError(str(exc)) from None
    out = Path(args.out) if args.out else default_out(args.video)
    try:
        pipeline = build_pipeline(
            args.model, args.tracker, args.input_sizes, args.device,
            weights_dir=settings.weights_dir, tracker_overrides=settings.tracker_overrides, decoder=args.decoder,
            refine=settings.refine if args.refine is None else args.refine,
        )  # fmt: skip
    except ValueError as exc:
        raise CliError(str(exc)) from None

    from tqdm import tqdm

    writer = None
    frames = people = 0
    tracks: set[int] = set()
    start = time.perf_counter()
    bar = tqdm(total=args.max_frames or None, unit="frame", disable=args.quiet, dynamic_ncols=True)
    failed: str | None = None
    try:
        with open(out, "w", encoding="utf-8") as fh:
            frame_source = source.frames()
            if args.max_frames > 0:
                frame_source = itertools.islice(frame_source, args.max_frames)
            try:
                for poses, rgb in run_frames(pipeline, frame_source, batch_size=args.batch_size):
                    fh.write(dumps_frame(poses) + "\n")
                    fh.flush()  # a live stream's lines are readable as they come
                    if args.render:
                        if writer is None:
                            from posestream.models.data.video import VideoWriter

                            writer = VideoWriter(
                                args.render, rgb.shape[1], rgb.shape[0], source.stats.fps or 25.0
                            )
                        from posestream.models.data.draw import draw_poses

                        writer.write(draw_poses(rgb, poses))
                    frames += 1
                    people += len(poses)
                    tracks.update(int(t) for t in poses.track_ids if t >= 0)
                    bar.update(1)
                    bar.set_postfix(
                        fps=f"{frames / max(time.perf_counter() - start, 1e-9):.1f}",
                        reconnects=source.stats.reconnects,
                        refresh=False,
                    )
            except PullFailed as exc:
                failed = str(exc)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    elapsed = time.perf_counter() - start
    print(
        track_summary(
            frames,
            people,
            len(tracks),
            elapsed,
            pipeline.name,
            out,
            args.render,
            source=redact(args.video),
            reconnects=source.stats.reconnects,
        )  # fmt: skip
    )
    if failed is not None:
        print(f"posestream track: error: the source failed for good: {failed}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
