"""The ``zxmem`` command line: parse arguments, run a command, map errors.

The CLI is a thin layer (DESIGN.md): each command module in
:mod:`zxmem.commands` adds its sub-parser and a ``run(args, env)`` that picks a
source and a view.  Everything the commands touch outside the process —
streams, terminal size, the ``/proc`` root, the clock — comes from an
:class:`Environment`, so tests run the real CLI in-process.

Exit statuses: 0 success; 1 the command could not do what was asked (bad
PID, unreadable file, standard output or -o FILE that cannot be written:
one line, e.g. "zxmem: cannot write to standard output: No space left on
device"); 2 usage error; 130 Ctrl-C; a closed output pipe ends quietly with
0 (``zxmem ps | head -1``).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Mapping

from zxmem import __version__
from zxmem.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, ZxmemError
from zxmem.outfile import GuardedStream, StdoutError
from zxmem.record import Record, field, replace
from zxmem.textsafe import SafeWriter, escape_terminal

TYPE_CHECKING = False  # typing itself costs start-up
if TYPE_CHECKING:
    import argparse
    from typing import Any, TextIO, cast
else:
    def cast(_type, value):  # typing.cast
        return value

# Modules of zxmem/commands that are not commands.
_NOT_COMMANDS = frozenset(("__init__", "common"))


def command_modules() -> list[str]:
    """Names of the command modules (each adds one sub-command), sorted.

    Found by listing the package, so adding a command is adding a module.
    """
    directory = os.path.join(os.path.dirname(__file__), "commands")
    names = []
    for entry in os.listdir(directory):
        stem, ext = os.path.splitext(entry)
        if ext == ".py" and stem not in _NOT_COMMANDS and not stem.startswith("_"):
            names.append(stem)
    return sorted(names)


class Environment(Record, frozen=False):
    """What a command may use of the world outside it."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    proc_root: str = "/proc"
    # None: ask the real terminal; tests set these explicitly.
    stdout_isatty: bool | None = None
    terminal_width: int | None = None
    # The process environment (NO_COLOR, TERM): read through here, not
    # os.environ, so a command's choices depend only on what it was given.
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    # Clocks for commands that report on a cadence (kstats -d): a monotonic
    # clock for deadlines, the wall clock (seconds since the epoch) for
    # timestamps, and sleep.  Tests replace them to run without waiting.
    monotonic: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def is_terminal(self) -> bool:
        if self.stdout_isatty is not None:
            return self.stdout_isatty
        try:
            return self.stdout.isatty()
        except (AttributeError, ValueError):
            return False

    def width(self) -> int | None:
        """Columns to fit rows into on a terminal; None when not a terminal."""
        if not self.is_terminal():
            return None
        if self.terminal_width is not None:
            return self.terminal_width
        import shutil

        return shutil.get_terminal_size((80, 24)).columns


_PARSER_CLASS: type[argparse.ArgumentParser] | None = None


