"""A command's arguments when it is given none, without loading argparse.

``zxmem ps`` with no option is the command run most often, and argparse (its
import, a help formatter per argument that asks the terminal its width, a
gettext catalogue search per message) took about a fifth of its start-up.
:func:`bare_command_args` runs the command module's own ``add_parser``
against a recorder and works out what argparse would return for ``zxmem
COMMAND`` alone: each option's default, as argparse gives it.

Anything the recorder does not model exactly (a positional argument, a
required option, a string default that argparse would convert with
``type``, a custom action, nested sub-commands, ...) makes it return None,
and the caller parses with argparse as usual.  ``tests/unit/test_cli_defaults.py``
compares the result with argparse's for every command.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_SUPPRESS = "==SUPPRESS=="  # argparse.SUPPRESS

# argparse's built-in actions and the default each gives when none is set.
_ACTION_DEFAULTS: dict[str, Any] = {
    "store": None, "store_const": None, "append": None, "append_const": None,
    "extend": None, "count": None, "store_true": False, "store_false": True,
}


class _Unsupported(Exception):
    """The recorder cannot say what argparse would do: use argparse."""


class _Recorder:
    """Stands for a sub-parser (and its argument groups) in ``add_parser``."""

    def __init__(self) -> None:
        self.actions: list[list[Any]] = []  # [dest, default], in order
        self.parser_defaults: dict[str, Any] = {}

    def add_argument(self, *flags: str, **kw: Any) -> None:
        if not flags or not all(f.startswith("-") for f in flags):
            raise _Unsupported("positional argument")
        action = kw.get("action", "store")
        if action in ("help", "version"):
            return
        if not isinstance(action, str) or action not in _ACTION_DEFAULTS:
            raise _Unsupported(f"action {action!r}")
        if kw.get("required"):
            raise _Unsupported("required option")
        dest = kw.get("dest")
        if dest is None:
            long = [f for f in flags if f.startswith("--")]
            dest = (long or list(flags))[0].lstrip("-").replace("-", "_")
        if "default" in kw:
            default = kw["default"]
        elif dest in self.parser_defaults:
            default = self.parser_defaults[dest]
        else:
            default = _ACTION_DEFAULTS[action]
        if kw.get("type") is not None:
            self._check_type(default)
        self.actions.append([dest, default, kw.get("type")])

    @staticmethod
    def _check_type(default: Any) -> None:
        if isinstance(default, str) and default != _SUPPRESS:
            raise _Unsupported("string default converted by type")

    def set_defaults(self, **kw: Any) -> None:
        self.parser_defaults.update(kw)
        for entry in self.actions:
            if entry[0] in kw:
                entry[1] = kw[entry[0]]
                if entry[2] is not None:
                    self._check_type(entry[1])

    def add_argument_group(self, *args: Any, **kw: Any) -> _Recorder:
        return self

    def add_mutually_exclusive_group(self, *args: Any, **kw: Any) -> _Recorder:
        if kw.get("required"):
            raise _Unsupported("required group")
        return self

    def __getattr__(self, name: str) -> Any:
        # Any other call (add_subparsers, ...) is beyond the recorder.
        raise _Unsupported(name)

    def namespace(self) -> dict[str, Any]:
        """As argparse fills its namespace: each action's default (the first
        action of a dest wins), then the parser's defaults not yet set."""
        out: dict[str, Any] = {}
        for dest, default, _type in self.actions:
            if dest not in out and default != _SUPPRESS:
                out[dest] = default
        for dest, default in self.parser_defaults.items():
            out.setdefault(dest, default)
        return out


class _Subparsers:
    """Stands for argparse's sub-parsers action: records one command."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.recorder: _Recorder | None = None

    def add_parser(self, name: str, **kw: Any) -> _Recorder:
        if name != self.name or kw.get("argument_default") is not None or \
                kw.get("prefix_chars", "-") != "-":
            raise _Unsupported(f"parser {name!r}")
        if self.recorder is not None:
            raise _Unsupported("two parsers")
        self.recorder = _Recorder()
        return self.recorder


def bare_command_args(name: str) -> SimpleNamespace | None:
    """What ``zxmem NAME`` (no further argument) parses to, or None when that
    cannot be told without argparse.  ``name`` must be a command module's."""
    module = importlib.import_module(f"zxmem.commands.{name}")
    sub = _Subparsers(name)
    try:
        module.add_parser(sub)
    except _Unsupported:
        return None
    if sub.recorder is None:
        return None
    return SimpleNamespace(command=name, **sub.recorder.namespace())
