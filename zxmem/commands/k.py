"""``zxmem k …``: the Linux side of Zircon's kernel console commands (``k zx``)."""

from __future__ import annotations

import argparse

from zxmem.commands import common
from zxmem.errors import ZxmemError

HELP = "kernel console commands: k ps (descriptors and kernel memory per process)"

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
