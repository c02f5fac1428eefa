"""``zxmem k …``: the Linux side of Zircon's kernel console commands (``k zx``)."""

from __future__ import annotations

import argparse

from zxmem.commands import common
from zxmem.errors import UsageError, ZxmemError
from zxmem.textsafe import escape_terminal

HELP = ("kernel console commands: k ps (kernel memory per process), k vmos (hidden "
        "memory objects), k asd kernel (kernel address space)")

DESCRIPTION = """\
Linux versions of Zircon's kernel console commands ('k zx ...'): what the
kernel holds on behalf of processes, which no user-space view shows.
"""

PS_DESCRIPTION = """\
Open descriptors per process, by kind, and the kernel memory each process
causes: its page tables and its threads' kernel stacks.  Processes are
listed in PID order; kernel threads only with -a.

Columns ('zxmem k ps help' prints the key):
  id        PID
  #h        open file descriptors, from the links in /proc/PID/fd
  #fi #so #pi #ev #mf #tm #ep #??
            files, sockets, pipes, eventfds, memfds, timerfds, epoll
            instances, and every other kind (signalfd, inotify, pidfd, ...)
  pte       VmPTE of /proc/PID/status: the address space's page tables
            (mm_pgtables_bytes; the top-level table is not included, so the
            sum stays a little below meminfo PageTables)
  kstk      threads x THREAD_SIZE: each thread has one kernel stack of
            16 KiB on x86_64 and arm64 (THREAD_SIZE_ORDER 2 / THREAD_SHIFT
            14; KASAN builds double it; --stack-size overrides); with
            CONFIG_VMAP_STACK the stacks are vmalloc'ed. Their system-wide
            sum is meminfo KernelStack.
Descriptors of another user's process need root; they show as "-" and are
counted, never as 0.

--from FILE reads a snapshot saved with 'zxmem memgraph -H' (descriptor
counts by kind; page tables and thread counts are always recorded). The
snapshot does not say which architecture it was taken on: kstk uses this
machine's stack size unless --stack-size gives it. memgraph records no
kernel threads, so -a adds none.
"""

PS_EPILOG = """\
examples:
  zxmem k ps                  every process, PID order
  zxmem k ps --sort=fds       most descriptors first
  zxmem k ps -a --sort=kstack kernel threads too (their stacks count)
  zxmem k ps help             the column key
  zxmem k ps --json | jq '.totals'
  zxmem k ps --from snap.json --sort=fds   a snapshot saved with memgraph -H
"""


