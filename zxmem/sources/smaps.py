"""Pure parsers for ``/proc/PID/smaps`` and ``/proc/PID/maps``, one row per VMA.

Bytes in, columns out: the result is a :class:`VmaTable` of parallel lists
(one entry per VMA, in address order), because a process may have tens of
thousands of VMAs and building per-line Python objects is what makes other
tools slow.  Nothing here opens a file.

Format (``Documentation/filesystems/proc.rst`` §1.1, ``fs/proc/task_mmu.c``
``show_map_vma`` and ``__show_smap``; spec linux-kernel.md B.1):

* the maps header line ``start-end perms offset major:minor inode  path``:
  addresses and offset in hex, the device as ``%02x:%02x`` hex, the inode in
  decimal; the path starts after padding to column 73 on 64-bit kernels
  (``seq_pad``); a newline in a file name is printed as ``\\012``
  (``seq_file_path(m, file, "\\n")``), and an unlinked file ends in
  `` (deleted)``.
* smaps adds ``Key:  N kB`` lines and ends every VMA with ``VmFlags:``.

How the smaps parse stays fast: every VMA of one kernel prints the same keys
in the same order, so the file is a sequence of equal-sized blocks of lines.
Splitting a chunk into lines and slicing every n-th line gives one column
(``lines[k::stride]``), whose lines are looked up whole in a per-key dict of
byte counts (``Swap:  0 kB`` recurs in every process; a new line is split
and converted once) — no per-line Python code for the value lines.  The
layout is checked (every block starts with an address, every key column holds
one key); a chunk that does not fit falls back to a line-by-line parse.
:class:`SmapsStream` takes the file in pieces, so memory stays bounded by the
piece size rather than the file size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter

from zxmem.runtime import CACHE_LIMIT

KIB = 1024

# The smaps keys zxmem keeps (byte counts).  Others are skipped cheaply.
SMAPS_FIELDS = (
    "Rss",
    "Pss",
    "Shared_Clean",
    "Shared_Dirty",
    "Private_Clean",
    "Private_Dirty",
    "Anonymous",
    "Swap",
    "SwapPss",
    "Private_Hugetlb",
    "Shared_Hugetlb",
)

# The smaps fields vmaps prints by default (:res and the object split).
VMAPS_KEYS = ("Rss", "Anonymous")


class SmapsError(ValueError):
    """A maps/smaps text that does not have the expected shape."""


@dataclass(slots=True)
class VmaTable:
    """Parallel per-VMA columns (address order).

    ``fields`` maps a smaps key (``"Rss"``) to byte counts; it is empty for a
    parsed ``maps``.  ``vm_flags`` is None for ``maps`` (which has no flags).
    """

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    perms: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    devs: list[int] = field(default_factory=list)  # os.makedev(major, minor)
    inodes: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    fields: dict[str, list[int]] = field(default_factory=dict)
    vm_flags: list[str] | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def extend(self, other: VmaTable) -> None:
        self.starts += other.starts
        self.ends += other.ends
        self.perms += other.perms
        self.offsets += other.offsets
        self.devs += other.devs
        self.inodes += other.inodes
        self.paths += other.paths
        for key, values in other.fields.items():
            self.fields.setdefault(key, []).extend(values)
        if other.vm_flags is not None:
            if self.vm_flags is None:
                self.vm_flags = []
            self.vm_flags += other.vm_flags


def decode_path(raw: bytes) -> str:
    """A maps path as text: ``\\012`` back to a newline, bad UTF-8 as ``\\xNN``.

    The kernel escapes only the newline; a name that really contains the four
    characters ``\\012`` cannot be told apart (the same holds for every tool
    reading maps).
    """
    if b"\\012" in raw:
        raw = raw.replace(b"\\012", b"\n")
    return raw.decode("utf-8", "backslashreplace")


class _Cache(dict):
    """Decode each distinct byte string once (perms, devices, paths repeat)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def __missing__(self, key):
        if len(self) >= CACHE_LIMIT:
            self.clear()
        value = self[key] = self.fn(key)
        return value


def _dev(raw: bytes) -> int:
    major, _, minor = raw.partition(b":")
    try:
        return os.makedev(int(major, 16), int(minor, 16))
    except ValueError:
        raise SmapsError(f"bad device field {raw[:20]!r}") from None


_PERMS = _Cache(lambda raw: raw.decode("ascii", "replace"))
_DEVS = _Cache(_dev)
_PATHS = _Cache(decode_path)
# Offsets and inodes repeat (0 for every anonymous mapping, one inode per
# library): a dict lookup is cheaper than int().
_OFFSETS = _Cache(lambda raw: int(raw, 16))
_INODES = _Cache(int)
_FLAGS = _Cache(lambda raw: raw.partition(b":")[2].decode("ascii", "replace").strip())


def _split_header(line: bytes) -> list[bytes]:
    """[range, perms, offset, dev, inode, path] of one maps line."""
    parts = line.split(b" ", 5)
    if len(parts) < 5:
        raise SmapsError(f"bad maps line {line[:80]!r}")
    if len(parts) == 5:
        parts.append(b"")
    return parts


