"""Immutable record classes that are cheap to define: dataclasses for start-up.

``@dataclass(frozen=True, slots=True)`` costs ``zxmem ps`` dearly at start-up:
importing :mod:`dataclasses` imports :mod:`inspect` (and with it ``ast``,
``dis``, ``tokenize``), and each decorated class compiles half a dozen
generated methods and is then created a second time for its slots.  The
model's dozen classes took more time than everything ``ps`` reads on an idle
machine.

A :class:`Record` subclass is declared like a dataclass (annotated fields,
defaults after the fields without one)::

    class Thread(Record):
        koid: int
        name: str
        state: str = "new"

and behaves like a frozen, slotted dataclass: keyword or positional
``__init__`` (calling ``__post_init__`` when the class has one), ``__eq__``
between instances of the same class, ``__hash__``, ``__repr__``,
``__match_args__``, pickling and copying, and assignment raising
:class:`dataclasses.FrozenInstanceError`.  ``class Node(Record,
frozen=False)`` makes a mutable one (unhashable, as a dataclass with
``eq=True``).  Only ``__init__`` is generated, and only for a class that
makes many instances (one small ``exec``); the other methods are shared.

:func:`dataclasses.replace`, :func:`dataclasses.fields`,
:func:`dataclasses.asdict` and :func:`dataclasses.is_dataclass` work on
records: the class's ``__dataclass_fields__`` is built on first use (that is
when :mod:`dataclasses` is imported), from a dataclass of the same fields.
Type checkers see records as dataclasses (``dataclass_transform``).
Mutable defaults are not guarded against: use immutable ones
(``MappingProxyType({})``, tuples).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, TypeVar

    from typing_extensions import dataclass_transform

    _R = TypeVar("_R", bound="Record")
else:
    def dataclass_transform(**_options):
        return lambda obj: obj


class _Factory:
    """A field default made afresh for each instance (:func:`field`)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], Any]) -> Any:
    """A field whose default is ``default_factory()``, called for each
    instance (as :func:`dataclasses.field` with ``default_factory``)."""
    return _Factory(default_factory)


def replace(obj: _R, /, **changes: Any) -> _R:
    """A copy of the record ``obj`` with ``changes`` (as
    :func:`dataclasses.replace`, without importing :mod:`dataclasses`)."""
    values = {n: getattr(obj, n) for n in obj.__record_fields__
              if n not in changes}
    return obj.__class__(**values, **changes)


def _annotations(ns: dict[str, Any]) -> dict[str, Any]:
    found = ns.get("__annotations__")
    if found is not None:
        return dict(found)
    annotate = ns.get("__annotate__")  # Python 3.14 without the __future__ import
    if annotate is None:
        return {}
    import annotationlib  # type: ignore[import-not-found,unused-ignore]

    return dict(annotationlib.call_annotate_function(annotate, annotationlib.Format.FORWARDREF))


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class RecordMeta(type):
    """Turns annotated fields into slots and a generated ``__init__``."""

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any],
                frozen: bool = True, **kwargs: Any) -> RecordMeta:
        if not any(isinstance(b, RecordMeta) for b in bases):  # Record itself
            ns.update(__record_fields__=(), __record_defaults__={}, __record_types__={})
            return super().__new__(mcs, name, bases, ns, **kwargs)
        inherited: tuple[str, ...] = ()
        defaults: dict[str, Any] = {}
        types: dict[str, Any] = {}
        for base in reversed(bases):
            if isinstance(base, RecordMeta):
                inherited += base.__record_fields__
                defaults.update(base.__record_defaults__)
                types.update(base.__record_types__)
        own = {n: t for n, t in _annotations(ns).items() if not _is_classvar(t)}
        for field_name in own:
            if field_name in ns:
                defaults[field_name] = ns.pop(field_name)
            else:
                defaults.pop(field_name, None)
        types.update(own)
        names = inherited + tuple(n for n in own if n not in inherited)
        ns["__slots__"] = tuple(n for n in own if n not in inherited)
        ns["__record_fields__"] = names
        ns["__record_defaults__"] = defaults
        ns["__record_types__"] = types
        ns["__record_frozen__"] = frozen
        ns["__match_args__"] = names
        post_init = "__post_init__" in ns or any(hasattr(b, "__post_init__") for b in bases)
        if not frozen:
            ns["__setattr__"] = object.__setattr__
            ns["__delattr__"] = object.__delattr__
            ns["__hash__"] = None
        cls = super().__new__(mcs, name, bases, ns, **kwargs)
        type.__setattr__(cls, "__init__", _first_init(cls, names, defaults, frozen, post_init))
        return cls

    def __getattr__(cls, name: str) -> Any:
        if name != "__dataclass_fields__" or "__record_frozen__" not in cls.__dict__:
            raise AttributeError(name)
        built = _dataclass_fields(cls)
        type.__setattr__(cls, "__dataclass_fields__", built)
        return built


# Instances made by the generic __init__ before a class gets a compiled one.
_COMPILE_AFTER = 256


