"""The memory treemap's tree: all physical memory down to single VMOs.

This is the tree Fuchsia's ``scripts/memory/treemap.py`` draws (spec
fuchsia-tools §6.1–6.3), built from memgraph records (the list of dicts of
spec §5.3, Fuchsia's format and ours), so a Fuchsia ``memgraph -vt`` dump,
a saved zxmem snapshot, a Fuchsia memory capture and the live system all give
the same shape::

    All physical memory                 kernel/physmem (total_bytes)
    ├── free                            kernel/free
    ├── heap ─ heap/allocated, heap/free
    ├── wired, mmu, other               kernel/*
    └── VMOs/processes                  kernel/vmo (vmo_bytes)
        ├── root job ─ jobs ─ processes ─ VMOs (or Private / Proportional shared)
        │             └─ page cache (unmapped)   Linux: the job's cgroup's, when known
        ├── hidden (unmapped objects)   Linux only: memory no process maps
        └── unknown (kernel & unmapped) vmo_bytes − root job − hidden

Areas are bytes.  A process's area is the sum of its VMO estimates (§6.2):
the committed bytes of each VMO it references, divided among its sharers, so
that a VMO shared by N address spaces counts 1/N in each.  On Linux an
anonymous or copy-on-write object's pages can be shared by fork() although
the object is not, so for those the estimate is the process's PSS of them
(see ``_PAGE_SHARED_KINDS``; a ``--exact`` snapshot needs no estimate: its
objects split the pages so that committed ÷ share count is exact).  Same-named VMOs
of one process are folded into one ``name[n]`` node.  A job's area is the sum
of its children; kernel nodes keep the kernel's own numbers, so the children
of "All physical memory" need not add up to it (``ipc`` has no record).

Everything here is pure: no file is read and nothing is formatted except the
labels' ``format_size`` (spec §6.3 shows the size in the node's name).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from zxmem.errors import ZxmemError
from zxmem.model import Snapshot

UNNAMED = "<unnamed>"

# Node kinds: finer than the record type, they pick the colour of a box.
KIND_KERNEL = "kernel"
KIND_FREE = "free"
KIND_UNKNOWN = "unknown"
KIND_JOB = "job"
KIND_PROCESS = "process"
KIND_VMO = "vmo"
KIND_AGGREGATE = "aggregate"  # name[n]: n same-named VMOs of one process
KIND_ESTIMATE = "estimate"  # "Private" / "Proportional shared" without VMO data
KIND_HIDDEN = "hidden"  # Linux: an object no process maps

KINDS = (
    KIND_KERNEL,
    KIND_FREE,
    KIND_UNKNOWN,
    KIND_JOB,
    KIND_PROCESS,
    KIND_VMO,
    KIND_AGGREGATE,
    KIND_ESTIMATE,
    KIND_HIDDEN,
)

ROOT_NAME = "All physical memory"
ROOT_JOB_NAME = "root job"
VMO_NODE_NAME = "VMOs/processes"
UNKNOWN_NAME = "unknown (kernel & unmapped)"
HIDDEN_NAME = "hidden (unmapped objects)"


@dataclass
class Node:
    """One box of the treemap (one row of the size table).

    ``type`` is the memgraph record type the node came from (``kernel``,
    ``j``, ``p``, ``vmo``, or ``""`` for synthetic nodes), whose first letter
    is the label's type mark (§6.3).  ``area`` is bytes; ``known`` is False
    when the bytes could not be read (a process whose task stats are
    missing): its area is then 0 and must be shown as unknown, not as 0.
    """

    id: str
    type: str = ""
    name: str = ""
    kind: str = ""
    koid: int = 0
    area: int | None = None
    count: int = 0  # members of a name[n] aggregate
    known: bool = True
    defined: bool = False  # a record named this node (not only a parent link)
    children: list[Node] = field(default_factory=list)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, Node]]:
        """Pre-order (depth, node), children in their current order."""
        stack: list[tuple[int, Node]] = [(depth, self)]
        while stack:
            d, node = stack.pop()
            yield d, node
            for child in reversed(node.children):
                stack.append((d + 1, child))

    def find(self, node_id: str) -> Node | None:
        for _, node in self.walk():
            if node.id == node_id:
                return node
        return None


def _int(value: Any) -> int | None:
    if type(value) is int:  # the common case, and not bool (a subclass)
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _name(value: Any) -> str:
    return value if isinstance(value, str) else ""


class _Builder:
    """Spec §6.1: a registry of id → Node; unknown ids create empty nodes."""

    def __init__(self, hide_aggregated: bool) -> None:
        self.nodes: dict[str, Node] = {}
        self.root: Node | None = None
        self.root_jobs: list[Node] = []
        self.hide_aggregated = hide_aggregated
        # Bytes of each VMO koid already attributed to processes, so the
        # hidden branch only shows what no process carries.
        self.attributed: dict[int, int] = {}
        # Job id -> its cgroup's unmapped page cache, descendants included.
        self.job_cache: dict[str, int] = {}
        # Process id -> bytes of its file objects drawn beyond its file PSS
        # (the VMO estimate counts a file's whole resident cache).
        self.file_beyond_pss: dict[str, int] = {}

    def lookup(self, node_id: str) -> Node:
        node = self.nodes.get(node_id)
        if node is None:
            node = self.nodes[node_id] = Node(node_id)
        return node

    def add(self, index: int, record: Mapping[str, Any]) -> None:
        rtype = record.get("type")
        if rtype not in ("kernel", "j", "p"):
            return  # threads, __META and Linux extras are not drawn
        node_id = record.get("id")
        if not isinstance(node_id, str) or not node_id:
            raise ZxmemError(f"memgraph record {index}: {rtype} record without an id")
        node = self.lookup(node_id)
        if node.defined:
            raise ZxmemError(f"memgraph record {index}: duplicate id {node_id!r}")
        node.defined = True
        node.type = rtype
        node.koid = _int(record.get("koid")) or 0
        node.name = _name(record.get("name"))
        parent = record.get("parent")
        parent = parent if isinstance(parent, str) else ""
        if rtype == "kernel":
            node.area = _int(record.get("size_bytes"))
            node.known = node.area is not None
            node.kind = KIND_FREE if node_id in ("kernel/free", "kernel/heap/free") else KIND_KERNEL
        elif rtype == "j":
            node.kind = KIND_JOB
            if parent.startswith("kernel/"):
                self.root_jobs.append(node)
            linux = record.get("linux")
            cache = unmapped_cache_bytes(linux.get("cgroup")) if isinstance(linux, Mapping) \
                else None
            if cache is not None:
                self.job_cache[node_id] = cache
        else:
            node.kind = KIND_PROCESS
            self.populate_process(node, record)
        if not parent:
            if self.root is not None:
                raise ZxmemError(
                    f"memgraph record {index}: second root node {node_id!r} "
                    f"(already have {self.root.id!r})"
                )
            self.root = node
        else:
            self.lookup(parent).children.append(node)

    def populate_process(self, proc: Node, record: Mapping[str, Any]) -> None:
        """Spec §6.2: a process's children and area."""
        pid = proc.id
        refs = record.get("vmo_refs")
        vmos = record.get("vmos")
        if not isinstance(refs, list) or not refs or not isinstance(vmos, list):
            _estimate_process(proc, record)
            return
        # (Hot loops: a thousand processes reach a quarter of a million
        # VMOs, so plain dict/int checks come first.)
        mapped, handled = _reached(refs)
        vmo_pss = _mapping_pss(record)
        file_area = 0
        seen: set[int] = set()
        by_name: dict[str, list[Node]] = {}
        attributed = self.attributed
        for vmo in vmos:
            if type(vmo) is not dict and not isinstance(vmo, Mapping):
                continue
            koid = _int(vmo.get("koid"))
            if koid is None or koid in seen:
                continue  # one entry per handle and per mapping: first wins
            seen.add(koid)
            name = _name(vmo.get("name")) or UNNAMED
            committed = _int(vmo.get("committed_bytes")) or 0
            sharers = max(_int(vmo.get("share_count")) or 0, 0)
            if koid in handled and koid not in mapped:
                # Only a handle: the holder counts as one more sharer.
                area = committed // (sharers + 1)
            else:
                # Mapped, or not said (a Fuchsia capture lists a process's
                # VMOs without saying how it reaches them, and its
                # share_count counts processes): split among the sharers.
                area = committed // max(sharers, 1)
                if koid in vmo_pss and _vmo_kind(vmo) in _PAGE_SHARED_KINDS:
                    area = min(committed, vmo_pss[koid])
            attributed[koid] = attributed.get(koid, 0) + area
            if _vmo_kind(vmo) == "file":
                file_area += area
            node = Node(f"{pid}/vmo/{koid}", "vmo", name, KIND_VMO, koid, area, defined=True)
            by_name.setdefault(name, []).append(node)

        children = _aggregated(by_name, f"{pid}/vmo/", KIND_AGGREGATE,
                               keep_members=not self.hide_aggregated)
        proc.children = children
        proc.area = sum(c.area or 0 for c in children)
        if file_area:
            linux = record.get("linux")
            memory = linux.get("memory") if isinstance(linux, Mapping) else None
            pss_file = _int(memory.get("pss_file_bytes")) if isinstance(memory, Mapping) else None
            self.file_beyond_pss[pid] = max(0, file_area - (pss_file or 0))


