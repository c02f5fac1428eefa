"""format_size and friends against the test vectors of spec fuchsia-tools §1.2–1.3."""

from __future__ import annotations

import pytest

from zxmem.units import format_size, format_size_digest, format_size_mem, unit_index

K = 1024
M = K * K
G = M * K
T = G * K
P = T * K
E = P * K
U64_MAX = 2**64 - 1

# Natural unit, identical for V1 and V2 (spec §1.2 table, unmarked rows, plus
# the "other consequences worth testing").
COMMON_NATURAL = [
    (0, "0B"),
    (1, "1B"),
    (1023, "1023B"),
    (1024, "1k"),
    (1025, "1025B"),
    (9 * K, "9k"),
    (9 * K + 1, "9217B"),
    (10 * K, "10k"),
    (M - K, "1023k"),
    (M, "1M"),
    (M + K, "1025k"),
    (M - 1, "1024.0k"),
    (M + M // 3, "1365.3k"),
    (G - 1, "1024.0M"),
    (T - 1, "1024.0G"),
    (P - 1, "1024.0T"),
    (E - 1, "1024.0P"),
    (U64_MAX, "16.0E"),
    (9999, "9999B"),
    (10000, "9.8k"),
    (9999 * K, "9999k"),
    (9999 * K + 1, "9999.0k"),
    (10000 * K, "9.8M"),
    (2 * M + 1, "2.0M"),
    (28672, "28k"),
]

# Rows where the two rounding rules differ: (bytes, V2, V1).
DIFFERING = [
    (10700, "10.4k", "10.5k"),
    (10701, "10.5k", "10.5k"),
    (69887590, "66.6M", "66.7M"),
    (69887591, "66.7M", "66.7M"),
]

FIXED_U64_MAX = [
    ("B", "18446744073709551615B"),
    ("k", "18014398509481984.0k"),
    ("M", "17592186044416.0M"),
    ("G", "17179869184.0G"),
    ("T", "16777216.0T"),
    ("P", "16384.0P"),
    ("E", "16.0E"),
]


@pytest.mark.parametrize(("nbytes", "expected"), COMMON_NATURAL)
def test_natural_v2_default(nbytes, expected):
    assert format_size(nbytes) == expected


@pytest.mark.parametrize(("nbytes", "expected"), COMMON_NATURAL)
def test_natural_v1_same_where_unmarked(nbytes, expected):
    assert format_size(nbytes, exact=False) == expected


@pytest.mark.parametrize(("nbytes", "v2", "v1"), DIFFERING)
def test_rounding_variants_differ(nbytes, v2, v1):
    assert format_size(nbytes) == v2
    assert format_size(nbytes, exact=True) == v2
    assert format_size(nbytes, exact=False) == v1


@pytest.mark.parametrize(("unit", "expected"), FIXED_U64_MAX)
@pytest.mark.parametrize("exact", [True, False])
def test_fixed_units_u64_max(unit, expected, exact):
    assert format_size(U64_MAX, unit, exact=exact) == expected


@pytest.mark.parametrize("exact", [True, False])
def test_fixed_units_other_vectors(exact):
    assert format_size(G, "k", exact=exact) == "1048576k"
    assert format_size(M // 10, "M", exact=exact) == "0.1M"
    assert format_size(40000, "M", exact=exact) == "0.0M"
    assert format_size(9 * K, "k", exact=exact) == "9k"
    assert format_size(2048 * M, "M", exact=exact) == "2048M"
    assert format_size(0, "M", exact=exact) == "0M"


@pytest.mark.parametrize("exact", [True, False])
def test_unknown_unit_letter_prefixes_question_mark(exact):
    # The library's own behaviour: '?' and then natural units.
    assert format_size(G, "q", exact=exact) == "?1G"
    assert format_size(K, "q", exact=exact) == "?1k"
    assert format_size(G + 1, "#", exact=exact) == "?1.0G"
    assert format_size(K + 1, "#", exact=exact) == "?1025B"


def test_only_first_letter_of_unit_counts():
    assert format_size(G, "kilo") == "1048576k"


def test_upper_case_k():
    # The modern library spells KiB "K"; --units=K selects it.
    assert unit_index("K") == unit_index("k") == 1
    assert format_size(G, "K", upper_k=True) == "1048576K"
    assert format_size(28672, upper_k=True) == "28K"
    assert format_size(28672) == "28k"


def test_unit_index():
    assert [unit_index(c) for c in "BkMGTPE"] == list(range(7))
    assert unit_index("") is None
    assert unit_index("q") is None
    assert unit_index("m") is None


def test_unknown_bytes_is_dash_never_zero():
    assert format_size(None) == "-"
    assert format_size(None, "k") == "-"


def test_output_never_contains_space_and_fits_21_chars():
    for nbytes, _ in COMMON_NATURAL:
        for unit in (None, *"BkMGTPE"):
            text = format_size(nbytes, unit)
            assert " " not in text
            assert len(text) <= 21


# format_size_mem: the `mem` tool's FormatSize (spec §1.3).
@pytest.mark.parametrize(
    ("nbytes", "expected"),
    [
        (0, "0B"),
        (1023, "1023B"),
        (1024, "1K"),
        (1025, "1K"),
        (1124, "1.1K"),
        (1536, "1.5K"),
        (2047, "2K"),
        (M, "1M"),
        (M + M // 2, "1.5M"),
        # The upstream vector 1024^7 overflows uint64 to 0 before formatting.
        ((1024**7) & U64_MAX, "0B"),
    ],
)
def test_format_size_mem(nbytes, expected):
    assert format_size_mem(nbytes) == expected


# format_size_digest: mem_digest.py's "%.4g" sizes (spec §1.3).
@pytest.mark.parametrize(
    ("nbytes", "expected"),
    [
        (0, "0B"),
        (1023, "1023B"),
        (1024, "1KiB"),
        (1535, "1.499KiB"),
        (32 * M, "32MiB"),
        (10248000, "9.773MiB"),
        (3 * G, "3GiB"),
        # Gi is the largest unit: a TiB prints as 1024GiB.
        (T, "1024GiB"),
    ],
)
def test_format_size_digest(nbytes, expected):
    assert format_size_digest(nbytes) == expected
