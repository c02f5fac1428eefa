"""What a cgroup is charged: its memory files (spec linux-kernel B.9).

Parsers (pure functions of bytes) for ``memory.stat``, ``memory.events``,
``memory.oom_control``, the PSI files (``memory.pressure``,
``/proc/pressure/memory``), single-value files (``memory.current``,
``memory.max``…) and ``/proc/vmstat``; and :func:`read_cgroup_memory`, which
reads one cgroup directory into a :class:`CgroupMemory`.

cgroup v2 names its files ``memory.current``, ``memory.max``, ``memory.high``,
``memory.low``, ``memory.min``, ``memory.events``, ``memory.pressure``.
cgroup v1 (the memory controller) has ``memory.usage_in_bytes``,
``memory.limit_in_bytes``, ``memory.soft_limit_in_bytes``,
``memory.kmem.usage_in_bytes``, ``memory.failcnt`` and ``memory.oom_control``
(whose ``oom_kill`` line is the v1 OOM-kill counter); v1 has no per-cgroup
pressure file.  A file that is missing or unreadable leaves its field
``None`` and is listed in ``CgroupMemory.missing`` with the reason; nothing
unknown becomes 0.

A limit is bytes, or the string ``"max"`` when there is none (v2 writes
``max``; v1 writes ``PAGE_COUNTER_MAX`` pages, 9223372036854771712 bytes on
4 KiB pages, which is read as ``"max"`` too).
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Mapping
from types import MappingProxyType

from zxmem.model import CgroupMemory

# v1 writes PAGE_COUNTER_MAX * PAGE_SIZE for "no limit": LONG_MAX rounded
# down to a page.  Anything this large is no limit on any page size.
_V1_NO_LIMIT = 1 << 62

# Files read per version: (file, field).
V2_FILES = ("memory.current", "memory.stat", "memory.max", "memory.high", "memory.low",
            "memory.min", "memory.events", "memory.pressure", "memory.swap.current")
V1_FILES = ("memory.usage_in_bytes", "memory.stat", "memory.limit_in_bytes",
            "memory.soft_limit_in_bytes", "memory.kmem.usage_in_bytes", "memory.failcnt",
            "memory.oom_control")

# What the ps --cgroup columns need (CHARGED, LIMIT, FILE, KERNEL).
V2_COLUMN_FILES = ("memory.current", "memory.stat", "memory.max")
V1_COLUMN_FILES = ("memory.usage_in_bytes", "memory.stat", "memory.limit_in_bytes",
                   "memory.kmem.usage_in_bytes")

# /proc/vmstat counters the system-wide view shows.
VMSTAT_KEYS = ("oom_kill", "pgmajfault", "pswpin", "pswpout")


class CgroupParseError(ValueError):
    """A cgroup memory file that does not have the kernel's format."""


def parse_keyed(data: bytes, what: str) -> dict[str, int]:
    """``KEY VALUE`` lines (memory.stat, memory.events, oom_control, vmstat)."""
    out: dict[str, int] = {}
    for n, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise CgroupParseError(f"{what}: line {n}: expected 'KEY VALUE', found {line[:80]!r}")
        try:
            value = int(parts[1])
        except ValueError:
            raise CgroupParseError(
                f"{what}: line {n}: value of {parts[0][:40]!r} is not an integer") from None
        out[parts[0].decode("ascii", "replace")] = value
    return out


def parse_value(data: bytes, what: str) -> int:
    """A one-number file such as ``memory.current``."""
    try:
        return int(data.strip())
    except ValueError:
        raise CgroupParseError(f"{what}: expected an integer, found {data[:40]!r}") from None


def parse_limit(data: bytes, what: str) -> int | str:
    """A limit file: bytes, or ``"max"`` (v2 ``max``, v1 PAGE_COUNTER_MAX)."""
    text = data.strip()
    if text == b"max":
        return "max"
    value = parse_value(text, what)
    return "max" if value >= _V1_NO_LIMIT else value


def parse_pressure(data: bytes, what: str) -> dict[str, dict[str, float | int]]:
    """A PSI file: ``some``/``full`` → ``avg10``, ``avg60``, ``avg300`` (percent),
    ``total_us`` (microseconds stalled).  ``full`` is absent on kernels that
    print only ``some``."""
    out: dict[str, dict[str, float | int]] = {}
    for n, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        parts = line.split()
        kind = parts[0].decode("ascii", "replace")
        if kind not in ("some", "full"):
            raise CgroupParseError(f"{what}: line {n}: expected 'some' or 'full', found {kind!r}")
        rec: dict[str, float | int] = {}
        for item in parts[1:]:
            key, sep, value = item.partition(b"=")
            try:
                if key == b"total":
                    rec["total_us"] = int(value)
                elif key in (b"avg10", b"avg60", b"avg300"):
                    rec[key.decode()] = float(value)
                else:
                    continue
            except ValueError:
                raise CgroupParseError(
                    f"{what}: line {n}: {key.decode('ascii', 'replace')} is not a number"
                ) from None
            if not sep:
                raise CgroupParseError(f"{what}: line {n}: expected KEY=VALUE")
        for field in ("avg10", "avg60", "avg300", "total_us"):
            if field not in rec:
                raise CgroupParseError(f"{what}: line {n}: no {field.removesuffix('_us')}")
        out[kind] = rec
    if "some" not in out:
        raise CgroupParseError(f"{what}: no 'some' line")
    return out


