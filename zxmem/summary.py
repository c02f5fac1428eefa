"""Per-process VMO summaries: private, scaled and total bytes (spec §9.3, §9.5).

The attribution ``mem`` and ``ffx profile memory`` use:

* a process is charged the VMOs it references (handles or mappings) **and
  all their ancestors** (``parent_koid`` followed while the parent is in the
  snapshot), so the pages a copy-on-write clone still shares with its parent
  are charged to the processes holding the clones;
* a VMO's share count is the number of *processes* charged with it;
* per process and per VMO-name group: ``total`` += committed; a VMO charged
  to one process adds its committed bytes to ``private`` and ``scaled``,
  a shared one adds ``committed // share_count`` to ``scaled`` (integer
  division, as the C++ ``mem`` does);
* processes charged with no VMO are left out;
* VMO names are grouped by the rename rules below (first match wins, the
  whole name must match, surrounding whitespace ignored), else kept as
  they are;
* a synthetic ``kernel`` process (koid 1 on Fuchsia, as ``mem`` prints it;
  koid 0 on Linux, where PID 1 is init and PID 0 is the kernel's own idle
  task) with groups ``heap`` (total_heap), ``wired``, ``mmu``, ``ipc``,
  ``other`` and ``vmo`` = max(0, kmem.vmo − Σ committed of every VMO in the
  snapshot); its private, scaled and total are their sum.  Unknown kernel
  values (``None``) are left out of it, and so is ``vmo`` when any VMO's
  committed bytes are unknown (the remainder would absorb them).

On Linux (spec linux-kernel, DESIGN.md) a file's VMO is its page cache, a
``data:<lib>`` clone the copy-on-write pages of a private file mapping (its
parent is the file), an anonymous VMA one VMO.  Committed bytes that are
unknown (``None``: cachestat refused, map_files denied) add nothing: they
are counted (with their size, when known) in :class:`Summary` and in each
:class:`ProcessSummary` and group they leave out, so the views can say which
sums are partial.  Device memory (kind ``phys``: ``[vvar]``, mapped device
registers) uses no RAM and is neither summed nor counted as unknown.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from zxmem.model import Process, Snapshot, Vmo

# (pattern, group) in the order of §9.3 (C++ ``mem`` and ffx, newest
# additions included), with the Linux rules first: Linux names are paths and
# bracketed kernel names, which none of the Fuchsia rules were written for.
RENAME_RULES: tuple[tuple[str, str], ...] = (
    # Linux: a mapped shared object's page cache (``/usr/lib/.../libc.so.6``,
    # Python's ``_ssl.cpython-311-x86_64-linux-gnu.so``), deleted or not.
    (r"/.*\.so(\.[0-9][^/]*)?( \(deleted\))?", "[libraries]"),
    (r"\[heap\]|\[anon: ?glibc: (malloc|loader malloc).*\]", "[heap]"),
    (r"\[stack\]|\[anon:.*stack.*\]", "[stacks]"),
    (r"memfd:.*", "[memfd]"),
    # Fuchsia.
    (r"ld\.so\.1-internal-heap|stack: msg of.*", "[process-bootstrap]"),
    (r"blob-[0-9a-f]+", "[blobs]"),
    (r"inactive-blob-[0-9a-f]+", "[inactive blobs]"),
    (r"thrd_t:0x.*|initial-thread|pthread_t:0x.*|pthread_create:0x.*", "[stacks]"),
    (r"data[0-9]*:.*", "[data]"),
    (r"bss[0-9]*:.*", "[bss]"),
    (r"relro:.*", "[relro]"),
    (r"", "[unnamed]"),
    (r"scudo:.*", "[scudo]"),
    (r".*\.so.*", "[bootfs-libraries]"),
    (r"stack_and_tls:.*", "[bionic-stack]"),
    (r"ext4!.*", "[ext4]"),
    (r"dalvik-.*", "[dalvik]"),
    (r"bootfs|bootfs:.*", "[bootfs]"),
    (r"restricted_state_vmo:[0-9]+", "[restricted_state_vmo]"),
)

_RULES = tuple((re.compile(p, re.DOTALL), g) for p, g in RENAME_RULES)

FUCHSIA_KERNEL_KOID = 1
LINUX_KERNEL_KOID = 0
KERNEL_NAME = "kernel"


def group_name(vmo_name: str) -> str:
    """The group a VMO name is summarized under (first rule that matches)."""
    name = vmo_name.strip()
    for pattern, group in _RULES:
        if pattern.fullmatch(name):
            return group
    return vmo_name


@dataclass(frozen=True)
class Sizes:
    private_bytes: int = 0
    scaled_bytes: int = 0
    total_bytes: int = 0


@dataclass(frozen=True)
class ProcessSummary:
    koid: int
    name: str
    sizes: Sizes
    groups: Mapping[str, Sizes] = field(default_factory=dict)
    vmo_koids: tuple[int, ...] = ()  # the charged VMOs (ancestors included)
    kernel: bool = False
    # VMOs left out of the sums because their committed bytes are unknown:
    # how many in all, and per group (the kernel row: every unknown VMO of
    # the snapshot, which its ``vmo`` remainder could not be computed without).
    unknown_vmos: int = 0
    unknown_groups: Mapping[str, int] = field(default_factory=dict)
    unknown_size_bytes: int = 0  # their size (VMO size, not resident), where known
    unknown_unsized: int = 0  # how many of them have no known size either


@dataclass(frozen=True)
class Summary:
    """Kernel row first (when there are kernel stats), then snapshot order."""

    processes: tuple[ProcessSummary, ...]
    unknown_vmos: int = 0  # distinct VMOs whose committed bytes are unknown
    unknown_size_bytes: int = 0  # their size (VMO size, not resident), where known
    unknown_unsized: int = 0  # how many of them have no known size either

    def process(self, koid: int) -> ProcessSummary | None:
        for s in self.processes:
            if s.koid == koid and not s.kernel:
                return s
        return None


def kernel_koid(snapshot: Snapshot) -> int:
    """1 for Fuchsia sources, 0 for Linux ones."""
    return FUCHSIA_KERNEL_KOID if snapshot.provenance.source.startswith("fuchsia") \
        else LINUX_KERNEL_KOID


def charged_vmos(snapshot: Snapshot) -> dict[int, list[int]]:
    """Process koid → the VMOs it is charged: its references and their ancestors."""
    vmos = snapshot.vmos
    out: dict[int, list[int]] = {}
    for p in snapshot.processes:
        seen: dict[int, None] = {}
        for ref in p.vmo_refs or ():
            k = ref.vmo_koid
            # Walk up until a VMO already charged (its ancestors are too)
            # or one that is not in the snapshot.
            while k in vmos and k not in seen:
                seen[k] = None
                k = vmos[k].parent_koid
        out[p.koid] = list(seen)
    return out


def _process_summary(p: Process, ks: list[int], vmos: Mapping[int, Vmo], share: dict[int, int],
                     groups_of: dict[str, str], unknown: set[int]) -> ProcessSummary:
    """One process's row over its charged VMOs ``ks`` (``share``: how many
    processes are charged each).  ``groups_of`` caches each VMO name's
    group (tens of thousands of VMOs share a few hundred names, and the
    rules are regular expressions tried in turn); VMOs of unknown size are
    added to ``unknown``."""
    priv = scaled = total = 0
    groups: dict[str, list[int]] = {}
    unknown_here: dict[str, int] = {}
    unknown_sizes: list[int | None] = []
    for k in ks:
        vmo = vmos[k]
        committed = vmo.committed_bytes
        if committed is None and vmo.kind == "phys":
            continue  # device memory uses no RAM: neither summed nor unknown
        g = groups_of.get(vmo.name)
        if g is None:
            g = groups_of[vmo.name] = group_name(vmo.name)
        if committed is None:
            # Left out of every sum, and said so: never a silent 0.
            unknown.add(k)
            unknown_here[g] = unknown_here.get(g, 0) + 1
            unknown_sizes.append(vmo.size_bytes)
            groups.setdefault(g, [0, 0, 0])
            continue
        acc = groups.setdefault(g, [0, 0, 0])
        n = share[k]
        acc[2] += committed
        if n == 1:
            acc[0] += committed
            acc[1] += committed
        else:
            acc[1] += committed // n
    frozen = {g: Sizes(*v) for g, v in groups.items()}
    for s in frozen.values():
        priv += s.private_bytes
        scaled += s.scaled_bytes
        total += s.total_bytes
    return ProcessSummary(p.koid, p.name, Sizes(priv, scaled, total), frozen,
                          tuple(ks), unknown_vmos=sum(unknown_here.values()),
                          unknown_groups=unknown_here,
                          unknown_size_bytes=sum(x or 0 for x in unknown_sizes),
                          unknown_unsized=unknown_sizes.count(None))


def summarize(
    snapshot: Snapshot,
    only_vmos: Collection[int] | None = None,
    *,
    kernel: bool = True,
) -> Summary:
    """The §9.3 summary of ``snapshot``.

    ``only_vmos`` restricts every process's charged set to those VMOs (the
    summary of undigested VMOs, ``mem --digest --undigested``); share
    counts are then counted within the restriction.  ``kernel=False`` leaves
    out the kernel row.
    """
    vmos = snapshot.vmos
    charged = charged_vmos(snapshot)
    if only_vmos is not None:
        keep = set(only_vmos)
        charged = {p: [k for k in ks if k in keep] for p, ks in charged.items()}
    share: dict[int, int] = {}
    for ks in charged.values():
        for k in ks:
            share[k] = share.get(k, 0) + 1

    unknown: set[int] = set()
    groups_of: dict[str, str] = {}  # per call: as many as there are names
    out: list[ProcessSummary] = []
    for p in snapshot.processes:
        ks = charged.get(p.koid) or []
        if ks:
            out.append(_process_summary(p, ks, vmos, share, groups_of, unknown))

    rows: list[ProcessSummary] = []
    if kernel and only_vmos is None:
        k_row = kernel_summary(snapshot)
        if k_row is not None:
            rows.append(k_row)
    rows.extend(out)
    sizes = [vmos[k].size_bytes for k in unknown]
    return Summary(tuple(rows), len(unknown),
                   unknown_size_bytes=sum(x for x in sizes if x is not None),
                   unknown_unsized=sum(1 for x in sizes if x is None))


def unknown_vmo_koids(snapshot: Snapshot) -> list[int]:
    """VMOs whose committed bytes are unknown (device memory is not unknown:
    it uses no RAM)."""
    return [k for k, v in snapshot.vmos.items()
            if v.committed_bytes is None and v.kind != "phys"]


def kernel_summary(snapshot: Snapshot) -> ProcessSummary | None:
    """The synthetic kernel process of §9.3, or None without kernel stats."""
    k = snapshot.kernel
    if k is None:
        return None
    vmo = None
    unknown = len(unknown_vmo_koids(snapshot))
    # With a VMO of unknown committed bytes the remainder is unknown too
    # (it would absorb them): left out, and the row says how many.
    if k.vmo_bytes is not None and not unknown:
        committed = sum(v.committed_bytes or 0 for v in snapshot.vmos.values())
        vmo = max(0, k.vmo_bytes - committed)
    parts = (
        ("heap", k.total_heap_bytes),
        ("wired", k.wired_bytes),
        ("mmu", k.mmu_overhead_bytes),
        ("ipc", k.ipc_bytes),
        ("other", k.other_bytes),
        ("vmo", vmo),
    )
    groups = {name: Sizes(v, v, v) for name, v in parts if v is not None}
    total = sum(s.total_bytes for s in groups.values())
    return ProcessSummary(kernel_koid(snapshot), KERNEL_NAME, Sizes(total, total, total),
                          groups, kernel=True,
                          unknown_vmos=unknown if k.vmo_bytes is not None else 0,
                          unknown_groups={"vmo": unknown}
                          if unknown and k.vmo_bytes is not None else {})


def sorted_processes(summary: Summary) -> list[ProcessSummary]:
    """Largest private first (``mem``'s sorted order); ties by koid."""
    return sorted(summary.processes, key=lambda s: (-s.sizes.private_bytes, s.koid))


def sorted_groups(ps: ProcessSummary) -> list[tuple[str, Sizes]]:
    """Groups by private, then scaled (both descending), then name."""
    return sorted(ps.groups.items(),
                  key=lambda kv: (-kv[1].private_bytes, -kv[1].scaled_bytes, kv[0]))