def _rest_to_path(rest: bytes) -> str:
    # show_map_vma prints the fixed fields and a space, pads with spaces to
    # column 72, then one more space and the path.  Leading spaces of a file
    # name are therefore indistinguishable from the padding and are dropped
    # (as by every maps reader).
    return decode_path(rest.lstrip(b" "))


_RESTS = _Cache(_rest_to_path)


# On 64-bit kernels show_map_vma pads the fixed fields to column 72
# (seq_setwidth(m, 25 + sizeof(void *) * 6 - 1)) and puts one more space
# before the path, so a path starts at column 73 whenever the fixed fields
# are shorter -- which the fast path below relies on and checks.
_FIXED = itemgetter(slice(0, 72))
_PATH_AT = itemgetter(slice(73, None))
_PAD_AT = itemgetter(slice(71, 73))
_PAD_OK = frozenset((b"", b" ", b"  "))


def _fixed_columns(headers: list[bytes]) -> list | None:
    """The six columns by position (no per-line Python code), or None."""
    if not _PAD_OK.issuperset(map(_PAD_AT, headers)):
        return None
    tokens = b" ".join(map(_FIXED, headers)).split()
    n = len(headers)
    if len(tokens) != 5 * n:
        return None
    return [
        tokens[0::5], tokens[1::5], tokens[2::5], tokens[3::5], tokens[4::5],
        list(map(_PATH_AT, headers)),
    ]


def parse_headers(headers: list[bytes]) -> VmaTable:
    """Columns from maps header lines (the whole of ``/proc/PID/maps``)."""
    t = VmaTable()
    if not headers:
        return t
    columns = _fixed_columns(headers)
    if columns is None:
        # Long fixed fields or a 32-bit layout: split each line.
        columns = list(zip(*map(_split_header, headers), strict=True))
    ranges, perms, offsets, devs, inodes, rests = columns
    try:
        bounds = list(map(int, b"-".join(ranges).split(b"-"), repeat(16)))
        t.starts = bounds[0::2]
        t.ends = bounds[1::2]
        if len(t.starts) != len(headers) or len(t.ends) != len(headers):
            raise ValueError("address range")
        t.offsets = list(map(_OFFSETS.__getitem__, offsets))
        t.inodes = list(map(_INODES.__getitem__, inodes))
    except ValueError as exc:
        raise SmapsError(f"bad maps header ({exc})") from None
    t.perms = list(map(_PERMS.__getitem__, perms))
    t.devs = list(map(_DEVS.__getitem__, devs))
    t.paths = list(map(_RESTS.__getitem__, rests))
    return t


def parse_maps(data: bytes, piece: int = 1 << 18) -> VmaTable:
    """Parse ``/proc/PID/maps`` (header lines only; no sizes, no flags).

    The text is parsed ``piece`` bytes at a time (cut at line ends), so the
    temporary per-line objects of 60,000 mappings are never all alive at
    once.
    """
    t = VmaTable()
    pos = 0
    size = len(data)
    while pos < size:
        cut = data.find(b"\n", min(pos + piece, size - 1))
        cut = size if cut < 0 else cut + 1
        lines = data[pos:cut].split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        t.extend(parse_headers(lines))
        pos = cut
    return t


def _is_header(line: bytes) -> bool:
    # Value lines start with an upper-case key; headers with a hex digit.
    return line[:1] in b"0123456789abcdef" and b"-" in line[:33]


def _parse_smaps_lines(lines: list[bytes], keys: tuple[str, ...]) -> VmaTable:
    """Parse complete VMAs (``lines`` has no trailing partial VMA)."""
    if not lines:
        t = VmaTable(vm_flags=[])
        t.fields = {k: [] for k in keys}
        return t
    if not _is_header(lines[0]):
        raise SmapsError(f"expected a maps line, got {lines[0][:60]!r}")
    stride = 1
    while stride < len(lines) and not _is_header(lines[stride]):
        stride += 1
    if len(lines) % stride == 0:
        fast = _columns(lines, stride, keys)
        if fast is not None:
            return fast
    return _slow(lines, keys)


