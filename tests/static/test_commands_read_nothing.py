"""Commands never read the live system themselves: every read goes through
:mod:`zxmem.collection` (DESIGN.md: "commands never open /proc themselves").

Checked from the source text of every module under ``zxmem/commands/``:
no file is opened or listed, no reader module is imported, no ``read_*``
function of a source is called, and no ``/proc`` or ``/sys`` path is built.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

COMMANDS = Path(__file__).resolve().parents[2] / "zxmem" / "commands"

# The modules that read the live system; only zxmem.collection may use them.
READERS = ("zxmem.sources.linux", "zxmem.sources.objects", "zxmem.sources.hidden",
           "zxmem.sources.handles", "zxmem.sources.pagemap", "zxmem.sources.readfile",
           "zxmem.sources.cgroups", "zxmem.sources.objects_read")
# module.function calls that touch the file system.
_FILE_CALLS = {("os", "open"), ("io", "open"), ("gzip", "open"), ("os", "listdir"),
               ("os", "readlink"), ("os", "pread"), ("os", "read")}
# Methods of pathlib.Path that read a file, whatever the receiver is named.
_PATH_READS = {"read_text", "read_bytes"}
# A string that is a path under /proc or /sys, or one built under a root
# ("{root}/sys/...", "{proc}/{pid}/maps"): one word that starts so.  Prose
# that names a file ("/proc/iomem addresses hidden") is not a path.
_PATH = re.compile(r"^(?:/proc(?:/|$)|/sys(?:/|$)|\{\}/)")


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _text(node: ast.JoinedStr) -> str:
    return "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str)
                   else "{}" for v in node.values)


def _path_like(text: str) -> bool:
    words = text.split()
    return len(words) == 1 and bool(_PATH.match(words[0]))


def problems(source: str, name: str) -> list[str]:
    """Every way ``source`` (a command module's text) reads the system itself."""
    tree = ast.parse(source, name)
    out: list[str] = []
    sources_names: set[str] = set()  # local names bound to zxmem.sources modules
    in_fstring: set[int] = set()
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            out += [f"{where} imports {m}" for m in sorted(mods) if _within(m, READERS)]
            if node.module.startswith("zxmem.sources"):
                for a in node.names:
                    if a.name.startswith("read_"):
                        out.append(f"{where} imports {node.module}.{a.name}")
                    sources_names.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            out += [f"{where} imports {a.name}" for a in node.names
                    if _within(a.name, READERS)]
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id == "open":
                out.append(f"{where} calls open()")
            elif isinstance(f, ast.Attribute):
                if isinstance(f.value, ast.Name) and (f.value.id, f.attr) in _FILE_CALLS:
                    out.append(f"{where} calls {f.value.id}.{f.attr}()")
                elif f.attr in _PATH_READS:
                    out.append(f"{where} calls .{f.attr}()")
        elif isinstance(node, ast.JoinedStr):
            in_fstring.update(id(v) for v in node.values)
            if _path_like(_text(node)):
                out.append(f"{where} builds the path {_text(node)!r}")
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in sources_names and node.attr.startswith("read_")):
            out.append(f"{where} calls {node.value.id}.{node.attr}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in in_fstring and _path_like(node.value)):
            out.append(f"{where} names the path {node.value!r}")
    return out


def test_no_command_reads_the_system_itself():
    found = []
    for path in sorted(COMMANDS.glob("*.py")):
        found += problems(path.read_text(), f"zxmem/commands/{path.name}")
    assert found == []


def test_the_check_finds_each_way_of_reading():
    # A check that finds nothing because it looks at nothing would pass too.
    bad = '''
from zxmem.sources import objects, kernel
from zxmem.sources.pagemap import scan
import zxmem.sources.linux
from zxmem.sources.cgmem import read_system_memory
def f(root, pid, p):
    open(f"{root}/{pid}/maps")
    os.open("/proc/kpagecount", 0)
    kernel.read_cpu_counters(root)
    p.read_text()
    return f"{root}/sys/kernel/osrelease", "/sys/vm/mmap_min_addr"
'''
    found = problems(bad, "bad.py")
    for what in ("imports zxmem.sources.objects", "imports zxmem.sources.pagemap",
                 "imports zxmem.sources.linux", "cgmem.read_system_memory", "calls open()",
                 "calls os.open()", "kernel.read_cpu_counters", ".read_text()",
                 "'{}/{}/maps'", "'/proc/kpagecount'", "'{}/sys/kernel/osrelease'",
                 "'/sys/vm/mmap_min_addr'"):
        assert any(what in f for f in found), (what, found)


def test_prose_about_proc_is_not_a_path():
    ok = '''
HELP = "descriptors, from the links in /proc/PID/fd"
def f(root):
    raise ValueError(f"--proc-root {root}: not a /proc tree")
    notes.append(f"/proc/{name} is readable only by root")
'''
    assert problems(ok, "ok.py") == []
