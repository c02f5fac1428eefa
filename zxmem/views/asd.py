"""``k asd kernel``: the kernel address space (spec fuchsia-tools §8.2, B.15).

Zircon dumps the kernel's VMAR/mapping tree with two spaces of indentation
per level.  Linux's nearest equivalents are ``/proc/vmallocinfo`` (the
vmalloc/vmap/ioremap areas and who made them), ``/proc/modules`` (module
core sections) and ``/proc/iomem`` (the physical map).  Line shapes, one
node per line, the name last in quotes as in Zircon; each ``sz <hex>`` is
followed by the size in binary units, ``(57.2M)``, for the reader::

    as [<start> <end>] sz <hex> areas <n> pages <n> 'kernel'
      vmar [<start> <end>] sz <hex> areas <n> pages <n> '<kind>'
        vmar [<start> <end>] sz <hex> areas <n> pages <n> '<caller>'
          map [<start> <end>] sz <hex> pages <n> phys <hex> '<caller+off/len>'
      vmar [<start> <end>] sz <hex> areas <n> 'modules'
        map [<start> <end>] sz <hex> ref <n> state <s> '<module>'
    phys [<start> <end>] sz <hex> '<resource>'      (nested as in iomem)

* Kinds are the vmallocinfo flags (``vmalloc``, ``vpages``, ``vmap``,
  ``vm_map_ram``, ``user``, ``ioremap``, ``unpurged``, ``other``); callers
  are the function of ``caller+off/len``.  Both are ordered by size, largest
  first (ties by name).  ``pages`` counts the pages the areas hold (only
  ``pages=`` areas hold RAM; ``ioremap`` is device memory); ``sz`` is the
  size of the address range (vmallocinfo's size includes a guard page).
* ``map`` lines of single areas are printed for areas with a physical
  address (``phys=``: ioremap), and for every area with ``verbose``.
* Ends are inclusive, as in Zircon.  Ranges are printed only when real:
  ``[hashed]`` when vmallocinfo's ``%pK`` addresses are hashed
  (``kptr_restrict`` 0), ``[hidden]`` when they are zeroed (a reader without
  ``CAP_SYSLOG``); group ranges are the lowest start and highest end.
"""

from __future__ import annotations

from collections.abc import Sequence

from zxmem.sources.kernel import IomemRange, KernelModule, VmallocArea
from zxmem.textsafe import escape_terminal
from zxmem.units import format_size

KIND_ORDER = ("vmalloc", "vpages", "vmap", "vm_map_ram", "user", "ioremap", "unpurged", "other")

# Lowest address of the kernel half on 64-bit machines: a printed
# "address" below it that is not 0 is a hash, not an address.
_KERNEL_HALF = 0xFFFF_8000_0000_0000


def address_mode(areas: Sequence[VmallocArea]) -> str:
    """``"real"``, ``"hashed"`` or ``"hidden"`` for vmallocinfo's addresses."""
    if not areas:
        return "real"
    if all(a.start == 0 and a.end == 0 for a in areas):
        return "hidden"
    if any(a.start >= _KERNEL_HALF for a in areas):
        return "real"
    # A 32-bit kernel's real addresses lie below 4 GiB too, like hashes;
    # real ranges come sorted by address with end >= start, hashes do not.
    if _ordered(areas) and all(a.end >= a.start for a in areas):
        return "real"
    return "hashed"


def _ordered(areas: Sequence[VmallocArea]) -> bool:
    """Real vmallocinfo ranges come sorted by address and end ≥ start."""
    return all(b.start >= a.start for a, b in zip(areas, areas[1:], strict=False))


def _span(start: int, end_exclusive: int, mode: str) -> str:
    if mode == "hashed":
        return "[hashed]"
    if mode == "hidden":
        return "[hidden]"
    return f"[{start:#x} {max(start, end_exclusive - 1):#x}]"


def _kind(a: VmallocArea) -> str:
    return a.kind or "other"


def _func(caller: str) -> str:
    return caller.split("+", 1)[0] if caller else "-"


def _quote(name: str) -> str:
    return "'" + escape_terminal(name) + "'"


def _sz(size_bytes: int) -> str:
    """``sz <hex> (<human>)``: Zircon's hex, with the size a reader can take in."""
    return f"sz {size_bytes:#x} ({format_size(size_bytes)})"


def _group_line(indent: int, word: str, areas: list[VmallocArea], mode: str, name: str) -> str:
    start = min(a.start for a in areas)
    end = max(a.end for a in areas)
    size = sum(a.size_bytes for a in areas)
    pages = sum(a.pages or 0 for a in areas)
    return (f"{'  ' * indent}{word} {_span(start, end, mode)} {_sz(size)} "
            f"areas {len(areas)} pages {pages} {_quote(name)}\n")


