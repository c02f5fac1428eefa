"""The package's layers point one way (DESIGN.md):
sources -> model -> derived models and views -> commands and the CLI.

Checked from the source text (every import, at any depth), so a late import
inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "zxmem"

# Modules that are the command line: nothing below them may import them.
_CLI = ("zxmem.cli", "zxmem.commands", "zxmem._entry", "zxmem.__main__")
# The readers of the live system: only collection and commands start a read.
_READERS = ("zxmem.sources.linux", "zxmem.sources.objects", "zxmem.sources.hidden",
            "zxmem.sources.handles", "zxmem.sources.pagemap", "zxmem.sources.readfile",
            "zxmem.sources.cgroups", "zxmem.sources.objects_read", "zxmem.collection")


def _modules() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
        out[name] = {m for m in imported if m == "zxmem" or m.startswith("zxmem.")}
    return out


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(importers, forbidden: tuple[str, ...]) -> list[str]:
    """``importers``: module-name prefixes, or a predicate on a module name."""
    wanted = importers if callable(importers) else (lambda n: _within(n, importers))
    return sorted(
        f"{name} imports {target}"
        for name, targets in _modules().items() if wanted(name)
        for target in targets if _within(target, forbidden)
    )


def test_the_model_imports_no_other_part():
    # zxmem.record (the cheap dataclass stand-in) is below the model and
    # imports nothing of zxmem itself.
    assert sorted(_modules()["zxmem.model"]) == ["zxmem.record", "zxmem.record.Record"]
    assert sorted(_modules()["zxmem.record"]) == []


def test_only_the_command_line_imports_the_command_line():
    assert _violations(lambda n: not _within(n, _CLI), _CLI) == []


def test_sources_import_no_views():
    assert _violations(("zxmem.sources",), ("zxmem.views", "zxmem.collection")) == []


def test_views_and_derived_models_read_nothing_live():
    derived = ("zxmem.views", "zxmem.tasktree", "zxmem.regions", "zxmem.exact",
               "zxmem.exact_views",
               "zxmem.summary", "zxmem.digest", "zxmem.treemap", "zxmem.memgraph")
    assert _violations(derived, _READERS) == []


def test_the_check_sees_imports():
    # A check that finds nothing because it reads nothing would pass too.
    mods = _modules()
    assert "zxmem.model" in mods["zxmem.collection"]
    assert "zxmem.cli" in mods["zxmem._entry"]