def _size_arg(value: str) -> int:
    try:
        number = int(value, 0)
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"bad stack size {value!r}")
    return number


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "k",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ksub = p.add_subparsers(dest="k_command", metavar="KCOMMAND", parser_class=type(p))
    ps = ksub.add_parser(
        "ps",
        help="descriptors by kind, page tables and kernel stacks per process",
        description=PS_DESCRIPTION,
        epilog=PS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ps.add_argument("topic", nargs="?", choices=("help",), help="print the column key")
    ps.add_argument("-a", "--all", dest="kernel_threads", action="store_true",
                    help="include kernel threads")
    ps.add_argument("--sort", choices=("pid", "fds", "pte", "kstack"), default="pid",
                    help="row order (default pid; the others largest first)")
    ps.add_argument("--stack-size", type=_size_arg, metavar="BYTES",
                    help="kernel stack size per thread (default: by architecture)")
    ps.add_argument("--json", action="store_true", help="JSON; every size in bytes")
    common.add_proc_root(ps)
    common.add_from(ps)
    ps.set_defaults(run=run_ps)
    _add_vmos(ksub)
    _add_asd(ksub)
    p.set_defaults(run=_run_k, k_parser=p)


def _run_k(args: argparse.Namespace, env) -> int:
    # No subcommand is a usage error: the help goes to stderr (as argparse
    # sends its usage errors), so stdout stays empty for a pipe.
    args.k_parser.print_help(env.stderr)
    return 2


def _live_ps(args: argparse.Namespace, env) -> tuple[list, tuple[str, ...], dict, int | None]:
    """(rows, notes, meminfo, stack size) read from /proc."""
    from zxmem import collection
    from zxmem.sources import kernel

    root = common.proc_root(args, env)
    stack = args.stack_size or kernel.thread_size(collection.machine(root) or "")
    try:
        rows, notes = collection.process_kernel_usage(
            root, kernel_threads=args.kernel_threads, stack_size=stack
        )
    except OSError as exc:
        raise ZxmemError(f"cannot read {root}: {exc.strerror or exc}") from None
    if stack is None:
        notes = (*notes, "use --stack-size to give it")
    return rows, notes, collection.meminfo(root), stack


# How memgraph -H names a descriptor kind (zxmem.sources.handles.fd_kind)
# -> the k ps column that counts it (zxmem.sources.kernel.classify_fd_link):
# both classify the same /proc/PID/fd link texts, so the counts are equal.
_HANDLE_KIND_COLUMN = {
    "file": "files", "device": "files", "shmem": "files", "sysv": "files",
    "socket": "sockets", "pipe": "pipes", "eventfd": "eventfds", "memfd": "memfds",
    "timerfd": "timerfds", "eventpoll": "epoll",
}


def fd_kinds_from_handle_stats(stats) -> dict[str, int] | None:
    """k ps's descriptor columns from a process's memgraph ``handle_stats``
    (None stays None: the descriptors were not readable)."""
    from zxmem.sources.kernel import FD_KINDS

    if stats is None:
        return None
    counts = dict.fromkeys(FD_KINDS, 0)
    for kind, n in stats.items():
        counts[_HANDLE_KIND_COLUMN.get(kind, "other")] += n
    return counts


def usage_rows(snapshot, *, kernel_threads: bool, stack_size: int | None) -> list:
    """k ps rows of a snapshot's processes, PID order (pure).

    Descriptors from ``handle_stats`` (memgraph -H), page tables from
    ``vm_pte_bytes`` (VmPTE), kernel stacks from ``num_threads`` x
    ``stack_size``; unknown stays None.
    """
    from zxmem.sources.kernel import ProcessKernelUsage

    rows = []
    for p in sorted(snapshot.processes, key=lambda p: p.koid):
        if p.kernel_thread and not kernel_threads:
            continue
        threads = p.num_threads if p.num_threads is not None else (len(p.threads) or None)
        pte = p.vm_pte_bytes
        if pte is None and p.kernel_thread:
            pte = 0  # no mm: no user page tables
        rows.append(ProcessKernelUsage(
            pid=p.koid, name=p.name, kernel_thread=p.kernel_thread, threads=threads,
            fd_kinds=fd_kinds_from_handle_stats(p.handle_stats), pte_bytes=pte,
            kstack_bytes=None if threads is None or stack_size is None
            else threads * stack_size,
        ))
    return rows


def _saved_ps(args: argparse.Namespace, env) -> tuple[list, tuple[str, ...], dict, int | None]:
    """(rows, notes, meminfo, stack size) of the snapshot in ``--from FILE``."""
    from zxmem.sources import kernel

    snapshot = common.from_snapshot(args, env)
    if all(p.handle_stats is None for p in snapshot.processes if not p.kernel_thread):
        raise common.lacks(args, "the snapshot has no descriptor counts: record it with "
                                 "`zxmem memgraph -H`")
    # The snapshot does not say which architecture it was taken on: the
    # stack size is this machine's unless --stack-size gives it.
    stack = args.stack_size or kernel.thread_size()
    rows = usage_rows(snapshot, kernel_threads=args.kernel_threads, stack_size=stack)
    notes = []
    denied = sum(1 for r in rows if r.fd_kinds is None)
    if denied:
        noun = "process" if denied == 1 else "processes"
        notes.append(f"descriptors of {denied} {noun} not readable (counts shown as -)")
    if stack is None:
        notes.append("kernel stack size of this architecture unknown: kstk shown as -")
        notes.append("use --stack-size to give it")
    if args.kernel_threads and not any(p.kernel_thread for p in snapshot.processes):
        notes.append("the snapshot holds no kernel threads")
    meminfo = dict(snapshot.kernel.meminfo) if snapshot.kernel is not None else {}
    return rows, tuple(notes), meminfo, stack


def run_ps(args: argparse.Namespace, env) -> int:
    import json

    from zxmem.views import kps as view

    if args.topic == "help":
        env.stdout.write(view.KEY)
        return 0
    if args.from_file is not None:
        rows, notes, meminfo, stack = _saved_ps(args, env)
    else:
        rows, notes, meminfo, stack = _live_ps(args, env)

    if args.sort != "pid":
        key = {"fds": lambda r: r.fds, "pte": lambda r: r.pte_bytes,
               "kstack": lambda r: r.kstack_bytes}[args.sort]
        # Unknown values sort last; ties keep PID order.
        rows = sorted(rows, key=lambda r: (key(r) is None, -(key(r) or 0), r.pid))

    if args.json:
        env.stdout.write(json.dumps(view.to_json(rows, meminfo, stack, notes), indent=1) + "\n")
    else:
        env.stdout.write(view.render(rows, meminfo, stack))
        env.stdout.flush()
        for note in notes:
            env.stderr.write(f"zxmem: k ps: {escape_terminal(note)}\n")
    return 0


# --------------------------------------------------------------------------
# k vmos hidden|all|PID

VMOS_DESCRIPTION = """\
Memory objects (VMOs) from the kernel's side, as Zircon's 'k zx vmos':

  hidden  every object no process maps, largest first, with who holds it:
          memfds and tmpfs/shmem files held only by descriptors, SysV
          segments nobody attaches (/proc/sysvipc/shm, nattch 0), files on
          tmpfs/ramfs mounts nobody maps or holds (a bounded walk that never
          follows symlinks or leaves the mount), dma-bufs (debugfs
          dma_buf/bufinfo when readable, else those held by descriptors),
          and the remainder of /proc/meminfo Shmem that none of these
          explains, as one explicit row ([unattributed Shmem], koid 0)
  all     every object in the system (mapped, held, hidden)
  PID     the descriptors (handles) and mappings of one process

Columns: holder (hidden/all: PID:FD of the first process holding a
descriptor to the object, +N when N more do, '-' for none) or handle (PID:
the descriptor), rights (r/w of the descriptor), koid ((st_dev << 32) |
st_ino for inode objects; 0 for the Shmem remainder), parent, #chld, #map
(mappings in all processes), #shr (processes mapping it), size, alloc
(allocated pages: st_blocks for shmem/memfd/tmpfs, the kernel's rss for
SysV, 'phys' for device memory, '-' unknown), name.
Whatever cannot be read (no sysvipc, no debugfs, another user's
descriptors) is named on stderr and never shown as 0.

On a terminal, lines fit its width: file koids ((st_dev << 32) | st_ino, up
to 15 digits) show as f1, f2, ... in the koid and parent columns (hidden and
all: numbered down the listing; PID: the labels 'zxmem vmos PID' and 'zxmem
vmaps PID' give them), names are shortened in the middle, and alloc is
coloured by magnitude (--color; never when piped or with NO_COLOR set).
--wide prints whole lines with full koids on a terminal too; piped (not a
terminal) every line is whole.  --json always has the full koids.

--from FILE reads a saved snapshot: PID needs one saved with 'zxmem
memgraph -v' (descriptors and mappings; SysV alloc as recorded there, not
re-read from /proc/sysvipc/shm); hidden and all need a snapshot that holds
the hidden objects and the Shmem remainder. A Fuchsia capture does not say
which VMOs are held by handles, so it serves neither.
"""

VMOS_EPILOG = """\
examples:
  zxmem k vmos hidden               who is using my Shmem?
  zxmem k vmos hidden -uM           sizes in MiB
  zxmem k vmos all --json | jq '.vmos[:5]'
  zxmem k vmos 1234                 handles and mappings of pid 1234
  zxmem k vmos 1234 --from snap.json   the same in a snapshot (memgraph -v)
  zxmem k vmos all --wide          whole lines and full koids on the terminal too
"""


def _walk_limit(value: str) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"bad entry count {value!r}")
    return number


