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

--from FILE prints the maps of a snapshot saved with 'zxmem memgraph -v'
(which records every process's mappings and regions); a Fuchsia capture
has no mappings. The snapshot does not record vm.mmap_min_addr, so /A
starts at the kernel's default 0x10000 (or at the first mapping, if lower).
"""

EPILOG = """\
examples:
  zxmem vmaps 1234              Fuchsia's classic layout
  zxmem vmaps --pss --swap 1234 with proportional and swapped sizes
  zxmem vmaps --json 1234 | jq '.entries[] | select(.type=="mapping") | .rss_bytes'
  zxmem vmaps help              the column legend
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


def load_process(root: str, pid: int, what: str, **kwargs):
    """Snapshot with ``pid``'s mappings (and more with kwargs); errors name the PID."""
    from zxmem.sources import objects

    try:
        proc = objects.read_process(root, pid)
    except objects.ProcessError as exc:
        if exc.reason == "no such process":
            raise ZxmemError(f"couldn't find process with pid {pid}") from None
        raise ZxmemError(f"couldn't read process with pid {pid}: {exc.reason}") from None
    from zxmem.sources.linux import thread_group

    tgid = thread_group(root, pid)
    if tgid is not None and tgid != pid:
        raise ZxmemError(f"{pid} is a thread of process {tgid}")
    if proc.kernel_thread:
        raise ZxmemError(f"pid {pid} is a kernel thread: it has no address space")
    snapshot = kwargs.pop("base", None)
    read_root, read_pid = root, pid
    if proc.state in ("Z", "X", "x"):
        from zxmem.sources.linux import live_task_dir

        task = live_task_dir(root, pid) if (proc.num_threads or 0) > 1 else None
        if task is None:
            raise ZxmemError(f"pid {pid} has exited (zombie): it has no address space")
        if snapshot is not None:
            # Every process's maps are read under one root: the leader's
            # are empty and a thread's directory is under another one.
            raise ZxmemError(f"pid {pid}'s main thread has exited: its {what} can be "
                             f"listed only by 'zxmem vmaps {pid}'")
        # The main thread has exited, others run: the leader has no mm, a
        # live thread's task/TID/ shows the process's maps.  Read the
        # thread as if task/ were the /proc root, then name it by the PID.
        read_root = f"{root.rstrip('/') or '/'}/{pid}/task"
        read_pid = int(task.rstrip("/").rsplit("/", 1)[1])
        kwargs = {**kwargs, "pids": [read_pid], "detail_pids": [read_pid]}
    if snapshot is None:
        snapshot = objects.light_snapshot(read_root, [read_pid])
    snapshot = objects.add_objects(snapshot, read_root, **kwargs)
    if read_pid != pid:
        from dataclasses import replace

        snapshot = replace(snapshot, processes=tuple(
            replace(p, koid=pid, name=proc.name, ppid=proc.ppid) if p.koid == read_pid else p
            for p in snapshot.processes
        ), provenance=replace(snapshot.provenance, denied=tuple(
            (f"maps:{pid}", why) if what == f"maps:{read_pid}" else (what, why)
            for what, why in snapshot.provenance.denied
        )))
    process = snapshot.process(pid)
    if process is None:
        raise ZxmemError(f"pid {pid} exited while its {what} were being read")
    if process.mappings is None:
        why = dict(snapshot.provenance.denied).get(f"maps:{pid}", "denied")
        hint = ""
        if why in ("EACCES", "EPERM"):
            import os

            hint = " (run as root)" if os.geteuid() != 0 else " (denied even to root)"
        raise ZxmemError(f"cannot read the memory maps of pid {pid}: {why}{hint}")
    if not process.mappings:
        # Only a process without an mm has no mappings: it exited meanwhile.
        try:
            gone = objects.read_process(read_root, read_pid).state in ("Z", "X", "x")
        except objects.ProcessError:
            gone = True
        if gone:
            raise ZxmemError(f"pid {pid} exited while its {what} were being read")
    return snapshot, process


def _min_addr(root: str) -> int:
    try:
        with open(f"{root}/sys/vm/mmap_min_addr", "rb") as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0x10000


def saved_process(args: argparse.Namespace, env, pid: int, need: str):
    """(snapshot, process) of ``--from FILE`` for a view of one process.

    ``need`` is the Process field the view reads: ``"mappings"`` (vmaps) or
    ``"vmo_refs"`` (vmos).  Errors, one line each, name the file and the PID:
    a PID the snapshot does not hold, a kernel thread or zombie (no address
    space, as live), a snapshot recorded without that field (memgraph
    without ``-v``, a Fuchsia capture without mappings), or a process whose
    maps were denied when the snapshot was taken.
    """
    snapshot = common.from_snapshot(args, env)
    process = common.from_process(args, snapshot, pid)
    if process.kernel_thread:
        raise ZxmemError(f"pid {pid} is a kernel thread: it has no address space")
    if process.state in ("Z", "X", "x"):
        raise ZxmemError(f"pid {pid} had exited (zombie) when the snapshot was taken: "
                         "it has no address space")
    if getattr(process, need) is not None:
        return snapshot, process
    what = "memory maps" if need == "mappings" else "memory objects"
    if all(getattr(p, need) is None for p in snapshot.processes):
        source = snapshot.provenance.source
        if source == "fuchsia-capture":
            raise common.lacks(args, f"a Fuchsia capture has no {what} (it lists each "
                                     "process's VMOs: zxmem vmos --from FILE PID)")
        if source == "fuchsia-ffx-complete-digest":
            raise common.lacks(args, f"ffx profile memory output has no {what} (it lists "
                                     "each process's VMOs: zxmem vmos --from FILE PID)")
        if source.startswith("fuchsia-ffx-"):
            form = "ComponentDigest" if "component" in source else "ProcessDigest"
            raise common.lacks(args, f"ffx's {form} has "
                                     f"no {what}: only a CompleteDigest (ffx profile memory "
                                     "--machine json, memory_monitor 1, no process filter) "
                                     "lists VMOs")
        if source == "fuchsia-memgraph" and need == "mappings":
            raise common.lacks(args, "Fuchsia's memgraph has no memory maps (with -v it "
                                     "lists each process's VMOs: zxmem vmos --from FILE PID)")
        tool = "Fuchsia's `memgraph -v`" if source == "fuchsia-memgraph" else \
            "`zxmem memgraph -v`"
        raise common.lacks(args, f"the snapshot has no {what}: record it with {tool}")
    why = common.denied_why(snapshot, f"maps:{pid}") or "not recorded"
    raise common.lacks(args, f"the {what} of pid {pid} were not readable when the "
                             f"snapshot was taken ({why})")


def run(args: argparse.Namespace, env) -> int:
    pid = parse_pid(args.pid, USAGE)
    if pid is None:
        env.stdout.write(HELP_TEXT)
        return 0
    from zxmem.views import vmaps as view

    extra = tuple(
        c for c in view.EXTRA_COLUMNS if args.extra or getattr(args, c)
    )
    if args.from_file is not None:
        common.live_only(*(["--exact"] if args.exact else []))
        snapshot, process = saved_process(args, env, pid, "mappings")
        # The snapshot does not record vm.mmap_min_addr: /A starts at the
        # kernel's default (or lower, at the first mapping).
        min_addr = view.VmapsOptions().min_addr
    else:
        snapshot, process = _live(args, env, pid, extra)
        min_addr = _min_addr(common.proc_root(args, env))
    opts = view.VmapsOptions(extra=extra, min_addr=min_addr)
    if args.json:
        env.stdout.write(view.render_json(process, snapshot, opts))
    else:
        for piece in view.render_chunks(process, snapshot, opts):
            env.stdout.write(piece)
    return 0


def _live(args: argparse.Namespace, env, pid: int, extra: tuple[str, ...]):
    """(snapshot, process) read from /proc: only what vmaps prints."""
    from zxmem.sources import objects

    root = common.proc_root(args, env)
    keys = objects.VMAPS_KEYS
    if "pss" in extra:
        keys += ("Pss",)
    if "private" in extra:
        keys += ("Private_Clean", "Private_Dirty", "Private_Hugetlb",
                 "Shared_Clean", "Shared_Dirty", "Shared_Hugetlb")
    if "swap" in extra:
        keys += ("Swap",)
    if args.json:
        keys = objects.smaps.SMAPS_FIELDS
    snapshot, process = load_process(
        root, pid, "maps", pids=[pid], detail_pids=[pid], vmos=False, keys=keys
    )
    if args.exact:
        from zxmem.commands._exact import exact_vmaps

        snapshot = exact_vmaps(snapshot, pid, args, env)
        process = snapshot.process(pid)
    return snapshot, process