def _errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def _read(path: str) -> bytes:
    # cgroup files are single seq_file records of a few KiB at most; cap the
    # read so a wrong path (a FIFO, a huge file) cannot make it unbounded.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        # A seq_file renders the whole record and returns it in one read when
        # the buffer is large enough: a short read is the end (no read of 0).
        data = os.read(fd, 65536)
        if len(data) < 65536:
            return data
        chunks = [data]
        total = len(data)
        while total < (1 << 20):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


# (file, parser, CgroupMemory field), parsed in this order.
_V2_FIELDS = (
    ("memory.current", parse_value, "charged_bytes"),
    ("memory.max", parse_limit, "limit_bytes"),
    ("memory.high", parse_limit, "high_bytes"),
    ("memory.low", parse_limit, "low_bytes"),
    ("memory.min", parse_limit, "min_bytes"),
    ("memory.swap.current", parse_value, "swap_bytes"),
    ("memory.stat", parse_keyed, "stat"),
    ("memory.events", parse_keyed, "events"),
    ("memory.pressure", parse_pressure, "pressure"),
)
_V1_FIELDS = (
    ("memory.usage_in_bytes", parse_value, "charged_bytes"),
    ("memory.limit_in_bytes", parse_limit, "limit_bytes"),
    ("memory.soft_limit_in_bytes", parse_limit, "soft_limit_bytes"),
    ("memory.kmem.usage_in_bytes", parse_value, "kernel_bytes"),
    ("memory.stat", parse_keyed, "stat"),
)


def _parse_v2(parse, values: dict) -> None:
    """The v2 files into ``values`` (``parse(file, parser, key=field)``)."""
    for name, parser, key in _V2_FIELDS:
        parse(name, parser, key=key)
    stat = values.get("stat")
    if stat is not None and "kernel" in stat:
        values["kernel_bytes"] = stat["kernel"]
    elif stat is not None and "kernel_stack" in stat:
        # Before 5.18 there was no "kernel" key: sum its documented parts.
        values["kernel_bytes"] = sum(
            stat.get(k, 0)
            for k in ("kernel_stack", "pagetables", "sec_pagetables", "percpu", "vmalloc",
                      "slab_reclaimable", "slab_unreclaimable"))


def _parse_v1(parse, values: dict) -> None:
    """The v1 files into ``values`` (``parse(file, parser, key=field)``)."""
    for name, parser, key in _V1_FIELDS:
        parse(name, parser, key=key)
    events: dict[str, int] = {}
    parse("memory.oom_control", parse_keyed, key="_oom")
    oom = values.pop("_oom", None)
    if oom is not None and "oom_kill" in oom:
        events["oom_kill"] = oom["oom_kill"]
    parse("memory.failcnt", parse_value, key="_failcnt")
    failcnt = values.pop("_failcnt", None)
    if failcnt is not None:
        events["failcnt"] = failcnt
    if oom is not None or failcnt is not None:
        values["events"] = events


def read_cgroup_memory(directory: str, version: str,
                       columns_only: bool = False) -> CgroupMemory | None:
    """Read the memory files of the cgroup at ``directory`` (``"v2"`` or ``"v1"``).

    Returns None when the directory itself is gone or unreadable (a cgroup
    removed during the scan, a recording without its ``/sys``): then nothing
    at all is known about its charge.  A single file that is missing,
    unreadable or malformed leaves its field unknown and is named in
    ``missing`` with the reason (``ENOENT``, ``EACCES``, ``malformed: …``).
    ``columns_only`` reads just what the ``ps --cgroup`` columns show
    (``*_COLUMN_FILES``); the other fields stay None (not read, not missing).
    """
    files: tuple[str, ...]
    if columns_only:
        files = V2_COLUMN_FILES if version == "v2" else V1_COLUMN_FILES
    else:
        files = V2_FILES if version == "v2" else V1_FILES
    raw: dict[str, bytes] = {}
    missing: list[tuple[str, str]] = []
    for name in files:
        try:
            raw[name] = _read(os.path.join(directory, name))
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR) and not os.path.isdir(directory):
                return None
            missing.append((name, _errname(exc)))
    if not raw:
        return None

    values: dict = {}

    def parse(name: str, parser, *, key: str) -> None:
        data = raw.get(name)
        if data is None:
            return
        try:
            values[key] = parser(data, name)
        except CgroupParseError as exc:
            missing.append((name, f"malformed: {exc}"))

    (_parse_v2 if version == "v2" else _parse_v1)(parse, values)
    for key in ("stat", "events"):
        if key in values:
            values[key] = MappingProxyType(values[key])
    if "pressure" in values:
        values["pressure"] = MappingProxyType(
            {k: MappingProxyType(v) for k, v in values["pressure"].items()})
    return CgroupMemory(version=version, missing=tuple(missing), **values)


