"""The JSON Schema (draft-04) of zxmem's memgraph output.

It keeps every fact of Fuchsia's ``memgraph-schema.json`` (spec
fuchsia-tools §5.4) — an array whose items are meta, kernel, job, process or
thread records with the same required keys, id patterns and types — and adds
the optional ``linux`` objects described in :mod:`zxmem.memgraph`.  Extra
properties stay allowed, as in Fuchsia's schema, so a zxmem memgraph is also
valid against Fuchsia's schema, except that, like Fuchsia's own memgraph when
task stats fail, a process whose memory could not be read has no
``private_bytes``/``shared_bytes``/``pss_bytes`` (its ``linux.memory`` is
``null``).
"""

from __future__ import annotations

import json
from typing import Any

from zxmem import fields
from zxmem.model import DEFAULT_MMAP_MIN_ADDR, VMO_KINDS

_INT = {"type": "integer"}
_INT_OR_NULL = {"type": ["integer", "null"]}
_STR = {"type": "string"}
_LIMIT = {"oneOf": [{"type": "integer"}, {"enum": ["max"]}, {"type": "null"}]}
_PSI = {"type": "object", "properties": {k: {"type": "number"} for k in
                                          ("avg10", "avg60", "avg300", "total_us")}}
# A job's cgroup memory files (zxmem.sources.cgmem.cgroup_to_json); null = unknown.
CGROUP_SCHEMA = {
    "type": "object",
    "required": ["version", "charged_bytes"],
    "properties": {
        "version": {"enum": ["v1", "v2"]},
        "charged_bytes": _INT_OR_NULL, "kernel_bytes": _INT_OR_NULL,
        "swap_bytes": _INT_OR_NULL,
        "limit_bytes": _LIMIT, "high_bytes": _LIMIT, "low_bytes": _LIMIT, "min_bytes": _LIMIT,
        "soft_limit_bytes": _LIMIT,
        "stat": {"type": ["object", "null"], "additionalProperties": {"type": "integer"}},
        "events": {"type": ["object", "null"], "additionalProperties": {"type": "integer"}},
        "pressure": {"type": ["object", "null"], "properties": {"some": _PSI, "full": _PSI}},
        "missing": {"type": "array", "items": {"type": "array", "items": _STR}},
    },
}
_STR_OR_NULL = {"type": ["string", "null"]}


def _node(id_pattern: str, type_pattern: str) -> dict:
    return {
        "id": {"type": "string", "pattern": id_pattern},
        "type": {"type": "string", "pattern": type_pattern},
        "parent": _STR,
        "name": _STR,
    }


_NODE_REQUIRED = ["id", "type", "parent", "name"]

_MAPPING = {
    "type": "array",
    "description": "one smaps entry (zxmem.model.Mapping): its values in the order the "
                   "process's linux.mapping_fields names them; null = unknown",
    "items": {"type": ["integer", "string", "null"]},
}

_REGION = {
    "type": "object",
    "required": ["start", "end", "name", "kind", "mapping_indices"],
    "properties": {
        "start": _INT, "end": _INT, "name": _STR,
        "kind": {"type": "string", "enum": ["elf", "stack", "group"]},
        "mapping_indices": {"type": "array", "items": _INT},
    },
}

_MEMORY = {
    "type": ["object", "null"],
    "description": "MemoryCounts beyond PSS/PRIVATE/SHARED; null = smaps not readable",
    "properties": {
        k: fields.schema_property(k, nullable=True)
        for k in ("rss_bytes", "swap_bytes", "swap_pss_bytes", "pss_anon_bytes",
                  "pss_file_bytes", "pss_shmem_bytes", "hugetlb_bytes")
    },
}

_VMO_LINUX = {
    "type": "object",
    "properties": {
        "kind": {"type": ["string", "null"],
                 "description": "what the object is; null = unknown (a Fuchsia VMO: its "
                                "memgraph and captures record no kind)",
                 "enum": list(VMO_KINDS) + [None]},
        "dev": _INT_OR_NULL, "inode": _INT_OR_NULL, "path": _STR_OR_NULL,
        "swap_bytes": _INT_OR_NULL,
    },
}


