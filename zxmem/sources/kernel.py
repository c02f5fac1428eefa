"""Kernel memory and CPU counters: pure parsers plus one small reader.

This module is the Linux side of Zircon's ``zx_info_kmem_stats`` (what
``kstats -m`` and memgraph's kernel records print) and of
``zx_info_cpu_stats`` (``kstats -c``).  The parsers take bytes and never open
files; :func:`read_kernel_stats` and :func:`read_kernel_stats_with_notes` are
the only functions here that touch a ``/proc`` tree, and its root is a
parameter so recorded trees work the same as the live one.

Kernel references (spec ``linux-kernel.md`` B.5, B.6, B.15):

* ``/proc/meminfo`` — ``fs/proc/meminfo.c`` (``meminfo_proc_show``),
  ``Documentation/filesystems/proc.rst`` "meminfo".  Values are kB (KiB)
  except the ``HugePages_*`` counts.
* ``/proc/slabinfo`` — ``mm/slab_common.c`` (``cache_show``), version 2.1.
* ``/proc/vmallocinfo`` — ``mm/vmalloc.c`` (``vmalloc_info_show``).
* ``/proc/net/sockstat`` — ``net/ipv4/proc.c`` (``sockstat_seq_show``).
* ``/proc/iomem`` — ``kernel/resource.c``; addresses are zero for non-root.
* ``/proc/stat``, ``/proc/interrupts``, ``/proc/softirqs`` —
  ``fs/proc/stat.c``, ``fs/proc/interrupts.c``, ``fs/proc/softirqs.c``.

The column formulas (every one is also written in ``zxmem kstats --help``):

==========  ===============================================================
column      Linux formula
==========  ===============================================================
total       ``MemTotal``
free        ``MemFree``
VMOs        ``Active + Inactive + Unevictable + Hugetlb`` (the LRU lists:
            anonymous memory, page cache, shmem; plus hugetlb pools)
heap        ``Slab + VmallocUsed + Percpu + (KReclaimable − SReclaimable)``
            (``total_heap_bytes``: every page the kernel's allocators own)
free_heap   ``Σ (num_objs − active_objs) × objsize`` over ``/proc/slabinfo``
            (kfree: free object slots inside slab pages; root only)
kheap       ``heap − free_heap``
wired       ``Σ "System RAM" in /proc/iomem − MemTotal`` (kernel image,
            memblock reservations, ``struct page`` arrays; root only)
mmu         ``PageTables + SecPageTables``
ipc         ``(TCP mem + UDP mem) × page size + FRAG memory`` from
            ``/proc/net/sockstat`` (socket buffers; pipes are not counted
            anywhere by the kernel)
other       ``MemTotal − free − VMOs − heap − KernelStack* − mmu − Zswap −
            Balloon − Unaccepted``; ``KernelStack*`` is 0 when thread stacks
            are vmalloc'ed (``CONFIG_VMAP_STACK``), because ``VmallocUsed``
            already holds them
==========  ===============================================================

``ipc`` is not subtracted in ``other``: socket buffers are slab objects and
page fragments, already inside ``heap`` or the remainder, so subtracting them
would count them twice.  ``wired`` lies outside ``MemTotal`` and is not part
of the sum either.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType

from zxmem.model import PAGE_SIZE, KernelStats

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up
    from typing import TypeVar

    from zxmem.sources.procfs import TaskStat

    _T = TypeVar("_T")

KIB = 1024

# x86_64 and arm64 both use 16 KiB kernel stacks (arch/x86/include/asm/
# page_64_types.h: THREAD_SIZE_ORDER 2, doubled under KASAN;
# arch/arm64/include/asm/memory.h: THREAD_SHIFT 14).  Other architectures
# are not guessed.
THREAD_SIZES = MappingProxyType({"x86_64": 16 * KIB, "aarch64": 16 * KIB, "arm64": 16 * KIB})

# vmalloc callers that allocate thread stacks under CONFIG_VMAP_STACK: the
# allocation happens in alloc_thread_stack_node() (kernel/fork.c), which the
# compiler may inline into its callers, so the symbol can be any of these.
_STACK_CALLERS = frozenset(
    (b"alloc_thread_stack_node", b"dup_task_struct", b"copy_process", b"kernel_clone")
)


class ParseError(ValueError):
    """A kernel file whose contents do not have the expected shape."""


# --------------------------------------------------------------------------
# /proc/meminfo


def parse_meminfo(data: bytes) -> tuple[dict[str, int], dict[str, int]]:
    """Parse ``/proc/meminfo`` by key, never by position.

    Returns ``(sizes, counts)``: ``sizes`` maps every ``kB`` field to bytes;
    ``counts`` holds the fields without a unit (``HugePages_Total``,
    ``HugePages_Free``, ``HugePages_Rsvd``, ``HugePages_Surp``), which are
    page counts of the default huge page size.  Fields a kernel does not
    print are simply absent (callers treat that as unknown).
    """
    sizes: dict[str, int] = {}
    counts: dict[str, int] = {}
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        key, sep, rest = line.partition(b":")
        if not sep:
            raise ParseError(f"meminfo: no ':' in {line[:60]!r}")
        parts = rest.split()
        try:
            value = int(parts[0])
        except (ValueError, IndexError):
            raise ParseError(f"meminfo: bad value in {line[:60]!r}") from None
        name = key.strip().decode("ascii", "replace")
        if len(parts) > 1 and parts[1] == b"kB":
            sizes[name] = value * KIB
        else:
            counts[name] = value
    if not sizes:
        raise ParseError("meminfo: no 'Key: N kB' lines")
    return sizes, counts


# --------------------------------------------------------------------------
# /proc/slabinfo


@dataclass(frozen=True, slots=True)
class SlabCache:
    """One ``/proc/slabinfo`` row (version 2.x)."""

    name: str
    active_objs: int
    num_objs: int
    objsize: int
    objperslab: int
    pagesperslab: int
    num_slabs: int

    @property
    def free_bytes(self) -> int:
        """Free object slots: ``(num_objs − active_objs) × objsize``."""
        return max(0, self.num_objs - self.active_objs) * self.objsize


def parse_slabinfo(data: bytes) -> tuple[SlabCache, ...]:
    """Parse ``/proc/slabinfo`` version 2.0/2.1.

    Line 1 is ``slabinfo - version: 2.1``, line 2 a ``#`` header; each cache
    line is ``name active_objs num_objs objsize objperslab pagesperslab :
    tunables … : slabdata active_slabs num_slabs sharedavail``.  Under SLUB,
    objects on per-CPU slabs count as active, so free slots are a lower bound.
    """
    lines = data.split(b"\n")
    if not lines or not lines[0].startswith(b"slabinfo - version: 2."):
        raise ParseError("slabinfo: not version 2.x")
    out = []
    for line in lines[1:]:
        if not line or line.startswith(b"#"):
            continue
        fields = line.split()
        try:
            colon = fields.index(b"slabdata")
            out.append(
                SlabCache(
                    name=fields[0].decode("utf-8", "backslashreplace"),
                    active_objs=int(fields[1]),
                    num_objs=int(fields[2]),
                    objsize=int(fields[3]),
                    objperslab=int(fields[4]),
                    pagesperslab=int(fields[5]),
                    num_slabs=int(fields[colon + 2]),
                )
            )
        except (ValueError, IndexError):
            raise ParseError(f"slabinfo: malformed line {line[:60]!r}") from None
    return tuple(out)


def slab_free_bytes(caches: tuple[SlabCache, ...]) -> int:
    """kfree: the free object slots of every cache, in bytes."""
    return sum(c.free_bytes for c in caches)


# --------------------------------------------------------------------------
# /proc/vmallocinfo


@dataclass(frozen=True, slots=True)
class VmallocArea:
    """One ``/proc/vmallocinfo`` line (B.6).

    ``start``/``end`` are as printed: hashed unless ``kptr_restrict`` lets
    the reader see real addresses.  ``pages`` is the RAM the area holds
    (``None`` for areas without ``pages=``: ioremap, vmap of others' pages).
    """

    start: int
    end: int
    size_bytes: int
    caller: str
    pages: int | None
    phys: int | None
    kind: str  # vmalloc, vmap, ioremap, user, vpages, vm_map_ram, unpurged, ""


_VMALLOC_KINDS = (b"vmalloc", b"vmap", b"ioremap", b"user", b"vpages", b"vm_map_ram")


def _vmalloc_area(line: bytes) -> VmallocArea:
    """One non-empty ``/proc/vmallocinfo`` line (see :func:`parse_vmallocinfo`)."""
    fields = line.split()
    try:
        start_s, _, end_s = fields[0].partition(b"-")
        start, end = int(start_s, 16), int(end_s, 16)
        size = int(fields[1])
    except (ValueError, IndexError):
        raise ParseError(f"vmallocinfo: malformed line {line[:60]!r}") from None
    caller = ""
    pages = phys = None
    kind = ""
    try:
        for f in fields[2:]:
            if f.startswith(b"pages="):
                pages = int(f[6:])
            elif f.startswith(b"phys="):
                phys = int(f[5:], 16)
            elif f in _VMALLOC_KINDS:
                kind = f.decode()
            elif f == b"unpurged":
                kind = "unpurged"
            elif f == b"vm_area" or (f[:1] == b"N" and b"=" in f):
                continue
            elif not caller:
                caller = f.decode("utf-8", "backslashreplace")
    except ValueError:
        raise ParseError(f"vmallocinfo: bad pages= or phys= in {line[:60]!r}") from None
    return VmallocArea(start, end, size, caller, pages, phys, kind)


def parse_vmallocinfo(data: bytes) -> tuple[VmallocArea, ...]:
    """Parse ``/proc/vmallocinfo``.

    Line shape: ``<start>-<end> <size> [<caller>] [pages=N] [phys=ADDR]
    [kind…] [N<node>=n…]``; lazily freed areas end in ``unpurged vm_area``
    and ``vm_map_ram`` areas carry no caller.
    """
    return tuple(_vmalloc_area(line) for line in data.split(b"\n") if line)


def vmalloc_pages_bytes(areas: Iterable[VmallocArea], page_size: int = PAGE_SIZE) -> int:
    """RAM held by vmalloc areas: ``Σ pages=`` × page size (= ``VmallocUsed``)."""
    return sum(a.pages for a in areas if a.pages) * page_size


def stack_vmalloc_bytes(areas: Iterable[VmallocArea], page_size: int = PAGE_SIZE) -> int:
    """RAM of vmalloc'ed thread stacks (``CONFIG_VMAP_STACK``), live and cached."""
    total = 0
    for a in areas:
        if a.pages and a.kind == "vmalloc":
            func = a.caller.encode().split(b"+", 1)[0]
            if func in _STACK_CALLERS:
                total += a.pages
    return total * page_size


@dataclass(frozen=True, slots=True)
class VmallocSums:
    """The two numbers the kernel counters need from ``/proc/vmallocinfo``."""

    pages_bytes: int  # Σ pages= (vmalloc_pages_bytes)
    stack_bytes: int  # Σ pages= of vmalloc'ed thread stacks (stack_vmalloc_bytes)


# A newline followed by a line whose first two fields are not what
# parse_vmallocinfo wants (a hex range and a decimal size, then whitespace
# or the line's end).  Searched in b"\n" + data: anchoring on the newline
# rather than on ^ under re.M makes the scan several times faster.
_VMALLOC_ODD_LINE = re.compile(
    rb"\n(?!(?:0[xX])?[0-9a-fA-F]+-(?:0[xX])?[0-9a-fA-F]+[ \t]+[0-9]+(?:[ \t]|$))[^\n]",
    re.M)


# The usual shape of an area that holds pages: ``<range> <size> <caller>
# [[module]] pages=N <kinds…> [N<node>=n…]``, matched within one line.
_VMALLOC_USUAL_AREA = re.compile(
    rb"[^ \t\n]+[ \t]+[0-9]+[ \t]+([^ \t\n=]+)(?:[ \t]+\[[^ \t\n\]=]*\])?"
    rb"[ \t]+pages=([0-9]+)"
    rb"((?:[ \t]+(?:vmalloc|vpages|vmap|user|ioremap|vm_map_ram|N[0-9]+=[0-9]+))*)"
    rb"[ \t]*$")


def vmallocinfo_sums(data: bytes, page_size: int = PAGE_SIZE) -> VmallocSums:
    """``vmalloc_pages_bytes`` and ``stack_vmalloc_bytes`` of
    ``parse_vmallocinfo(data)``, without building an area per line.

    Every collection of the kernel counters needs only these two sums, and
    the file grows with the processes (an area per vmalloc'ed thread
    stack).  One regular-expression pass checks that every line starts as
    the full parser wants; then only the lines that say ``pages=`` are
    looked at (the others add to neither sum): caller, pages and kinds
    from one match where the line has the usual shape, from the full
    parser's line parser where it does not.  A line that does not start as
    it should sends the whole file through :func:`parse_vmallocinfo`, so
    the sums are the same and so is the error for a malformed line (except
    a bad ``phys=`` on a line without ``pages=``, which neither sum reads).
    """
    if _VMALLOC_ODD_LINE.search(b"\n" + data) is not None:
        whole = parse_vmallocinfo(data)
        return VmallocSums(vmalloc_pages_bytes(whole, page_size),
                           stack_vmalloc_bytes(whole, page_size))
    pages = stack = 0
    usual = _VMALLOC_USUAL_AREA.match
    at = data.find(b"pages=")
    while at >= 0:
        start = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        if end < 0:
            end = len(data)
        m = usual(data, start, end)
        if m is not None:
            caller, n_text, rest = m.groups()
            n = int(n_text)
            pages += n
            if caller.split(b"+", 1)[0] in _STACK_CALLERS:
                kinds = [t for t in rest.split() if b"=" not in t]
                if kinds and kinds[-1] == b"vmalloc":
                    stack += n
        else:
            area = _vmalloc_area(data[start:end])
            pages += vmalloc_pages_bytes((area,), 1)
            stack += stack_vmalloc_bytes((area,), 1)
        at = data.find(b"pages=", end)
    return VmallocSums(pages * page_size, stack * page_size)


# --------------------------------------------------------------------------
# /proc/net/sockstat, /proc/iomem, kernel config


def parse_sockstat(data: bytes) -> dict[str, dict[str, int]]:
    """``/proc/net/sockstat`` as ``{"TCP": {"inuse": 1, "mem": 69, …}, …}``.

    ``TCP``/``UDP`` ``mem`` are pages (``sk_memory_allocated``), ``FRAG
    memory`` is bytes.  The values are the network namespace of the reader.
    """
    out: dict[str, dict[str, int]] = {}
    for line in data.split(b"\n"):
        proto, sep, rest = line.partition(b":")
        if not sep:
            continue
        tokens = rest.split()
        fields: dict[str, int] = {}
        for i in range(0, len(tokens) - 1, 2):
            try:
                fields[tokens[i].decode()] = int(tokens[i + 1])
            except ValueError:
                raise ParseError(f"sockstat: bad value in {line[:60]!r}") from None
        out[proto.decode("ascii", "replace")] = fields
    return out


def sockstat_bytes(sockstat: dict[str, dict[str, int]], page_size: int = PAGE_SIZE) -> int | None:
    """Socket buffer memory: ``(TCP mem + UDP mem) × page size + FRAG memory``."""
    tcp = sockstat.get("TCP", {}).get("mem")
    udp = sockstat.get("UDP", {}).get("mem")
    if tcp is None and udp is None:
        return None
    frag = sockstat.get("FRAG", {}).get("memory", 0)
    return ((tcp or 0) + (udp or 0)) * page_size + frag


def parse_iomem_system_ram(data: bytes) -> int | None:
    """Bytes of top-level ``System RAM`` ranges in ``/proc/iomem``.

    ``None`` when the addresses are hidden (a non-root reader sees every
    range as ``00000000-00000000``) or there is no such range.
    """
    total = 0
    seen = False
    for line in data.split(b"\n"):
        if not line or line[:1] == b" ":
            continue  # nested resources are inside a top-level range
        span, _, name = line.partition(b" : ")
        if name.strip() != b"System RAM":
            continue
        start_s, _, end_s = span.partition(b"-")
        try:
            start, end = int(start_s, 16), int(end_s, 16)
        except ValueError:
            raise ParseError(f"iomem: malformed line {line[:60]!r}") from None
        seen = True
        if end > start:
            total += end - start + 1
    if not seen or total == 0:
        return None
    return total


def config_option(config_text: bytes, name: str) -> bool | None:
    """Whether ``CONFIG_<name>`` is ``y`` in a kernel config (``/proc/config.gz``).

    ``None`` when the option is not mentioned at all.
    """
    key = f"CONFIG_{name}".encode()
    for line in config_text.split(b"\n"):
        if line.startswith(key + b"="):
            return line[len(key) + 1 :].strip() in (b"y", b"m")
        if line == b"# " + key + b" is not set":
            return False
    return None


# --------------------------------------------------------------------------
# Computing the columns


def compute_kernel_stats(
    meminfo: dict[str, int],
    counts: dict[str, int] | None = None,
    *,
    slab_free: int | None = None,
    vmalloc_areas: tuple[VmallocArea, ...] | None = None,
    vmalloc_sums: VmallocSums | None = None,
    vmap_stack_config: bool | None = None,
    ipc: int | None = None,
    sockstat: dict[str, dict[str, int]] | None = None,
    physical: int | None = None,
    page_size: int = PAGE_SIZE,
) -> tuple[KernelStats, tuple[str, ...]]:
    """The ``kstats -m`` columns from already parsed inputs (pure).

    Returns the stats and notes that explain every value that is unknown or
    was computed by a fallback.  The formulas are in the module docstring.
    ``/proc/vmallocinfo`` comes as its areas or as their two sums
    (:func:`vmallocinfo_sums`, what a reader that wants nothing else passes).
    """
    if vmalloc_sums is None and vmalloc_areas is not None:
        vmalloc_sums = VmallocSums(vmalloc_pages_bytes(vmalloc_areas, page_size),
                                   stack_vmalloc_bytes(vmalloc_areas, page_size))
    counts = counts or {}
    notes: list[str] = []
    # Filled in this order by the terms below: the order ``extra`` is listed in.
    extra: dict[str, int | None] = {"page_size": page_size}
    total = _need(meminfo, notes, "MemTotal")
    free = _need(meminfo, notes, "MemFree")
    vmo = _vmo_bytes(meminfo, counts, notes, extra)
    heap = _heap_bytes(meminfo, vmalloc_sums, slab_free, notes, extra)
    stack_apart = _stacks_apart(meminfo, vmalloc_sums, vmap_stack_config, notes, extra)
    mmu = _need(meminfo, notes, "PageTables")
    if mmu is not None:
        mmu += meminfo.get("SecPageTables", 0)
    if ipc is None and sockstat is not None:
        ipc = sockstat_bytes(sockstat, page_size)
    if ipc is None:
        notes.append("ipc unknown: /proc/net/sockstat not readable")
    wired = None
    if physical is not None and total is not None:
        wired = max(0, physical - total)
    else:
        notes.append("wired unknown: no System RAM addresses in /proc/iomem (root only)")
    other = _other_bytes(meminfo, total, free, vmo, heap, stack_apart, mmu)
    extra["physical_bytes"] = physical
    extra["ipc_bytes"] = ipc
    if sockstat is not None:
        extra["tcp_mem_pages"] = sockstat.get("TCP", {}).get("mem")
        extra["udp_mem_pages"] = sockstat.get("UDP", {}).get("mem")
        extra["frag_memory_bytes"] = sockstat.get("FRAG", {}).get("memory")
    extra.update(counts)
    stats = KernelStats(
        total_bytes=total, free_bytes=free, vmo_bytes=vmo, total_heap_bytes=heap,
        free_heap_bytes=slab_free, wired_bytes=wired, mmu_overhead_bytes=mmu, ipc_bytes=ipc,
        other_bytes=other, meminfo=MappingProxyType(dict(meminfo)),
        extra=MappingProxyType(extra),
    )
    return stats, tuple(notes)


def _other_bytes(meminfo: dict[str, int], total: int | None, free: int | None,
                 vmo: int | None, heap: int | None, stack_apart: int,
                 mmu: int | None) -> int | None:
    """What MemTotal holds beyond the other columns; None when one is unknown."""
    if total is None or free is None or vmo is None or heap is None or mmu is None:
        return None
    m = meminfo.get
    return (total - free - vmo - heap - stack_apart - mmu
            - m("Zswap", 0) - m("Balloon", 0) - m("Unaccepted", 0))


def _need(meminfo: dict[str, int], notes: list[str], *keys: str) -> int | None:
    """The sum of meminfo's ``keys``; None, with a note, when one is missing."""
    missing = [k for k in keys if k not in meminfo]
    if missing:
        notes.append(f"{', '.join(missing)} not in /proc/meminfo: unknown")
        return None
    return sum(meminfo[k] for k in keys)


def _vmo_bytes(meminfo: dict[str, int], counts: dict[str, int], notes: list[str],
               extra: dict[str, int | None]) -> int | None:
    """VMOs: the LRU lists and the hugetlb pools."""
    m = meminfo.get
    lru = _need(meminfo, notes, "Active", "Inactive")
    if lru is not None:
        if "Unevictable" in meminfo:
            lru += meminfo["Unevictable"]
        else:
            notes.append("Unevictable not in /proc/meminfo (Linux < 2.6.28): left out of VMOs")
    hugetlb = m("Hugetlb")
    if hugetlb is None:
        huge_pages = counts.get("HugePages_Total")
        huge_size = m("Hugepagesize")
        if huge_pages is not None and huge_size is not None:
            hugetlb = huge_pages * huge_size
            if huge_pages:
                notes.append(
                    "Hugetlb not in /proc/meminfo (Linux < 4.16): "
                    "HugePages_Total × Hugepagesize (default size only)"
                )
    extra["lru_bytes"] = lru
    extra["hugetlb_bytes"] = hugetlb
    return None if lru is None else lru + (hugetlb or 0)


def _heap_bytes(meminfo: dict[str, int], vmalloc_sums: VmallocSums | None,
                slab_free: int | None, notes: list[str],
                extra: dict[str, int | None]) -> int | None:
    """The kernel heaps: Slab, vmalloc, percpu and the other reclaimable."""
    m = meminfo.get
    vmalloc_used = m("VmallocUsed")
    vmalloc_info = None if vmalloc_sums is None else vmalloc_sums.pages_bytes
    if not vmalloc_used and vmalloc_info:
        # Linux 4.4 to 5.2 printed VmallocUsed as a constant 0.
        notes.append("VmallocUsed is 0 or absent in /proc/meminfo: Σ pages= of /proc/vmallocinfo")
        vmalloc_used = vmalloc_info
    elif not vmalloc_used:
        # Absent, or the constant 0 of Linux 4.4 to 5.2: unknown, not 0.
        notes.append("VmallocUsed is 0 or absent in /proc/meminfo and /proc/vmallocinfo "
                     "is not readable: vmalloc memory is counted in other")
        vmalloc_used = None
    percpu = m("Percpu")
    if percpu is None:
        notes.append("Percpu not in /proc/meminfo (Linux < 4.0): percpu memory is in other")
    kreclaim_other = None
    if "KReclaimable" in meminfo and "SReclaimable" in meminfo:
        kreclaim_other = max(0, meminfo["KReclaimable"] - meminfo["SReclaimable"])
    slab = _need(meminfo, notes, "Slab")
    heap = None
    if slab is not None:
        heap = slab + (vmalloc_used or 0) + (percpu or 0) + (kreclaim_other or 0)
    if slab_free is None:
        notes.append("kfree unknown: /proc/slabinfo not readable (root only)")
    extra.update(vmalloc_used_bytes=vmalloc_used, vmallocinfo_pages_bytes=vmalloc_info,
                 percpu_bytes=percpu, kreclaimable_other_bytes=kreclaim_other,
                 slab_free_bytes=slab_free)
    return heap


def _stacks_apart(meminfo: dict[str, int], vmalloc_sums: VmallocSums | None,
                  vmap_stack_config: bool | None, notes: list[str],
                  extra: dict[str, int | None]) -> int:
    """Thread stacks not inside VmallocUsed (they are when vmalloc'ed)."""
    kernel_stack = meminfo.get("KernelStack")
    stack_vmalloc = None if vmalloc_sums is None else vmalloc_sums.stack_bytes
    if stack_vmalloc is not None:
        stacks_in_vmalloc: bool | None = stack_vmalloc > 0
    else:
        stacks_in_vmalloc = vmap_stack_config
    if stacks_in_vmalloc is None and kernel_stack:
        notes.append("could not tell whether thread stacks are vmalloc'ed "
                     "(/proc/vmallocinfo and /proc/config.gz unreadable): KernelStack "
                     "counted apart from VmallocUsed")
    stack_apart = 0 if stacks_in_vmalloc else (kernel_stack or 0)
    extra.update(
        kernel_stack_bytes=kernel_stack,
        kernel_stack_vmalloc_bytes=stack_vmalloc,
        kernel_stack_in_vmalloc=None if stacks_in_vmalloc is None else int(stacks_in_vmalloc),
        kernel_stack_apart_bytes=stack_apart if kernel_stack is not None else None,
    )
    return stack_apart


# --------------------------------------------------------------------------
# Reading a /proc tree


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _try_read(path: str) -> bytes | None:
    """Contents of an optional file; None when missing or denied."""
    try:
        return _read(path)
    except OSError:
        return None


def _parsed(path: str, parse: Callable[[bytes], _T], notes: list[str]) -> _T | None:
    """``parse`` of an optional file; None when it is missing or denied, or
    malformed (then with a note)."""
    raw = _try_read(path)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ParseError as exc:
        notes.append(str(exc))
        return None


def _read_config(proc: str) -> bytes | None:
    raw = _try_read(f"{proc}/config.gz")
    if raw is None:
        return None
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error):
        return None