def _first_init(cls: type, names: tuple[str, ...], defaults: dict[str, Any],
                frozen: bool, post_init: bool) -> Any:
    """A generic ``__init__`` that hands over to a compiled one after
    ``_COMPILE_AFTER`` instances.  Compiling costs about 0.3 ms a class, as
    much as ``zxmem ps`` spends on reading a dozen processes, and most classes
    make few instances in a run (or none: ``ps`` makes no Mapping or Vmo);
    the compiled one is about twice as fast for the classes that make
    thousands."""
    made = 0
    setters: dict[str, Any] = {}

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal made
        made += 1
        if made > _COMPILE_AFTER:
            init = cls.__dict__["__init__"]
            if init is __init__:  # not replaced yet
                init = _make_init(cls.__name__, names, defaults, frozen, post_init)
                type.__setattr__(cls, "__init__", init)
            init(self, *args, **kwargs)
            return
        if not setters:  # the slots' own descriptors: they bypass a frozen __setattr__
            setters.update((n, getattr(cls, n).__set__) for n in names)
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments "
                            f"but {len(args)} were given")
        values = dict(zip(names, args, strict=False))  # fewer args than names: defaults
        for key, value in kwargs.items():
            if key not in setters:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"{cls.__name__}() got multiple values for argument {key!r}")
            values[key] = value
        for field_name in names:
            if field_name in values:
                value = values[field_name]
            elif field_name in defaults:
                value = defaults[field_name]
                if isinstance(value, _Factory):
                    value = value.make()
            else:
                raise TypeError(f"{cls.__name__}() missing required argument: {field_name!r}")
            setters[field_name](self, value)
        if post_init:
            self.__post_init__()

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


def _make_init(cls_name: str, names: tuple[str, ...], defaults: dict[str, Any],
               frozen: bool, post_init: bool) -> Any:
    params = []
    for i, field_name in enumerate(names):
        if field_name in defaults:
            params.append(f"{field_name}=_d{i}")
        else:
            params.append(field_name)
    assign = "_set(self, {0!r}, {0})" if frozen else "self.{0} = {0}"
    body = []
    for i, field_name in enumerate(names):
        if isinstance(defaults.get(field_name), _Factory):
            body.append(f"if {field_name} is _d{i}: {field_name} = _d{i}.make()")
        body.append(assign.format(field_name))
    body = body or ["pass"]
    if post_init:
        body.append("self.__post_init__()")
    source = (f"def __init__(self, {', '.join(params)}):\n    "
              + "\n    ".join(body) + "\n") if names else \
        ("def __init__(self):\n    " + "\n    ".join(body) + "\n")
    scope: dict[str, Any] = {"_set": object.__setattr__}
    for i, field_name in enumerate(names):
        if field_name in defaults:
            scope[f"_d{i}"] = defaults[field_name]
    exec(source, scope)  # noqa: S102 - our own field names, checked identifiers
    init = scope["__init__"]
    init.__qualname__ = f"{cls_name}.__init__"
    return init


def _constant(value: Any) -> Any:
    return lambda: value


def _dataclass_fields(cls: type) -> dict[str, Any]:
    """``__dataclass_fields__`` for ``cls``: those of a dataclass with the same
    fields, types and defaults (so every :mod:`dataclasses` function works)."""
    import dataclasses

    spec: list[Any] = []
    defaults = cls.__record_defaults__  # type: ignore[attr-defined]
    for field_name in cls.__record_fields__:  # type: ignore[attr-defined]
        kind = cls.__record_types__[field_name]  # type: ignore[attr-defined]
        if field_name not in defaults:
            spec.append((field_name, kind))
            continue
        value = defaults[field_name]
        if isinstance(value, _Factory):
            spec.append((field_name, kind, dataclasses.field(default_factory=value.make)))
        elif type(value).__hash__ is None:  # dataclasses refuses those as defaults
            spec.append((field_name, kind, dataclasses.field(default_factory=_constant(value))))
        else:
            spec.append((field_name, kind, dataclasses.field(default=value)))
    shadow = dataclasses.make_dataclass(
        cls.__name__, spec, frozen=cls.__record_frozen__)  # type: ignore[attr-defined]
    return dict(shadow.__dataclass_fields__)  # type: ignore[attr-defined]


class Record(metaclass=RecordMeta):
    """Base of record classes; see the module's documentation."""

    __slots__ = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, n) for n in self.__record_fields__])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}"
                          for n in self.__record_fields__)
        return f"{type(self).__qualname__}({inner})"

    def __setattr__(self, name: str, value: Any) -> None:
        import dataclasses

        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        import dataclasses

        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup failed: an instance asked for the
        # dataclass fields before its class was (dataclasses.fields(obj)).
        if name == "__dataclass_fields__":
            return getattr(type(self), name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> tuple[Any, ...]:
        return self._values()

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for field_name, value in zip(self.__record_fields__, state, strict=True):
            object.__setattr__(self, field_name, value)


def from_columns(cls: type[_R], n: int, *columns: Iterable[Any]) -> list[_R]:
    """``n`` instances of the record class ``cls`` from one column per field,
    in field order (instance ``i`` takes the ``i``-th value of each): equal
    to ``list(map(cls, *columns))``, two to three times faster for the
    tens of thousands of records a stored sample holds.  The instances are
    made empty and each column is stored through its slot's descriptor by
    ``map`` in C, where ``__init__`` sets the fields one by one in Python
    code.  Each column is a sequence of ``n`` values or an iterator of them
    that tells its length (``itertools.repeat(value, n)``; another iterator
    is made a list first).  ``cls`` has no ``__post_init__`` (it would not
    be called)."""
    from collections import deque
    from itertools import repeat
    from operator import length_hint

    names = cls.__record_fields__
    if len(columns) != len(names):
        raise TypeError(f"{cls.__name__}: {len(columns)} columns for {len(names)} fields")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__: build it with {cls.__name__}()")
    cols = [c if length_hint(c, -1) >= 0 else list(c) for c in columns]
    for field_name, column in zip(names, cols, strict=True):
        if length_hint(column) != n:
            raise ValueError(f"{cls.__name__}: column {field_name!r} does not hold {n} values")
    objs: list[Any] = list(map(object.__new__, repeat(cls, n)))
    for field_name, column in zip(names, cols, strict=True):
        deque(map(getattr(cls, field_name).__set__, objs, column), 0)
    return objs
