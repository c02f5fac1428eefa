"""Helpers every command shares: unit letters, sources, the unreadable note."""

from __future__ import annotations

import argparse
import os

from zxmem.errors import UsageError, ZxmemError
from zxmem.model import Snapshot
from zxmem.units import UNITS, unit_index


def units_arg(value: str) -> str:
    """``--units=X``: only the first character counts, as in Fuchsia's ps."""
    letter = value[:1]
    if unit_index(letter) is None:
        raise argparse.ArgumentTypeError(
            f"unknown unit {value!r}: use one of {UNITS} (or K)"
        )
    return letter


def koid_arg(value: str) -> int:
    try:
        koid = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a koid: {value!r}") from None
    if koid < 0:
        raise argparse.ArgumentTypeError(f"not a koid: {value!r}")
    return koid


def add_proc_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--proc-root",
        metavar="DIR",
        help="read this directory as /proc (a recorded tree or a container's /proc); "
        "cgroups are looked up under its parent directory",
    )


def proc_root(args: argparse.Namespace, env) -> str:
    root = getattr(args, "proc_root", None) or env.proc_root
    if not os.path.isdir(root):
        raise UsageError(f"--proc-root {root}: not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ZxmemError(f"--proc-root {root}: not readable")
    return root


def unreadable_note(snapshot: Snapshot) -> str | None:
    """One stderr line counting processes whose memory could not be read."""
    denied = {
        what.partition(":")[2]
        for what, _ in snapshot.provenance.denied
        if what.startswith(("smaps_rollup:", "smaps:"))
    }
    if not denied:
        return None
    n = len(denied)
    noun = "process" if n == 1 else "processes"
    hint = ": run as root for PSS" if os.geteuid() != 0 else " (denied even to root)"
    return f"{n} {noun} not readable{hint}"


def add_from(parser: argparse.ArgumentParser) -> None:
    """``--from FILE``: read a saved snapshot instead of the live system."""
    parser.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="read a saved snapshot instead of /proc: zxmem's or Fuchsia's memgraph JSON, "
        "or a Fuchsia memory-monitor capture; '-' reads stdin",
    )


def snapshot_from_args(args: argparse.Namespace, env, collect_options) -> Snapshot:
    """The snapshot a command works on: ``--from FILE`` if given, else live.

    Live, it collects with ``collect_options`` (a
    :class:`zxmem.sources.linux.CollectOptions`) under the ``--proc-root``.
    A file that cannot be read or parsed is a one-line error (exit 1).
    """
    path = getattr(args, "from_file", None)
    if path is not None:
        from zxmem.sources.load import load_snapshot

        if path == "-":
            return load_snapshot(env.stdin)
        return load_snapshot(path)
    from zxmem.sources.linux import collect

    root = proc_root(args, env)
    try:
        return collect(root, collect_options)
    except OSError as exc:
        raise ZxmemError(f"cannot read {root}: {exc.strerror}") from None