def read_kernel_stats_with_notes(
    proc_root: str = "/proc", *, stacks_in_vmalloc: bool | None = None,
) -> tuple[KernelStats, tuple[str, ...]]:
    """Read the kernel memory counters under ``proc_root`` (one instant).

    ``/proc/meminfo`` is required (``OSError`` if it cannot be read,
    :class:`ParseError` if it is malformed); every other file is optional
    and its absence turns the columns that need it into ``None`` with a note.

    ``stacks_in_vmalloc``: what an earlier read of the same boot found
    (``extra["kernel_stack_in_vmalloc"]``: CONFIG_VMAP_STACK does not change
    while the kernel runs).  Given, and ``VmallocUsed`` in meminfo not 0,
    ``/proc/vmallocinfo`` is not read: its two sums only decide that, and
    the kernel's cost of printing it grows with the number of threads
    (about 11 ms per collection at 1,000 processes).  The counters are the
    same; ``vmallocinfo_pages_bytes`` and ``kernel_stack_vmalloc_bytes``
    are then None.
    """
    proc = proc_root.rstrip("/") or "/"
    meminfo, counts = parse_meminfo(_read(f"{proc}/meminfo"))
    notes: list[str] = []
    slab_free = _parsed(f"{proc}/slabinfo", lambda raw: slab_free_bytes(parse_slabinfo(raw)),
                        notes)
    known_stacks = stacks_in_vmalloc is not None and bool(meminfo.get("VmallocUsed"))
    vmalloc = None if known_stacks else _parsed(f"{proc}/vmallocinfo", vmallocinfo_sums, notes)
    vmap_stack = stacks_in_vmalloc if known_stacks else None
    if vmalloc is None and vmap_stack is None:
        config = _read_config(proc)
        if config is not None:
            vmap_stack = config_option(config, "VMAP_STACK")
    stats, more = compute_kernel_stats(
        meminfo,
        counts,
        slab_free=slab_free,
        vmalloc_sums=vmalloc,
        vmap_stack_config=vmap_stack,
        sockstat=_parsed(f"{proc}/net/sockstat", parse_sockstat, notes),
        physical=_parsed(f"{proc}/iomem", parse_iomem_system_ram, notes),
    )
    return stats, tuple(notes) + more


