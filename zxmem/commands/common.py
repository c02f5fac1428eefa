"""Helpers every command shares: unit letters, sources, the unreadable note."""

from __future__ import annotations

import os

from zxmem.errors import UsageError, ZxmemError
from zxmem.units import UNITS, unit_index

TYPE_CHECKING = False  # typing itself costs start-up
if TYPE_CHECKING:  # zxmem.model only for hints: every --help imports this module
    import argparse
    from collections.abc import Collection

    from zxmem.model import Snapshot
else:  # argparse on first use: `zxmem ps` alone does not parse
    from zxmem.commands._lazy import argparse


def units_arg(value: str) -> str:
    """``--units=X``: only the first character counts, as in Fuchsia's ps."""
    letter = value[:1]
    if unit_index(letter) is None:
        raise argparse.ArgumentTypeError(
            f"unknown unit {value!r}: use one of {UNITS} (or K)"
        )
    return letter


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def parse_koid(value: str) -> int:
    """A PID or koid typed by the user: ASCII decimal digits (leading zeros
    are still decimal, ``01782`` is 1782), or ``0x`` and hex digits, as
    Fuchsia's vmaps accepts (strtoul with base 0, spec fuchsia-tools §3.1).

    Stricter than ``int()``: signs, spaces, ``_`` separators and non-ASCII
    digits (``'١٢'``) are refused, since a PID is never written so and a
    typo should not name another process.  Raises ``ValueError``.
    """
    if value.isascii():
        if value.isdigit():
            return int(value, 10)
        if value[:2] in ("0x", "0X") and len(value) > 2 and _HEX_DIGITS.issuperset(value[2:]):
            return int(value[2:], 16)
    raise ValueError(f"not a number: {value!r}")


def koid_arg(value: str) -> int:
    """argparse ``type=`` for a PID or koid (:func:`parse_koid`)."""
    try:
        return parse_koid(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a koid: {value!r}") from None


def add_proc_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--proc-root",
        metavar="DIR",
        help="read this directory as /proc (a recorded tree or a container's /proc); "
        "cgroups are looked up under its parent directory",
    )


def proc_root(args: argparse.Namespace, env) -> str:
    """The /proc root to read: ``--proc-root`` or the environment's.

    A directory that does not look like a /proc (no numeric entry, no
    ``self``, no ``meminfo``) is an error: read as /proc it would give an
    empty table that looks like a machine without processes.
    """
    root = getattr(args, "proc_root", None) or env.proc_root
    if not os.path.isdir(root):
        raise UsageError(f"--proc-root {root}: not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ZxmemError(f"--proc-root {root}: not readable")
    if not _looks_like_proc(root):
        raise ZxmemError(f"--proc-root {root}: not a /proc tree (no PID directories, "
                         "no self, no meminfo)")
    return root


def _looks_like_proc(root: str) -> bool:
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                name = entry.name
                if name in ("self", "meminfo") or (name.isascii() and name.isdigit()):
                    return True
    except OSError:
        return True  # listing errors are reported by the reader, naming the cause
    return False


def unreadable_note(snapshot: Snapshot) -> str | None:
    """One stderr line counting processes whose memory could not be read."""
    denied = snapshot.provenance.denied_pids("smaps_rollup", "smaps")
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
        "a Fuchsia memory-monitor capture, `ffx profile memory --machine json` output, "
        "or a sample of a history store (zxmem record): "
        "STORE (the newest) or STORE@WHEN (@first, @last, @N, @-2h, @2026-12-03T10:00); "
        "'-' reads stdin; at most 1 GiB ($ZXMEM_MAX_INPUT_BYTES sets another limit)",
    )


def snapshot_from_args(args: argparse.Namespace, env, plan, warn=None, *,
                       objects: bool = True) -> Snapshot:
    """The snapshot a command works on: ``--from FILE`` if given, else live.

    Live, it is :func:`zxmem.collection.collect` with ``plan`` (a
    :class:`zxmem.collection.Plan`) under the ``--proc-root``; ``warn``
    takes a line for each part that could not be read at all.  A file that
    cannot be read or parsed is a one-line error (exit 1).  ``objects``
    False: the view needs no memory objects, and a sample of a history
    store is read without them (faster; other files are read whole).
    """
    path = getattr(args, "from_file", None)
    if path is not None:
        from zxmem.sources.load import load_snapshot

        if path == "-":
            return load_snapshot(env.stdin)
        # A store sample holds the mappings a live plan with objects reads.
        return load_snapshot(path, objects=objects,
                             mappings=bool(plan is not None and plan.objects))
    from zxmem.collection import collect

    root = proc_root(args, env)
    try:
        return collect(plan, root, warn)
    except OSError as exc:
        raise ZxmemError(f"cannot read {root}: {exc.strerror}") from None


