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