def read_system_memory(proc_root: str) -> dict:
    """System-wide: ``/proc/pressure/memory`` and a few ``/proc/vmstat`` counters.

    ``{"pressure": {...} | None, "vmstat": {key: int}, "missing": [[file, why]]}``;
    a counter the kernel does not print is absent.
    """
    out: dict = {"pressure": None, "vmstat": {}, "missing": []}
    try:
        out["pressure"] = parse_pressure(_read(f"{proc_root}/pressure/memory"),
                                         "/proc/pressure/memory")
    except OSError as exc:
        out["missing"].append(["/proc/pressure/memory", _errname(exc)])
    except CgroupParseError as exc:
        out["missing"].append(["/proc/pressure/memory", f"malformed: {exc}"])
    try:
        data = _read(f"{proc_root}/vmstat")
        for line in data.split(b"\n"):
            key, _, value = line.partition(b" ")
            name = key.decode("ascii", "replace")
            if name in VMSTAT_KEYS and value.strip().isdigit():
                out["vmstat"][name] = int(value)
    except OSError as exc:
        out["missing"].append(["/proc/vmstat", _errname(exc)])
    return out


def cgroup_to_json(cg: CgroupMemory) -> dict:
    """The ``cgroup`` object of ``ps --json`` and memgraph (unknown = null)."""
    return {
        "version": cg.version,
        "charged_bytes": cg.charged_bytes,
        "kernel_bytes": cg.kernel_bytes,
        "swap_bytes": cg.swap_bytes,
        "limit_bytes": cg.limit_bytes,
        "high_bytes": cg.high_bytes,
        "low_bytes": cg.low_bytes,
        "min_bytes": cg.min_bytes,
        "soft_limit_bytes": cg.soft_limit_bytes,
        "stat": dict(cg.stat) if cg.stat is not None else None,
        "events": dict(cg.events) if cg.events is not None else None,
        "pressure": ({k: dict(v) for k, v in cg.pressure.items()}
                     if cg.pressure is not None else None),
        "missing": [[f, why] for f, why in cg.missing],
    }


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _limit_or_none(value) -> int | str | None:
    if value == "max":
        return "max"
    return _int_or_none(value)


def _int_map(value) -> Mapping[str, int] | None:
    if not isinstance(value, dict):
        return None
    return MappingProxyType({str(k): v for k, v in value.items()
                             if isinstance(v, int) and not isinstance(v, bool)})


def cgroup_from_json(obj) -> CgroupMemory | None:
    """Inverse of :func:`cgroup_to_json`; values of the wrong type are unknown."""
    if not isinstance(obj, dict):
        return None
    pressure = obj.get("pressure")
    if isinstance(pressure, dict):
        pressure = MappingProxyType({
            str(k): MappingProxyType({str(a): b for a, b in v.items()
                                      if isinstance(b, int | float) and not isinstance(b, bool)
                                      and math.isfinite(b)})
            for k, v in pressure.items() if isinstance(v, dict)})
    else:
        pressure = None
    raw_missing = obj.get("missing")
    missing = tuple((str(m[0]), str(m[1])) for m in
                    (raw_missing if isinstance(raw_missing, list) else ())
                    if isinstance(m, list) and len(m) == 2)
    return CgroupMemory(
        version=str(obj.get("version") or ""),
        charged_bytes=_int_or_none(obj.get("charged_bytes")),
        kernel_bytes=_int_or_none(obj.get("kernel_bytes")),
        swap_bytes=_int_or_none(obj.get("swap_bytes")),
        limit_bytes=_limit_or_none(obj.get("limit_bytes")),
        high_bytes=_limit_or_none(obj.get("high_bytes")),
        low_bytes=_limit_or_none(obj.get("low_bytes")),
        min_bytes=_limit_or_none(obj.get("min_bytes")),
        soft_limit_bytes=_limit_or_none(obj.get("soft_limit_bytes")),
        stat=_int_map(obj.get("stat")),
        events=_int_map(obj.get("events")),
        pressure=pressure,
        missing=missing,
    )
