"""zxmem.record: records behave as frozen, slotted dataclasses do."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from zxmem import record
from zxmem.model import Job, Process, Provenance, Snapshot
from zxmem.record import Record, field


class Point(Record):
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


class Point3(Point):
    z: int = 9


class Counter(Record, frozen=False):
    n: int = 0


def test_init_eq_hash_repr():
    p = Point(1, tags=["a"])
    assert (p.x, p.y, p.tags) == (1, 0, ["a"])
    assert p == Point(1, 0, ["a"]) and p != Point(2)
    assert Point(1) != (1, 0, [])  # another class is never equal
    assert repr(Point(1)) == "Point(x=1, y=0, tags=[])"
    assert hash(Job(1, "a", 0)) == hash(Job(1, "a", 0))
    assert Point(1).tags is not Point(1).tags  # a fresh default each time
    assert Point3(1, 2).z == 9 and Point3.__match_args__ == ("x", "y", "tags", "z")
    assert not hasattr(Point(1), "__dict__")  # slots


def test_init_errors_as_python_gives_them():
    with pytest.raises(TypeError):
        Point()
    with pytest.raises(TypeError):
        Point(1, 2, [], 4)
    with pytest.raises(TypeError):
        Point(1, w=2)
    with pytest.raises(TypeError):
        Point(1, x=2)


def test_generic_and_compiled_init_agree():
    made = [Point(i, tags=[str(i)]) for i in range(record._COMPILE_AFTER + 5)]
    assert made[0].__class__.__dict__["__init__"].__code__.co_varnames[:3] == (
        "self", "x", "y")  # compiled by now
    assert made[-1] == Point(made[-1].x, 0, [str(made[-1].x)])
    assert [m.x for m in made] == list(range(len(made)))
    provs = [Provenance("linux", denied=(("smaps_rollup:1", "EACCES"),))
             for _ in range(record._COMPILE_AFTER + 5)]  # __post_init__ both ways
    assert {type(p.denied[0]).__name__ for p in provs} == {"Denied"}


def test_frozen():
    p = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.x  # type: ignore[misc]
    c = Counter()
    c.n += 1
    assert c.n == 1
    with pytest.raises(TypeError):
        hash(c)


def test_dataclasses_functions_work():
    p = Process(koid=5, name="a", job_koid=1)
    assert dataclasses.is_dataclass(p) and dataclasses.is_dataclass(Snapshot)
    assert dataclasses.replace(p, name="b") == Process(koid=5, name="b", job_koid=1)
    assert record.replace(p, name="b") == dataclasses.replace(p, name="b")
    assert [f.name for f in dataclasses.fields(Point)] == ["x", "y", "tags"]
    assert dataclasses.fields(Point(1))[1].default == 0
    assert dataclasses.asdict(Point(1, 2, ["t"])) == {"x": 1, "y": 2, "tags": ["t"]}
    assert dataclasses.replace(Point(1, tags=["q"]), x=3) == Point(3, 0, ["q"])


def test_pickle_and_copy():
    p = Point3(1, 2, ["a"], 4)
    for other in (pickle.loads(pickle.dumps(p)), copy.copy(p), copy.deepcopy(p)):
        assert other == p and type(other) is Point3
