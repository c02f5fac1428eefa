"""Size formatting: Zircon's ``format_size`` family (spec fuchsia-tools §1.2–1.3).

All sizes are bytes internally; these functions are the only place where a
byte count becomes text.  Three formatters exist because Fuchsia's tools use
three rules and zxmem reproduces each tool's output exactly:

* :func:`format_size` — ps/vmaps/vmos/kstats.  Binary units ``B k M G T P E``,
  at most four whole digits in natural mode, exact multiples without a
  decimal, otherwise one decimal digit.  ``exact=True`` (the default) is the
  2020+ rounding (round half up of the true fraction); ``exact=False`` is the
  classic rule that rounds from the remainder of the last division only (the
  one ``treemap.py`` re-implements).
* :func:`format_size_digest` — ``mem_digest.py``'s ``%.4g`` KiB/MiB sizes.
* :func:`format_size_mem` — the ``mem`` tool's ``FormatSize``.
"""

from __future__ import annotations

UNITS = "BkMGTPE"
_MODERN_UNITS = "BKMGTPE"


def unit_index(letter: str) -> int | None:
    """Index of a unit letter (``k`` and ``K`` both mean KiB), or None."""
    if not letter:
        return None
    if letter in UNITS:
        return UNITS.index(letter)
    if letter in _MODERN_UNITS:
        return _MODERN_UNITS.index(letter)
    return None


def format_size(
    nbytes: int | None,
    unit: str | None = None,
    *,
    exact: bool = True,
    upper_k: bool = False,
) -> str:
    """Format ``nbytes`` as Zircon's ``format_size_fixed`` does.

    ``unit`` None or "" picks the natural unit; a letter fixes it; an unknown
    letter prints a ``?`` prefix and falls back to the natural unit (the
    library's own behaviour; the CLI rejects such letters before they get
    here).  ``None`` bytes (unknown) format as ``-``.
    """
    if nbytes is None:
        return "-"
    if nbytes < 0:
        return "-" + format_size(-nbytes, unit, exact=exact, upper_k=upper_k)
    letters = _MODERN_UNITS if upper_k else UNITS
    prefix = ""
    target = None
    if unit:
        target = unit_index(unit[0])
        if target is None:
            prefix = "?"
    value = nbytes
    rem = 0
    idx = 0
    divisor = 1
    if target is None:
        while idx < len(letters) - 1 and (
            value >= 10000 or (value != 0 and value % 1024 == 0)
        ):
            rem = value % 1024
            value //= 1024
            divisor *= 1024
            idx += 1
    else:
        while idx < target:
            rem = value % 1024
            value //= 1024
            divisor *= 1024
            idx += 1
    letter = letters[idx]
    if nbytes % divisor == 0:
        return f"{prefix}{nbytes // divisor}{letter}"
    if exact:
        whole, frac = divmod(nbytes, divisor)
        digit, r = divmod(frac * 10, divisor)
        if r * 2 >= divisor:
            digit += 1
    else:
        whole = value
        digit = rem // 100 + (1 if rem % 100 >= 50 else 0)
    if digit >= 10:
        whole += 1
        digit = 0
    return f"{prefix}{whole}.{digit}{letter}"


def format_size_digest(nbytes: int) -> str:
    """``mem_digest.py``'s ``fmt_size``: ``%.4g`` of B, KiB, MiB or GiB."""
    value = float(nbytes)
    units = ("", "Ki", "Mi", "Gi")
    i = 0
    while abs(value) >= 1024 and i < len(units) - 1:  # the scripts scale by abs()
        value /= 1024
        i += 1
    return f"{value:.4g}{units[i]}B"


def format_size_mem(nbytes: int) -> str:
    """The ``mem`` tool's ``FormatSize`` (spec §1.3): ``1.1K``, ``2K``, ``0B``."""
    value = nbytes
    rem = 0
    i = 0
    while value > 1023 and i < len(_MODERN_UNITS) - 1:
        rem = value % 1024
        value //= 1024
        i += 1
    digit = rem // 102 + (1 if rem % 102 >= 51 else 0)
    if digit >= 10:
        value += 1
        digit = 0
    if digit == 0:
        return f"{value}{_MODERN_UNITS[i]}"
    return f"{value}.{digit}{_MODERN_UNITS[i]}"