def _area_line(indent: int, a: VmallocArea, mode: str) -> str:
    parts = [f"{'  ' * indent}map {_span(a.start, a.end, mode)} {_sz(a.size_bytes)}"]
    if a.pages is not None:
        parts.append(f"pages {a.pages}")
    if a.phys is not None:
        parts.append("phys [hidden]" if mode == "hidden" and not a.phys else f"phys {a.phys:#x}")
    parts.append(_quote(a.caller or "-"))
    return " ".join(parts) + "\n"


def _by_size(groups: dict[str, list[VmallocArea]]) -> list[tuple[str, list[VmallocArea]]]:
    return sorted(groups.items(), key=lambda kv: (-sum(a.size_bytes for a in kv[1]), kv[0]))


def render_vmalloc(areas: Sequence[VmallocArea], *, verbose: bool = False,
                   modules: Sequence[KernelModule] | None = None,
                   module_mode: str = "real") -> str:
    """The ``as 'kernel'`` tree: vmalloc kinds, callers, areas, modules."""
    mode = address_mode(areas)
    lines = []
    if areas:
        lines.append(_group_line(0, "as", list(areas), mode, "kernel"))
    else:
        lines.append("as 'kernel'\n")
    kinds: dict[str, list[VmallocArea]] = {}
    for a in areas:
        kinds.setdefault(_kind(a), []).append(a)
    ordered = sorted(kinds, key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else 99, k))
    for kind in ordered:
        members = kinds[kind]
        lines.append(_group_line(1, "vmar", members, mode, kind))
        callers: dict[str, list[VmallocArea]] = {}
        for a in members:
            callers.setdefault(_func(a.caller), []).append(a)
        for func, group in _by_size(callers):
            lines.append(_group_line(2, "vmar", group, mode, func))
            for a in group:
                if verbose or a.phys is not None:
                    lines.append(_area_line(3, a, mode))
    if modules:
        lines.append(render_modules(modules, module_mode))
    return "".join(lines)


def module_address_mode(modules: Sequence[KernelModule]) -> str:
    return "hidden" if modules and all(not m.address for m in modules) else "real"


def render_modules(modules: Sequence[KernelModule], mode: str) -> str:
    """The ``modules`` node: one ``map`` per module, by address."""
    size = sum(m.size_bytes for m in modules)
    placed = [m for m in modules if m.address]
    if placed and mode == "real":
        lo = min(m.address or 0 for m in placed)
        hi = max((m.address or 0) + m.size_bytes for m in placed)
        span = _span(lo, hi, mode)
    else:
        span = _span(0, 0, "hidden")
    lines = [f"  vmar {span} {_sz(size)} areas {len(modules)} 'modules'\n"]
    for m in sorted(modules, key=lambda m: (m.address or 0, m.name)):
        span = _span(m.address or 0, (m.address or 0) + m.size_bytes,
                     mode if m.address else "hidden")
        ref = "-" if m.refcount is None else str(m.refcount)
        lines.append(f"    map {span} {_sz(m.size_bytes)} ref {ref} state "
                     f"{escape_terminal(m.state)} {_quote(m.name)}\n")
    return "".join(lines)


def iomem_hidden(ranges: Sequence[IomemRange]) -> bool:
    return bool(ranges) and all(r.start == 0 and r.end == 0 for r in ranges)


def render_iomem(ranges: Sequence[IomemRange]) -> str:
    """The physical map: every ``/proc/iomem`` resource, nested as printed."""
    hidden = iomem_hidden(ranges)
    lines = []
    for r in ranges:
        span = "[hidden]" if hidden else f"[{r.start:#x} {r.end:#x}]"
        size = "" if hidden else " " + _sz(r.size_bytes)
        lines.append(f"{'  ' * r.depth}phys {span}{size} {_quote(r.name)}\n")
    return "".join(lines)


def render_totals(areas: Sequence[VmallocArea] | None, vmalloc_used: int | None,
                  modules: Sequence[KernelModule] | None,
                  ranges: Sequence[IomemRange] | None, page_size: int = 4096) -> str:
    """Closing summary: RAM in vmalloc areas next to meminfo's VmallocUsed."""
    parts = []
    if areas is not None:
        pages = sum(a.pages or 0 for a in areas)
        used = "-" if vmalloc_used is None else format_size(vmalloc_used)
        parts.append(f"vmalloc: {len(areas)} areas, {pages} pages "
                     f"({format_size(pages * page_size)}; meminfo VmallocUsed {used})")
    if modules is not None:
        parts.append(f"modules: {len(modules)}, "
                     f"{format_size(sum(m.size_bytes for m in modules))}")
    if ranges is not None and not iomem_hidden(ranges):
        ram = sum(r.size_bytes for r in ranges if r.depth == 0 and r.name == "System RAM")
        parts.append(f"System RAM: {format_size(ram)}")
    return "total: " + "; ".join(parts) + "\n" if parts else ""
