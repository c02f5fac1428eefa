"""The one table of field metadata drives the schema, help texts and headers."""

from zxmem import fields
from zxmem.schema.memgraph import memgraph_schema as schema


def test_every_bytes_field_is_named_in_bytes():
    for spec in fields.PROCESS_FIELDS:
        assert spec.name.endswith("_bytes") == (spec.unit == "bytes"), spec.name
        assert spec.aggregate in ("sum", "none")
        assert spec.description.endswith("."), spec.name


def test_memgraph_schema_describes_process_fields_from_the_table():
    process = schema()["definitions"]["process"]["properties"]
    for name in ("pss_bytes", "private_bytes", "shared_bytes"):
        assert fields.describe(name) in process[name]["description"]
        assert process[name]["type"] == "integer"


def test_schema_property_is_nullable_on_request():
    prop = fields.schema_property("swap_bytes", nullable=True)
    assert prop["type"] == ["integer", "null"]
    assert "jobs: sum" in prop["description"]


def test_shared_is_never_summed_for_jobs():
    assert fields.PROCESS_FIELD["shared_bytes"].aggregate == "none"
    assert fields.PROCESS_FIELD["pss_bytes"].aggregate == "sum"


def test_ps_help_explains_columns_from_the_table(cli):
    r = cli(["ps", "--help"])
    flat = " ".join(r.stdout.split())
    for name in ("pss_bytes", "private_bytes", "shared_bytes", "swap_bytes"):
        assert " ".join(fields.describe(name).split()) in flat, name