def _meta_schema() -> dict[str, Any]:
    """The meta record: the snapshot's provenance under ``linux``."""
    return {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "pattern": "^__"},
            "timestamp": {"type": "string", "format": "date-time"},
            "linux": {
                "type": "object",
                "description": "provenance of the snapshot",
                "properties": {
                    "format": _STR,
                    "source": _STR,
                    "host": _STR_OR_NULL,
                    "kernel": _STR_OR_NULL,
                    "denied": {"type": "array",
                               "items": {"type": "array", "items": _STR}},
                    "notes": {"type": "array", "items": _STR},
                    "job_mode": _STR_OR_NULL,
                    "boot_id": {**_STR_OR_NULL, "description":
                                "/proc/sys/kernel/random/boot_id: which boot"},
                    "capture_time_ns": {**_INT_OR_NULL, "description":
                                        "when taken: Linux CLOCK_BOOTTIME, or a "
                                        "Fuchsia capture's monotonic Time"},
                    "clock_ticks_per_second": _INT_OR_NULL,
                    "mmap_min_addr": {**_INT_OR_NULL, "minimum": 0, "description":
                                      "vm.mmap_min_addr, where vmaps' /A starts; "
                                      f"absent: {DEFAULT_MMAP_MIN_ADDR:#x} is assumed"},
                    "vmos": {"type": "array", "items": {"$ref": "#/definitions/vmo"}},
                    "hidden_vmo_koids": {"type": "array", "items": _INT},
                    "vmo_holders": {
                        "type": "object",
                        "patternProperties": {
                            "^[0-9]+$": {"type": "array", "items": _INT}},
                    },
                },
            },
        },
    }


def _kernel_schema() -> dict[str, Any]:
    """A kernel record: a node with a size, meminfo and the kstats columns."""
    return {
        "type": "object",
        "required": _NODE_REQUIRED + ["size_bytes"],
        "properties": {
            **_node("^kernel/.*", "^kernel$"),
            "size_bytes": _INT,
            "linux": {
                "type": "object",
                "properties": {
                    "kernel": {"type": "object",
                               "additionalProperties": _INT_OR_NULL},
                    "meminfo": {"type": "object", "additionalProperties": _INT},
                    "extra": {"type": "object",
                              "additionalProperties": _INT_OR_NULL},
                },
            },
        },
    }


def _job_schema() -> dict[str, Any]:
    """A job record: a node with its cgroup under ``linux``."""
    return {
        "type": "object",
        "required": _NODE_REQUIRED + ["koid"],
        "properties": {
            **_node("^j/.*", "^j$"),
            "koid": _INT,
            "linux": {
                "type": "object",
                "properties": {
                    "path": _STR, "state": _STR, "charged_bytes": _INT_OR_NULL,
                    "parent_koid": _INT, "cgroup": CGROUP_SCHEMA,
                },
            },
        },
    }


def _process_linux_schema() -> dict[str, Any]:
    """A process record's ``linux`` object."""
    return {
        "type": "object",
        "properties": {
            "cmdline": {"type": ["array", "null"], "items": _STR},
            "ppid": _INT_OR_NULL,
            "uid": _INT_OR_NULL,
            "state": _STR_OR_NULL,
            "kernel_thread": {"type": "boolean"},
            "num_threads": _INT_OR_NULL,
            "vm_pte_bytes": _INT_OR_NULL,
            "start_time_ticks": {
                **_INT_OR_NULL, "description":
                "start time in clock ticks after boot (/proc/PID/stat "
                "starttime): with the boot id and the PID, the process's "
                "identity across snapshots"},
            "memory": _MEMORY,
            "mapping_fields": {"type": "array", "items": _STR},
            "mappings": {"type": "array", "items": _MAPPING},
            "regions": {"type": "array", "items": _REGION},
            "unsized_vmos": {
                "type": "array",
                "description": "references to VMOs whose committed bytes "
                               "are unknown, kept out of vmos/vmo_refs "
                               "(treemap.py reads every listed VMO's): "
                               "[position in the whole list, vmos entry, "
                               "vmo_refs entry]",
                "items": {
                    "type": "array", "minItems": 3, "maxItems": 3,
                    "items": [{"type": "integer", "minimum": 0},
                              {"$ref": "#/definitions/vmo"},
                              {"$ref": "#/definitions/vmo_ref"}],
                },
            },
        },
    }


