"""``zxmem digest``: memory by bucket (component), as Fuchsia's digest reports it."""

from __future__ import annotations

import argparse

from zxmem.commands import common
from zxmem.textsafe import escape_terminal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from zxmem.digest import SourceDigest

HELP = "memory by bucket: VMOs assigned to named buckets by process and VMO name"

DESCRIPTION = """\
Assign every memory object (VMO) to a bucket and print the bucket totals, as
Fuchsia's memory digest does (scripts/memory/mem_digest.py).

A bucket file is a JSON array of {"name", "process", "vmo"} objects, the
format of Fuchsia's buckets.json: "process" and "vmo" are regular expressions
(a string or a list of them) that must match the whole process name and the
whole VMO name; a missing or empty one matches everything.  zxmem also
accepts "kind", matched against the VMO's kind (file, anon, clone, memfd,
shmem, sysv, dmabuf).  For each process in turn, each VMO it references goes
to the first bucket, in file order, that matches; a VMO already taken stays
where it is, and VMOs with no committed bytes are skipped.

Rows besides the buckets:
  Undigested  VMOs no bucket matched, broken down by the set of processes
              that reference them
  Kernel      wired + heap + mmu + ipc + other (the kstats -m columns)
  Orphaned    kernel VMO bytes found in no process (can be negative on Linux,
              where anonymous memory shared after fork counts once per process);
              "unknown" when some VMO's committed bytes could not be read

VMOs whose committed bytes could not be read (a file's page cache, without
privileges) are in no row and never count as 0: stderr says how many, the
Total line (human) and a last "# ..." line (csv) say they are left out, and
Orphaned is unknown (an empty field in csv).

On Linux a VMO is a mapped file's page cache (named by its path), the
copy-on-write pages of a private file mapping (data:<file>), one anonymous
mapping ([heap], [stack], mmap-anonymous, [anon:NAME]), a memfd (memfd:NAME),
a shmem or SysV object; zxmem's Linux bucket file (shared libraries, memfd and
shared memory, Python, Java, Node and Chromium processes, heaps, stacks,
anonymous memory, mapped files) is used unless --no-default-buckets is given;
--buckets FILE adds buckets before it (they take precedence).

A saved Fuchsia snapshot (--from) uses its own buckets when it has some: a
memory-monitor capture wrapped with its "Buckets", or `ffx profile memory
--buckets --machine json` output (ffx's own assignment); otherwise it needs
--buckets.  ffx's ComponentDigest lists no VMOs: digest prints its bucket
totals as they are.

-v and -vv add mem_digest.py's per-process detail: -v lists under each
bucket the processes its VMOs were assigned through, and under each
undigested sharing pool every process's VMOs summarized by name (count and
bytes); -vv lists the pool's VMOs one by one (name[koid]) instead.
"""

