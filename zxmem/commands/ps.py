"""``zxmem ps``: which processes and containers are using all of the memory."""

from __future__ import annotations

from zxmem.commands import common
from zxmem.errors import UsageError, ZxmemError
from zxmem.textsafe import escape_terminal

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import re

    from zxmem.collection import Plan
else:  # argparse on first use: `zxmem ps` alone does not parse
    from zxmem.commands._lazy import argparse

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
  zxmem ps                      the whole tree, biggest first within each job
  zxmem ps --sort=koid          Fuchsia's classic layout and order
  zxmem ps --top 10             the 10 largest processes, flat
  zxmem ps --match 'fire|chrom' processes whose name or command line matches
  zxmem ps --pid 1,812          just these processes
  zxmem ps -J                   jobs (cgroups) only
  zxmem ps --units=M            sizes in MiB
  zxmem ps --job=35 -T          one cgroup's subtree (koid, name or path), with threads
  zxmem ps --job=system.slice   the same, by the cgroup's name
  zxmem ps -d 2 -n 5            five tables, two seconds apart (on a terminal,
                                what grew since the table before in red, what
                                shrank in green)
  zxmem ps --color=never        no colour on a terminal (also: NO_COLOR=1)
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
        raw_description=True,  # zxmem.cli's parser: RawDescriptionHelpFormatter
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
    p.add_argument("--job", type=_job_arg, metavar="JOB",
                   help="show the given job and its sub-jobs: its koid, cgroup name "
                   "(system.slice) or cgroup path (/system.slice/cron.service)")
    p.add_argument("--style", choices=("classic", "late"), default="classic",
                   help="classic: Fuchsia's classic layout (default); late: STATE column "
                   "and 'j: KOID'")
    p.add_argument("--swap", action="store_true", help="add a SWAP column (Linux)")
    p.add_argument("--sort", choices=("pss", "private", "name", "koid"), default="pss",
                   help="order processes and sub-jobs within each job: biggest PSS first "
                   "(default), PRIVATE, name, or koid (Fuchsia's order)")
    p.add_argument("--top", type=_positive_int, metavar="N",
                   help="only the N largest processes (by --sort), flat, without jobs")
    p.add_argument("--match", type=_pattern_arg, metavar="REGEX",
                   help="only processes whose name or command line matches REGEX "
                   f"(Python syntax, at most {MAX_PATTERN} characters), flat")
    p.add_argument("--pid", type=_pid_list, metavar="LIST",
                   help="only these processes (comma-separated PIDs), flat")
    p.add_argument("-d", dest="delay", type=_delay_arg, metavar="SECONDS",
                   help="print a new table every SECONDS seconds (Ctrl-C ends)")
    p.add_argument("-n", dest="count", type=_positive_int, metavar="COUNT",
                   help="with -d: stop after COUNT tables")
    p.add_argument("--color", "--colour", dest="color", default="auto",
                   choices=("auto", "always", "never"),
                   help="colour sizes by magnitude (with -d: growth red, shrinkage green): "
                   "auto (default: on a terminal, unless NO_COLOR is set or TERM=dumb), "
                   "always, or never")
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


# --match: a pattern longer than this is refused, and each command line is
# matched on its first MAX_SUBJECT characters only, so one --match cannot run
# for long whatever the processes' command lines hold.
MAX_PATTERN = 200
MAX_SUBJECT = 4096
# The unreadable note names the processes when there are at most this many.
NAME_UNREADABLE = 5


def _positive_int(value: str) -> int:
    try:
        n = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value!r}")
    return n


def _delay_arg(value: str) -> float:
    try:
        d = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0.1 <= d <= 86400:
        raise argparse.ArgumentTypeError(f"between 0.1 and 86400 seconds: {value!r}")
    return d


