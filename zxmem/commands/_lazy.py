"""Modules imported on first use, for command modules that start up often.

``from zxmem.commands._lazy import argparse`` gives a stand-in that imports
argparse when one of its names is first looked up: a command's ``type=``
checks can raise ``argparse.ArgumentTypeError`` (argparse is loaded by then,
since it is parsing), while ``zxmem ps`` with no option never loads it (see
:mod:`zxmem.commands._defaults`).  Type checkers should see the real module::

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        import argparse
    else:
        from zxmem.commands._lazy import argparse
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _LazyModule:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


argparse = _LazyModule("argparse")
