"""Every function in zxmem/ fits on a screen: at most 60 lines (issue #11).

A function's length runs from its ``def`` line to the last line of its body,
docstring and comments included (decorators are not counted).  Methods and
nested functions are measured on their own as well as inside their parent;
they are named ``Class.method`` and ``outer.inner``.
"""

from __future__ import annotations

import ast
import pathlib

LIMIT = 60
PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "zxmem"


def function_lengths(source: str) -> dict[str, int]:
    """Qualified name -> lines from ``def`` to the end of the body."""
    lengths: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                end = child.end_lineno if child.end_lineno is not None else child.lineno
                # A name defined twice (a property's setter, a branch's
                # alternative) keeps its longest definition.
                lengths[name] = max(lengths.get(name, 0), end - child.lineno + 1)
                walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")
            else:
                walk(child, prefix)

    walk(ast.parse(source), "")
    return lengths


def package_lengths() -> dict[str, int]:
    found: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for name, n in function_lengths(path.read_text(encoding="utf-8")).items():
            found[f"{rel}::{name}"] = n
    return found


def test_every_function_fits_on_a_screen():
    lengths = package_lengths()
    over = sorted(f"{name} ({n} lines)" for name, n in lengths.items() if n > LIMIT)
    assert over == [], f"functions over {LIMIT} lines: split them: " + ", ".join(over)


def test_the_measure_counts_def_to_last_line():
    body = "".join(f"    x{i} = {i}\n" for i in range(LIMIT - 2))
    at_limit = f'def f():\n    """Doc."""\n{body}'
    assert function_lengths(at_limit) == {"f": LIMIT}
    over = f"@decorator\nclass C:\n    def m(self):\n        def inner():\n{body}" \
        "            pass\n" + "".join(f"        y{i} = {i}\n" for i in range(2))
    over = over.replace("\n    x", "\n            x")
    assert function_lengths(over) == {"C.m": LIMIT + 3, "C.m.inner": LIMIT}
