"""``zxmem k …``: the Linux side of Zircon's kernel console commands (``k zx``)."""

from __future__ import annotations

import argparse

from zxmem.commands import common
from zxmem.errors import UsageError, ZxmemError

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
"""

PS_EPILOG = """\
examples:
  zxmem k ps                  every process, PID order
  zxmem k ps --sort=fds       most descriptors first
  zxmem k ps -a --sort=kstack kernel threads too (their stacks count)
  zxmem k ps help             the column key
  zxmem k ps --json | jq '.totals'
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
    ps.set_defaults(run=run_ps)
    _add_vmos(ksub)
    _add_asd(ksub)
    p.set_defaults(run=_run_k, k_parser=p)


def _run_k(args: argparse.Namespace, env) -> int:
    args.k_parser.print_help(env.stdout)
    return 2


def _machine(proc_root: str) -> str | None:
    """The architecture the tree was read on: ``sys/kernel/arch`` of the
    ``/proc`` root (Linux ≥ 2.6.?, present on 6.x), else this machine's."""
    import os

    try:
        with open(os.path.join(proc_root, "sys", "kernel", "arch"), "rb") as f:
            return f.read().decode("ascii", "replace").strip() or None
    except OSError:
        return os.uname().machine


def run_ps(args: argparse.Namespace, env) -> int:
    import json

    from zxmem.sources import kernel
    from zxmem.views import kps as view

    if args.topic == "help":
        env.stdout.write(view.KEY)
        return 0
    root = common.proc_root(args, env)
    stack = args.stack_size or kernel.thread_size(_machine(root) or "")
    try:
        rows, notes = kernel.read_process_kernel_usage(
            root, kernel_threads=args.kernel_threads, stack_size=stack
        )
    except OSError as exc:
        raise ZxmemError(f"cannot read {root}: {exc.strerror or exc}") from None
    if stack is None:
        notes = (*notes, "use --stack-size to give it")
    meminfo: dict[str, int] = {}
    try:
        with open(f"{root.rstrip('/')}/meminfo", "rb") as f:
            meminfo = kernel.parse_meminfo(f.read())[0]
    except (OSError, kernel.ParseError):
        pass

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
            env.stderr.write(f"zxmem: k ps: {note}\n")
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
"""

VMOS_EPILOG = """\
examples:
  zxmem k vmos hidden               who is using my Shmem?
  zxmem k vmos hidden -uM           sizes in MiB
  zxmem k vmos all --json | jq '.vmos[:5]'
  zxmem k vmos 1234                 handles and mappings of pid 1234
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
    p.add_argument("--json", action="store_true", help="JSON; every size in bytes")
    common.add_proc_root(p)
    p.set_defaults(run=run_vmos)


def _vmos_target(value: str) -> str | int:
    if value in ("hidden", "all"):
        return value
    try:
        pid = int(value, 10)
    except ValueError:
        pid = 0
    if pid <= 0:
        raise UsageError(f"k vmos: dunno '{value}': use hidden, all or a PID")
    return pid


def run_vmos(args: argparse.Namespace, env) -> int:
    target = _vmos_target(args.which)
    from zxmem.sources import hidden, objects
    from zxmem.views import kvmos as view

    root = common.proc_root(args, env)
    if isinstance(target, int):
        from zxmem.commands.vmaps import load_process

        base = objects.light_snapshot(root)
        snapshot, process = load_process(
            root, target, "objects", base=_with_pid(base, root, target),
            pids=None, detail_pids=[target],
        )
        snapshot = hidden.add_sysv_alloc(snapshot, root)
        process = snapshot.process(target) or process
        if args.json:
            env.stdout.write(view.render_json("pid", snapshot, process))
        else:
            env.stdout.write(view.render_process(process, snapshot, args.units))
        _notes(env, "k vmos", snapshot.provenance.notes)
        return 0
    try:
        base = objects.light_snapshot(root)
        # hidden: every process's maps (what is mapped) and descriptors
        # (who holds what) are enough; all: smaps too, for anonymous alloc.
        snapshot = objects.add_objects(
            base, root, detail_pids=None if target == "all" else (), regions=False
        )
    except OSError as exc:
        raise ZxmemError(f"cannot read {root}: {exc.strerror or exc}") from None
    limit = hidden.DEFAULT_WALK_LIMIT if args.walk_limit is None else args.walk_limit
    snapshot = hidden.add_hidden(
        snapshot, root, walk_limit=limit, walk_tmpfs=None if limit else False
    )
    if args.json:
        env.stdout.write(view.render_json(target, snapshot))
    elif target == "hidden":
        env.stdout.write(view.render_hidden(snapshot, args.units))
    else:
        env.stdout.write(view.render_all(snapshot, args.units))
    notes = list(snapshot.provenance.notes)
    denied = {what.partition(":")[2] for what, _ in snapshot.provenance.denied
              if what.startswith(("fd:", "maps:"))}
    if denied:
        noun = "process" if len(denied) == 1 else "processes"
        notes.append(f"maps or descriptors of {len(denied)} {noun} not readable (what "
                     "they map or hold is in the Shmem remainder)"
                     + ("" if _is_root() else ": run as root"))
    _notes(env, "k vmos", notes)
    return 0


def _with_pid(base, root: str, pid: int):
    """``base`` with ``pid`` in it even when the light scan left it out."""
    if base.process(pid) is not None:
        return base
    from dataclasses import replace

    from zxmem.sources import objects

    try:
        extra = objects.read_process(root, pid)
    except objects.ProcessError:
        return base
    return replace(base, processes=base.processes + (extra,))


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


def _notes(env, command: str, notes) -> None:
    env.stdout.flush()
    for note in notes:
        env.stderr.write(f"zxmem: {command}: {note}\n")


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


def _read_optional(path: str):
    """(bytes, None) or (None, OSError)."""
    try:
        with open(path, "rb") as f:
            return f.read(), None
    except OSError as exc:
        return None, exc


def run_asd(args: argparse.Namespace, env) -> int:
    target = args.target
    if not target or not "kernel".startswith(target):
        if target.isdigit():
            raise UsageError(f"k asd {target}: a process's address space is "
                             f"'zxmem vmaps {target}'")
        raise UsageError(f"k asd: dunno '{target}': use 'kernel'")
    import errno

    from zxmem.sources import kernel
    from zxmem.views import asd as view

    root = common.proc_root(args, env).rstrip("/") or "/"
    notes: list[str] = []
    root_hint = "" if _is_root() else ": run as root"

    def load(name: str, parse):
        raw, exc = _read_optional(f"{root}/{name}")
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
    vmalloc_used = None
    raw, _ = _read_optional(f"{root}/meminfo")
    if raw is not None:
        try:
            vmalloc_used = kernel.parse_meminfo(raw)[0].get("VmallocUsed")
        except kernel.ParseError:
            pass

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
    out.append(view.render_vmalloc(areas or (), verbose=args.verbose,
                                   modules=modules, module_mode=mmode))
    if ranges is not None:
        if view.iomem_hidden(ranges):
            notes.append(f"/proc/iomem addresses hidden{root_hint}")
        out.append(view.render_iomem(ranges))
    out.append(view.render_totals(areas, vmalloc_used, modules, ranges))
    env.stdout.write("".join(out))
    _notes(env, "k asd", notes)
    return 0
