"""escape_terminal and SafeWriter skip their regular expressions for text
Python calls printable: sound only if every character they escape is
unprintable to Python.  Checked over every code point."""

from __future__ import annotations

import io
import sys

from zxmem import textsafe


def test_every_escaped_character_is_unprintable():
    escaped = [chr(c) for c in range(sys.maxunicode + 1)
               if textsafe._UNSAFE.search(chr(c)) is not None]
    assert len(escaped) > 2000  # the classes are there (surrogates alone: 2,048)
    assert [c for c in escaped if c.isprintable()] == []


def test_fast_path_answers_as_the_expression_does():
    for text in ("plain", "naïve café", "日本語", "a\u202eb", "x\x1b[2Jy", "\u00a0nbsp",
                 "tab\there", "\udcff", "z\u2066w"):
        slow = textsafe._UNSAFE.sub(textsafe._escape_char, text)
        assert textsafe.escape_terminal(text) == slow
        out = io.StringIO()
        textsafe.SafeWriter(out).write(text + "\n")
        expected = textsafe._UNSAFE_IN_OUTPUT.sub(textsafe._escape_char, text + "\n")
        assert out.getvalue() == expected
