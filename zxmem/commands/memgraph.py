"""``zxmem memgraph``: the whole system as Fuchsia's memgraph JSON."""

from __future__ import annotations

import argparse

from zxmem.commands import common

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
                   help="process, mapping and anonymous-object numbers from page tables "
                   "(root); fork's copy-on-write clones")
    common.add_proc_root(p)
    common.add_from(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    if args.schema:
        from zxmem.schema.memgraph import schema_text

        env.stdout.write(schema_text())
        return 0
    import gc

    # A snapshot of every mapping is a few million objects made and kept,
    # none of them in reference cycles: the cycle collector's passes over
    # them (also in the forked readers) would cost about a tenth of the
    # run and free nothing.  Enabled again on the way out.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(args, env)
    finally:
        if was_enabled:
            gc.enable()


def _run(args: argparse.Namespace, env) -> int:
    from zxmem.memgraph import write_memgraph

    if args.hidden:
        # The hidden objects are those the -v scan finds unmapped, and they
        # are written in the VMO part of the file.
        args.vmos = True
    from zxmem.sources.linux import CollectOptions

    # status: UID, swap and page tables for the "linux" fields; job_state:
    # the cgroup's oom group, so a late-style ps of the file shows it.
    # With -v every process's smaps is read anyway: its per-mapping counts
    # give the process totals, and smaps_rollup (a second walk of every page
    # table) is not read (add_objects(memory=True)).
    objects = _objects_module() if args.vmos and args.from_file is None else None
    options = CollectOptions(threads=args.threads, status=True, job_state=True,
                             cgroup_memory=True,
                             memory=objects is None)
    snapshot = common.snapshot_from_args(args, env, options)
    if args.from_file is None:
        root = common.proc_root(args, env)
        snapshot = _add_live_details(snapshot, root, args, env, objects)
        if args.exact:
            from zxmem.commands._exact import exact_graph

            snapshot = exact_graph(snapshot, args, env)

    write_memgraph(
        snapshot, env.stdout, threads=args.threads, vmos=args.vmos, handles=args.handles
    )
    env.stdout.flush()
    note = common.unreadable_note(snapshot)
    if note and args.from_file is None:
        env.stderr.write(f"zxmem: {note}\n")
    return 0


def _objects_module():
    """:mod:`zxmem.sources.objects`, or None when this build lacks it."""
    import importlib

    try:
        return importlib.import_module("zxmem.sources.objects")
    except ImportError:
        return None


def _add_live_details(snapshot, root: str, args: argparse.Namespace, env, objects=None):
    """Kernel records, VMOs (-v) and descriptor counts (-H) from the live system.

    Each comes from another source module, imported here so ``--help``
    stays light; a module that is not there leaves its part out with a note.
    ``objects``: the memory-objects module when the snapshot was collected
    without process memory, which it then fills from the smaps it reads.
    """
    from dataclasses import replace

    try:
        from zxmem.sources import kernel as kernel_source
    except ImportError:
        kernel_source = None
    if kernel_source is not None:
        try:
            if hasattr(kernel_source, "read_kernel_stats_with_notes"):
                kstats, notes = kernel_source.read_kernel_stats_with_notes(root)
            else:
                kstats, notes = kernel_source.read_kernel_stats(root), ()
        except (OSError, ValueError) as exc:
            # No meminfo (a recorded tree without it): no kernel records, as
            # memgraph does when it cannot read kmem stats.
            why = getattr(exc, "strerror", None) or str(exc)
            env.stderr.write(f"zxmem: memgraph: kernel records left out: {why}\n")
            prov = snapshot.provenance
            snapshot = replace(snapshot, provenance=replace(
                prov, notes=prov.notes + (f"kernel records omitted: {why}",)))
        else:
            prov = snapshot.provenance
            snapshot = replace(snapshot, kernel=kstats,
                               provenance=replace(prov, notes=prov.notes + tuple(notes)))

    if args.vmos:
        if objects is None:
            objects = _objects_module()
            fill = False
        else:
            fill = True
        if objects is None:
            env.stderr.write("zxmem: memgraph -v: memory objects are not available in this "
                             "build; vmos left out\n")
        else:
            # A reader process reads every smaps while this one parses:
            # nothing else runs here by now that a fork would leave behind.
            snapshot = objects.add_objects(snapshot, proc_root=root, memory=fill,
                                           reader_process=True)
            if getattr(args, "hidden", False):
                from zxmem.sources.hidden import add_hidden

                # Needs every process's mappings and descriptors: what
                # add_objects has just read.
                snapshot = add_hidden(snapshot, root)

    if args.handles:
        from zxmem.sources.handles import add_handle_stats

        snapshot = add_handle_stats(snapshot, root)
    return snapshot
