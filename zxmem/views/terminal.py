"""What views print differently on a terminal: sizes coloured by magnitude,
short labels for long koids, the room left for a name.

Pure helpers: the command decides (at the edge) whether output goes to a
terminal, how wide it is and whether to colour; views take that as
parameters and call these.
"""

from __future__ import annotations

from zxmem.textsafe import colored, display_width

TYPE_CHECKING = False  # typing and re cost start-up: ps colours through here
if TYPE_CHECKING:
    import re
    from collections.abc import Iterable

MIB = 1 << 20
GIB = 1 << 30

# A name is given at least this many columns when a layout has a choice
# (vmaps drops its end address, then its start address, to give it this).
MIN_NAME = 24


def size_color(nbytes: int | None) -> str | None:
    """The colour of a size by its magnitude: under 1 MiB dim, under 100 MiB
    plain, under 1 GiB yellow, from 1 GiB bold red; unknown plain."""
    if nbytes is None:
        return None
    n = abs(nbytes)
    if n < MIB:
        return "dim"
    if n < 100 * MIB:
        return None
    if n < GIB:
        return "yellow"
    return "bold red"


def change_color(delta: int | None) -> str | None:
    """The colour of a change: grew red, shrank green, else none."""
    if not delta:
        return None
    return "red" if delta > 0 else "green"


def cell(text: str, width: int, color: str | None = None) -> str:
    """``text`` right-aligned in ``width`` columns, coloured (the padding
    is not)."""
    return " " * (width - len(text)) + colored(text, color)


def size_cell(text: str, width: int, nbytes: int | None, color: bool) -> str:
    """A size cell: right-aligned, coloured by magnitude when ``color``."""
    return cell(text, width, size_color(nbytes) if color else None)


def short_koids(koids: Iterable[int], prefix: str = "f") -> dict[int, str]:
    """Labels ``f1``, ``f2``, ... for the file koids ((st_dev << 32) |
    st_ino, up to 15 digits) in ``koids``, numbered in order of first
    appearance; small koids (anonymous memory, clones) keep their number
    and get no label."""
    from zxmem.model import INODE_KOID_BASE

    labels: dict[int, str] = {}
    for koid in koids:
        if koid >= INODE_KOID_BASE and koid not in labels:
            labels[koid] = f"{prefix}{len(labels) + 1}"
    return labels


def koid_text(koid: int, labels: dict[int, str] | None) -> str:
    """A koid as printed: its label when it has one, else the number."""
    if labels:
        label = labels.get(koid)
        if label is not None:
            return label
    return str(koid)


_SGR: re.Pattern[str] | None = None  # compiled on first use


def visible(text: str) -> int:
    """Terminal columns of ``text`` without its colour sequences."""
    global _SGR
    if "\x1b" in text:
        if _SGR is None:
            import re

            _SGR = re.compile("\x1b\\[[0-9;]*m")
        text = _SGR.sub("", text)
    return display_width(text)
