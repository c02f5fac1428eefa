"""``zxmem memgraph``: the whole system as Fuchsia's memgraph JSON."""

from __future__ import annotations

import argparse

from zxmem.commands import common
from zxmem.textsafe import escape_terminal

HELP = "print system-wide task and memory info as JSON (Fuchsia's memgraph)"

DESCRIPTION = """\
Prints system-wide task and memory info as JSON: Fuchsia's memgraph record
array. Kernel records (physmem, free, vmo, heap, heap/allocated, heap/free,
wired, mmu, other: /proc/meminfo and friends), then jobs (cgroups), processes
with PSS, PRIVATE and SHARED, and threads, in ps's walk order, and a final
__META record with where and when the snapshot was taken.

With -v every process's smaps is read for its mappings, and the process
totals are summed from it instead of read from smaps_rollup (one walk of
the page tables, not two): PSS is then a few kB lower per process, and
Pss_Anon/File/Shmem are unknown (the provenance notes say so).

With --hidden (implies -v) the memory objects no process maps are
recorded too: memfds and shmem files held only by descriptors, SysV
segments nobody attaches, tmpfs/ramfs files, dma-bufs, and the part of
meminfo's Shmem none of these explain; so that `zxmem k vmos hidden --from
FILE` works on the file. It takes about 10% longer than -v alone.

Linux-only fields (command lines, swap, cgroup paths, mappings, what could
not be read) sit in "linux" objects that Fuchsia's tools ignore. The output
is always valid JSON and is the on-disk form of a snapshot: every zxmem view
reads it back with --from FILE.
"""

EPILOG = """\
examples:
  zxmem memgraph -vt > snap.json      save everything (what treemap wants)
  zxmem ps --from snap.json           ps as it was when the file was written
  zxmem memgraph --hidden > s.json    also the objects no process maps
  zxmem k vmos hidden --from s.json   those objects as they were then
  zxmem memgraph -S                   the JSON Schema of the output
  zxmem memgraph --from capture.json  a Fuchsia capture as memgraph records
  zxmem memgraph | jq '.[] | select(.type=="p") | [.name, .pss_bytes]'
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "memgraph",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-t", "--threads", action="store_true", help="include thread records")
    p.add_argument("-v", "--vmos", action="store_true",
                   help="include vmos and vmo_refs arrays (and mappings) in process records")
    p.add_argument("--hidden", action="store_true",
                   help="also record memory objects no process maps (memfds held only by "
                   "descriptors, SysV segments, tmpfs files, dma-bufs, the Shmem remainder), "
                   "for k vmos hidden --from; implies -v; about 10%% slower")
    p.add_argument("-H", "--handles", action="store_true",
                   help="include handle_stats (open descriptors by kind) in process records")
    p.add_argument("-S", "--schema", action="store_true",
                   help="print the JSON Schema of the output and exit")
    p.add_argument("--exact", action="store_true",
                   help="process, mapping and object numbers from page tables (root): "
                   "pages several processes map are objects of their own (one per set of "
                   "processes), so committed_bytes / share_count summed over a process's vmos "
                   "is its exact PSS")
    common.add_proc_root(p)
    common.add_from(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    if args.schema:
        from zxmem.schema.memgraph import schema_text

        env.stdout.write(schema_text())
        return 0
    from zxmem.runtime import paused_gc

    # Writing a snapshot of every mapping makes millions of acyclic
    # objects: the cycle collector's passes over them free nothing.
    with paused_gc():
        return _run(args, env)


def _run(args: argparse.Namespace, env) -> int:
    from zxmem.memgraph import write_memgraph

    if args.hidden:
        # The hidden objects are those the -v scan finds unmapped, and they
        # are written in the VMO part of the file.
        args.vmos = True
    from zxmem.collection import Plan

    # status: UID, swap and page tables for the "linux" fields; job_state:
    # the cgroup's oom group, so a late-style ps of the file shows it.
    # With -v every process's smaps is read anyway: its per-mapping counts
    # give the process totals, and smaps_rollup (a second walk of every
    # page table) is not read.  A reader process reads every smaps while
    # this one parses: nothing else runs here that a fork would leave behind.
    # cgroup_memory: each job's charge, limits, events and pressure.
    plan = Plan(threads=args.threads, status=True, job_state=True, kernel=True,
                objects=args.vmos, hidden=args.hidden, handles=args.handles,
                memory_from_objects=True, reader_process=True, cgroup_memory=True)
    # Without -v no memory object is written: a store's sample is read
    # without them.
    snapshot = common.snapshot_from_args(
        args, env, plan, warn=lambda line: env.stderr.write(f"zxmem: memgraph: {line}\n"),
        objects=args.vmos)
    if args.from_file is None and args.exact:
        from zxmem.commands._exact import exact_graph

        snapshot = exact_graph(snapshot, args, env)

    # fork: a helper process formats half of the records (nothing else
    # runs here that a fork would leave behind).
    write_memgraph(snapshot, env.stdout, threads=args.threads, vmos=args.vmos,
                   handles=args.handles, fork=True)
    env.stdout.flush()
    note = common.unreadable_note(snapshot)
    if note and args.from_file is None:
        env.stderr.write(f"zxmem: {escape_terminal(note)}\n")
    from zxmem.runtime import keep_until_exit

    keep_until_exit(snapshot)  # freeing it would take longer than the write's end
    return 0
