"""One table of field metadata: unit, meaning, aggregation, column header.

Columns in text views, the JSON schema, ``--help`` texts and metrics help all
read their descriptions from here, so a number is explained the same way
everywhere it appears.
"""

from __future__ import annotations

from zxmem.record import Record


class FieldSpec(Record):
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
    FieldSpec(
        "swap_pss_bytes", "SWAPPSS", "bytes", "sum",
        "Proportional anonymous swap (smaps_rollup SwapPss): each swap slot "
        "divided by the number of processes referring to it.",
    ),
    FieldSpec(
        "pss_anon_bytes", "PSS_ANON", "bytes", "sum",
        "The part of PSS in anonymous pages (smaps_rollup Pss_Anon, Linux 5.8+).",
    ),
    FieldSpec(
        "pss_file_bytes", "PSS_FILE", "bytes", "sum",
        "The part of PSS in file page cache (smaps_rollup Pss_File, Linux 5.8+).",
    ),
    FieldSpec(
        "pss_shmem_bytes", "PSS_SHMEM", "bytes", "sum",
        "The part of PSS in shmem/tmpfs/memfd pages (smaps_rollup Pss_Shmem, "
        "Linux 5.8+).",
    ),
    FieldSpec(
        "hugetlb_bytes", "HUGETLB", "bytes", "sum",
        "hugetlbfs pages mapped (smaps_rollup Private_Hugetlb + Shared_Hugetlb), "
        "which the kernel leaves out of Rss and Pss.",
    ),
)

PROCESS_FIELD = {f.name: f for f in PROCESS_FIELDS}

# Job-only columns (``ps --cgroup``): what the job's cgroup itself says.
JOB_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "charged_bytes", "CHARGED", "bytes", "none",
        "What the cgroup is charged, its descendants included (memory.current; "
        "v1 memory.usage_in_bytes): what docker stats, systemd-cgtop and "
        "Kubernetes report.",
    ),
    FieldSpec(
        "limit_bytes", "LIMIT", "bytes", "none",
        "The cgroup's hard limit (memory.max; v1 memory.limit_in_bytes); 'max' "
        "when there is none.",
    ),
    FieldSpec(
        "file_bytes", "FILE", "bytes", "none",
        "Page cache charged to the cgroup, mapped or not (memory.stat file; v1 "
        "total_cache).",
    ),
    FieldSpec(
        "kernel_bytes", "KERNEL", "bytes", "none",
        "Kernel memory charged to the cgroup: stacks, page tables, slab "
        "(memory.stat kernel; v1 memory.kmem.usage_in_bytes).",
    ),
)

JOB_FIELD = {f.name: f for f in JOB_FIELDS}
_FIELD = {**PROCESS_FIELD, **JOB_FIELD}


def describe(name: str) -> str:
    """The description of a field, for help texts and schemas."""
    return _FIELD[name].description


def header(name: str) -> str:
    """The column header of a field in text views."""
    return _FIELD[name].header


def schema_property(name: str, nullable: bool = False) -> dict:
    """A JSON Schema property for a field, carrying its description."""
    spec = _FIELD[name]
    kind = "integer" if spec.unit in ("bytes", "count", "koid") else "string"
    return {
        "type": [kind, "null"] if nullable else kind,
        "description": f"{spec.description} Unit: {spec.unit}; jobs: {spec.aggregate}.",
    }


def help_block(names: tuple[str, ...], indent: int = 2, width: int = 9) -> str:
    """Column explanations for ``--help`` (one paragraph per field)."""
    import textwrap

    lines = []
    for name in names:
        spec = _FIELD[name]
        first = " " * indent + spec.header.ljust(width)
        body = textwrap.wrap(spec.description, 78 - len(first))
        lines.append(first + body[0])
        lines.extend(" " * len(first) + rest for rest in body[1:])
    return "\n".join(lines)