def _pattern_arg(value: str) -> re.Pattern[str]:
    import re

    if len(value) > MAX_PATTERN:
        raise argparse.ArgumentTypeError(
            f"pattern longer than {MAX_PATTERN} characters")
    try:
        return re.compile(value)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"bad pattern {value!r}: {exc}") from None


def _job_arg(value: str) -> str:
    """``--job``: a koid, a cgroup name or a path, but never a number typed
    oddly (``' 35'``, ``1_000``, non-ASCII digits): that is a typo, not a name."""
    digits = value.replace("_", "")
    if value != value.strip() or not value or (
            digits.isdigit() and not (value.isascii() and value.isdigit())):
        raise argparse.ArgumentTypeError(f"not a koid, cgroup name or path: {value!r}")
    return value


def _pid_list(value: str) -> frozenset[int]:
    pids = set()
    for part in value.split(","):
        if not part.strip():
            continue
        try:
            pids.add(common.parse_koid(part.strip()))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a PID: {part!r}") from None
    if not pids:
        raise argparse.ArgumentTypeError("no PID given")
    return frozenset(pids)


def resolve_job(tree, value: str) -> int:
    """``--job``'s koid: a koid, else a cgroup path, else a cgroup name (unique)."""
    try:
        koid = common.parse_koid(value)
    except ValueError:
        koid = None
    if koid is not None and koid in tree.jobs:
        return koid
    by_path = [j for j in tree.jobs.values() if j.path and j.path == value]
    if not by_path and value.startswith("/"):
        by_path = [j for j in tree.jobs.values() if j.path == value.rstrip("/")]
    if by_path:
        return int(min(by_path, key=lambda j: j.koid).koid)
    by_name = sorted((j for j in tree.jobs.values() if j.name == value), key=lambda j: j.koid)
    if len(by_name) == 1:
        return int(by_name[0].koid)
    shown = escape_terminal(value)
    if by_name:
        paths = ", ".join(f"{j.koid} ({escape_terminal(j.path or j.name)})" for j in by_name[:5])
        more = f" and {len(by_name) - 5} more" if len(by_name) > 5 else ""
        raise ZxmemError(f"--job={shown}: {len(by_name)} jobs have that name: {paths}{more}; "
                         "give the koid or the path")
    raise ZxmemError(f"--job={shown}: no job with that koid, cgroup path or name")


def _selects(args: argparse.Namespace) -> bool:
    return args.top is not None or args.match is not None or args.pid is not None


def selected_processes(tree, args: argparse.Namespace, root_koid: int | None) -> list:
    """Process rows (flat, depth 0) for --top, --match and --pid, in --sort order."""
    from zxmem.tasktree import process_row

    rows = []
    for r in tree.walk(root_koid, sort=args.sort, processes=True):
        if r.kind != "p" or r.process is None:
            continue
        p = r.process
        if args.pid is not None and p.koid not in args.pid:
            continue
        if args.match is not None and not _matches(args.match, p):
            continue
        rows.append(process_row(p, 0))
    rows.sort(key=_flat_key(args.sort))
    if args.top is not None:
        # The N largest readable processes: unreadable ones are not "large".
        rows = [r for r in rows if r.pss_bytes is not None][: args.top]
    return rows


def _flat_key(sort: str):
    if sort == "koid":
        return lambda r: r.koid
    if sort == "name":
        return lambda r: (r.name, r.koid)
    attr = "private_bytes" if sort == "private" else "pss_bytes"

    def key(r):
        v = getattr(r, attr)
        return (-(v if v is not None else -1), r.koid)
    return key


def _matches(pattern: re.Pattern[str], p) -> bool:
    if pattern.search(p.name[:MAX_SUBJECT]):
        return True
    if p.cmdline:
        return pattern.search(" ".join(p.cmdline)[:MAX_SUBJECT]) is not None
    return False


