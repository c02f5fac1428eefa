"""Making untrusted strings (process names, command lines, file names) safe.

Names come from other processes and may hold any bytes.  Parsers decode them
with :func:`decode_name` so the model only ever holds valid ``str``; views
pass them through :func:`escape_terminal` before printing, so no byte of a
name can move the cursor, clear a line, start a new row or recolour the
terminal.  JSON output needs no extra step (``json`` escapes control
characters and the decoded strings are valid Unicode); HTML and metrics
outputs have their own escapers next to their writers.

One rule for every undecodable byte: it becomes the four characters
``\\xNN``, whether it came through :func:`decode_name`, a ``str`` path the
OS decoded with ``surrogateescape`` (:func:`clean_text`), or reached
:func:`escape_terminal` as a lone surrogate.  So the model never holds a lone
surrogate, JSON output never carries one, and a name reads the same in
every view and every format.

:class:`SafeWriter` is the last line: the CLI wraps its output streams in it,
so a control character that a view forgot to escape still never reaches
the terminal raw (a forgotten newline can still split a row: views escape
every name cell themselves, and the unit tests check each view).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself costs start-up
if TYPE_CHECKING:
    import re
    from typing import Any, TextIO


def decode_name(raw: bytes) -> str:
    """Decode bytes from the kernel; invalid UTF-8 becomes ``\\xNN`` text."""
    return raw.decode("utf-8", "backslashreplace")


class _LazyPattern:
    """A regular expression compiled on first use: these character classes
    take about 2 ms to compile, and most runs (plain ASCII names) never need
    them thanks to the ``isascii`` checks below."""

    __slots__ = ("_source", "_compiled")

    def __init__(self, source: str) -> None:
        self._source = source
        self._compiled: re.Pattern[str] | None = None

    def _get(self) -> re.Pattern[str]:
        if self._compiled is None:
            import re  # not at start-up: a plain install's site does not load it

            self._compiled = re.compile(self._source)
        return self._compiled

    def search(self, text: str) -> re.Match[str] | None:
        return self._get().search(text)

    def split(self, text: str) -> list[str]:
        return self._get().split(text)

    def sub(self, repl: Any, text: str) -> str:
        return self._get().sub(repl, text)


# Lone surrogates: U+DC80..U+DCFF is how ``surrogateescape`` holds an
# undecodable byte; any other lone surrogate has no byte behind it.
_SURROGATE = _LazyPattern("[\ud800-\udfff]")


def _surrogate_text(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def clean_text(text: str) -> str:
    """``text`` without lone surrogates: a ``surrogateescape``d byte becomes
    ``\\xNN`` (as :func:`decode_name` spells it), any other one ``\\uXXXX``.

    For strings the OS decoded (``os.listdir``/``os.readlink``/``scandir`` on
    ``str`` paths) and strings read from JSON (``"\\udcff"``)."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(lambda m: _surrogate_text(m.group(0)), text)