def objects_snapshot(args: argparse.Namespace, env, detail_pids=None):
    """(snapshot with memory objects and kernel counters, capture time in ns
    or None, notes) for ``digest`` and ``mem``.

    ``--from FILE`` reads a saved snapshot (an error naming what is missing
    when it holds no memory objects); live, every process's mappings and
    descriptors are read (``smaps`` only for ``detail_pids``; all when None),
    and the kernel counters.  The live time is the monotonic clock's, as
    Fuchsia's captures record it.
    """
    path = getattr(args, "from_file", None)
    if path is not None:
        snapshot = from_snapshot(args, env)
        if snapshot.source_summary is not None:
            pass  # ffx's own numbers stand in for the VMOs it does not list
        elif not snapshot.vmos and all(p.vmo_refs is None for p in snapshot.processes):
            # memgraph without -v: every byte would land in Orphaned, so say
            # what is missing instead (the same error as vmos --from).
            tool = "Fuchsia's `memgraph -v`" \
                if snapshot.provenance.source == "fuchsia-memgraph" else "`zxmem memgraph -v`"
            raise lacks(args, f"the snapshot has no memory objects: record it with {tool}")
        return snapshot, snapshot.provenance.capture_time_ns, ()
    from zxmem.collection import Plan

    time_ns = int(env.monotonic() * 1_000_000_000)
    unread: list[str] = []
    # No process totals (smaps_rollup) and no job tree: the objects are
    # the whole story for a digest.
    plan = Plan(memory=False, jobs="none", kernel=True, objects=True, regions=False,
                detail_pids=None if detail_pids is None else tuple(detail_pids))
    snapshot = snapshot_from_args(args, env, plan, warn=unread.append)
    notes = [f"{line}: no Kernel or Orphaned row" for line in unread]
    denied = snapshot.provenance.denied_pids("maps")
    if denied:
        n = len(denied)
        hint = ": run as root" if os.geteuid() != 0 else ""
        notes.append(f"{n} {'process' if n == 1 else 'processes'} not readable, "
                     f"their memory objects are missing{hint}")
    return snapshot, time_ns, tuple(notes)


def unknown_note(snapshot: Snapshot, n: int, size_bytes: int, unsized: int) -> str:
    """The stderr line for ``n`` VMOs left out of the sums (unknown committed
    bytes), with their size where known and what would make them known."""
    size = ""
    if size_bytes:
        from zxmem.units import format_size_mem

        size = f" (size {format_size_mem(size_bytes)}"
        size += f", {unsized} more of unknown size)" if unsized else ")"
    hint = ": run as root" if snapshot.provenance.source == "linux" and os.geteuid() != 0 \
        else ""
    return (f"{n} VMOs whose committed (resident) bytes are unknown{size} are left out "
            f"of the sums, marked (+N unknown){hint}")


# --------------------------------------------------------------------------
# Views of one saved snapshot (--from FILE)


def from_name(args: argparse.Namespace) -> str:
    """How errors name the ``--from`` input: its path, or ``stdin`` for '-'."""
    path = args.from_file
    return "stdin" if path == "-" else path


def from_snapshot(args: argparse.Namespace, env, objects_of: Collection[int] | None = None,
                  mappings: bool | Collection[int] = False, *,
                  objects: bool = True) -> Snapshot:
    """The snapshot of ``--from FILE`` ('-' reads stdin); one-line errors.
    ``objects_of`` (PIDs): a view of those processes' memory objects only
    (a store's sample is read with only theirs).  ``mappings``: what of a
    store sample's mappings to read (True: all; PIDs: theirs).  ``objects``
    False: the view needs no memory objects (a store's sample is read
    without them; other files are read whole)."""
    from zxmem.sources.load import load_snapshot

    path = args.from_file
    if path == "-":
        return load_snapshot(env.stdin)
    return load_snapshot(path, objects=objects, objects_of=objects_of, mappings=mappings)


def lacks(args: argparse.Namespace, what: str) -> ZxmemError:
    """The one-line error for a saved snapshot without what a view needs."""
    return ZxmemError(f"{from_name(args)}: {what}")


def from_process(args: argparse.Namespace, snapshot: Snapshot, pid: int):
    """Process ``pid`` of a saved snapshot; an error naming it when absent."""
    process = snapshot.process(pid)
    if process is None:
        raise lacks(args, f"no process with pid {pid} in the snapshot")
    return process


def denied_why(snapshot: Snapshot, what: str) -> str | None:
    """Why ``what`` (e.g. ``maps:PID``) could not be read when the snapshot
    was taken, or None if it was not recorded as denied."""
    return dict(snapshot.provenance.denied).get(what)


def live_only(*given: str) -> None:
    """A usage error naming the options in ``given`` (those that need the
    live system and were given together with --from); none: nothing."""
    if given:
        verb = "needs" if len(given) == 1 else "need"
        raise UsageError(f"{', '.join(given)} {verb} the live system: not with --from")


# --------------------------------------------------------------------------
# Terminal layout: width and colour, decided here at the edge; views take
# them as plain parameters.

COLOR_HELP = ("colour sizes by magnitude: auto (default: on a terminal, unless NO_COLOR "
              "is set or TERM is dumb), always, or never")


def add_color(parser: argparse.ArgumentParser) -> None:
    """``--color=auto|always|never``."""
    parser.add_argument("--color", "--colour", dest="color", default="auto",
                        choices=("auto", "always", "never"), help=COLOR_HELP)


def add_wide(parser: argparse.ArgumentParser, what: str) -> None:
    """``--wide``: on a terminal too, every line whole (as when piped)."""
    parser.add_argument("-w", "--wide", action="store_true",
                        help=f"on a terminal too, print {what} whole, as when piped")


def use_color(args: argparse.Namespace, env) -> bool:
    """Whether to colour: ``--color=always``; or ``auto`` on a terminal
    when NO_COLOR (https://no-color.org) is unset or empty and TERM is not
    ``dumb``.  When it is on, the output stream lets zxmem's colour
    sequences through (:class:`zxmem.textsafe.SafeWriter`)."""
    mode = getattr(args, "color", "auto")
    if mode == "never":
        return False
    if mode == "auto":
        if not env.is_terminal() or env.environ.get("NO_COLOR") \
                or env.environ.get("TERM") == "dumb":
            return False
    from zxmem.textsafe import SafeWriter

    if isinstance(env.stdout, SafeWriter):
        env.stdout.allow_color = True
    return True


def fit_width(args: argparse.Namespace, env) -> int | None:
    """Columns to fit lines into: the terminal's, or None (whole lines)
    when not a terminal or with ``--wide``."""
    if getattr(args, "wide", False):
        return None
    return env.width()
