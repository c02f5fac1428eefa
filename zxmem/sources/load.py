"""``--from FILE``: read a saved snapshot, whatever produced it.

:func:`load_snapshot` tells the formats apart by their first bytes and
content (``ffx profile memory --machine json``, an object with one key
``CompleteDigest``, ``ProcessDigest`` or ``ComponentDigest``, goes to
:mod:`zxmem.sources.ffx`):

* zxmem's memgraph (a JSON array; its ``__META`` record says
  ``"format": "zxmem-memgraph/1"``) — read **one line at a time**: zxmem
  writes one record per line, so memory holds the Snapshot being built plus
  one record, never the whole text or a second copy of the parsed array;
* Fuchsia's memgraph (also an array, records may span lines and names may be
  unescaped) — read whole, parsed strictly and, if that fails, again after
  :func:`zxmem.sources.fuchsia.repair_names`;
* a Fuchsia memory-monitor capture (a JSON object, §9.2) — read whole (they
  are compact and a few MB at most).

A line that is not a complete record switches the line reader to the
whole-document path for the rest of the input, so any valid JSON array is
accepted however it is laid out.

Errors are :class:`zxmem.errors.InputError` with one line naming the input,
the byte offset or record index, and what was expected.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterator
from typing import IO, Any

from zxmem.errors import InputError
from zxmem.model import Snapshot

_CHUNK = 1 << 16
_BOM = b"\xef\xbb\xbf"

# Every input has a size limit, so a device such as /dev/zero or an endless
# pipe is a one-line error instead of a process the kernel kills.  zxmem's
# memgraph -v of a large machine is hundreds of MB; the environment
# variable raises (or lowers) the limit.
LIMIT_VARIABLE = "ZXMEM_MAX_INPUT_BYTES"
DEFAULT_LIMIT = 1 << 30  # 1 GiB


def input_limit(default: int = DEFAULT_LIMIT) -> int:
    """The most bytes zxmem reads from one input: ``$ZXMEM_MAX_INPUT_BYTES``,
    else ``default``.  A value that is not a positive integer is an error."""
    text = os.environ.get(LIMIT_VARIABLE)
    if text is None or not text.strip():
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(f"{LIMIT_VARIABLE}={text[:40]!r}: expected a positive number of bytes")
    return value


def too_large(name: str, limit: int) -> InputError:
    """The error for an input past ``limit`` bytes."""
    return InputError(f"{name}: larger than {limit} bytes, zxmem's input limit (set "
                      f"{LIMIT_VARIABLE} to a larger number of bytes to read it)")


def read_limited(stream: IO, name: str, limit: int) -> bytes:
    """All of ``stream`` (binary), or :func:`too_large` past ``limit`` bytes."""
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > limit:
            raise too_large(name, limit)
        parts.append(chunk)


class _Input:
    """A binary reader over a file or a (text or binary) stream, with offsets."""

    def __init__(self, stream: IO, name: str, limit: int | None = None) -> None:
        self.stream = stream
        self.name = name
        self.buf = b""
        self.offset = 0  # file offset of buf[0]
        self.eof = False
        self.limit = input_limit() if limit is None else limit
        self.total = 0  # bytes read so far

    def _read_chunk(self) -> bytes:
        if self.eof:
            return b""
        chunk = self.stream.read(_CHUNK)
        if not chunk:
            self.eof = True
            return b""
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "surrogateescape")
        self.total += len(chunk)
        if self.total > self.limit:
            raise too_large(self.name, self.limit)
        return chunk

    def _fill(self) -> bool:
        chunk = self._read_chunk()
        if not chunk:
            return False
        self.buf += chunk
        return True

    def peek_first(self) -> tuple[int, int]:
        """Offset and value of the first non-blank byte (-1 at end)."""
        while True:
            stripped = self.buf.lstrip()
            if stripped.startswith(_BOM):
                self.offset += len(self.buf) - len(stripped) + 3
                self.buf = stripped[3:]
                continue
            if stripped:
                skip = len(self.buf) - len(stripped)
                return self.offset + skip, stripped[0]
            self.offset += len(self.buf)
            self.buf = b""
            if not self._fill():
                return self.offset, -1

    def readline(self) -> tuple[bytes, int]:
        """The next line (with its newline) and its offset; b"" at end.

        A long line is gathered as a list of chunks and joined once, so a
        record of many megabytes costs linear time.
        """
        start = self.offset
        nl = self.buf.find(b"\n")
        if nl != -1:
            line, self.buf = self.buf[:nl + 1], self.buf[nl + 1:]
            self.offset += len(line)
            return line, start
        parts = [self.buf]
        self.buf = b""
        while True:
            chunk = self._read_chunk()
            if not chunk:
                break
            nl = chunk.find(b"\n")
            if nl != -1:
                parts.append(chunk[:nl + 1])
                self.buf = chunk[nl + 1:]
                break
            parts.append(chunk)
        line = b"".join(parts)
        self.offset += len(line)
        return line, start

    def read_rest(self) -> tuple[bytes, int]:
        parts = [self.buf]
        while True:
            chunk = self._read_chunk()
            if not chunk:
                break
            parts.append(chunk)
        data = b"".join(parts)
        self.buf = b""
        start = self.offset
        self.offset += len(data)
        return data, start


def _error(name: str, message: str) -> InputError:
    return InputError(f"{name}: {message}")


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(sorted(map(str, value))[:5])
        return f"an object with keys {keys}" if keys else "an empty object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else "a number or boolean"


def _json_error(
    name: str, data: bytes, base: int, exc: ValueError, to_input=None
) -> InputError:
    """An error naming the byte offset of a JSON (or UTF-8) failure in ``data``.

    ``to_input`` maps an offset in the parsed text back to ``data`` when the
    text was repaired first.
    """
    if isinstance(exc, _TooDeep):
        return InputError(nesting_error(name, data, base))
    if isinstance(exc, UnicodeDecodeError):
        return _error(name, f"invalid UTF-8 at byte {base + exc.start}: expected JSON text")
    if not isinstance(exc, json.JSONDecodeError):
        return _error(name, _value_error_text(data, base, exc))
    byte = len(exc.doc[: exc.pos].encode("utf-8", "surrogatepass"))
    if to_input is not None:
        byte = to_input(byte)
    if exc.msg.startswith("Unterminated string"):
        # The input ended inside a string (a raw newline would be reported
        # as an invalid control character instead).
        what = (f"truncated at byte {base + len(data)}: the JSON ends inside a string "
                f"that starts at byte {base + byte}")
    elif exc.pos >= len(exc.doc.rstrip()):
        what = f"truncated at byte {base + byte}: the JSON ends early ({exc.msg.lower()})"
    else:
        what = f"invalid JSON at byte {base + byte} ({exc.msg.lower()})"
    return _error(name, what)


_LONG_NUMBER = re.compile(rb"-?[0-9]{4000,}")


def _value_error_text(data: bytes, base: int, exc: ValueError) -> str:
    """What the JSON parser refused besides syntax: an integer longer than
    Python's int-string conversion limit (4,300 digits) is the one known."""
    m = _LONG_NUMBER.search(data)
    if m is not None:
        return (f"number at byte {base + m.start()} has {len(m.group().lstrip(b'-'))} digits: "
                "too large for any memory count")
    return f"invalid JSON ({str(exc).splitlines()[0][:100]})"