def clean_json(doc: Any) -> Any:
    """``doc`` (as ``json.loads`` returns it) with :func:`clean_text` applied
    to every string, keys included: a ``"\\udcff"`` escape read from a file
    must not reach the model as a lone surrogate."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return clean_text(value)
        if isinstance(value, list):
            stack.append(value)
        elif isinstance(value, dict):
            value = {clean_text(k): v for k, v in value.items()}
            stack.append(value)
        return value

    stack: list = []
    top = clean(doc)
    while stack:  # no recursion: the document may be deeply nested
        node = stack.pop()
        if isinstance(node, list):
            for i, v in enumerate(node):
                node[i] = clean(v)
        else:
            for k, v in node.items():
                node[k] = clean(v)
    return top


def fs_text(path: str | bytes) -> str:
    """A file system path as text (bytes or an OS-decoded ``str``)."""
    if isinstance(path, str):
        path = os.fsencode(path)
    return decode_name(path)


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}

# C0 controls, DEL, C1 controls, and Unicode format characters that reorder
# or hide text (bidi overrides, zero-width characters, line/paragraph seps).
_UNSAFE_CLASS = "\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff"
_UNSAFE = _LazyPattern(f"[\x00-\x1f{_UNSAFE_CLASS}]")
# What SafeWriter escapes: all of the above but the newline and tab that
# views print between rows and cells.
_UNSAFE_IN_OUTPUT = _LazyPattern(f"[\x00-\x08\x0b-\x1f{_UNSAFE_CLASS}]")
# The ASCII characters it keeps.
_ASCII_OK = b"\t\n" + bytes(range(0x20, 0x7F))


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group(0)
    named = _NAMED.get(ch)
    if named:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return _surrogate_text(ch)
    return f"\\u{code:04x}"


def escape_terminal(text: str) -> str:
    """Escape every character that could change what a terminal shows."""
    if text.isprintable():
        # Every character escaped is unprintable to Python (Cc, Cf, Cs, Zl,
        # Zp or unassigned): a printable text has none, and no regular
        # expression is compiled or run for it.
        return text
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_char, text)


# Colour: the only escape sequences zxmem itself prints.  SGR (Select
# Graphic Rendition) codes by name; :func:`colored` wraps zxmem's own text
# (numbers) in one of them and the reset.  Untrusted strings never get
# here: they go through escape_terminal, which turns every ESC into ``\e``.
SGR_CODES = {"dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36",
             "bold red": "1;31"}
SGR_RESET = "\x1b[0m"
# The sequences are "\x1b[" digits/semicolons "m": only "[" needs escaping.
_SGR_ALLOWED = _LazyPattern(
    "(" + "|".join(f"\x1b\\[{c}m" for c in (*SGR_CODES.values(), "0")) + ")")


def colored(text: str, color: str | None) -> str:
    """``text`` (zxmem's own, never an untrusted string) in ``color`` (a key
    of :data:`SGR_CODES`); unchanged when ``color`` is None."""
    if color is None or not text:
        return text
    if _UNSAFE.search(text) is not None:
        raise ValueError("colored() is for zxmem's own text")
    return f"\x1b[{SGR_CODES[color]}m{text}{SGR_RESET}"


class SafeWriter:
    """A text stream that escapes, as :func:`escape_terminal` does, every
    character of a write that could act on a terminal, keeping newlines and
    tabs; everything else is passed to the wrapped stream.

    With ``allow_color`` set (a command that decided to colour its output
    sets it), the exact colour sequences of :data:`SGR_CODES` and the reset
    pass through; every other escape is still escaped."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.allow_color = False

    def write(self, text: str) -> int:
        if text.isascii():
            # The common case (all JSON, most tables), checked in C at about
            # 1 ns a character; a regular expression takes ten times longer.
            if not text.encode("ascii").translate(None, _ASCII_OK):
                return self._stream.write(text)
        elif text.replace("\n", "").replace("\t", "").isprintable():
            return self._stream.write(text)  # as escape_terminal's first check
        if _UNSAFE_IN_OUTPUT.search(text) is not None:
            if self.allow_color and "\x1b" in text:
                parts = _SGR_ALLOWED.split(text)
                # Odd items are the allowed sequences the split kept.
                text = "".join(
                    part if i % 2 else _UNSAFE_IN_OUTPUT.sub(_escape_char, part)
                    for i, part in enumerate(parts))
            else:
                text = _UNSAFE_IN_OUTPUT.sub(_escape_char, text)
        return self._stream.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def display_width(text: str) -> int:
    """Terminal columns taken by ``text`` (wide East Asian characters count 2)."""
    if text.isascii():
        return len(text)
    import unicodedata  # not at start-up: ASCII text never needs it

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
    import unicodedata

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


ELLIPSIS = "..."


def shorten_middle(text: str, width: int, keep_tail: bool = True) -> str:
    """``text`` (already escaped) in at most ``width`` terminal columns, cut
    in the middle with ``...``.

    A path keeps its file name (after the last ``/``) whole when it fits
    with the ``...`` and at least one leading character; otherwise head and
    tail share the room.  ``keep_tail`` False cuts only at the end (no
    ``...``), as for a command line, whose start says most.
    """
    if display_width(text) <= width:
        return text
    if width <= len(ELLIPSIS) or not keep_tail:
        return truncate_to_width(text, width)
    room = width - len(ELLIPSIS)
    slash = text.rfind("/")
    if 0 < slash < len(text) - 1:
        tail = text[slash:]
        tail_w = display_width(tail)
        if tail_w + 1 <= room:
            return truncate_to_width(text, room - tail_w) + ELLIPSIS + tail
    head_w = (room + 1) // 2
    head = truncate_to_width(text, head_w)
    tail_w = room - display_width(head)
    return head + ELLIPSIS + _last_columns(text, tail_w)


def _last_columns(text: str, width: int) -> str:
    """The end of ``text`` in at most ``width`` columns."""
    return truncate_to_width(text[::-1], width)[::-1] if width > 0 else ""
