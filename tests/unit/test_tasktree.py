"""TaskTree: walk order, job totals (PSS/PRIVATE to every ancestor, SHARED never)."""

from __future__ import annotations

from zxmem.model import Job, MemoryCounts, Process, Provenance, Snapshot, Thread
from zxmem.tasktree import TaskTree

K = 1024


def mem(pss: int, private: int, shared: int, swap: int | None = None) -> MemoryCounts:
    return MemoryCounts(
        pss_bytes=pss * K, private_bytes=private * K, shared_bytes=shared * K,
        swap_bytes=None if swap is None else swap * K,
    )


def snapshot(processes, jobs=None) -> Snapshot:
    jobs = jobs or (
        Job(1, "root", 0, path="/"),
        Job(20, "apps", 1, path="/apps"),
        Job(30, "web", 20, path="/apps/web"),
        Job(25, "db", 20, path="/apps/db"),
        Job(40, "empty", 1, path="/empty"),
    )
    return Snapshot(Provenance("test"), tuple(jobs), tuple(processes))


PROCS = (
    Process(100, "init", 1, cmdline=("/sbin/init",), memory=mem(10, 8, 4, swap=1)),
    Process(300, "nginx", 30, cmdline=("nginx: master",), memory=mem(100, 90, 20, swap=2),
            threads=(Thread(300, "nginx", "blocked"), Thread(301, "worker", "running"))),
    Process(301, "nginx", 30, cmdline=("nginx: worker",), memory=mem(50, 40, 20)),
    Process(250, "postgres", 25, cmdline=("postgres",), memory=mem(200, 150, 100, swap=5)),
)


def rows_by_koid(tree: TaskTree, **kw):
    return {(r.kind, r.koid): r for r in tree.walk(**kw)}


def test_pss_and_private_summed_to_every_ancestor():
    rows = rows_by_koid(TaskTree(snapshot(PROCS)))
    assert rows[("j", 30)].pss_bytes == 150 * K
    assert rows[("j", 30)].private_bytes == 130 * K
    assert rows[("j", 25)].pss_bytes == 200 * K
    assert rows[("j", 20)].pss_bytes == 350 * K
    assert rows[("j", 20)].private_bytes == 280 * K
    assert rows[("j", 1)].pss_bytes == 360 * K
    assert rows[("j", 1)].private_bytes == 288 * K


def test_shared_never_summed():
    rows = rows_by_koid(TaskTree(snapshot(PROCS)))
    for (kind, _), r in rows.items():
        if kind == "j":
            assert r.shared_bytes is None
    assert rows[("p", 300)].shared_bytes == 20 * K


def test_swap_summed_over_known_values():
    rows = rows_by_koid(TaskTree(snapshot(PROCS)))
    assert rows[("j", 30)].swap_bytes == 2 * K  # 301's swap is unknown
    assert rows[("j", 1)].swap_bytes == 8 * K
    assert rows[("j", 40)].swap_bytes is None


def test_empty_job_totals_are_zero():
    # Nothing below it is unknown: the sum over no processes is 0.
    r = rows_by_koid(TaskTree(snapshot(PROCS)))[("j", 40)]
    assert (r.pss_bytes, r.private_bytes, r.unknown_processes) == (0, 0, 0)


def test_unknown_processes_counted_and_add_nothing():
    procs = (*PROCS, Process(302, "nginx", 30, cmdline=("nginx: worker",), memory=None))
    rows = rows_by_koid(TaskTree(snapshot(procs)))
    assert rows[("j", 30)].pss_bytes == 150 * K
    assert rows[("j", 30)].unknown_processes == 1
    assert rows[("j", 20)].unknown_processes == 1
    assert rows[("j", 1)].unknown_processes == 1
    assert rows[("j", 25)].unknown_processes == 0
    assert rows[("p", 302)].pss_bytes is None


def test_job_with_only_unknown_processes_has_none_totals():
    procs = (
        Process(100, "init", 1, memory=mem(10, 8, 4)),
        Process(400, "secret", 40, memory=None),
        Process(401, "secret", 40, memory=MemoryCounts()),  # pss None too
    )
    rows = rows_by_koid(TaskTree(snapshot(procs)))
    assert rows[("j", 40)].pss_bytes is None
    assert rows[("j", 40)].private_bytes is None
    assert rows[("j", 40)].unknown_processes == 2
    # The parent knows one process: a partial sum, with the count beside it.
    assert rows[("j", 1)].pss_bytes == 10 * K
    assert rows[("j", 1)].unknown_processes == 2