def read_kernel_stats(proc_root: str = "/proc") -> KernelStats:
    """Kernel memory as Zircon's kmem stats (B.5); see the module docstring.

    ``total/free/vmo/heap/free_heap/wired/mmu/ipc/other`` are filled with the
    Linux formulas; ``meminfo`` holds every ``kB`` field of ``/proc/meminfo``
    in bytes and ``extra`` the other inputs, so each column can be explained.
    Unknown values are ``None`` (e.g. ``free_heap_bytes`` when
    ``/proc/slabinfo`` is not readable).

    ``extra`` keys: ``*_bytes`` are bytes (``lru``, ``hugetlb``,
    ``vmalloc_used``, ``vmallocinfo_pages``, ``percpu``,
    ``kreclaimable_other``, ``slab_free``, ``kernel_stack``,
    ``kernel_stack_vmalloc``, ``kernel_stack_apart``, ``physical``, ``ipc``,
    ``frag_memory``); ``tcp_mem_pages``/``udp_mem_pages`` are pages;
    ``kernel_stack_in_vmalloc`` is 1, 0 or None; ``page_size`` is bytes;
    ``HugePages_Total``/``_Free``/``_Rsvd``/``_Surp`` are the meminfo page
    counts of the default huge page size.
    """
    return read_kernel_stats_with_notes(proc_root)[0]