class _TooDeep(ValueError):
    """JSON nested deeper than the parser's recursion allows."""


def nesting_error(name: str, data: bytes | str, base: int = 0) -> str:
    """``NAME: nested too deeply at byte N ...`` for JSON the parser gave up
    on: N is where the nesting first reaches its deepest level (strings
    skipped), so the message points at the culprit without a traceback."""
    import re

    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    depth = deepest = 0
    at = 0
    for m in re.finditer(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', raw):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest, at = depth, m.start()
        elif c in (b"]", b"}"):
            depth -= 1
    return (f"{name}: nested too deeply at byte {base + at}: arrays or objects "
            f"{deepest} levels deep (more than zxmem's JSON reader allows)")


# A \u escape of a surrogate (paired or lone); only then is the loaded
# document walked for lone ones.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _loads(data: bytes) -> Any:
    try:
        doc = json.loads(data.decode("utf-8"))
        if _SURROGATE_ESCAPE.search(data) is not None:
            from zxmem.textsafe import clean_json

            doc = clean_json(doc)
        return doc
    except RecursionError:
        # The C scanner recurses once per level: a hostile or broken file
        # of '[[[[...' must be a one-line error, not a traceback.
        raise _TooDeep("nested too deeply") from None


def _parse_whole_array(name: str, data: bytes, base: int, notes: list[str]) -> list:
    """Parse a memgraph array strictly, else with Fuchsia's names repaired."""
    try:
        doc = _loads(data)
    except ValueError as exc:
        strict = exc
        from zxmem.memgraph import FORMAT
        from zxmem.sources.fuchsia import original_offset, repair_names_mapped

        if FORMAT.encode() in data:
            raise _json_error(name, data, base, strict) from None  # ours is always valid
        fixed, changed, anchors = repair_names_mapped(data)
        try:
            doc = _loads(fixed)
        except json.JSONDecodeError as exc:
            # Report where the repaired document breaks, in the input's offsets.
            raise _json_error(name, data, base, exc,
                              lambda b: original_offset(anchors, b)) from None
        except ValueError:
            raise _json_error(name, data, base, strict) from None
        notes.append(f"{changed} unescaped names repaired")
    if not isinstance(doc, list):
        raise _error(name, f"expected a memgraph array, found {_describe(doc)}")
    return doc


def _memgraph_records(inp: _Input, notes: list[str]) -> Iterator[Any]:
    """Records of a memgraph array, one line at a time when the layout allows."""
    name = inp.name
    first, first_off = inp.readline()
    if first.strip() != b"[":
        rest, _ = inp.read_rest()
        yield from _parse_whole_array(name, first + rest, first_off, notes)
        return
    index = 0
    expect_more = True  # after '[' or a trailing comma, a record must follow
    while True:
        line, off = inp.readline()
        if not line:
            if expect_more and index:
                raise _error(name, f"truncated at byte {off}: expected another record or ']' "
                                   f"after record {index - 1}")
            raise _error(name, f"truncated at byte {off}: expected ']' to close the array"
                               f" after record {index - 1}" if index else
                               f"truncated at byte {off}: expected a record or ']'")
        body = line.strip()
        if not body:
            continue
        if body == b"]":
            trail, toff = inp.read_rest()
            if trail.strip():
                skip = len(trail) - len(trail.lstrip())
                raise _error(name, f"unexpected data at byte {toff + skip} after the array's ']'")
            if expect_more and index:
                raise _error(name, f"invalid JSON at byte {off}: expected a record after the "
                                   f"',' that follows record {index - 1}")
            return
        if not expect_more:
            raise _error(name, f"invalid JSON at byte {off}: expected ',' or ']' after record "
                               f"{index - 1}")
        more = body.endswith(b",")
        try:
            rec = _loads(body[:-1] if more else body)
        except ValueError:
            # Not one record per line (Fuchsia's -v layout, or unescaped
            # names): parse the rest as a whole.
            rest, _ = inp.read_rest()
            yield from _parse_whole_array(name, b"[" + line + rest, off - 1, notes)
            return
        yield rec
        index += 1
        expect_more = more


def load_snapshot(src: str | os.PathLike | IO, limit: int | None = None, *,
                  objects: bool = True, objects_of: Collection[int] | None = None,
                  mappings: bool | Collection[int] = False) -> Snapshot:
    """Read a zxmem memgraph, a Fuchsia memgraph, a Fuchsia capture, ffx
    profile memory output, or a sample of a history store (``STORE`` or
    ``STORE@WHEN``, :mod:`zxmem.store`).

    ``src`` is a path or an open stream (binary, or text such as stdin).
    Raises :class:`InputError` (exit 1) with the file name, the byte offset
    or record index, and what was expected; also for an input longer than
    ``limit`` bytes (default :func:`input_limit`).  ``objects`` False: a
    store sample is read without its memory objects; ``objects_of`` (PIDs):
    with only those processes' references and the objects they reach
    (files are read whole).  ``mappings``: what a store sample reads of the
    mappings it holds (every process's: True; these PIDs'); a file holds
    what it holds.
    """
    if isinstance(src, (str, os.PathLike)):
        name = os.fsdecode(src)
        from zxmem.store import load_from_store  # a history store, STORE@WHEN

        stored = load_from_store(name, objects=objects, objects_of=objects_of,
                                 mappings=mappings)
        if stored is not None:
            return stored
        try:
            f = open(src, "rb")
        except OSError as exc:
            raise InputError(f"{name}: {exc.strerror}") from None
        with f:
            return _load(_Input(f, name, limit))
    stream = getattr(src, "buffer", src)
    stream_name = getattr(src, "name", None)
    return _load(_Input(stream, stream_name if isinstance(stream_name, str) else "<stream>",
                        limit))


def _load(inp: _Input) -> Snapshot:
    from zxmem.memgraph import snapshot_from_records

    name = inp.name
    try:
        off, first = inp.peek_first()
    except OSError as exc:
        raise InputError(f"{name}: {exc.strerror}") from None
    if first == -1:
        raise _error(name, "empty input: expected memgraph JSON (an array) or a Fuchsia "
                           "capture (an object)")
    try:
        if first == ord("["):
            notes: list[str] = []
            try:
                return snapshot_from_records(_memgraph_records(inp, notes),
                                             source="fuchsia-memgraph", notes=notes)
            except InputError as exc:
                msg = str(exc)
                raise _error(name, msg) if not msg.startswith(name + ":") else exc from None
        if first == ord("{"):
            return _load_object(inp)
    except OSError as exc:
        raise InputError(f"{name}: {exc.strerror}") from None
    shown = bytes([first]).decode("latin-1")
    raise _error(name, f"not JSON: expected '[' (memgraph) or '{{' (capture) at byte {off}, "
                       f"found {shown!r}")


def _load_object(inp: _Input) -> Snapshot:
    from zxmem.sources.fuchsia import is_capture, snapshot_from_capture

    name = inp.name
    data, base = inp.read_rest()
    try:
        doc = _loads(data)
    except ValueError as exc:
        raise _json_error(name, data, base, exc) from None
    from zxmem.sources.ffx import is_ffx, snapshot_from_ffx

    if is_ffx(doc):  # `ffx profile memory --machine json`
        try:
            return snapshot_from_ffx(doc)
        except InputError as exc:
            raise _error(name, str(exc)) from None
    if not is_capture(doc):
        raise _error(name, f"not a memgraph or a Fuchsia capture: found {_describe(doc)} "
                           "(expected a memgraph array, an object with 'Kernel' and "
                           "'Processes', or ffx profile memory JSON)")
    try:
        return snapshot_from_capture(doc)
    except InputError as exc:
        raise _error(name, str(exc)) from None