def run(args: argparse.Namespace, env) -> int:
    if args.count is not None and args.delay is None:
        raise UsageError("zxmem ps: -n COUNT needs -d SECONDS")
    if args.delay is not None and (args.json or args.explain is not None):
        raise UsageError("zxmem ps: -d cannot be used with --json or --explain")
    if args.delay is None:
        return _run_once(args, env)
    n = 0
    deadline = env.monotonic()
    state: dict = {}  # the table before's sizes, for the change colours
    while True:
        if n:
            env.stdout.write("\n")
        _run_once(args, env, heading=True, state=state)
        n += 1
        if args.count is not None and n >= args.count:
            return 0
        deadline += args.delay
        env.sleep(max(0.0, deadline - env.monotonic()))


def _run_once(args: argparse.Namespace, env, heading: bool = False,
              state: dict | None = None) -> int:
    """One table (one snapshot).  ``state`` (the -d repeat mode) carries
    the sizes of the table before from one call to the next."""
    from zxmem.tasktree import TaskTree

    options = _plan(args)
    # --explain --exact keeps smaps' PSS and measures only the charged-
    # elsewhere term page by page (in the same PSS shares).
    whole_exact = args.exact and args.explain is None
    if whole_exact:
        from zxmem.commands._exact import exact_options, exact_snapshot

        options = exact_options(options, args, env, keep_smaps=args.swap)
    # ps shows process totals only: a store's objects sample is read without
    # its memory objects.
    snapshot = common.snapshot_from_args(args, env, options, objects=False)
    if whole_exact:
        snapshot = exact_snapshot(snapshot, args, env, options)
    tree = TaskTree(snapshot)
    job = resolve_job(tree, args.job) if args.job is not None else None
    if args.explain is not None:
        return _explain(tree, args, env)
    if _selects(args):
        rows = selected_processes(tree, args, job)
    else:
        rows = list(tree.walk(job, threads=args.threads, sort=args.sort))
    if heading:
        import time

        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(env.wall_clock()))
        env.stdout.write(f"{stamp}\n")

    _write_table(rows, snapshot, args, env, state)
    note = unreadable_note(snapshot)
    if note:
        env.stderr.write(f"zxmem: {escape_terminal(note)}\n")
    return 0


def _plan(args: argparse.Namespace) -> Plan:
    """What to collect for the table ``args`` ask for."""
    from zxmem.collection import Plan

    return Plan(
        threads=args.threads,
        kernel_threads=args.kernel_threads,
        status=args.swap or args.json or args.jobs == "user",
        jobs=args.jobs,
        job_state=args.style == "late",
        cgroup_memory=args.cgroup or args.json or args.explain is not None,
        cgroup_columns_only=not args.json and args.explain is None,
    )


def _write_table(rows: list, snapshot, args: argparse.Namespace, env,
                 state: dict | None) -> None:
    """The table (or its JSON) of ``rows``; ``state`` keeps its sizes for
    the next table of the -d repeat mode when they are coloured."""
    from zxmem.views import ps as view

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
            color=common.use_color(args, env),
            previous=state.get("sizes") if state is not None else None,
        )
        env.stdout.write(view.render(rows, opts))
        if state is not None and opts.color:
            state["sizes"] = view.size_values(rows)
    env.stdout.flush()


def unreadable_note(snapshot) -> str | None:
    """The stderr line about processes whose memory could not be read.

    Names them (command name and PID) when there are at most
    NAME_UNREADABLE, and says how to see them all otherwise.
    """
    note = common.unreadable_note(snapshot)
    if note is None:
        return None
    denied = sorted(snapshot.provenance.denied_pids("smaps_rollup", "smaps"))
    names = {p.koid: p.name for p in snapshot.processes}
    if len(denied) <= NAME_UNREADABLE:
        listed = ", ".join(f"{names.get(pid, '?')} {pid}" for pid in denied)
        return note.replace("not readable", f"not readable ({listed})", 1)
    return (f"{note}; to list them: zxmem ps --json | "
            "jq '.tasks[] | select(.type==\"p\" and .pss_bytes==null)'")


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