# --------------------------------------------------------------------------
# CPU counters (kstats -c)


@dataclass(frozen=True, slots=True)
class CpuCounters:
    """Per-CPU counters at one instant; ``None`` where Linux has no source.

    ``busy``/``total`` are ``/proc/stat`` ticks (USER_HZ): total is the sum
    of every column, idle time is ``idle + iowait``.
    """

    cpu: int
    total_ticks: int
    idle_ticks: int
    hw_irqs: int | None = None  # Σ numbered IRQ rows of /proc/interrupts
    timer_irqs: int | None = None  # LOC (x86) / arch_timer (arm64)
    timer_callbacks: int | None = None  # softirqs TIMER + HRTIMER
    resched_ipis: int | None = None  # RES / IPI0
    generic_ipis: int | None = None  # CAL / IPI1


@dataclass(frozen=True, slots=True)
class ProcStat:
    """System-wide ``/proc/stat`` fields plus per-CPU tick totals."""

    cpus: dict[int, tuple[int, int]]  # cpu -> (total ticks, idle ticks)
    ctxt: int | None
    intr: int | None
    processes: int | None


def parse_proc_stat(data: bytes) -> ProcStat:
    """Parse ``/proc/stat``: ``cpuN user nice system idle iowait irq softirq
    steal guest guest_nice`` (guest time is already inside user/nice, so it
    is not added again), ``intr``, ``ctxt``, ``processes``."""
    cpus: dict[int, tuple[int, int]] = {}
    ctxt = intr = processes = None
    for line in data.split(b"\n"):
        fields = line.split()
        if not fields:
            continue
        head = fields[0]
        try:
            if head.startswith(b"cpu") and head != b"cpu":
                ticks = [int(x) for x in fields[1:]]
                total = sum(ticks[:8])  # guest/guest_nice are in user/nice
                idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
                cpus[int(head[3:])] = (total, idle)
            elif head == b"ctxt":
                ctxt = int(fields[1])
            elif head == b"intr":
                intr = int(fields[1])
            elif head == b"processes":
                processes = int(fields[1])
        except (ValueError, IndexError):
            raise ParseError(f"stat: malformed line {line[:60]!r}") from None
    if not cpus:
        raise ParseError("stat: no cpuN lines")
    return ProcStat(cpus, ctxt, intr, processes)