# Linux objects whose pages, not the object, are shared: an anonymous VMA
# or the copy-on-write pages of a private file mapping is one object per
# process, yet after fork() parent and children share its pages until one
# writes.  Their committed bytes (the VMA's Rss / Anonymous) count those
# pages in every process, so for them the process's share is the PSS of its
# mappings (smaps ``Pss``: each page divided by the number of processes
# mapping it; Documentation/filesystems/proc.rst), capped at committed.
# With ``--exact`` objects (zxmem.exact_views.exact_objects_view) the cap
# never binds: such an object's committed bytes are the pages only its
# process maps, which its mapping's PSS counts in full, and the pages it
# shares are objects of their own (never a mapping's object) with the
# sharers as share_count, so committed ÷ share_count alone gives every
# process its exact PSS, as Fuchsia's formula does.
_PAGE_SHARED_KINDS = frozenset(("anon", "clone"))


def _vmo_kind(vmo: Mapping[str, Any]) -> str | None:
    linux = vmo.get("linux")
    kind = linux.get("kind") if type(linux) is dict or isinstance(linux, Mapping) else None
    return kind if isinstance(kind, str) else None


def _mapping_pss(record: Mapping[str, Any]) -> dict[int, int]:
    """VMO koid → Σ PSS of the process's mappings of it (zxmem's Linux field).

    ``linux.mappings`` holds one row per ``smaps`` entry, its values in the
    order ``linux.mapping_fields`` names (by default the field order of
    :class:`zxmem.model.Mapping`), or one object per entry.  Only koids all
    of whose mappings have a known PSS are returned; empty for Fuchsia
    records, which have no ``linux`` object.
    """
    linux = record.get("linux")
    if not isinstance(linux, Mapping):
        return {}
    maps = linux.get("mappings")
    if not isinstance(maps, list):
        return {}
    names = linux.get("mapping_fields")
    if not isinstance(names, list):
        from dataclasses import fields

        from zxmem.model import Mapping as MappingModel

        names = [f.name for f in fields(MappingModel)]
    try:
        ik, ip = names.index("vmo_koid"), names.index("pss_bytes")
    except ValueError:
        return {}
    out: dict[int, int] = {}
    unknown: set[int] = set()
    width = max(ik, ip)
    for m in maps:
        if type(m) is list:
            if len(m) <= width:
                continue
            koid, value = _int(m[ik]), _int(m[ip])
        elif isinstance(m, Mapping):
            koid, value = _int(m.get("vmo_koid")), _int(m.get("pss_bytes"))
        else:
            continue
        if koid is None:
            continue
        if value is None:
            unknown.add(koid)
        else:
            out[koid] = out.get(koid, 0) + value
    for koid in unknown:
        out.pop(koid, None)
    return out