class _ValueLines(dict):
    """Byte counts of one key's ``Key:   N kB`` lines, by the whole line.

    The same lines recur across VMAs and processes (``Swap:  0 kB``), so a
    dict lookup per line replaces splitting it and converting the number.
    A line that is not ``Key: N unit`` raises ValueError (and is not kept).
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.key = name.encode() + b":"

    def __missing__(self, line: bytes) -> int:
        tokens = line.split()
        if len(tokens) != 3 or tokens[0] != self.key:
            raise ValueError(f"bad {self.key!r} line")
        if len(self) >= CACHE_LIMIT:
            self.clear()
        value = self[line] = int(tokens[1]) * KIB
        return value


_VALUE_LINES: dict[str, _ValueLines] = {}


def _value_lines(name: str) -> _ValueLines:
    got = _VALUE_LINES.get(name)
    if got is None:
        got = _VALUE_LINES[name] = _ValueLines(name)
    return got


def _columns(lines: list[bytes], stride: int, keys: tuple[str, ...]) -> VmaTable | None:
    """The fast path: equal-sized blocks.  None if the layout does not fit."""
    block = lines[:stride]
    position: dict[bytes, int] = {}
    for i, line in enumerate(block[1:], 1):
        key, sep, _ = line.partition(b":")
        if not sep:
            return None
        position[key] = i
    flags_at = position.get(b"VmFlags")
    headers = lines[0::stride]
    n = len(headers)
    # Every block must start with a header and end with the same keys.
    if flags_at is not None:
        flag_lines = lines[flags_at::stride]
        if b"\n".join(flag_lines).count(b"VmFlags:") != n:
            return None
    t = parse_headers(headers)
    for name in keys:
        at = position.get(name.encode())
        if at is None:
            continue
        try:
            t.fields[name] = list(map(_value_lines(name).__getitem__, lines[at::stride]))
        except ValueError:
            return None
    if flags_at is not None:
        t.vm_flags = list(map(_FLAGS.__getitem__, lines[flags_at::stride]))
    else:
        t.vm_flags = None
    return t


def _slow(lines: list[bytes], keys: tuple[str, ...]) -> VmaTable:
    """Line-by-line parse for files whose VMAs differ in their keys."""
    wanted = {k.encode(): k for k in keys}
    headers: list[bytes] = []
    columns: dict[str, list[int | None]] = {k: [] for k in keys}
    flags: list[str] = []
    current: dict[str, int] = {}
    current_flags: str | None = None

    def flush() -> None:
        for k in keys:
            columns[k].append(current.get(k))
        flags.append(current_flags or "")

    for line in lines:
        if not line:
            continue
        if _is_header(line):
            if headers:
                flush()
            headers.append(line)
            current = {}
            current_flags = None
            continue
        key, sep, rest = line.partition(b":")
        if not sep or not headers:
            raise SmapsError(f"bad smaps line {line[:60]!r}")
        if key == b"VmFlags":
            current_flags = _FLAGS[line]
        elif key in wanted:
            try:
                current[wanted[key]] = int(rest.split()[0]) * KIB
            except (ValueError, IndexError):
                raise SmapsError(f"bad smaps value {line[:60]!r}") from None
    if headers:
        flush()
    t = parse_headers(headers)
    t.fields = {k: v for k, v in columns.items() if any(x is not None for x in v)}  # type: ignore[misc]
    t.vm_flags = flags
    return t


def parse_smaps(data: bytes, keys: tuple[str, ...] = SMAPS_FIELDS) -> VmaTable:
    """Parse a whole ``/proc/PID/smaps`` text."""
    stream = SmapsStream(keys)
    stream.feed(data)
    return stream.finish()


class SmapsStream:
    """Incremental smaps parser: :meth:`feed` pieces, then :meth:`finish`.

    Complete VMAs (up to the last ``VmFlags:`` line seen) are parsed as soon
    as about ``batch`` bytes are waiting, so the whole file is never held.
    Kernels older than 3.8 print no ``VmFlags``; then the text is parsed at
    :meth:`finish`.
    """

    def __init__(self, keys: tuple[str, ...] = SMAPS_FIELDS, batch: int = 1 << 18) -> None:
        self.keys = keys
        self.batch = batch
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.table = VmaTable(vm_flags=[])
        self.table.fields = {k: [] for k in keys}

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= self.batch:
            self._drain(final=False)

    def _drain(self, final: bool) -> None:
        buf = b"".join(self.pending)
        if final:
            cut = len(buf)
        else:
            last = buf.rfind(b"\nVmFlags:")
            if last < 0:
                return  # no complete VMA yet (or no VmFlags: wait for finish)
            cut = buf.find(b"\n", last + 1)
            if cut < 0:
                return
            cut += 1
        done, rest = buf[:cut], buf[cut:]
        self.pending = [rest] if rest else []
        self.pending_size = len(rest)
        lines = done.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        part = _parse_smaps_lines(lines, self.keys)
        self._append(part)

    def _append(self, part: VmaTable) -> None:
        n_before = len(self.table)
        self.table.extend(part)
        # Keys missing from a part (slow path) are unknown for its VMAs.
        for key in self.keys:
            column = self.table.fields.setdefault(key, [])
            want = n_before + len(part)
            if len(column) < want:
                column.extend([None] * (want - len(column)))  # type: ignore[list-item]

    def finish(self) -> VmaTable:
        if self.pending_size:
            self._drain(final=True)
        if not any(self.table.vm_flags or ()):
            if len(self.table) and self.table.vm_flags is not None and not any(
                self.table.vm_flags
            ):
                self.table.vm_flags = None
        self.table.fields = {
            k: v for k, v in self.table.fields.items() if len(self.table) == 0 or any(
                x is not None for x in v
            )
        }
        return self.table


def feed_all(chunks: Iterable[bytes], keys: tuple[str, ...] = SMAPS_FIELDS) -> VmaTable:
    """Parse smaps given as an iterable of byte pieces."""
    stream = SmapsStream(keys)
    for chunk in chunks:
        stream.feed(chunk)
    return stream.finish()
