"""``zxmem vmos PID``: the memory objects a process maps or holds (spec §4)."""

from __future__ import annotations

import argparse

from zxmem.commands import common

HELP = "dump a process's memory objects (VMOs): mapped, and held by descriptors"

HELP_TEXT = """\
Usage: zxmem vmos <pid>

Dumps a process's VMOs to stdout.

Columns:
  rights: if the process holds the object through a handle (a descriptor),
          the handle's rights, each letter or '-': r READ, w WRITE, x EXECUTE,
          m MAP, d DUPLICATE, t TRANSFER (on Linux only r and w, from the
          descriptor's open mode). Mapping entries have a single '-'.
  koid:   the object's koid: (st_dev << 32) | st_ino for files and shmem
          (memfd, SysV, tmpfs, dma-buf), a small number for anonymous memory
          and copy-on-write clones
  parent: the parent's koid if the object is a clone ('data:<file>': the
          copy-on-write pages of a private file mapping), else '-'
  #chld:  the number of live clones of the object
  #map:   the number of mappings of the object, in all processes ('-' when
          unknown: a Fuchsia capture does not record it)
  #shr:   the number of processes that map the object
  size:   the object's size (file size, or mapping length)
  alloc:  memory allocated to the object: page cache of a file (cachestat),
          allocated shmem pages (st_blocks), resident anonymous pages;
          'phys' for device memory (no RAM), '-' when unknown. Anonymous
          pages still shared copy-on-write after fork() count in part: the
          mapping's PSS (each shared page divided by the number of
          processes mapping it), so alloc is what the object costs this
          process and adds up to physical memory across processes. [vdso]
          and [vvar] are one object for the whole system.
  name:   the object's name, or '-' if it has none

An object appears once per handle and once per mapping.

On a terminal, lines fit its width: file koids ((st_dev << 32) | st_ino, up
to 15 digits) show as f1, f2, ... in the koid and parent columns, numbered
by their first mapping in address order, then the objects held only by
descriptors (the same labels as 'zxmem vmaps PID' on a terminal); names are
shortened in the middle, keeping the file name; alloc is coloured by
magnitude (--color; never when piped or with NO_COLOR set).  --wide prints
whole lines with full koids on a terminal too; piped (not a terminal) every
line is whole.  --json always has the full koids.

--exact (root) counts pages from page tables, so that every resident page is
in exactly one object and alloc / #shr summed over the process's objects is
its exact PSS (the size Fuchsia's treemap gives it):
  - an anonymous or clone object's alloc is the pages no other process maps;
  - pages the process shares with others are listed as objects of their own,
    one per owner and set of processes mapping them: alloc = those pages,
    #shr = the processes mapping them (unreadable ones included), name of
    the owner (the file, or the VMA they were copied from);
  - copy-on-write pages fork() left shared are such objects too, and each
    anonymous object's parent is the one holding most of its shared pages
    (Zircon's hidden parent of a clone), #chld counting its clones;
  - a shared object (a file, shmem) keeps the pages no process maps (page
    cache nobody maps) and is listed only for a descriptor.

--from FILE lists a process's objects in a snapshot saved with 'zxmem
memgraph -v' (#map and #shr as counted when it was saved), or in a Fuchsia
capture (which does not say how a process reaches each VMO: every row has
rights '-'; nor how often a VMO is mapped: #map is '-').
"""

EPILOG = """\
examples:
  zxmem vmos 1234
  zxmem vmos --json 1234 | jq '.vmos[] | select(.share_count > 1) | .name'
  zxmem vmos help
  zxmem vmos 1234 | less -S          whole lines, full koids (piped output is never cut)
  zxmem vmos --units=k 1234          sizes in KiB
  zxmem vmos --from snap.json 1234    pid 1234's objects in a saved snapshot
  zxmem vmos --from test_snapshot.json 32269   a process of a Fuchsia capture
"""

USAGE = "usage: zxmem vmos <pid>|help"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vmos",
        help=HELP,
        description=HELP_TEXT,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pid", nargs="?", metavar="PID", help="process id (or 'help')")
    p.add_argument("--units", type=common.units_arg, metavar="X",
                   help="fix all sizes to unit X, one of B k M G T P E")
    common.add_wide(p, "lines (full koids, whole names)")
    common.add_color(p)
    p.add_argument("--json", action="store_true", help="rows as JSON; sizes in bytes")
    p.add_argument("--exact", action="store_true",
                   help="objects from page tables (root): alloc of an anonymous object is "
                   "the pages only this process maps; shared pages are objects of their own "
                   "(see --exact above)")
    common.add_proc_root(p)
    common.add_from(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    from zxmem.commands.vmaps import parse_pid

    pid = parse_pid(args.pid, USAGE)
    if pid is None:
        env.stdout.write(HELP_TEXT)
        return 0
    from zxmem.views import vmos as view

    if args.from_file is not None:
        from zxmem.commands.vmaps import saved_process

        common.live_only(*(["--exact"] if args.exact else []))
        snapshot, process = saved_process(args, env, pid, "vmo_refs")
    else:
        snapshot, process = _live(args, env, pid)
    if args.json:
        env.stdout.write(view.render_json(process, snapshot))
    else:
        env.stdout.write(view.render(process, snapshot, args.units,
                                     common.fit_width(args, env), common.use_color(args, env)))
    env.stdout.flush()
    unread = {w for w, _ in snapshot.provenance.denied if w.startswith("maps:")}
    if unread:
        n = len(unread)
        noun = "process" if n == 1 else "processes"
        env.stderr.write(
            f"zxmem: {n} {noun} not readable: #map and #shr count the others only\n"
        )
    return 0


def _live(args: argparse.Namespace, env, pid: int):
    """(snapshot, process) read from /proc: every process's maps, pid's smaps."""
    from zxmem.collection import collect_process

    # Every process's maps, so #map and #shr count the whole system; smaps
    # (page counts) only for this one.
    snapshot, process = collect_process(pid, common.proc_root(args, env), what="objects",
                                        whole_system=True)
    if args.exact:
        from zxmem.commands._exact import exact_vmos

        snapshot, process = exact_vmos(snapshot, pid, args, env)
    return snapshot, process