def test_walk_order_processes_before_subjobs():
    tree = TaskTree(snapshot(PROCS))
    order = [(r.kind, r.koid, r.depth) for r in tree.walk()]
    assert order == [
        ("j", 1, 0),
        ("p", 100, 1),
        ("j", 20, 1),
        ("j", 25, 2),
        ("p", 250, 3),
        ("j", 30, 2),
        ("p", 300, 3),
        ("p", 301, 3),
        ("j", 40, 1),
    ]


def test_walk_threads_follow_their_process():
    tree = TaskTree(snapshot(PROCS))
    rows = [(r.kind, r.koid, r.depth, r.state) for r in tree.walk(30, threads=True)]
    assert rows == [
        ("j", 30, 0, ""),
        ("p", 300, 1, ""),
        ("t", 300, 2, "blocked"),
        ("t", 301, 2, "running"),
        ("p", 301, 1, ""),
    ]


def test_walk_from_job_starts_at_depth_zero():
    rows = list(TaskTree(snapshot(PROCS)).walk(20))
    assert rows[0].kind == "j" and rows[0].koid == 20 and rows[0].depth == 0
    assert {r.koid for r in rows if r.kind == "p"} == {250, 300, 301}


def test_walk_without_processes():
    rows = list(TaskTree(snapshot(PROCS)).walk(processes=False))
    assert {r.kind for r in rows} == {"j"}
    assert rows[0].pss_bytes == 360 * K  # totals still include them


def test_sort_by_pss():
    procs = (*PROCS, Process(299, "big", 30, cmdline=("big",), memory=mem(120, 100, 0)))
    tree = TaskTree(snapshot(procs))
    order = [(r.kind, r.koid) for r in tree.walk(sort="pss")]
    # Within apps: web (270k) before db (200k), though db's koid is lower;
    # within web: 299 (120k), 300 (100k), 301 (50k).
    assert order == [
        ("j", 1), ("p", 100), ("j", 20), ("j", 30), ("p", 299), ("p", 300),
        ("p", 301), ("j", 25), ("p", 250), ("j", 40),
    ]
    default = [(r.kind, r.koid) for r in tree.walk()]
    assert default.index(("j", 25)) < default.index(("j", 30))


def test_sort_by_private_and_name():
    procs = (
        Process(10, "b", 1, cmdline=("zeta",), memory=mem(5, 5, 0)),
        Process(11, "a", 1, cmdline=("alpha",), memory=mem(9, 1, 0)),
        Process(12, "c", 1, cmdline=None, memory=mem(1, 3, 0)),
        Process(13, "d", 1, cmdline=("mid",), memory=None),
    )
    tree = TaskTree(snapshot(procs, jobs=(Job(1, "root", 0),)))
    by = {s: [r.koid for r in tree.walk(sort=s) if r.kind == "p"] for s in
          ("koid", "pss", "private", "name")}
    assert by["koid"] == [10, 11, 12, 13]
    assert by["pss"] == [11, 10, 12, 13]  # unknown last
    assert by["private"] == [10, 12, 11, 13]
    # Names are display names: "[c]" (no cmdline) sorts before letters.
    assert by["name"] == [12, 11, 13, 10]


def test_sort_jobs_by_name():
    tree = TaskTree(snapshot(PROCS))
    jobs = [r.koid for r in tree.walk(sort="name") if r.kind == "j"]
    assert jobs == [1, 20, 25, 30, 40]  # apps(db, web), empty


def test_process_row_fields():
    row = rows_by_koid(TaskTree(snapshot(PROCS)))[("p", 300)]
    assert row.name == "nginx: master"
    assert row.parent_koid == 30
    assert row.process is PROCS[1]


def test_orphan_job_becomes_a_root():
    jobs = (Job(1, "root", 0), Job(9, "orphan", 77))
    tree = TaskTree(snapshot((), jobs=jobs))
    assert [j.koid for j in tree.roots] == [1, 9]


def test_deep_tree_does_not_recurse_for_totals():
    depth = 3000
    jobs = [Job(1, "root", 0)] + [Job(i, f"j{i}", i - 1) for i in range(2, depth + 1)]
    procs = (Process(99999, "leaf", depth, memory=mem(4, 4, 0)),)
    tree = TaskTree(snapshot(procs, jobs=jobs))
    assert tree.job_row(tree.jobs[1], 0).pss_bytes == 4 * K