EPILOG = """\
examples:
  zxmem digest                              this machine, Linux buckets
  zxmem digest --buckets mine.json          my buckets first, then the Linux ones
  zxmem digest --from capture.json --buckets buckets.json
  zxmem digest --from ffx.json -v           ffx profile memory --buckets --machine json
  zxmem digest --output csv                 Name, bytes rows sorted by name (or --csv)
  zxmem digest --undigested                 also a summary of what no bucket took
  zxmem digest --json | jq '.buckets[] | {name, size_bytes}'    (or --output json)
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "digest",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--buckets", metavar="FILE", action="append",
                   help="a bucket file (JSON array of {name, process, vmo}); may be repeated; "
                   "at most 16 MiB ($ZXMEM_MAX_INPUT_BYTES sets another limit)")
    p.add_argument("--no-default-buckets", action="store_true",
                   help="do not use zxmem's Linux bucket file")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--output", choices=("human", "csv", "json"), default="human",
                     help="human (default), csv ('Name, bytes' rows), the two of "
                          "Fuchsia's mem_digest.py, or json (zxmem's own)")
    out.add_argument("--csv", dest="output", action="store_const", const="csv",
                     help="the same as --output csv (the spelling zxmem mem uses)")
    out.add_argument("--json", dest="output", action="store_const", const="json",
                     help="the same as --output json (the spelling zxmem mem uses)")
    p.add_argument("--undigested", action="store_true",
                   help="also summarize the undigested VMOs per process (private, scaled, "
                        "total); with --output csv, print that summary's "
                        "koid,name,private,scaled,total rows instead of the buckets")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="human output: the processes under each bucket, and each "
                        "undigested pool's VMOs summarized by name (mem_digest.py -v)")
    p.add_argument("-vv", "--extra-verbose", action="store_true",
                   help="human output: each undigested pool's VMOs one by one "
                        "(mem_digest.py -vv; -v takes precedence)")
    common.add_proc_root(p)
    common.add_from(p)
    p.set_defaults(run=run)


def _buckets(args: argparse.Namespace, snapshot, user: list
             ) -> tuple[tuple, SourceDigest | None]:
    """The bucket specs to digest ``snapshot`` with (``user``: those of
    --buckets), or the digest the snapshot brings (ffx's ComponentDigest /
    ProcessDigest, which have no VMO table to assign)."""
    from zxmem import digest as dg
    from zxmem.errors import UsageError

    linux = snapshot.provenance.source == "linux"
    if snapshot.source_summary is not None:
        if user:
            raise common.lacks(args, "the snapshot lists no VMOs to assign to --buckets "
                                     "(ffx's own bucket totals are used without it)")
        source_digest = snapshot.source_digest
        if source_digest is None:
            why = ("a ProcessDigest (ffx --process-koids/--process-names) has no VMOs and "
                   "no buckets" if snapshot.provenance.source == "fuchsia-ffx-process-digest"
                   else "the snapshot has no memory objects and no digest")
            raise common.lacks(args, f"{why}: record it with `ffx profile memory --buckets "
                                     "--machine json`")
        if args.undigested:
            raise common.lacks(args, "the snapshot lists no VMOs: no undigested summary")
        return tuple(user), source_digest
    if linux and not args.no_default_buckets:
        return dg.combine(user, dg.default_linux_buckets()), None
    if not user and snapshot.buckets:
        return tuple(snapshot.buckets), None
    if not user:
        raise UsageError(
            "zxmem digest: --buckets FILE is required"
            + ("" if linux else f" for a {snapshot.provenance.source} snapshot "
               "(zxmem's default buckets describe Linux)")
        )
    return tuple(user), None


def run(args: argparse.Namespace, env) -> int:
    from zxmem import digest as dg
    from zxmem.views import digest as view

    # Bucket files first: a bad one fails before any /proc reading.
    user: list = []
    for path in args.buckets or ():
        user.extend(dg.read_bucket_file(path))
    snapshot, _time_ns, notes = common.objects_snapshot(args, env)
    notes = list(notes)
    specs, source_digest = _buckets(args, snapshot, user)
    if source_digest is not None:
        digest = dg.digest_from_source(snapshot, source_digest)
        if source_digest.left_out:
            notes.append("the snapshot's digest rows that are not buckets are left out: "
                         + ", ".join(source_digest.left_out))
        if args.verbose or args.extra_verbose:
            notes.append("no per-process detail: the snapshot lists no VMOs")
    else:
        digest = dg.compute_digest(snapshot, specs)
    if digest.unknown_vmos or digest.orphaned_unknown:

        notes.append(common.unknown_note(snapshot, digest.unknown_vmos, digest.unknown_size_bytes,
                                  digest.unknown_unsized).replace(
                                      "marked (+N unknown)", "Orphaned unknown"))

    summary = None
    if args.undigested:
        from zxmem.summary import summarize

        summary = summarize(snapshot, digest.undigested_vmo_koids)
    if args.output == "json":
        env.stdout.write(view.render_json(digest, snapshot, summary, tuple(notes)))
    elif args.output == "csv":
        env.stdout.write(view.render_csv(digest, summary))
    else:
        env.stdout.write(view.render_human(digest, summary, snapshot=snapshot,
                                           verbose=args.verbose,
                                           extra_verbose=args.extra_verbose))
    env.stdout.flush()
    if args.output != "json":
        for note in notes:
            env.stderr.write(f"zxmem: {escape_terminal(note)}\n")
    return 0