def parse_per_cpu_table(data: bytes) -> dict[str, list[int]]:
    """``/proc/interrupts`` or ``/proc/softirqs``: row label -> per-CPU counts.

    The first line names the CPU columns; each row is ``LABEL: n0 n1 …
    [description]``.  Rows with fewer numbers (``ERR``, ``MIS``) are padded.
    """
    lines = data.split(b"\n")
    if not lines:
        return {}
    ncpu = len(lines[0].split())
    out: dict[str, list[int]] = {}
    for line in lines[1:]:
        label, sep, rest = line.partition(b":")
        if not sep:
            continue
        values = []
        for tok in rest.split()[:ncpu]:
            if not tok.isdigit():
                break
            values.append(int(tok))
        values += [0] * (ncpu - len(values))
        out[label.strip().decode("ascii", "replace")] = values
    return out


def cpu_counters(
    stat: ProcStat,
    interrupts: dict[str, list[int]] | None,
    softirqs: dict[str, list[int]] | None,
) -> tuple[CpuCounters, ...]:
    """Join ``/proc/stat`` with the per-CPU interrupt tables (pure)."""
    out = []
    for index, cpu in enumerate(sorted(stat.cpus)):
        total, idle = stat.cpus[cpu]
        hw = tmr = rs = gen = cb = None
        if interrupts is not None:
            def col(label: str, i: int = index) -> int | None:
                row = interrupts.get(label)
                return None if row is None or i >= len(row) else row[i]
            hw = sum(row[index] for label, row in interrupts.items()
                     if label.isdigit() and index < len(row))
            tmr = col("LOC")
            rs = col("RES")
            gen = col("CAL")
        if softirqs is not None:
            t = softirqs.get("TIMER")
            h = softirqs.get("HRTIMER")
            if t is not None and index < len(t):
                cb = t[index] + (h[index] if h is not None and index < len(h) else 0)
        out.append(CpuCounters(cpu, total, idle, hw, tmr, cb, rs, gen))
    return tuple(out)


