"""Address-space structure of a process: regions (``R`` in vmaps) and names.

Linux has no VMARs: an address space is a flat list of VMAs.  zxmem groups
mappings that belong together into regions, the way Zircon's loader and
thread library create sub-VMARs (spec fuchsia-tools §3, DESIGN.md):

* ``elf`` — one loaded object: consecutive mappings of the same file whose
  first mapping has file offset 0 and one of which is executable (the ELF
  header and its code; ld.so maps text, rodata,
  relro and data of one object back to back, with ``---p`` padding of the
  same file in between on some linkers), plus the anonymous writable mapping
  directly after the last file mapping (``.bss`` beyond the file's end) when
  it is no larger than the file mappings' span: maps does not say where a
  ``.bss`` ends, and an unrelated ``mmap`` may land right after a library.
* ``stack`` — a thread stack: a ``PROT_NONE`` anonymous guard mapping
  directly below a read-write anonymous mapping (glibc ``allocate_stack``
  mmaps the stack and ``mprotect``\\s its lowest pages to ``PROT_NONE``).
* ``group`` — other runs that belong together: consecutive mappings of one
  file or shmem object that is not an ELF image (a file mapped in pieces, a
  memfd with one part made read-only), and a read-write anonymous mapping
  followed directly by a ``PROT_NONE`` reservation (glibc malloc arenas
  reserve 64 MiB and make the front part read-write as the heap grows).

A region needs at least two mappings; a mapping belongs to at most one
region.  Every function here is pure (mappings in, values out), so views and
sources can share them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import compress
from operator import attrgetter, ne

from zxmem.model import DEFAULT_MMAP_MIN_ADDR, INODE_KOID_BASE, Mapping, Region
from zxmem.runtime import CACHE_LIMIT
from zxmem.sources.procfs import SHM_DEV

# The kernel's special mappings: names in brackets, no file.
_SPECIAL = ("[heap]", "[stack]", "[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]")

# Zircon's name for an unnamed anonymous mapping (seed sample: 'mmap-anonymous').
ANON_NAME = "mmap-anonymous"

# x86-64/arm64 with 4-level page tables: TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE.
TASK_SIZE_47 = (1 << 47) - 4096
# 5-level page tables (la57) allow user addresses up to 2**56.
TASK_SIZE_56 = (1 << 56) - 4096
# Addresses from here on are the kernel half ([vsyscall] lives there).
KERNEL_HALF = 1 << 63


def is_deleted(path: str) -> bool:
    return path.endswith(" (deleted)")


def strip_deleted(path: str) -> str:
    return path[: -len(" (deleted)")] if path.endswith(" (deleted)") else path


def is_anonymous(m: Mapping) -> bool:
    """No backing object: private anonymous memory (heap, stacks, mmap)."""
    return m.inode == 0 and (not m.path or m.path[0] == "[")


def is_shm_internal(m: Mapping) -> bool:
    """On the kernel-internal shm mount (dev 00:01): memfd, SysV, shared anon."""
    return m.dev == SHM_DEV and m.inode != 0


def object_name(path: str, dev: int = 0, inode: int = 0) -> str:
    """The VMO name of the object behind a mapping path.

    * files: the path as maps prints it (`` (deleted)`` kept);
    * memfd ``/memfd:NAME (deleted)``: ``memfd:NAME``;
    * SysV ``/SYSV0000002a (deleted)``: ``SYSV0000002a``;
    * shared anonymous ``/dev/zero (deleted)`` on the shm mount: ``[anon_shmem]``
      (the kernel's own word for it);
    * anonymous: the bracketed maps name (``[heap]``, ``[stack]``,
      ``[anon:NAME]``), or ``mmap-anonymous`` as in the seed.
    """
    if not path:
        return ANON_NAME
    if path[0] == "[":
        return path
    if dev == SHM_DEV and inode:
        bare = strip_deleted(path)
        if bare.startswith("/memfd:"):
            return bare[1:]
        if bare.startswith("/SYSV"):
            return bare[1:]
        if bare == "/dev/zero":
            return "[anon_shmem]"
        return bare
    return path


def mapping_name(m: Mapping) -> str:
    """The name vmaps prints for a mapping: its object's name.

    A private file mapping that is its own copy-on-write clone (its koid is
    a sequence koid although it has an inode) is named ``data:<basename>``,
    the Linux form of the seed's ``data:libbacktrace.so``.
    """
    if m.inode and m.vmo_koid < INODE_KOID_BASE and not m.path.startswith("["):
        return "data:" + os.path.basename(strip_deleted(m.path))
    return object_name(m.path, m.dev, m.inode)


def address_space(
    mappings: Sequence[Mapping], min_addr: int = DEFAULT_MMAP_MIN_ADDR
) -> tuple[int, int]:
    """The ``/A`` range: ``vm.mmap_min_addr`` to the end of user space.

    The end is 2**47 − 4 KiB unless a mapping lies above it (5-level page
    tables), then 2**56 − 4 KiB.  Kernel-half mappings (``[vsyscall]``) do not
    count; they lie outside the address space and vmaps lists them anyway.
    """
    top = max(filter(KERNEL_HALF.__gt__, map(_END, mappings)), default=0)
    end = TASK_SIZE_47 if top <= TASK_SIZE_47 else TASK_SIZE_56
    return min(min_addr, mappings[0].start) if mappings else min_addr, end


def _basename(path: str, dev: int, inode: int) -> str:
    if not path:
        return ""
    if dev == SHM_DEV and inode:
        return object_name(os.path.basename(strip_deleted(path)), dev, inode)
    # Off the shm mount the name depends on the path alone: computed once
    # per path (the same libraries are in every process).
    return _BASENAMES[path]


class _Basenames(dict):
    def __missing__(self, path: str) -> str:
        if len(self) >= CACHE_LIMIT:  # bounded: paths come and go over days
            self.clear()
        value = self[path] = object_name(os.path.basename(strip_deleted(path)))
        return value


_BASENAMES = _Basenames()


def find_regions(mappings: Sequence[Mapping]) -> tuple[Region, ...]:
    """Group ``mappings`` (address order) into regions; see the module doc."""
    if not mappings:
        return ()
    return regions_of_columns(
        list(map(_START, mappings)), list(map(_END, mappings)), list(map(_PERMS, mappings)),
        list(map(_OFFSET, mappings)), list(map(_DEV, mappings)), list(map(_INODE, mappings)),
        list(map(_PATH, mappings)))


def regions_of_columns(starts: Sequence[int], ends: Sequence[int], perms: Sequence[str],
                       offsets: Sequence[int], devs: Sequence[int], inodes: Sequence[int],
                       paths: Sequence[str]) -> tuple[Region, ...]:
    """:func:`find_regions` of the mappings whose fields are these parallel
    columns (address order), as a source has them before it builds the
    records: the same regions, without a record read field by field.

    Only rows that can start a region are visited: the first row of each
    run of one file (the runs found with C-level ``map``/``compress``),
    ``PROT_NONE`` rows and those right before them, so thousands of
    anonymous mappings, or of file mappings in long runs, cost little.
    """
    n = len(starts)
    if not n:
        return ()
    # Where the (dev, inode) identity changes: each file run is one of these
    # to the next.
    ident = list(zip(devs, inodes, strict=True))
    changes = list(compress(range(n), map(ne, ident, [None, *ident[:-1]])))
    run_end = dict(zip(changes, [*changes[1:], n], strict=True))
    runs = compress(changes, map(inodes.__getitem__, changes))
    nones = list(compress(range(n), map(_PROT_NONE.__getitem__, perms)))
    candidates = sorted(set(runs).union(nones, [i - 1 for i in nones if i])) if nones \
        else list(runs)
    found: list[tuple[int, int, str, str, tuple[int, ...]]] = []
    free = 0  # rows before this index are already in a region
    for i in candidates:
        if i < free:
            continue
        if inodes[i]:
            last = j = run_end[i]
            elf = offsets[i] == 0 and devs[i] != SHM_DEV and any(
                map(_CODE.__getitem__, perms[i:j]))
            # An ELF image's bss: anonymous, read-write, right after the last
            # file row, and no larger than the file rows' span.
            if elf and j < n and inodes[j] == 0 and not paths[j] and starts[j] == ends[j - 1] \
                    and perms[j][:2] == "rw" and ends[j] - starts[j] <= ends[j - 1] - starts[i]:
                last = j + 1
            if last - i >= 2:
                found.append((starts[i], ends[last - 1], _basename(paths[i], devs[i], inodes[i]),
                              "elf" if elf else "group", tuple(range(i, last))))
                free = last
            continue
        if paths[i] or i + 1 >= n:
            continue
        j = i + 1
        if inodes[j] == 0 and not paths[j] and starts[j] == ends[i]:
            p, q = perms[i], perms[j]
            if p[:3] == "---" and q[:2] == "rw":
                found.append((starts[i], ends[j], "stack", "stack", (i, j)))
                free = i + 2
            elif p[:2] == "rw" and q[:3] == "---" and not (
                    j + 1 < n and inodes[j + 1] == 0 and not paths[j + 1]
                    and starts[j + 1] == ends[j] and perms[j + 1][:2] == "rw"):
                # (not the guard page of a stack that starts at j)
                found.append((starts[i], ends[j], "reservation", "group", (i, j)))
                free = i + 2
    return tuple([Region(*r) for r in found])


class _Code(dict):
    def __missing__(self, perms: str) -> bool:
        if len(self) >= CACHE_LIMIT:
            self.clear()
        value = self[perms] = perms[2:3] == "x"
        return value


_CODE = _Code()


class _Flags(dict):
    def __missing__(self, perms: str) -> bool:
        if len(self) >= CACHE_LIMIT:
            self.clear()
        value = self[perms] = perms[:3] == "---"
        return value


_PROT_NONE = _Flags()
_START = attrgetter("start")
_END = attrgetter("end")
_PERMS = attrgetter("perms")
_OFFSET = attrgetter("offset")
_DEV = attrgetter("dev")
_INODE = attrgetter("inode")
_PATH = attrgetter("path")
