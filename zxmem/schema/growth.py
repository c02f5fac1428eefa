"""The JSON Schema (draft-04) of ``zxmem growth --json``.

Sizes are integer bytes, rates bytes per second (a number) or per hour (an
integer), times nanoseconds since the epoch; ``null`` is unknown or not
applicable (a process has no cgroup charge of its own), never 0.
"""

from __future__ import annotations

from typing import Any

_INT = {"type": "integer"}
_INT_OR_NULL = {"type": ["integer", "null"]}
_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR = {"type": "string"}
_IDENTITY = {"type": "object",
             "additionalProperties": {"type": ["integer", "string", "null"]}}

PATTERNS = ("leak", "small", "short", "gone", "sawtooth", "plateau", "step", "irregular")

OBJECT: dict[str, Any] = {
    "type": "object",
    "required": ["key", "name", "kind", "rate_bytes_per_second", "rate_bytes_per_hour",
                 "first_bytes", "last_bytes", "steady", "hidden", "identity"],
    "additionalProperties": False,
    "properties": {
        "key": _STR, "name": _STR, "kind": {"type": ["string", "null"]},
        "rate_bytes_per_second": _NUM, "rate_bytes_per_hour": _INT,
        "first_bytes": _INT, "last_bytes": _INT,
        "steady": {"type": "boolean"}, "hidden": {"type": "boolean"},
        "identity": _IDENTITY,
    },
}

SUSPECT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "key", "name", "identity", "signal", "leak", "steady", "pattern", "why",
                 "rate_bytes_per_second", "rate_bytes_per_hour", "fit_r2", "rising_fraction",
                 "envelope_rate_bytes_per_second", "late_rate_bytes_per_second",
                 "growth_start_ns", "high_water_bytes", "high_water_ns", "first_bytes",
                 "last_bytes", "grown_bytes", "first_ns", "last_ns", "points",
                 "pss_rate_bytes_per_second", "pss_last_bytes",
                 "charge_rate_bytes_per_second", "charge_last_bytes", "objects"],
    "properties": {
        "kind": {"enum": ["process", "job", "object"]},
        "key": _STR, "name": _STR, "identity": _IDENTITY,
        "signal": {"enum": ["uss", "pss", "charge", "committed"]},
        "leak": {"type": "boolean"}, "steady": {"type": "boolean"},
        "pattern": {"enum": list(PATTERNS)}, "why": _STR,
        "rate_bytes_per_second": _NUM, "rate_bytes_per_hour": _INT,
        "fit_r2": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "rising_fraction": {"type": "number", "minimum": 0, "maximum": 1},
        "envelope_rate_bytes_per_second": _NUM, "late_rate_bytes_per_second": _NUM,
        "growth_start_ns": _INT, "high_water_bytes": _INT, "high_water_ns": _INT,
        "first_bytes": _INT, "last_bytes": _INT, "grown_bytes": _INT,
        "first_ns": _INT, "last_ns": _INT, "points": {"type": "integer", "minimum": 1},
        "pss_rate_bytes_per_second": _NUM_OR_NULL, "pss_last_bytes": _INT_OR_NULL,
        "charge_rate_bytes_per_second": _NUM_OR_NULL, "charge_last_bytes": _INT_OR_NULL,
        "objects": {"type": "array", "items": OBJECT},
    },
}


def growth_schema() -> dict[str, Any]:
    return {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "zxmem growth --json",
        "type": "object",
        "additionalProperties": False,
        "required": ["store", "by", "samples", "first_ns", "last_ns", "min_rate_bytes_per_hour",
                     "suspects"],
        "properties": {
            "store": _STR, "by": {"enum": ["process", "job", "object"]},
            "samples": {"type": "integer", "minimum": 1},
            "first_ns": _INT, "last_ns": _INT, "min_rate_bytes_per_hour": _NUM,
            "suspects": {"type": "array", "items": SUSPECT},
        },
    }