CACHE_NAME = "page cache (unmapped)"


def unmapped_cache_bytes(cgroup: Any) -> int | None:
    """Page cache a cgroup is charged for that no process maps, descendants
    included, from a job record's ``linux.cgroup`` (None when unknown).

    ``file - shmem - file_mapped`` (v1: ``total_cache - total_shmem -
    total_mapped_file``), at least 0: shmem is left out because unmapped
    shmem objects are the hidden branch's, and the cache is on the LRU lists
    that ``kernel/vmo`` counts, so the box is carved out of "unknown".
    """
    if not isinstance(cgroup, Mapping):
        return None
    stat = cgroup.get("stat")
    if not isinstance(stat, Mapping):
        return None
    prefix = "total_" if cgroup.get("version") == "v1" else ""
    keys = ("cache", "shmem", "mapped_file") if prefix else ("file", "shmem", "file_mapped")
    file, shmem, mapped = (_int(stat.get(prefix + k)) for k in keys)
    if file is None or shmem is None or mapped is None:
        return None
    return max(0, file - shmem - mapped)


def _add_cache_boxes(b: _Builder) -> None:
    """Each job's own unmapped page cache as a box of its own: its cgroup's
    (hierarchical) number less its sub-jobs' (a cgroup with no process, and
    so no job, stays in its parent's box), less what its processes' file
    objects already show beyond their file PSS (with VMO data, a file's area
    is its whole resident cache, unmapped pages included)."""
    for node_id, total in b.job_cache.items():
        node = b.nodes[node_id]
        own = total - sum(b.job_cache.get(c.id, 0) for c in node.children if c.type == "j")
        own -= sum(b.file_beyond_pss.get(c.id, 0) for c in node.children if c.type == "p")
        if own > 0:
            node.children.append(Node(f"{node_id}/cache", "", CACHE_NAME, KIND_HIDDEN,
                                      node.koid, own, defined=True))


