"""Errors the CLI maps to exit statuses (one line on stderr, no traceback)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # the command could not do what was asked (bad PID, bad file)
EXIT_USAGE = 2  # the command line itself is wrong
EXIT_INTERRUPTED = 130  # Ctrl-C


class ZxmemError(Exception):
    """An error with a one-line message meant for the user."""

    exit_status = EXIT_FAILURE

    def __init__(self, message: str, exit_status: int | None = None) -> None:
        super().__init__(message)
        if exit_status is not None:
            self.exit_status = exit_status


class UsageError(ZxmemError):
    """A bad argument: exit status 2."""

    exit_status = EXIT_USAGE


class InputError(ZxmemError):
    """A file that cannot be read or parsed (names the offset or record)."""

    exit_status = EXIT_FAILURE
