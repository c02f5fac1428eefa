"""Making untrusted strings (process names, command lines, file names) safe.

Names come from other processes and may hold any bytes.  Parsers decode them
with :func:`decode_name` so the model only ever holds valid ``str``; views
pass them through :func:`escape_terminal` before printing, so no byte of a
name can move the cursor, clear a line, start a new row or recolour the
terminal.  JSON output needs no extra step (``json`` escapes control
characters and the decoded strings are valid Unicode); HTML and metrics
outputs have their own escapers next to their writers.
"""

from __future__ import annotations

import re
import unicodedata


def decode_name(raw: bytes) -> str:
    """Decode bytes from the kernel; invalid UTF-8 becomes ``\\xNN`` text."""
    return raw.decode("utf-8", "backslashreplace")


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}

# C0 controls, DEL, C1 controls, and Unicode format characters that reorder
# or hide text (bidi overrides, zero-width characters, line/paragraph seps).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group(0)
    named = _NAMED.get(ch)
    if named:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def escape_terminal(text: str) -> str:
    """Escape every character that could change what a terminal shows."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_char, text)


def display_width(text: str) -> int:
    """Terminal columns taken by ``text`` (wide East Asian characters count 2)."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def truncate_to_width(text: str, width: int) -> str:
    """Cut ``text`` (already escaped) to at most ``width`` terminal columns."""
    if width <= 0:
        return ""
    if text.isascii():
        return text if len(text) <= width else text[:width]
    out = []
    used = 0
    for ch in text:
        w = 0 if unicodedata.combining(ch) else (
            2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        )
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out)
