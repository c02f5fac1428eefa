"""``zxmem vmaps PID``: a process's memory maps (spec fuchsia-tools §3)."""

from __future__ import annotations

import argparse

from zxmem.commands import common
from zxmem.errors import UsageError, ZxmemError

HELP = "dump a process's memory maps: regions and mappings with sizes and objects"

HELP_TEXT = """\
Usage: zxmem vmaps <pid>

Dumps a process's memory maps to stdout.

First column:
  "/A" -- Process address space
  "/R" -- Root VMAR
  "R"  -- VMAR (R for Region)
  "M"  -- Mapping

  Indentation indicates parent/child relationship.
"""

DESCRIPTION = HELP_TEXT + """
Column tags:
  :sz   virtual size of the entry
  :res  resident memory of the mapping (smaps Rss), private or shared
  :vmo  koid of the memory object mapped (see 'zxmem vmos PID')

On Linux a region (R) is one loaded ELF object (its text, rodata, data and
bss), a thread stack with its guard page, or another run of mappings that
belongs together (one file mapped in pieces, a heap with its reserved tail).
Objects: files and shmem by (st_dev, st_ino) koid = dev << 32 | inode; each
anonymous mapping and each copy-on-write 'data:' clone a small koid.

Linux extras (opt-in, after :res): --pss (:pss, smaps Pss), --private (:prv,
Private_Clean + Private_Dirty), --swap (:swp, Swap), or --extra for all three.

On a terminal, lines fit its width: file koids ((st_dev << 32) | st_ino, up
to 15 digits) show as f1, f2, ... numbered by their first mapping in address
order (the same labels as 'zxmem vmos PID' on a terminal); names are
shortened in the middle, keeping the file name; when a name would get fewer
than 24 columns the end address is left out, then the start address.  Sizes
are coloured by magnitude (--color; never when piped or with NO_COLOR set).
--wide prints whole lines with full koids on a terminal too; when piped
(not a terminal) every line is whole, in Fuchsia's layout.  --json always
has the full koid (vmo_koid).

A total line ends the output on a terminal: 'total: N mappings' and the
sums of :sz, :res and the extra columns shown over every mapping (a page
mapped twice counts twice in :res, as in pmap; '(N unknown)' when some
mapping's value was not given).  Piped, Fuchsia's layout has no total line:
--total adds it.

--from FILE prints the maps of a snapshot saved with 'zxmem memgraph -v'
(which records every process's mappings and regions) or of an objects
sample of a history store (--from STORE@N; 'zxmem history' lists the
tiers); a Fuchsia capture has no mappings. /A starts at the
vm.mmap_min_addr the snapshot recorded (or at the first mapping, if
lower), as it did live; a file without it (a Fuchsia capture, a memgraph
from before it was recorded) gets the kernel's default 0x10000.
"""

EPILOG = """\
examples:
  zxmem vmaps 1234              Fuchsia's classic layout
  zxmem vmaps --pss --swap 1234 with proportional and swapped sizes
  zxmem vmaps --json 1234 | jq '.entries[] | select(.type=="mapping") | .rss_bytes'
  zxmem vmaps help              the column legend
  zxmem vmaps 1234 | less -S     whole lines, full koids (piped output is never cut)
  zxmem vmaps --units=k --total 1234  sizes in KiB, with the total line
  zxmem memgraph -v > snap.json; zxmem vmaps --from snap.json 1234
                                pid 1234's maps when the snapshot was saved
"""

USAGE = "usage: zxmem vmaps <pid>|help"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vmaps",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pid", nargs="?", metavar="PID", help="process id (or 'help')")
    p.add_argument("--pss", action="store_true", help="add :pss (smaps Pss)")
    p.add_argument("--private", action="store_true", help="add :prv (Private_Clean+Private_Dirty)")
    p.add_argument("--swap", action="store_true", help="add :swp (smaps Swap)")
    p.add_argument("--extra", action="store_true", help="add all three extra columns")
    p.add_argument("--units", type=common.units_arg, metavar="X",
                   help="fix all sizes to unit X, one of B k M G T P E")
    p.add_argument("--total", action="store_true",
                   help="end with the total line when piped too (always on a terminal)")
    common.add_wide(p, "lines (full koids, whole names and addresses)")
    common.add_color(p)
    p.add_argument("--json", action="store_true", help="entries as JSON; sizes in bytes")
    p.add_argument("--exact", action="store_true",
                   help="per-mapping RES/pss/prv from page tables (root): pages counted "
                   "once, private = mapped by no other process")
    common.add_proc_root(p)
    common.add_from(p)
    p.set_defaults(run=run)


def parse_pid(value: str | None, usage: str) -> int | None:
    """The PID argument (:func:`common.parse_koid`: decimal, or 0x hex as
    Fuchsia's vmaps); None = help."""
    if value is None:
        raise UsageError(f"a PID is required; {usage}")
    if value.lstrip("-") == "help":
        return None
    try:
        pid = common.parse_koid(value)
    except ValueError:
        raise UsageError(f'"{value}" is not a number; {usage}') from None
    if pid <= 0:
        raise UsageError(f"{value}: not a process id; {usage}")
    return pid


def _from_store(path: str) -> bool:
    """Whether ``--from`` names a sample of a history store."""
    from zxmem.store import is_store_file, split_selector

    return path != "-" and is_store_file(split_selector(path)[0])


