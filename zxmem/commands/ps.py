"""``zxmem ps``: which processes and containers are using all of the memory."""

from __future__ import annotations

import argparse

from zxmem.commands import common
from zxmem.errors import ZxmemError
from zxmem.textsafe import escape_terminal

HELP = "list jobs (cgroups) and processes with PSS, PRIVATE and SHARED"

DESCRIPTION = """\
Dump total process memory usage as a tree of jobs and processes.

Jobs are cgroups (cgroup v2, or the v1 memory controller's tree); a job's PSS
and PRIVATE are the sums over every process below it; SHARED is not summed.

{columns}

With --cgroup, jobs also show what their cgroup's own memory files say:

{cgroup_columns}

Sizes use binary units (k = KiB). Processes whose memory cannot be read are
left out and counted on stderr; they are never shown as 0.
"""


def _description() -> str:
    from zxmem import fields

    return DESCRIPTION.format(
        columns=fields.help_block(("pss_bytes", "private_bytes", "shared_bytes", "swap_bytes")),
        cgroup_columns=fields.help_block(
            ("charged_bytes", "limit_bytes", "file_bytes", "kernel_bytes")),
    )


EPILOG = """\
examples:
  zxmem ps                      the whole tree, the seed's layout
  zxmem ps -J                   jobs (cgroups) only
  zxmem ps --units=M --sort=pss sizes in MiB, largest first within each job
  zxmem ps --job=35 -T          one cgroup's subtree, with threads
  zxmem ps --jobs=user --swap   group by user, with a swap column
  zxmem ps --json | jq '.tasks[] | select(.type=="p") | .pss_bytes'
  zxmem ps -J --cgroup          jobs with what each cgroup is charged, its limit,
                                page cache and kernel memory
  zxmem ps --explain=35         job 35's charge = its PSS + unmapped cache + kernel
                                memory - pages charged elsewhere + remainder
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ps",
        help=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Built only for --help (zxmem.cli._Parser): it loads the field table.
    p.lazy_description = _description
    p.add_argument("-J", dest="jobs_only", action="store_true", help="only show jobs")
    p.add_argument("-T", dest="threads", action="store_true", help="include threads")
    p.add_argument(
        "--units",
        type=common.units_arg,
        metavar="X",
        help="fix all sizes to unit X, one of B k M G T P E (K for upper-case k)",
    )
    p.add_argument("--job", type=common.koid_arg, metavar="KOID",
                   help="show the given job and its sub-jobs")
    p.add_argument("--style", choices=("classic", "late"), default="classic",
                   help="classic: the seed's layout (default); late: STATE column and 'j: KOID'")
    p.add_argument("--swap", action="store_true", help="add a SWAP column (Linux)")
    p.add_argument("--sort", choices=("pss", "private", "name"),
                   help="order processes and sub-jobs within each job (default: koid)")
    p.add_argument("--json", action="store_true", help="JSON records; every number in bytes")
    p.add_argument("-a", "--all", dest="kernel_threads", action="store_true",
                   help="include kernel threads")
    p.add_argument("--jobs", choices=("cgroup", "user", "none"), default="cgroup",
                   help="what a job is: a cgroup (default), a user, or nothing (one job)")
    p.add_argument("--exact", action="store_true",
                   help="page-level counts (root): PRIVATE = pages no other process maps, "
                   "PSS divided by processes, not mappings")
    p.add_argument("--cgroup", action="store_true",
                   help="add CHARGED, LIMIT, FILE and KERNEL columns for jobs, read from "
                   "each cgroup's memory files")
    p.add_argument("--explain", type=common.koid_arg, metavar="KOID",
                   help="reconcile job KOID's cgroup charge with its processes' PSS, term "
                   "by term (with --exact: charged-elsewhere pages from /proc/kpagecgroup)")
    common.add_proc_root(p)
    common.add_from(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    from zxmem.collection import Plan
    from zxmem.tasktree import TaskTree
    from zxmem.views import ps as view

    options = Plan(
        threads=args.threads,
        kernel_threads=args.kernel_threads,
        status=args.swap or args.json or args.jobs == "user",
        jobs=args.jobs,
        job_state=args.style == "late",
        cgroup_memory=args.cgroup or args.json or args.explain is not None,
        cgroup_columns_only=not args.json and args.explain is None,
    )
    # --explain --exact keeps smaps' PSS and measures only the charged-
    # elsewhere term page by page (in the same PSS shares).
    whole_exact = args.exact and args.explain is None
    if whole_exact:
        from zxmem.commands._exact import exact_options, exact_snapshot

        options = exact_options(options, args, env, keep_smaps=args.swap)
    snapshot = common.snapshot_from_args(args, env, options)
    if whole_exact:
        snapshot = exact_snapshot(snapshot, args, env, options)
    tree = TaskTree(snapshot)
    if args.job is not None and args.job not in tree.jobs:
        raise ZxmemError(f"--job={args.job}: no job with koid {args.job}")
    if args.explain is not None:
        return _explain(tree, args, env)
    rows = list(tree.walk(args.job, threads=args.threads, sort=args.sort or "koid"))

    if args.json:
        env.stdout.write(view.render_json(rows, _provenance(snapshot)))
    else:
        opts = view.PsOptions(
            jobs_only=args.jobs_only,
            threads=args.threads,
            units=args.units,
            style=args.style,
            swap=args.swap,
            cgroup=args.cgroup,
            width=env.width(),
        )
        env.stdout.write(view.render(rows, opts))
    env.stdout.flush()
    note = common.unreadable_note(snapshot)
    if note:
        env.stderr.write(f"zxmem: {escape_terminal(note)}\n")
    return 0


def _provenance(snapshot) -> dict:
    p = snapshot.provenance
    return {
        "source": p.source,
        "host": p.host,
        "kernel": p.kernel,
        "timestamp": p.timestamp,
        "job_mode": p.job_mode,
        "denied": [{"what": w, "why": y} for w, y in p.denied],
        "notes": list(p.notes),
    }


def _explain(tree, args: argparse.Namespace, env) -> int:
    from zxmem.charge import reconcile
    from zxmem.views.charge import render_explain

    koid = args.explain
    if koid not in tree.jobs:
        raise ZxmemError(f"--explain={koid}: no job with koid {koid}")
    job = tree.jobs[koid]
    if job.cgroup is None:
        raise ZxmemError(f"--explain={koid}: the memory files of cgroup {job.path or '-'!r} "
                         "could not be read (no memory controller, or not a cgroup job)")
    elsewhere = None
    if args.exact:
        from zxmem.commands._charge_exact import charged_elsewhere

        elsewhere = charged_elsewhere(tree, koid, args, env)
    env.stdout.write(render_explain(reconcile(tree, koid, elsewhere), args.units))
    env.stdout.flush()
    return 0