def read_cpu_counters(proc_root: str = "/proc") -> tuple[ProcStat, tuple[CpuCounters, ...]]:
    """Read ``stat`` (required), ``interrupts`` and ``softirqs`` (optional)."""
    proc = proc_root.rstrip("/") or "/"
    stat = parse_proc_stat(_read(f"{proc}/stat"))
    raw = _try_read(f"{proc}/interrupts")
    interrupts = parse_per_cpu_table(raw) if raw is not None else None
    raw = _try_read(f"{proc}/softirqs")
    softirqs = parse_per_cpu_table(raw) if raw is not None else None
    return stat, cpu_counters(stat, interrupts, softirqs)


def thread_size(machine: str | None = None) -> int | None:
    """Kernel stack size per thread for ``machine`` (``uname -m``), or None."""
    return THREAD_SIZES.get(machine if machine is not None else os.uname().machine)


# --------------------------------------------------------------------------
# Per-process kernel objects and kernel memory (k ps)

# Descriptor kinds, in the order ``k ps`` prints them (the Linux stand-ins
# for Zircon's handle types, spec fuchsia-tools §8.3).
FD_KINDS = ("files", "sockets", "pipes", "eventfds", "memfds", "timerfds", "epoll", "other")


def classify_fd_link(target: bytes) -> str:
    """The kind of an open descriptor from its ``/proc/PID/fd/N`` link text.

    Link shapes (``fs/d_path.c`` ``dynamic_dname`` for pseudo files,
    ``fs/anon_inodes.c`` names, proc.rst §3.8): ``socket:[ino]``,
    ``pipe:[ino]``, ``anon_inode:[eventfd]``, ``anon_inode:[timerfd]``,
    ``anon_inode:[eventpoll]``, ``/memfd:NAME (deleted)``; a path that starts
    with ``/`` is a file (devices and deleted files included, dma-bufs —
    ``/dmabuf:NAME`` — are not); every other pseudo file (signalfd, inotify,
    pidfd, io_uring, bpf, perf…) is ``other``.
    """
    if target.startswith(b"socket:"):
        return "sockets"
    if target.startswith(b"pipe:"):
        return "pipes"
    if target.startswith(b"anon_inode:"):
        name = target[11:].strip(b"[]")
        if name == b"eventfd":
            return "eventfds"
        if name == b"timerfd":
            return "timerfds"
        if name == b"eventpoll":
            return "epoll"
        return "other"
    if target.startswith(b"/memfd:"):
        return "memfds"
    if target.startswith(b"/dmabuf:"):
        return "other"
    if target.startswith(b"/"):
        return "files"
    return "other"


