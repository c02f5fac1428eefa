"""``zxmem treemap``: an interactive picture of where all the memory is."""

from __future__ import annotations

import argparse

from zxmem.commands import common

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
"unknown (kernel & unmapped)" is the rest of the VMO total.

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
                   help="write the page to FILE (replaced only once complete)")
    p.add_argument("--open", dest="open_browser", action="store_true",
                   help="open the page in a web browser (written to a temporary file "
                        "unless -o is given)")
    p.add_argument("--show-aggregated", action="store_true",
                   help="keep the members of name[n] boxes as their children")
    p.add_argument("--exact", action="store_true",
                   help="process, mapping and anonymous-object numbers from page tables "
                   "(root); fork's copy-on-write clones")
    common.add_proc_root(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    from zxmem.errors import UsageError
    from zxmem.treemap import tree_from_snapshot
    from zxmem.views.treemap_html import render_html

    if args.output is None and not args.open_browser and env.is_terminal():
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
        path = _temp_page(page)
    elif path is not None:
        _write_atomic(path, page)
    else:
        env.stdout.write(page)
        env.stdout.flush()
    if args.open_browser:
        _open(path, env)
    note = common.unreadable_note(snapshot)
    if note:
        env.stderr.write(f"zxmem: {note}\n")
    return 0


def _snapshot(args: argparse.Namespace, env):
    """The snapshot and where it came from (a file name, or None for live)."""
    from zxmem.sources.linux import CollectOptions
    from zxmem.sources.load import load_snapshot

    if args.from_file is not None:
        origin = "<stdin>" if args.from_file == "-" else args.from_file
        return common.snapshot_from_args(args, env, None), origin
    if _stdin_has_data(env):
        stream = _nonblank_stdin(env.stdin)
        if stream is not None:
            return load_snapshot(stream), "<stdin>"
        # 'true | zxmem treemap', or a cron job's empty file: nothing was
        # sent, so draw the live system rather than fail on "empty input".
        env.stderr.write("zxmem: standard input is empty: drawing the live system\n")
    snapshot = common.snapshot_from_args(args, env, CollectOptions(status=True,
                                                                       cgroup_memory=True))
    snapshot = _add_live_details(snapshot, common.proc_root(args, env))
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


def _add_live_details(snapshot, root: str):
    """Kernel stats (the kernel boxes), memory objects (the VMO boxes) and
    hidden objects (the hidden branch).

    Without kernel stats (a recorded tree without ``meminfo``) the tree sums
    its processes.
    """
    from dataclasses import replace

    from zxmem.sources import kernel as kernel_source

    if snapshot.kernel is None:
        try:
            kstats, notes = kernel_source.read_kernel_stats_with_notes(root)
        except (OSError, ValueError):
            pass  # a recorded tree without meminfo: no kernel boxes
        else:
            prov = snapshot.provenance
            snapshot = replace(snapshot, kernel=kstats,
                               provenance=replace(prov, notes=prov.notes + tuple(notes)))
    from zxmem.sources.hidden import add_hidden
    from zxmem.sources.objects import add_objects

    snapshot = add_objects(snapshot, proc_root=root)
    # Objects no process maps (SysV segments, tmpfs files, the Shmem
    # remainder): the "hidden" branch.
    return add_hidden(snapshot, root)


def _write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    import os
    import tempfile

    from zxmem.errors import ZxmemError

    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".zxmem-", suffix=".html", dir=directory)
    except OSError as exc:
        raise ZxmemError(f"-o {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ZxmemError(f"-o {path}: {exc.strerror}") from None


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_page(text: str) -> str:
    import os
    import tempfile

    fd, path = tempfile.mkstemp(prefix="zxmem-treemap-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _open(path: str, env) -> None:
    import pathlib
    import webbrowser

    url = pathlib.Path(path).resolve().as_uri()
    if not webbrowser.open(url):
        env.stderr.write(f"zxmem: no browser found; open {url}\n")
    else:
        env.stderr.write(f"zxmem: opened {url}\n")