def _parser_class() -> type[argparse.ArgumentParser]:
    """The parser class, made on first use: argparse is imported only when
    arguments are to be parsed (``zxmem ps`` alone needs no parser; see
    :mod:`zxmem.commands._defaults`)."""
    global _PARSER_CLASS
    if _PARSER_CLASS is not None:
        return _PARSER_CLASS
    import argparse

    class _Parser(argparse.ArgumentParser):
        """argparse that raises UsageError instead of exiting.

        A command may set ``lazy_description`` (a function returning the text)
        instead of ``description``: it is built only when help is printed, so a
        long help text costs nothing at start-up.
        """

        lazy_description: Callable[[], str] | None = None

        def __init__(self, *args: Any, raw_description: bool = False, **kw: Any) -> None:
            # raw_description: the description and epilog keep their line
            # breaks (a command module need not import argparse to ask).
            if raw_description:
                kw["formatter_class"] = argparse.RawDescriptionHelpFormatter
            super().__init__(*args, **kw)

        def format_help(self) -> str:
            if self.lazy_description is not None:
                self.description = self.lazy_description()
                self.lazy_description = None
            return super().format_help()

        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"{self.prog}: {message}")

    _PARSER_CLASS = _Parser
    return _Parser


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, just that command's sub-parser.

    Loading one command module instead of all keeps ``zxmem ps`` start-up
    short; ``zxmem --help`` loads them all to list them.
    """
    parser_class = _parser_class()
    parser = parser_class(
        prog="zxmem",
        description="Fuchsia's Zircon memory tools for Linux: which processes and "
        "containers hold the memory, and why.",
        epilog="Run 'zxmem COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"zxmem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=parser_class)
    names = command_modules()
    for name in [only] if only in names else names:
        module = importlib.import_module(f"zxmem.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    env = env or Environment()
    argv = sys.argv[1:] if argv is None else argv
    # Commands write through a guard that turns a failed write (a full disk,
    # EIO) into a one-line StdoutError, and through SafeWriter: a control
    # character a view forgot to escape still never reaches a terminal raw.
    # The caller's env is left as it was.
    # Both wrappers are file-like (write, flush, isatty) without being TextIO.
    out = cast("TextIO", SafeWriter(cast("TextIO", GuardedStream(env.stdout))))
    guarded = replace(env, stdout=out,
                      stderr=cast("TextIO", SafeWriter(env.stderr)))
    try:
        status = _run(argv, guarded)
    except StdoutError as exc:
        _error(env, str(exc))
        _quiet_stdout(env)
        return exc.exit_status
    except ZxmemError as exc:
        _error(env, str(exc))
        status = exc.exit_status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout(env)
        return EXIT_OK
    return _finish_stdout(env, guarded, status)


def _run(argv: list[str], env: Environment) -> int:
    if len(argv) == 1 and argv[0] in command_modules():
        # A command with no option (``zxmem ps``): its defaults, without argparse.
        from zxmem.commands._defaults import bare_command_args

        bare = bare_command_args(argv[0])
        if bare is not None:
            status = bare.run(bare, env)
            return status if status is not None else EXIT_OK
    import contextlib

    parser = build_parser(argv[0] if argv else None)
    try:
        with contextlib.redirect_stdout(env.stdout):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    if not getattr(args, "command", None):
        # No command is a usage error: the usage goes to stderr.
        parser.print_help(env.stderr)
        return EXIT_USAGE
    status = args.run(args, env)
    return status if status is not None else EXIT_OK


def _finish_stdout(env: Environment, guarded: Environment, status: int) -> int:
    """Flush standard output; a failure is the command's failure (one line).

    Whatever is still buffered is written here, where a failure can be
    reported, and not by Python's flush at exit, which would print
    "Exception ignored" and exit 120.
    """
    try:
        guarded.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout(env)
    except StdoutError as exc:
        _error(env, str(exc))
        _quiet_stdout(env)
        return status or exc.exit_status
    except ValueError:  # a stream the caller closed: nothing left to write
        pass
    return status


def _error(env: Environment, message: str) -> None:
    line = message if message.startswith("zxmem") else f"zxmem: {message}"
    # One line, always: errors name files, processes and keys from damaged
    # files; their newlines and controls are escaped with the rest.
    line = escape_terminal(line)
    try:
        env.stderr.write(line + "\n")
        env.stderr.flush()
    except (OSError, ValueError, AttributeError):
        # Nowhere to say it (stderr full, closed): the exit status must do.
        _quiet(env.stderr, sys.stderr)


def _quiet_stdout(env: Environment) -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that
    # flush cannot raise a second BrokenPipeError or OSError (Python docs,
    # "Note on SIGPIPE").
    _quiet(env.stdout, sys.stdout)


def _quiet(stream: TextIO | None, real: TextIO | None) -> None:
    if stream is None or stream is not real:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