def count_fd_kinds(targets) -> dict[str, int]:
    """``{kind: count}`` over link texts, every kind of :data:`FD_KINDS` present."""
    counts = dict.fromkeys(FD_KINDS, 0)
    for target in targets:
        counts[classify_fd_link(target)] += 1
    return counts


@dataclass(frozen=True, slots=True)
class ProcessKernelUsage:
    """What one process holds in the kernel: descriptors and kernel memory.

    ``fd_kinds`` is None when ``/proc/PID/fd`` could not be read (another
    user's process without root); ``pte_bytes`` is ``VmPTE`` of
    ``/proc/PID/status`` (``mm_pgtables_bytes()``, all levels);
    ``kstack_bytes`` is threads × the kernel stack size (None when the
    architecture's stack size is not known).
    """

    pid: int
    name: str
    kernel_thread: bool
    threads: int | None
    fd_kinds: dict[str, int] | None
    pte_bytes: int | None
    kstack_bytes: int | None

    @property
    def fds(self) -> int | None:
        return None if self.fd_kinds is None else sum(self.fd_kinds.values())


def _fd_links(fd_dir: str) -> list[bytes] | None:
    """Link texts of every descriptor; None when the directory is denied.

    A descriptor closed during the walk is skipped (ENOENT); a process
    that exits makes the directory vanish, which the caller handles.
    """
    names = os.listdir(fd_dir.encode())
    links = []
    for name in names:
        try:
            links.append(os.readlink(os.path.join(fd_dir.encode(), name)))
        except FileNotFoundError:
            continue
    return links


class _Exited(Exception):
    """The process exited while it was being read."""


