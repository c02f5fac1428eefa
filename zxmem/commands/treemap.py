"""``zxmem treemap``: an interactive picture of where all the memory is."""

from __future__ import annotations

import argparse

from zxmem import outfile
from zxmem.commands import common
from zxmem.textsafe import escape_terminal

HELP = "draw memory as a zoomable treemap in one self-contained HTML file"

DESCRIPTION = """\
Draw all physical memory as a treemap: kernel memory, free memory, and the
VMOs of every process, grouped by job (cgroup), in one HTML file that needs
no network (it opens from file:// and fetches nothing).

Boxes are sized as Fuchsia's treemap.py sizes them: a process is the sum of
its VMOs, each VMO's committed bytes divided among the address spaces that
map it (a VMO reached only through a descriptor counts its holder as one
more sharer); same-named VMOs of one process are one box, "name[n]". Without
VMO data a process shows its private and proportional shared bytes. On
Linux, objects no process maps (memfds held by descriptors, SysV segments,
tmpfs files) get a "hidden" branch when the snapshot has them, and
"unknown (kernel & unmapped)" is the rest of the VMO total. With --exact
(root, live system) the VMOs split every resident page exactly once: pages
several processes map (shared libraries, copy-on-write after fork) are VMOs
of their own, one per set of processes mapping them, so each process's box
is its exact PSS.

Input: --from FILE (a zxmem or Fuchsia memgraph, or a Fuchsia memory
capture; --from - reads standard input); else, when standard input is a pipe
or a file, the memgraph JSON on it (so 'zxmem memgraph -vt | zxmem treemap'
works); a pipe or file that ends without any data (e.g. 'true | zxmem
treemap') falls back to the live system, with a note on stderr; a terminal
or /dev/null on standard input means the live system. The page goes to
standard output, or to -o FILE.
"""

EPILOG = """\
examples:
  zxmem treemap -o mem.html                    the live system
  zxmem treemap --open                         ... and open it in a browser
  zxmem memgraph -vt | zxmem treemap > mem.html   a pipe on stdin is read
  zxmem treemap --from - < snap.json > mem.html   stdin, said explicitly
  zxmem treemap --from capture.json -o mem.html   a Fuchsia memory capture
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "treemap",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common.add_from(p)
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the page to FILE: a regular file is replaced only once the "
                   "page is complete; a device, FIFO or link is written through "
                   "('-': standard output)")
    p.add_argument("--open", dest="open_browser", action="store_true",
                   help="open the page in a web browser (written to a temporary file "
                        "unless -o is given)")
    p.add_argument("--show-aggregated", action="store_true",
                   help="keep the members of name[n] boxes as their children")
    p.add_argument("--exact", action="store_true",
                   help="process, mapping and object numbers from page tables (root): "
                   "pages several processes map are objects of their own (one per set of "
                   "processes), so a process's box is its exact PSS")
    common.add_proc_root(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    from zxmem.errors import UsageError
    from zxmem.treemap import tree_from_snapshot
    from zxmem.views.treemap_html import render_html

    if args.open_browser and args.output == outfile.STDOUT_ARG:
        raise UsageError("treemap: --open needs a file, not -o - (standard output)")
    if outfile.to_stdout(args.output) and not args.open_browser and env.is_terminal():
        raise UsageError(
            "treemap: not writing HTML to a terminal: use -o FILE, --open, or redirect"
        )
    snapshot, origin = _snapshot(args, env)
    tree = tree_from_snapshot(snapshot, hide_aggregated=not args.show_aggregated)
    p = snapshot.provenance
    page = render_html(
        tree,
        {
            "source": p.source,
            "file": origin,
            "host": p.host,
            "kernel": p.kernel,
            "timestamp": p.timestamp,
        },
    )
    path = args.output
    if path is None and args.open_browser:
        path = outfile.write_temp(page, prefix="zxmem-treemap-", suffix=".html")
    else:
        outfile.write_result(path, page, env.stdout)
    if args.open_browser:
        _open(path, env)
    note = common.unreadable_note(snapshot)
    if note:
        env.stderr.write(f"zxmem: {escape_terminal(note)}\n")
    return 0


def _snapshot(args: argparse.Namespace, env):
    """The snapshot and where it came from (a file name, or None for live)."""
    from zxmem.collection import Plan
    from zxmem.sources.load import load_snapshot

    if args.from_file is not None:
        origin = "<stdin>" if args.from_file == "-" else args.from_file
        # objects: a history store's objects sample reads its mappings too (the
        # boxes of anonymous and clone objects are the PSS of their mappings).
        return common.snapshot_from_args(args, env, Plan(objects=True)), origin
    if _stdin_has_data(env):
        stream = _nonblank_stdin(env.stdin)
        if stream is not None:
            return load_snapshot(stream), "<stdin>"
        # 'true | zxmem treemap', or a cron job's empty file: nothing was
        # sent, so draw the live system rather than fail on "empty input".
        env.stderr.write("zxmem: standard input is empty: drawing the live system\n")
    # Kernel stats (the kernel boxes; a recorded tree without meminfo sums
    # its processes instead), memory objects (the VMO boxes), the objects
    # no process maps (the hidden branch) and each job's cgroup charge (its
    # unmapped page cache box).
    plan = Plan(status=True, kernel=True, objects=True, hidden=True, cgroup_memory=True)
    snapshot = common.snapshot_from_args(args, env, plan)
    if args.exact:
        from zxmem.commands._exact import exact_graph

        snapshot = exact_graph(snapshot, args, env)
    return snapshot, None


class _Prefixed:
    """A stream that gives back the bytes already read from it, then the rest."""

    def __init__(self, head, stream, name: str) -> None:
        self.head = head
        self.stream = stream
        self.name = name

    def read(self, size: int = -1):
        if self.head:
            head, self.head = self.head, self.head[:0]
            return head
        return self.stream.read(size)


def _nonblank_stdin(stdin):
    """Standard input with its first chunks put back, or None when it ends
    with nothing but blanks (the caller then draws the live system)."""
    stream = getattr(stdin, "buffer", stdin)
    parts = []
    while True:
        chunk = stream.read(1 << 16)
        if not chunk:
            return None
        parts.append(chunk)
        if chunk.strip():
            return _Prefixed(chunk[:0].join(parts), stream, "<stdin>")


def _stdin_has_data(env) -> bool:
    """True when standard input is a pipe or a non-empty file (not a tty).

    ``/dev/null`` and other character devices mean "no input", so
    ``zxmem treemap -o mem.html < /dev/null`` (cron, CI) draws the live
    system.  A stream without a descriptor (tests) counts as a pipe.
    """
    import io
    import os
    import stat

    stdin = env.stdin
    if stdin is None:
        return False
    try:
        if stdin.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    try:
        st = os.fstat(stdin.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return True
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        return True
    if stat.S_ISREG(st.st_mode):
        try:
            return st.st_size > os.lseek(stdin.fileno(), 0, os.SEEK_CUR)
        except OSError:
            return st.st_size > 0
    return False


def _open(path: str, env) -> None:
    import pathlib
    import webbrowser

    url = pathlib.Path(path).resolve().as_uri()
    if not webbrowser.open(url):
        env.stderr.write(f"zxmem: no browser found; open {url}\n")
    else:
        env.stderr.write(f"zxmem: opened {url}\n")