def _sum_areas(node: Node) -> int:
    """Bottom-up areas of nodes without their own (jobs, placeholders)."""
    # Iterative post-order: job trees can be deeper than Python's recursion.
    order = [n for _, n in node.walk()]
    for n in reversed(order):
        if n.area is None:
            n.area = sum(c.area or 0 for c in n.children)
            # A job with one unreadable process still has a size: the sum
            # of what could be read (the process itself shows as unknown).
            n.known = any(c.known for c in n.children) if n.children else n.known
    return node.area or 0


def _aggregated(by_name: dict[str, list[Node]], id_prefix: str, kind: str, *,
                keep_members: bool) -> list[Node]:
    """VMO nodes by name, those of one name (but unnamed) in one
    ``name[count]`` node of ``kind`` (id ``id_prefix`` + name), which holds
    them as children only with ``keep_members``."""
    children: list[Node] = []
    for name, members in by_name.items():
        if len(members) == 1 or name == UNNAMED:
            children.extend(members)
            continue
        agg = Node(
            f"{id_prefix}{name}",
            "vmo",
            f"{name}[{len(members)}]",
            kind,
            area=sum(m.area or 0 for m in members),
            count=len(members),
            defined=True,
        )
        if keep_members:
            agg.children = members
        children.append(agg)
    return children


def _estimate_process(proc: Node, record: Mapping[str, Any]) -> None:
    """A process without VMOs: private and proportional shared boxes from its
    task stats, or unknown when they were not readable."""
    pid = proc.id
    private = _int(record.get("private_bytes"))
    pss = _int(record.get("pss_bytes"))
    if private is None and pss is None:
        # Task stats were not readable: unknown, not zero.
        proc.area = 0
        proc.known = False
        return
    private = private or 0
    shared = max(0, (pss or 0) - private)
    for suffix, name, area in (
        ("priv", "Private", private),
        ("shared", "Proportional shared", shared),
    ):
        if area:
            proc.children.append(
                Node(f"{pid}/{suffix}", "", name, KIND_ESTIMATE, area=area, defined=True)
            )
    proc.area = private + shared


def _reached(refs: list) -> tuple[set[int], set[int]]:
    """The koids of the VMOs a process maps, and of those it holds a handle to."""
    mapped: set[int] = set()
    handled: set[int] = set()
    for ref in refs:
        if type(ref) is not dict and not isinstance(ref, Mapping):
            continue
        koid = _int(ref.get("vmo_koid"))
        kinds = ref.get("via")
        if koid is None or not isinstance(kinds, list):
            continue
        if "MAPPING" in kinds:
            mapped.add(koid)
        if "HANDLE" in kinds:
            handled.add(koid)
    return mapped, handled


def _kernel_nodes(b: _Builder) -> tuple[Node, Node]:
    """The root and the VMO node, made up when the kernel records are missing."""
    vmo_node = b.nodes.get("kernel/vmo")
    if b.root is None:
        b.root = b.lookup("kernel/physmem")
        b.root.type, b.root.kind, b.root.defined = "kernel", KIND_KERNEL, True
    root = b.root
    if vmo_node is None or not vmo_node.defined:
        vmo_node = b.lookup("kernel/vmo")
        vmo_node.type, vmo_node.kind, vmo_node.defined = "kernel", KIND_KERNEL, True
        if vmo_node not in root.children:
            root.children.append(vmo_node)
    return root, vmo_node


def _attach_orphans(b: _Builder, root: Node, vmo_node: Node) -> None:
    """Parents named but never defined (a job record missing from a partial
    dump): keep their subtrees visible under the root job."""
    attach_to = b.root_jobs[0] if b.root_jobs else vmo_node
    for node_id, node in list(b.nodes.items()):
        if node.defined or not node.children:
            continue
        node.defined = True
        prefix = node_id.split("/", 1)[0]
        node.type = prefix if prefix in ("kernel", "j", "p") else ""
        node.kind = {"kernel": KIND_KERNEL, "j": KIND_JOB, "p": KIND_PROCESS}.get(
            node.type, KIND_UNKNOWN
        )
        node.name = node_id
        parent = root if node_id.startswith("kernel/") else attach_to
        if node is not parent:
            parent.children.append(node)