def saved_process(args: argparse.Namespace, env, pid: int, need: str):
    """(snapshot, process) of ``--from FILE`` for a view of one process.

    ``need`` is the Process field the view reads: ``"mappings"`` (vmaps) or
    ``"vmo_refs"`` (vmos).  Errors, one line each, name the file and the PID:
    a PID the snapshot does not hold, a kernel thread or zombie (no address
    space, as live), a snapshot recorded without that field (memgraph
    without ``-v``, a Fuchsia capture without mappings), or a process whose
    maps were denied when the snapshot was taken.
    """
    # A store's sample is read with this process's objects only (and, for
    # vmaps, its mappings).
    snapshot = common.from_snapshot(args, env, objects_of=(pid,),
                                    mappings=(pid,) if need == "mappings" else False)
    process = common.from_process(args, snapshot, pid)
    if process.kernel_thread:
        raise ZxmemError(f"pid {pid} is a kernel thread: it has no address space")
    if process.state in ("Z", "X", "x"):
        raise ZxmemError(f"pid {pid} had exited (zombie) when the snapshot was taken: "
                         "it has no address space")
    if getattr(process, need) is not None:
        return snapshot, process
    # A store's sample says why from its tier and its provenance, which a
    # read of one process holds whole: nothing more to read.
    raise _lacking(args, snapshot, pid, need, _from_store(args.from_file))


def _lacking(args: argparse.Namespace, snapshot, pid: int, need: str,
             stored: bool) -> ZxmemError:
    """Why process ``pid`` of the ``--from`` snapshot has no ``need``."""
    what = "memory maps" if need == "mappings" else "memory objects"
    if stored:
        from zxmem.store import missing_note

        # A history store's sample: which tier, and the nearest that has them
        # (a store's mappings are read for this process only: the others'
        # say nothing).
        note = missing_note(args.from_file, "mappings" if need == "mappings"
                            else "memory objects")
        if note is not None:
            return common.lacks(args, note)
    elif all(getattr(p, need) is None for p in snapshot.processes):
        source = snapshot.provenance.source
        if source == "fuchsia-capture":
            return common.lacks(args, f"a Fuchsia capture has no {what} (it lists each "
                                     "process's VMOs: zxmem vmos --from FILE PID)")
        if source == "fuchsia-ffx-complete-digest":
            return common.lacks(args, f"ffx profile memory output has no {what} (it lists "
                                     "each process's VMOs: zxmem vmos --from FILE PID)")
        if source.startswith("fuchsia-ffx-"):
            form = "ComponentDigest" if "component" in source else "ProcessDigest"
            return common.lacks(args, f"ffx's {form} has "
                                     f"no {what}: only a CompleteDigest (ffx profile memory "
                                     "--machine json, memory_monitor 1, no process filter) "
                                     "lists VMOs")
        if source == "fuchsia-memgraph" and need == "mappings":
            return common.lacks(args, "Fuchsia's memgraph has no memory maps (with -v it "
                                     "lists each process's VMOs: zxmem vmos --from FILE PID)")
        tool = "Fuchsia's `memgraph -v`" if source == "fuchsia-memgraph" else \
            "`zxmem memgraph -v`"
        return common.lacks(args, f"the snapshot has no {what}: record it with {tool}")
    why = common.denied_why(snapshot, f"maps:{pid}") or "not recorded"
    return common.lacks(args, f"the {what} of pid {pid} were not readable when the "
                             f"snapshot was taken ({why})")


def run(args: argparse.Namespace, env) -> int:
    pid = parse_pid(args.pid, USAGE)
    if pid is None:
        env.stdout.write(HELP_TEXT)
        return 0
    from zxmem.model import DEFAULT_MMAP_MIN_ADDR
    from zxmem.views import vmaps as view

    extra = tuple(
        c for c in view.EXTRA_COLUMNS if args.extra or getattr(args, c)
    )
    if args.from_file is not None:
        common.live_only(*(["--exact"] if args.exact else []))
        snapshot, process = saved_process(args, env, pid, "mappings")
        # /A starts at the vm.mmap_min_addr of the machine the snapshot was
        # taken on; the kernel's default where the file does not say.
        recorded = snapshot.provenance.mmap_min_addr
        min_addr = DEFAULT_MMAP_MIN_ADDR if recorded is None else recorded
    else:
        snapshot, process = _live(args, env, pid, extra)
        from zxmem.collection import mmap_min_addr

        min_addr = mmap_min_addr(common.proc_root(args, env))
    opts = view.VmapsOptions(
        extra=extra, min_addr=min_addr, units=args.units,
        width=None if args.json else common.fit_width(args, env),
        color=not args.json and common.use_color(args, env),
        total=args.total or env.is_terminal(),
    )
    if args.json:
        env.stdout.write(view.render_json(process, snapshot, opts))
    else:
        for piece in view.render_chunks(process, snapshot, opts):
            env.stdout.write(piece)
    return 0


def _live(args: argparse.Namespace, env, pid: int, extra: tuple[str, ...]):
    """(snapshot, process) read from /proc: only what vmaps prints."""
    from zxmem.collection import collect_process
    from zxmem.sources.smaps import SMAPS_FIELDS, VMAPS_KEYS

    root = common.proc_root(args, env)
    keys: tuple[str, ...] = VMAPS_KEYS
    if "pss" in extra:
        keys += ("Pss",)
    if "private" in extra:
        keys += ("Private_Clean", "Private_Dirty", "Private_Hugetlb",
                 "Shared_Clean", "Shared_Dirty", "Shared_Hugetlb")
    if "swap" in extra:
        keys += ("Swap",)
    if args.json:
        keys = SMAPS_FIELDS
    snapshot, process = collect_process(pid, root, what="maps", keys=keys, objects=False)
    if args.exact:
        from zxmem.commands._exact import exact_vmaps

        snapshot = exact_vmaps(snapshot, pid, args, env)
        process = snapshot.process(pid)
    return snapshot, process