def _add_vmos(ksub) -> None:
    p = ksub.add_parser(
        "vmos",
        help="memory objects no process maps (hidden), all of them, or one process's",
        description=VMOS_DESCRIPTION,
        epilog=VMOS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("which", metavar="hidden|all|PID", help="what to list")
    p.add_argument("-u", "--units", type=common.units_arg, metavar="X",
                   help="fixed size unit: B k M G T P E (as -uX)")
    p.add_argument("--walk-limit", type=_walk_limit, metavar="N",
                   help="directory entries the tmpfs walk examines before it "
                   "stops (default 100000; 0 skips the walk)")
    common.add_wide(p, "lines (full koids, whole names)")
    common.add_color(p)
    p.add_argument("--json", action="store_true", help="JSON; every size in bytes")
    common.add_proc_root(p)
    common.add_from(p)
    p.set_defaults(run=run_vmos)


def _vmos_target(value: str) -> str | int:
    if value in ("hidden", "all"):
        return value
    try:
        pid = common.parse_koid(value)
    except ValueError:
        pid = 0
    if pid <= 0:
        raise UsageError(f"k vmos: dunno '{value}': use hidden, all or a PID")
    return pid


def run_vmos(args: argparse.Namespace, env) -> int:
    target = _vmos_target(args.which)
    from zxmem.views import kvmos as view

    if args.from_file is not None:
        common.live_only(*(["--walk-limit"] if args.walk_limit is not None else []))
        snapshot, process = _saved_vmos(args, env, target)
    else:
        snapshot, process = _live_vmos(args, env, target)
    if process is not None:
        if args.json:
            env.stdout.write(view.render_json("pid", snapshot, process))
        else:
            env.stdout.write(view.render_process(process, snapshot, args.units,
                                                 *_layout(args, env)))
        _notes(env, "k vmos", snapshot.provenance.notes)
        return 0
    assert isinstance(target, str)  # a PID has its process: shown above
    if args.json:
        env.stdout.write(view.render_json(target, snapshot))
    elif target == "hidden":
        env.stdout.write(view.render_hidden(snapshot, args.units, *_layout(args, env)))
    else:
        env.stdout.write(view.render_all(snapshot, args.units, *_layout(args, env)))
    notes = list(snapshot.provenance.notes)
    denied = snapshot.provenance.denied_pids("fd", "maps")
    if denied:
        noun = "process" if len(denied) == 1 else "processes"
        notes.append(f"maps or descriptors of {len(denied)} {noun} not readable (what "
                     "they map or hold is in the Shmem remainder)"
                     + ("" if _is_root() or args.from_file is not None else ": run as root"))
    _notes(env, "k vmos", notes)
    return 0


def _layout(args: argparse.Namespace, env) -> tuple[int | None, bool]:
    """(columns to fit, colour) for the text listings."""
    return common.fit_width(args, env), common.use_color(args, env)


def _live_vmos(args: argparse.Namespace, env, target: str | int):
    """(snapshot, process or None) read from /proc for ``k vmos TARGET``."""
    from zxmem.collection import collect_hidden, collect_process

    root = common.proc_root(args, env)
    if isinstance(target, int):
        return collect_process(target, root, what="objects", whole_system=True,
                               sysv_alloc=True)
    try:
        # hidden: every process's maps (what is mapped) and descriptors
        # (who holds what) are enough; all: smaps too, for anonymous alloc.
        snapshot = collect_hidden(root, every_object=target == "all",
                                  walk_limit=args.walk_limit)
    except OSError as exc:
        raise ZxmemError(f"cannot read {root}: {exc.strerror or exc}") from None
    return snapshot, None


def _saved_vmos(args: argparse.Namespace, env, target: str | int):
    """(snapshot, process or None) of ``--from FILE`` for ``k vmos TARGET``.

    A PID needs its descriptors and mappings (memgraph -v); hidden and all
    need the hidden objects, their holders and the Shmem remainder, which
    only a snapshot that went through the hidden-object scan holds.
    """
    if isinstance(target, int):
        from zxmem.commands.vmaps import saved_process

        snapshot, process = saved_process(args, env, target, "vmo_refs")
        if any(not ref.via for ref in process.vmo_refs or ()):
            raise common.lacks(args, f"the snapshot does not say which objects pid {target} "
                                     "holds by descriptor and which it maps (a Fuchsia "
                                     "capture lists VMOs only: zxmem vmos --from FILE PID)")
        return snapshot, process
    from zxmem.model import REMAINDER_KOID

    snapshot = common.from_snapshot(args, env)
    if REMAINDER_KOID not in snapshot.vmos and not snapshot.hidden_vmo_koids:
        raise common.lacks(args, "the snapshot has no hidden objects (memfds, SysV "
                                 "segments, tmpfs files, dma-bufs no process maps, and the "
                                 f"Shmem remainder): 'k vmos {target}' needs them")
    return snapshot, None


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


def _notes(env, command: str, notes) -> None:
    env.stdout.flush()
    for note in notes:
        env.stderr.write(f"zxmem: {command}: {escape_terminal(note)}\n")


# --------------------------------------------------------------------------
# k asd kernel

ASD_DESCRIPTION = """\
The kernel's address space, as Zircon's 'k zx asd kernel': the vmalloc
areas of /proc/vmallocinfo grouped by kind (vmalloc, vpages, vmap,
vm_map_ram, user, ioremap, unpurged) and by caller (largest first), with the
pages each holds and, for ioremap areas, the physical address; the modules
of /proc/modules; and the physical map of /proc/iomem.

Line shapes (two spaces of indentation per level, ends inclusive):
  as [start end] sz HEX areas N pages N 'kernel'
    vmar [start end] sz HEX areas N pages N 'KIND'   then 'CALLER'
      map [start end] sz HEX pages N phys HEX 'caller+off/len'
    vmar [start end] sz HEX areas N 'modules'
      map [start end] sz HEX ref N state S 'MODULE'
  phys [start end] sz HEX 'RESOURCE'
vmallocinfo is readable by root only; its addresses are real only with
kptr_restrict=1 and CAP_SYSLOG ([hashed] with kptr_restrict=0, [hidden]
when zeroed); /proc/iomem and /proc/modules show addresses to root only.
"""

ASD_EPILOG = """\
examples:
  sudo zxmem k asd kernel           grouped areas, ioremap areas listed
  sudo zxmem k asd kernel -v        every area
  zxmem vmaps PID                   a process's address space
"""


def _add_asd(ksub) -> None:
    p = ksub.add_parser(
        "asd",
        help="the kernel address space: vmalloc areas by kind and caller, modules, iomem",
        description=ASD_DESCRIPTION,
        epilog=ASD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="kernel", help="'kernel' (or a prefix of it)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every area")
    common.add_proc_root(p)
    p.set_defaults(run=run_asd)


def _render_asd(areas, modules, ranges, vmalloc_used: int | None, verbose: bool,
                notes: list[str], root_hint: str) -> str:
    """The kernel address space's text; what its addresses hide goes to ``notes``."""
    from zxmem.views import asd as view

    out = []
    if areas is not None:
        mode = view.address_mode(areas)
        if mode == "hashed":
            notes.append("vmallocinfo addresses are hashed (kptr_restrict=0): ranges "
                         "shown as [hashed]; real ones need kptr_restrict=1 and CAP_SYSLOG")
        elif mode == "hidden":
            notes.append(f"vmallocinfo addresses are hidden (kptr_restrict){root_hint}")
    mmode = view.module_address_mode(modules or ())
    if modules and mmode == "hidden":
        notes.append(f"module addresses hidden (kptr_restrict){root_hint}")
    out.append(view.render_vmalloc(areas or (), verbose=verbose,
                                   modules=modules, module_mode=mmode))
    if ranges is not None:
        if view.iomem_hidden(ranges):
            notes.append(f"/proc/iomem addresses hidden{root_hint}")
        out.append(view.render_iomem(ranges))
    out.append(view.render_totals(areas, vmalloc_used, modules, ranges))
    return "".join(out)


def run_asd(args: argparse.Namespace, env) -> int:
    target = args.target
    if not target or not "kernel".startswith(target):
        if target.isdigit():
            raise UsageError(f"k asd {target}: a process's address space is "
                             f"'zxmem vmaps {target}'")
        raise UsageError(f"k asd: dunno '{escape_terminal(target)}': the one valid word is "
                         "'kernel' (or a prefix of it: k, ke, ...), the kernel's address "
                         "space; a process's is 'zxmem vmaps PID'")
    import errno

    from zxmem import collection
    from zxmem.sources import kernel

    root = common.proc_root(args, env)
    notes: list[str] = []
    root_hint = "" if _is_root() else ": run as root"

    def load(name: str, parse):
        raw, exc = collection.kernel_file(root, name)
        if raw is None:
            if exc is not None and exc.errno in (errno.EACCES, errno.EPERM):
                notes.append(f"/proc/{name} is readable only by root{root_hint}")
            else:
                notes.append(f"/proc/{name} missing: not shown")
            return None
        try:
            return parse(raw)
        except kernel.ParseError as exc:
            notes.append(f"{exc}: not shown")
            return None

    areas = load("vmallocinfo", kernel.parse_vmallocinfo)
    modules = load("modules", kernel.parse_modules)
    ranges = load("iomem", kernel.parse_iomem)
    if areas is None and modules is None and ranges is None:
        _notes(env, "k asd", notes)
        raise ZxmemError("k asd: none of vmallocinfo, modules, iomem could be read")
    vmalloc_used = collection.meminfo(root).get("VmallocUsed")

    env.stdout.write(_render_asd(areas, modules, ranges, vmalloc_used, args.verbose,
                                 notes, root_hint))
    _notes(env, "k asd", notes)
    return 0