def tree_from_records(
    records: Iterable[Mapping[str, Any]],
    *,
    hidden: Iterable[tuple[int, str, int | None]] = (),
    hide_aggregated: bool = True,
) -> Node:
    """Build the treemap tree from memgraph records (spec §5.3, §6.1–6.2).

    ``hidden`` lists Linux objects no process maps as ``(koid, name,
    committed_bytes)``; they become the "hidden (unmapped objects)" branch
    under VMOs/processes, less whatever processes already carry of them
    through descriptors, and the unknown node shrinks by as much.

    Lenient where Fuchsia's script asserts: without kernel records (memgraph
    writes none when kernel stats are unreadable) a root and a VMO node are
    made up whose areas are the sums of their children; records whose parent
    never appears hang under the root job (or the VMO node) instead of
    vanishing.  Raises :class:`ZxmemError` for a record that cannot be placed.
    """
    b = _Builder(hide_aggregated)
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ZxmemError(f"memgraph record {index}: not an object")
        b.add(index, record)

    root, vmo_node = _kernel_nodes(b)
    _attach_orphans(b, root, vmo_node)
    root.name = ROOT_NAME
    vmo_node.name = VMO_NODE_NAME
    _add_cache_boxes(b)
    for job in b.root_jobs:
        _sum_areas(job)
    if b.root_jobs:
        b.root_jobs[0].name = ROOT_JOB_NAME

    accounted = sum(job.area or 0 for job in b.root_jobs)
    hidden_node = _hidden_branch(hidden, b.attributed)
    if hidden_node is not None:
        vmo_node.children.append(hidden_node)
        accounted += hidden_node.area or 0

    if vmo_node.area is None:
        _sum_areas(vmo_node)
    else:
        vmo_node.children.append(
            Node(
                "kernel/vmo/unknown",
                "kernel",
                UNKNOWN_NAME,
                KIND_UNKNOWN,
                area=vmo_node.area - accounted,
                defined=True,
            )
        )
    _sum_areas(root)
    _sort(root)
    return root


def _hidden_branch(
    hidden: Iterable[tuple[int, str, int | None]], attributed: Mapping[int, int]
) -> Node | None:
    by_name: dict[str, list[Node]] = {}
    seen: set[int] = set()
    for koid, name, committed in hidden:
        if koid in seen or committed is None:
            continue  # unknown size: nothing to draw, and never 0
        seen.add(koid)
        rest = committed - attributed.get(koid, 0)
        if rest <= 0:
            continue
        name = name or UNNAMED
        by_name.setdefault(name, []).append(
            Node(f"hidden/{koid}", "vmo", name, KIND_HIDDEN, koid, rest, defined=True)
        )
    if not by_name:
        return None
    children = _aggregated(by_name, "hidden/", KIND_HIDDEN, keep_members=False)
    return Node(
        "kernel/vmo/hidden",
        "kernel",
        HIDDEN_NAME,
        KIND_HIDDEN,
        area=sum(c.area or 0 for c in children),
        defined=True,
        children=children,
    )


def _sort(root: Node) -> None:
    """Children by area, largest first (the table's order, spec §6.4)."""
    for _, node in root.walk():
        if len(node.children) > 1:
            node.children.sort(key=lambda n: (-(n.area or 0), n.name, n.id))


def hidden_objects(snapshot: Snapshot) -> list[tuple[int, str, int | None]]:
    """``(koid, name, committed_bytes)`` of the snapshot's hidden VMOs."""
    out = []
    for koid in snapshot.hidden_vmo_koids:
        vmo = snapshot.vmos.get(koid)
        if vmo is not None:
            out.append((koid, vmo.name, vmo.committed_bytes))
    return out


def tree_from_snapshot(snapshot: Snapshot, *, hide_aggregated: bool = True) -> Node:
    """The tree of a Snapshot: its memgraph records, plus the hidden branch.

    memgraph writes ``size_bytes`` 0 for a ``kernel/physmem`` or
    ``kernel/vmo`` whose value is unknown (the records hold the tree
    together); here such a node takes the sum of its children instead, so
    an unknown total never turns into a negative "unknown" box.
    """
    from zxmem import memgraph

    unknown_ids = set()
    k = snapshot.kernel
    if k is not None:
        if k.total_bytes is None:
            unknown_ids.add("kernel/physmem")
        if k.vmo_bytes is None:
            unknown_ids.add("kernel/vmo")
    records = []
    for rec in memgraph.records(snapshot, threads=False, vmos=True, handles=False):
        if rec.get("id") in unknown_ids:
            rec = {key: v for key, v in rec.items() if key != "size_bytes"}
        records.append(rec)
    return tree_from_records(
        records, hidden=hidden_objects(snapshot), hide_aggregated=hide_aggregated
    )