def _threads_and_page_tables(base: str, stat: TaskStat) -> tuple[int | None, int | None]:
    """The process's thread count and VmPTE bytes (status, else stat)."""
    from zxmem.sources import procfs

    try:
        status = procfs.parse_status(_read(f"{base}/status"))
    except OSError:
        status = {}
    threads = None
    raw_threads = status.get(b"Threads")
    if raw_threads is not None and raw_threads.isdigit():
        threads = int(raw_threads)
    elif stat.num_threads:
        threads = stat.num_threads
    pte = procfs.status_bytes(status, b"VmPTE")
    if pte is None and stat.kernel_thread:
        pte = 0  # a kernel thread has no mm: it owns no user page tables
    return threads, pte


def _fd_kinds(base: str) -> dict[str, int] | None:
    """Descriptors by kind; None when not readable; raises :class:`_Exited`."""
    try:
        links = _fd_links(f"{base}/fd")
    except (FileNotFoundError, ProcessLookupError):
        if not os.path.isdir(base):
            raise _Exited from None
        return None
    except OSError:
        return None
    return None if links is None else count_fd_kinds(links)


def read_process_kernel_usage(
    proc_root: str = "/proc",
    *,
    kernel_threads: bool = False,
    stack_size: int | None = None,
) -> tuple[list[ProcessKernelUsage], tuple[str, ...]]:
    """Descriptor kinds, page tables and kernel stacks of every process.

    Processes come in PID order; one that exits during the walk is left
    out.  Returns the rows and notes (what could not be read).
    """
    from zxmem.sources import procfs

    proc = proc_root.rstrip("/") or "/"
    stack = stack_size if stack_size is not None else thread_size()
    rows = []
    denied = 0
    for entry in sorted(int(n) for n in os.listdir(proc) if n.isdigit()):
        base = f"{proc}/{entry}"
        try:
            stat = procfs.parse_stat(_read(f"{base}/stat"))
        except (FileNotFoundError, ProcessLookupError):
            continue
        except (OSError, procfs.ParseError):
            continue
        if stat.kernel_thread and not kernel_threads:
            continue
        threads, pte = _threads_and_page_tables(base, stat)
        try:
            kinds = _fd_kinds(base)
        except _Exited:
            continue
        if kinds is None:
            denied += 1
        rows.append(
            ProcessKernelUsage(
                pid=stat.pid,
                name=stat.comm,
                kernel_thread=stat.kernel_thread,
                threads=threads,
                fd_kinds=kinds,
                pte_bytes=pte,
                kstack_bytes=None if threads is None or stack is None else threads * stack,
            )
        )
    notes = []
    if denied:
        noun = "process" if denied == 1 else "processes"
        notes.append(f"descriptors of {denied} {noun} not readable (counts shown as -)")
    if stack is None:
        notes.append("kernel stack size of this architecture unknown: kstk shown as -")
    return rows, tuple(notes)


# --------------------------------------------------------------------------
# The kernel address space (k asd kernel): /proc/modules and the /proc/iomem
# tree (spec linux-kernel B.15)


@dataclass(frozen=True, slots=True)
class KernelModule:
    """One ``/proc/modules`` line (``kernel/module/procfs.c``, ``m_show``).

    ``name size refcnt deps state address [taints]``: ``size`` is the bytes
    of the module's core sections, ``address`` its load address (0 for a
    reader without ``CAP_SYSLOG``: ``kallsyms_show_value``), ``refcount``
    ``None`` when the kernel prints ``-`` (no module unloading).
    """

    name: str
    size_bytes: int
    refcount: int | None
    deps: tuple[str, ...]
    state: str
    address: int | None


def parse_modules(data: bytes) -> tuple[KernelModule, ...]:
    """Parse ``/proc/modules``; ``deps`` is ``-`` or ``a,b,`` (trailing comma)."""
    out = []
    for line in data.split(b"\n"):
        fields = line.split()
        if not fields:
            continue
        try:
            name = fields[0].decode("utf-8", "backslashreplace")
            size = int(fields[1])
            refcount = None if fields[2] == b"-" else int(fields[2])
            deps = tuple(
                d.decode("utf-8", "backslashreplace")
                for d in fields[3].split(b",")
                if d and d != b"-"
            )
            state = fields[4].decode("ascii", "replace")
            address = int(fields[5], 16) if len(fields) > 5 else None
        except (ValueError, IndexError):
            raise ParseError(f"modules: malformed line {line[:60]!r}") from None
        out.append(KernelModule(name, size, refcount, deps, state, address))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class IomemRange:
    """One ``/proc/iomem`` resource (``kernel/resource.c``, ``r_show``).

    ``end`` is inclusive, as printed; ``depth`` is the nesting level (two
    spaces of indentation per level).  A reader without ``CAP_SYS_ADMIN``
    sees every address as 0.
    """

    start: int
    end: int
    name: str
    depth: int

    @property
    def size_bytes(self) -> int:
        return self.end - self.start + 1 if self.end >= self.start else 0


def parse_iomem(data: bytes) -> tuple[IomemRange, ...]:
    """Every ``/proc/iomem`` line with its depth, in file order."""
    out = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        stripped = line.lstrip(b" ")
        depth = (len(line) - len(stripped)) // 2
        span, sep, name = stripped.partition(b" : ")
        start_s, _, end_s = span.partition(b"-")
        try:
            if not sep:
                raise ValueError
            start, end = int(start_s, 16), int(end_s, 16)
        except ValueError:
            raise ParseError(f"iomem: malformed line {line[:60]!r}") from None
        out.append(IomemRange(start, end, name.decode("utf-8", "backslashreplace"), depth))
    return tuple(out)
