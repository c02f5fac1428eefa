"""Typed field readers: every value a saved snapshot gives the model is checked here.

The loaders (zxmem's and Fuchsia's memgraph, Fuchsia's capture) read JSON a
person or another program wrote.  A value of the wrong type or range must
not reach the model: ``committed_bytes`` as a string would surface later as
a ``TypeError`` in a sum, a negative mapping size as ``-4k`` in a table,
``NaN`` as ``nan.nank``.  So each value is checked against the model
field's annotation (``int``, ``str | None``, ``tuple[str, ...]``, ...)
when the dataclass is built, and a mismatch is a :class:`FieldError`
naming the field's path (``linux.mappings[3].rss_bytes``); the loader adds
the file and the record.

Integers are unsigned 64-bit (koids, byte counts, addresses, inode numbers,
counts: Zircon and Linux keep all of them as ``uint64``/``unsigned
long``); the values of a mapping of named counters (``meminfo``, kernel
``extra``) may be signed 64-bit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from functools import cache
from types import MappingProxyType
from typing import Any, Literal, TypeGuard, overload

U64 = 1 << 64
MAX_U64 = U64 - 1
_S64 = 1 << 63


class FieldError(ValueError):
    """A value the model cannot take: the message starts with its path."""


def describe(value: Any, limit: int = 40) -> str:
    """A JSON rendering of ``value`` for an error message, cut to ``limit``
    characters."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_int(value: object) -> TypeGuard[int]:
    """An integer, not a boolean (JSON's ``true`` is a Python int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_u64(value: object) -> TypeGuard[int]:
    """An integer (not a boolean) from 0 to 2**64 - 1."""
    return type(value) is int and 0 <= value < U64


@overload
def u64(value: Any, path: str, optional: Literal[False] = False) -> int: ...
@overload
def u64(value: Any, path: str, optional: bool) -> int | None: ...
def u64(value: Any, path: str, optional: bool = False) -> int | None:
    """``value`` if it is an unsigned 64-bit integer (or None when ``optional``)."""
    if is_u64(value):
        return value
    if value is None and optional:
        return None
    raise FieldError(f"{path}: expected an integer from 0 to 2**64 - 1, found {describe(value)}")


@cache
def _split(annotation: str) -> tuple[str, ...]:
    """Top-level alternatives of ``A | B`` (a ``|`` inside brackets stays)."""
    out, depth, start = [], 0, 0
    for i, c in enumerate(annotation):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == "|" and depth == 0:
            out.append(annotation[start:i].strip())
            start = i + 1
    out.append(annotation[start:].strip())
    return tuple(out)


@cache
def _args(annotation: str) -> tuple[str, ...]:
    """``K, V`` of ``X[K, V]``, split at top-level commas."""
    inner = annotation[annotation.index("[") + 1:-1]
    out, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(inner[start:i].strip())
            start = i + 1
    out.append(inner[start:].strip())
    return tuple(out)


def _classes() -> dict[str, type]:
    from zxmem import model

    return {name: getattr(model, name) for name in (
        "CgroupMemory", "Denied", "Job", "KernelStats", "Mapping", "MemoryCounts", "Process",
        "Provenance",
        "Region", "Thread", "Vmo", "VmoRef")}


_CLASSES: dict[str, type] = {}


def value(annotation: str, v: Any, path: str) -> Any:
    """``v`` as the model field typed ``annotation`` holds it, or :class:`FieldError`.

    JSON arrays become tuples, objects read-only mappings; a model object
    built by the loader passes as it is.
    """
    return checker(annotation)(v, path)


def _fail(base: str, v: Any, path: str) -> FieldError:
    return FieldError(f"{path}: expected {_wanted(base)}, found {describe(v)}")


Checker = Callable[[Any, str], Any]
# Elements of a tuple field checked by their type alone.
_PLAIN_TYPES: dict[str, set[type]] = {"str": {str}, "int": {int}}


@cache
def checker(annotation: str) -> Checker:
    """A function ``(value, path) -> value`` for ``annotation`` (see :func:`value`),
    made once per annotation: loading checks a million values."""
    alternatives = _split(annotation)
    optional = "None" in alternatives
    base = next((a for a in alternatives if a != "None"), "None")
    if base in ("int", "str", "bool"):
        return _scalar_checker(base, optional)
    if base.startswith("tuple["):
        return _tuple_checker(base, optional)
    if base.startswith(("_Mapping[", "Mapping[")):
        return _mapping_checker(base, optional)
    return _class_checker(base, optional)


def _scalar_checker(base: str, optional: bool) -> Checker:
    """The checker of an ``int`` (unsigned 64-bit), ``str`` or ``bool``."""
    if base == "int":
        def check_int(v: Any, path: str) -> Any:
            if type(v) is int and 0 <= v < U64:
                return v
            if v is None and optional:
                return None
            raise _fail(base, v, path)
        return check_int
    if base == "str":
        def check_str(v: Any, path: str) -> Any:
            if type(v) is str or (v is None and optional) or isinstance(v, str):
                return v
            raise _fail(base, v, path)
        return check_str

    def check_bool(v: Any, path: str) -> Any:
        if type(v) is bool or (v is None and optional):
            return v
        raise _fail(base, v, path)
    return check_bool


def _tuple_checker(base: str, optional: bool) -> Checker:
    """The checker of a ``tuple[X, ...]``: a list or tuple of X, as a tuple."""
    element = _args(base)[0]
    inner = checker(element)
    plain = _PLAIN_TYPES.get(element)

    def check(v: Any, path: str) -> Any:
        nonlocal plain
        if isinstance(v, (list, tuple)):
            if not v:
                return ()
            if plain is None and element not in ("Denied", "None"):
                if not _CLASSES:
                    _CLASSES.update(_classes())
                plain = {_CLASSES[element]} if element in _CLASSES else set()
            if plain and set(map(type, v)) <= plain and (
                    element != "int" or (min(v) >= 0 and max(v) < U64)):
                # Checked in C: most arrays are of plain values, or of
                # model objects the loader built.
                return v if type(v) is tuple else tuple(v)
            return tuple(inner(x, f"{path}[{i}]") for i, x in enumerate(v))
        if v is None and optional:
            return None
        raise _fail(base, v, path)
    return check


def _mapping_checker(base: str, optional: bool) -> Checker:
    """The checker of a ``Mapping[str, X]``, as a read-only mapping."""
    _key, val = _args(base)
    counters = val in ("int", "int | None")
    inner = checker(val)
    nullable = val != "int"

    def check(v: Any, path: str) -> Any:
        if v is None and optional:
            return None
        if not isinstance(v, Mapping):
            raise _fail(base, v, path)
        out = {}
        for k, x in v.items():
            if counters:
                # Named counters: signed 64-bit.
                if not (x is None and nullable) and not (
                        type(x) is int and -_S64 <= x < U64):
                    raise FieldError(f"{path}.{k}: expected an integer, found {describe(x)}")
                out[k] = x
            else:
                out[k] = inner(x, f"{path}.{k}")
        return MappingProxyType(out)
    return check


def _class_checker(base: str, optional: bool) -> Checker:
    """The checker of a model class (a Denied also from a pair of strings)."""
    def check_class(v: Any, path: str) -> Any:
        if v is None:
            if optional:
                return None
            raise FieldError(f"{path}: expected {_wanted(base)}, found null")
        if not _CLASSES:
            _CLASSES.update(_classes())
        cls = _CLASSES.get(base)
        if cls is not None and isinstance(v, cls):
            return v
        if cls is not None and base == "Denied" and isinstance(v, (list, tuple)) \
                and len(v) == 2 and all(isinstance(x, str) for x in v):
            return cls(*v)
        raise _fail(base, v, path)
    return check_class


def _wanted(base: str) -> str:
    if base == "int":
        return "an integer from 0 to 2**64 - 1"
    if base == "str":
        return "a string"
    if base == "bool":
        return "true or false"
    if base.startswith("tuple["):
        return "an array"
    if base.startswith(("_Mapping[", "Mapping[")):
        return "an object"
    return f"a {base}"


# cls -> [(name, annotation, required, checker)]
_FIELDS: dict[type, list[tuple[str, str, bool, Any]]] = {}


def _field_info(cls: type) -> list[tuple[str, str, bool, Any]]:
    info = _FIELDS.get(cls)
    if info is None:
        info = _FIELDS[cls] = [
            (f.name, str(f.type), f.default is MISSING and f.default_factory is MISSING,
             checker(str(f.type)))
            for f in fields(cls)]
    return info


def field_types(cls: type) -> list[tuple[str, str, bool]]:
    """``(name, annotation, required)`` of each field of dataclass ``cls``."""
    return [(n, a, r) for n, a, r, _c in _field_info(cls)]


def build(cls: type, values: Mapping[str, Any], path: str = "",
          extras: Mapping[str, Any] | None = None, extras_path: str | None = None) -> Any:
    """``cls(**values, **extras)`` with every value checked; keys ``cls`` lacks
    are ignored and ``values`` win over ``extras``.

    ``path`` (``"vmos[3]."``) prefixes field names of ``values`` in errors,
    ``extras_path`` (default ``path + "linux."``) those of ``extras``.
    """
    kwargs = {}
    for name, _annotation, required, check in _field_info(cls):
        if name in values:
            kwargs[name] = check(values[name], path + name)
        elif extras and name in extras:
            where = path + "linux." if extras_path is None else extras_path
            kwargs[name] = check(extras[name], where + name)
        elif required:
            raise FieldError(f"{path}{name}: missing")
    return cls(**kwargs)
