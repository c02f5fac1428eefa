"""``k asd kernel``: modules and iomem parsers, address modes, grouping."""

from __future__ import annotations

import os

import pytest

from zxmem.sources import kernel
from zxmem.views import asd

KERNEL = os.path.join(os.path.dirname(__file__), "..", "fixtures", "kernel")


def _read(*parts: str) -> bytes:
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


def test_modules_fields():
    mods = kernel.parse_modules(
        b"nf_tables 372736 2 nft_chain_nat,nf_nat, Live 0xffffffffc0a00000\n"
        b"builtin_like 4096 - - Live 0x0000000000000000 (OE)\n"
    )
    assert mods[0] == kernel.KernelModule(
        "nf_tables", 372736, 2, ("nft_chain_nat", "nf_nat"), "Live", 0xFFFFFFFFC0A00000)
    assert mods[1].refcount is None and mods[1].deps == () and mods[1].address == 0


def test_modules_malformed():
    with pytest.raises(kernel.ParseError):
        kernel.parse_modules(b"name notanumber 0 - Live 0x0\n")


def test_iomem_depth_and_inclusive_end():
    ranges = kernel.parse_iomem(_read(KERNEL, "linux-6.18", "iomem"))
    first = ranges[0]
    assert (first.start, first.end, first.name, first.depth) == (0, 0xFFF, "Reserved", 0)
    assert first.size_bytes == 4096
    nested = [r for r in ranges if r.name == "PCI Bus 0000:00" and r.depth == 2]
    assert nested and nested[0].start == 0xEEC00000
    # Every top-level System RAM range adds up to what kstats uses.
    ram = sum(r.size_bytes for r in ranges if r.depth == 0 and r.name == "System RAM")
    assert ram == kernel.parse_iomem_system_ram(_read(KERNEL, "linux-6.18", "iomem"))


def test_iomem_malformed():
    with pytest.raises(kernel.ParseError):
        kernel.parse_iomem(b"zzzz : nothing\n")


def test_address_modes():
    real = kernel.parse_vmallocinfo(_read(KERNEL, "linux-3.10", "vmallocinfo"))
    hashed = kernel.parse_vmallocinfo(_read(KERNEL, "linux-6.18", "vmallocinfo"))
    zero = kernel.parse_vmallocinfo(
        b"0x0000000000000000-0x0000000000000000 8192 foo+0x1/0x2 pages=1 vmalloc\n" * 2)
    assert asd.address_mode(real) == "real"
    assert asd.address_mode(hashed) == "hashed"
    assert asd.address_mode(zero) == "hidden"


def test_groups_add_up_to_the_file():
    areas = kernel.parse_vmallocinfo(_read(KERNEL, "linux-6.18", "vmallocinfo"))
    text = asd.render_vmalloc(areas)
    lines = text.splitlines()
    top = lines[0]
    total_pages = sum(a.pages or 0 for a in areas)
    assert top.startswith("as [hashed] ")
    assert f"areas {len(areas)} pages {total_pages} 'kernel'" in top
    kinds = [line for line in lines if line.startswith("  vmar ")]
    assert sum(int(line.split(" areas ")[1].split()[0]) for line in kinds) == len(areas)
    assert sum(int(line.split(" pages ")[1].split()[0]) for line in kinds) == total_pages
    # Every ioremap area is listed with its physical address; no other area is.
    ioremaps = [a for a in areas if a.phys is not None]
    maps = [line for line in lines if line.lstrip().startswith("map ")]
    assert len(maps) == len(ioremaps)
    assert all(" phys 0x" in line for line in maps)


def test_verbose_lists_every_area_and_callers_are_largest_first():
    areas = kernel.parse_vmallocinfo(_read(KERNEL, "linux-3.10", "vmallocinfo"))
    text = asd.render_vmalloc(areas, verbose=True)
    assert sum(1 for line in text.splitlines() if line.startswith("      map ")) == len(areas)
    kinds = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith("  vmar ")]
    assert kinds == ["'vmalloc'", "'vpages'", "'ioremap'"]  # vpages is its own kind
    callers = [line for line in text.splitlines() if line.startswith("    vmar ")]
    # n_tty_open's 3280896 bytes before alloc_large_system_hash's 2101248.
    assert callers[0].endswith("'n_tty_open'")
    assert callers[1].endswith("'alloc_large_system_hash'")


def test_modules_and_iomem_hidden_for_non_root():
    mods = kernel.parse_modules(b"a 4096 0 - Live 0x0000000000000000\n")
    assert asd.module_address_mode(mods) == "hidden"
    assert "map [hidden] sz 0x1000 (4k) ref 0 state Live 'a'" in asd.render_modules(mods, "hidden")
    ranges = kernel.parse_iomem(b"00000000-00000000 : System RAM\n")
    assert asd.render_iomem(ranges) == "phys [hidden] 'System RAM'\n"
    assert asd.render_totals(None, None, None, ranges) == ""


def test_hostile_names_are_escaped():
    mods = kernel.parse_modules(b"evil\x1b[2J 4096 0 - Live 0xffffffffc0000000\n")
    assert "\x1b" not in asd.render_modules(mods, "real")
    areas = kernel.parse_vmallocinfo(
        b"0xffffc90000000000-0xffffc90000002000 8192 bad\x1b]0;x+0x1/0x2 pages=1 vmalloc\n")
    assert "\x1b" not in asd.render_vmalloc(areas, verbose=True)
