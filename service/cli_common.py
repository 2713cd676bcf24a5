"""What every ``posestream`` subcommand module shares: the exit codes and ``CliError``.

The command modules (``cli_service``, ``cli_weights``, ``cli_data``, ``cli_train``) import this
module, and ``posestream.service.cli`` imports them: nothing imports ``cli`` back.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# `posestream track`: the input is truncated (fewer frames decoded than the container declares,
# or decoding broke off); the output holds every frame that decoded.
EXIT_TRUNCATED = 3


class CliError(Exception):
    """A failure the user can fix; printed without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def track_summary(
    frames: int,
    people: int,
    tracks: int,
    elapsed_s: float,
    pipeline: str,
    out: object,
    render: object | None = None,
    source: str = "",
    reconnects: int | None = None,
) -> str:
    """The one line ``posestream track`` prints when a file or a pulled stream is done.

    Args:
        frames: frames tracked; people: people over all frames; tracks: distinct track ids;
        elapsed_s: wall seconds; pipeline: the pipeline's name; out: the JSON Lines path;
        render: the annotated video's path, if any; source: where the frames came from (shown
        before ``->`` when given); reconnects: a pulled stream's reconnect count (shown when given).
    """
    pulled = "" if reconnects is None else f", {reconnects} reconnects"
    origin = f" from {source}" if source else ""
    return (
        f"{frames} frames, {people / max(frames, 1):.2f} people per frame, {tracks} tracks, "
        f"{frames / max(elapsed_s, 1e-9):.1f} fps{pulled} ({pipeline}){origin} -> {out}"
        + (f", {render}" if render else "")
    )
