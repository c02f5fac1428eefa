"""One table of field metadata: unit, meaning, aggregation, column header.

Columns in text views, the JSON schema, ``--help`` texts and metrics help all
read their descriptions from here, so a number is explained the same way
everywhere it appears.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str  # attribute / JSON key (bytes fields end in _bytes)
    header: str  # column header in text views
    unit: str  # "bytes", "count", "koid", "text"
    aggregate: str  # how a job totals it: "sum" or "none"
    description: str  # one sentence: what it is and which kernel field it is


PROCESS_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "pss_bytes", "PSS", "bytes", "sum",
        "Proportional set size: each resident page divided by the number of "
        "mappings of it (/proc/PID/smaps_rollup Pss, plus Private_Hugetlb).",
    ),
    FieldSpec(
        "private_bytes", "PRIVATE", "bytes", "sum",
        "Resident bytes mapped only once (smaps_rollup Private_Clean + "
        "Private_Dirty + Private_Hugetlb).",
    ),
    FieldSpec(
        "shared_bytes", "SHARED", "bytes", "none",
        "Resident bytes also mapped elsewhere (smaps_rollup Shared_Clean + "
        "Shared_Dirty + Shared_Hugetlb); not summed for jobs.",
    ),
    FieldSpec(
        "swap_bytes", "SWAP", "bytes", "sum",
        "Swap attributed to the process: proportional anonymous swap "
        "(smaps_rollup SwapPss) plus swapped shmem of its mappings "
        "(smaps_rollup Swap - status VmSwap).",
    ),
    FieldSpec(
        "rss_bytes", "RSS", "bytes", "none",
        "Resident set size (smaps_rollup Rss): every mapped resident page, "
        "shared or not.",
    ),
)

PROCESS_FIELD = {f.name: f for f in PROCESS_FIELDS}


def describe(name: str) -> str:
    """The description of a field, for help texts and schemas."""
    return PROCESS_FIELD[name].description