def _process_schema() -> dict[str, Any]:
    """A process record: a node with memory, VMOs and references."""
    return {
        "type": "object",
        "required": _NODE_REQUIRED + ["koid"],
        "anyOf": [
            {"required": ["private_bytes", "shared_bytes", "pss_bytes"]},
            {"required": ["linux"],
             "properties": {"linux": {"required": ["memory"],
                                      "properties": {"memory": {"type": "null"}}}}},
        ],
        "properties": {
            **_node("^p/.*", "^p$"),
            "koid": _INT,
            "private_bytes": fields.schema_property("private_bytes"),
            "shared_bytes": fields.schema_property("shared_bytes"),
            "pss_bytes": fields.schema_property("pss_bytes"),
            "vmos": {"type": "array", "items": {"$ref": "#/definitions/vmo"}},
            "vmo_refs": {"type": "array", "items": {"$ref": "#/definitions/vmo_ref"}},
            "handle_stats": {
                "type": "object",
                "patternProperties": {"^[a-zA-Z0-9_]+$": _INT},
                "additionalProperties": False,
            },
            "linux": _process_linux_schema(),
        },
    }


def _thread_schema() -> dict[str, Any]:
    """A thread record."""
    return {
        "type": "object",
        "required": _NODE_REQUIRED + ["koid", "state"],
        "properties": {
            **_node("^t/.*", "^t$"),
            "koid": _INT,
            "state": _STR,
        },
    }


def _vmo_schema() -> dict[str, Any]:
    """A VMO entry of a process's ``vmos`` (and of meta's ``linux.vmos``)."""
    return {
        "type": "object",
        "required": ["koid"],
        "properties": {
            "koid": _INT,
            "name": _STR,
            "size_bytes": _INT,
            "parent_koid": _INT,
            "num_children": _INT,
            "num_mappings": {"type": "integer",
                             "description": "mappings of the object in all processes; "
                                            "left out when unknown (a Fuchsia "
                                            "capture does not record it)"},
            "share_count": _INT,
            "committed_bytes": {"type": "integer",
                                "description": "bytes of RAM the object holds; 0 for "
                                               "device memory (linux.kind phys); left "
                                               "out when unknown"},
            "linux": _VMO_LINUX,
        },
    }


def _vmo_ref_schema() -> dict[str, Any]:
    """How a process reaches a VMO: by handle, by mapping or both."""
    return {
        "type": "object",
        "required": ["vmo_koid", "via"],
        "properties": {
            "vmo_koid": _INT,
            "via": {"type": "array", "minItems": 1,
                    "description": "how the process reaches the VMO; when that is "
                                   "unknown (a Fuchsia capture), [\"MAPPING\"] and "
                                   "linux.via is null",
                    "items": {"type": "string", "enum": ["HANDLE", "MAPPING"]}},
            "handle_rights": {
                "type": "array",
                "items": {"type": "string",
                          "enum": ["READ", "WRITE", "EXECUTE", "MAP", "DUPLICATE",
                                   "TRANSFER"]},
            },
            "linux": {
                "type": "object",
                "properties": {
                    "fd": _INT_OR_NULL,
                    "via": {"type": "null",
                            "description": "present (null) when how the process "
                                           "reaches the VMO is unknown"},
                },
            },
        },
    }


def memgraph_schema() -> dict[str, Any]:
    """The schema as a dict (validated by the tests with ``jsonschema``)."""
    return {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "zxmem memgraph",
        "description": "Fuchsia's memgraph record array (fuchsia-tools §5) with Linux "
                       "fields under 'linux'",
        "type": "array",
        "items": {
            "anyOf": [
                {"$ref": "#/definitions/meta"},
                {"$ref": "#/definitions/kernel"},
                {"$ref": "#/definitions/job"},
                {"$ref": "#/definitions/process"},
                {"$ref": "#/definitions/thread"},
            ]
        },
        "definitions": {
            "meta": _meta_schema(),
            "kernel": _kernel_schema(),
            "job": _job_schema(),
            "process": _process_schema(),
            "thread": _thread_schema(),
            "vmo": _vmo_schema(),
            "vmo_ref": _vmo_ref_schema(),
        },
    }


def schema_text() -> str:
    """The schema as printed by ``zxmem memgraph -S``."""
    return json.dumps(memgraph_schema(), indent=2) + "\n"
