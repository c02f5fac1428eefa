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
from operator import attrgetter

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


def _basename(m: Mapping) -> str:
    if not m.path:
        return ""
    if m.dev == SHM_DEV and m.inode:
        return object_name(os.path.basename(strip_deleted(m.path)), m.dev, m.inode)
    # Off the shm mount the name depends on the path alone: computed once
    # per path (the same libraries are in every process).
    return _BASENAMES[m.path]


class _Basenames(dict):
    def __missing__(self, path: str) -> str:
        if len(self) >= CACHE_LIMIT:  # bounded: paths come and go over days
            self.clear()
        value = self[path] = object_name(os.path.basename(strip_deleted(path)))
        return value


_BASENAMES = _Basenames()


def _plain_anon(m: Mapping) -> bool:
    return m.inode == 0 and not m.path


def _stack_at(mappings: Sequence[Mapping], i: int) -> bool:
    """A guard page at ``i`` directly below a read-write anonymous mapping."""
    if i + 1 >= len(mappings):
        return False
    g, s = mappings[i], mappings[i + 1]
    return (
        _plain_anon(g) and _plain_anon(s) and g.end == s.start
        and g.perms[:3] == "---" and s.perms[:2] == "rw"
    )


def _file_region(mappings: Sequence[Mapping], i: int) -> Region | None:
    """The region of the file mapped at ``mappings[i]`` and on (an ELF image
    with its bss, or a file's consecutive mappings), or None for one lone
    mapping."""
    n = len(mappings)
    m = mappings[i]
    j = i + 1
    dev, inode = m.dev, m.inode
    code = m.perms[2] == "x"
    while j < n and inode:
        b = mappings[j]
        if b.inode != inode or b.dev != dev:
            break
        code = code or b.perms[2] == "x"
        j += 1
    # An ELF image starts at offset 0 and has code (r-x).
    elf = m.offset == 0 and not is_shm_internal(m) and code
    last = j
    if elf and j < n:
        b = mappings[j]
        if (
            b.start == mappings[j - 1].end
            and b.inode == 0
            and not b.path
            and b.perms[:2] == "rw"
            and b.end - b.start <= mappings[j - 1].end - m.start
        ):
            last = j + 1
    if last - i < 2:
        return None
    kind = "elf" if elf else "group"
    return Region(m.start, mappings[last - 1].end, _basename(m), kind, tuple(range(i, last)))


def find_regions(mappings: Sequence[Mapping]) -> tuple[Region, ...]:
    """Group ``mappings`` (address order) into regions; see the module doc.

    Only mappings that can start a region are visited: file and shmem
    mappings, ``PROT_NONE`` ones and those right before them (found with
    C-level ``map``/``compress``), so 30,000 anonymous mappings cost little.
    """
    out: list[Region] = []
    n = len(mappings)
    inodes = list(map(_INODE, mappings))
    is_none = list(map(_PROT_NONE.__getitem__, map(_PERMS, mappings)))
    nones = list(compress(range(n), is_none))
    candidates = sorted(
        set(compress(range(n), inodes)).union(nones, [i - 1 for i in nones if i])
    )
    free = 0  # mappings before this index are already in a region
    for i in candidates:
        if i < free:
            continue
        m = mappings[i]
        perms = m.perms
        if m.inode:
            region = _file_region(mappings, i)
            if region is not None:
                out.append(region)
                free = region.mapping_indices[-1] + 1
            continue
        if not m.path and i + 1 < n:
            b = mappings[i + 1]
            if b.inode == 0 and not b.path and b.start == m.end:
                if perms[:3] == "---" and b.perms[:2] == "rw":
                    out.append(Region(m.start, b.end, "stack", "stack", (i, i + 1)))
                    free = i + 2
                elif perms[:2] == "rw" and b.perms[:3] == "---" and not _stack_at(mappings, i + 1):
                    out.append(Region(m.start, b.end, "reservation", "group", (i, i + 1)))
                    free = i + 2
    return tuple(out)


class _Flags(dict):
    def __missing__(self, perms: str) -> bool:
        if len(self) >= CACHE_LIMIT:
            self.clear()
        value = self[perms] = perms[:3] == "---"
        return value


_PROT_NONE = _Flags()
_INODE = attrgetter("inode")
_END = attrgetter("end")
_PERMS = attrgetter("perms")
