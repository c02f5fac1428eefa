"""Benchmark ``zxmem ps`` against the kernel floor and its peers.

Usage::

    python bench/ps_bench.py [--procs N] [--rounds R] [--idle-rounds K]

What it does, in order:

1. Idle: times the installed ``zxmem ps`` against ``python3 -c pass`` (the
   interpreter that ``zxmem``'s launcher runs), ``ps_mem`` and ``smem``,
   alternating, ``K`` rounds.  The goal (issue 17): zxmem no slower than
   ps_mem and at most 3x ``python3 -c pass``.
2. Starts ``bench/workload.py``: one parent forks N children of ~35 MiB
   resident each (private, copy-on-write, file and memfd shared).
3. Times, alternating in each of ``R`` rounds (the order rotates every
   round, after one warm-up round that is not counted):

   * ``floor``: ``cat /proc/[0-9]*/smaps_rollup > /dev/null``, the kernel's
     own cost of producing every process's totals on one core;
   * ``floor, 2 cats``: the same files read by two ``cat``s at once (even and
     odd PIDs), what overlapping reads across cores gives;
   * ``zxmem ps`` (the installed command, output to /dev/null);
   * ``psutil``: ``memory_full_info()`` over every PID;
   * ``ps_mem`` (PyPI) and ``smem`` (Debian), when installed.

   Each is reported as the median over rounds of its time divided by the
   floor's time in the same round, with the median seconds and the largest
   peak RSS (``ru_maxrss`` from ``wait4``, which covers the command and
   every descendant it waited for).
4. Checks that zxmem's PSS total (``--json``) agrees with the sum of ``Pss``
   (+ ``Private_Hugetlb``, as zxmem counts it) over the kernel's
   ``smaps_rollup`` files, for the processes both saw.

The workload is removed at the end, also on Ctrl-C or SIGTERM: the bench
kills its process group, and the children die with their parent anyway
(see ``workload.py``).  Needs root to read every process's smaps_rollup.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)

PSUTIL_SCRIPT = """\
import psutil
for p in psutil.process_iter():
    try:
        p.memory_full_info()
    except psutil.Error:
        pass
"""

FLOOR = "cat /proc/[0-9]*/smaps_rollup > /dev/null"
FLOOR2 = (
    "cat /proc/*[02468]/smaps_rollup > /dev/null 2>&1 & "
    "cat /proc/*[13579]/smaps_rollup > /dev/null 2>&1; wait"
)


def _which(name: str) -> str | None:
    """``name`` next to this interpreter first (a launcher shim on PATH would
    add its own start-up to every run), then on PATH."""
    local = os.path.join(BIN, name)
    if os.access(local, os.X_OK):
        return local
    return shutil.which(name)


# The environment the timed commands run in (see bytecode_cache()).
CHILD_ENV = dict(os.environ)

TIME = "/usr/bin/time"  # GNU time: its wait4 gives the command's own peak RSS


def run_once(argv: list[str]) -> tuple[float, int, int, float]:
    """Run ``argv`` with output to /dev/null.

    Returns (wall seconds, peak RSS bytes, exit status, CPU seconds), the CPU
    time being user + system of the command and all its children.

    The peak RSS comes from GNU time (``%M``) rather than this process's own
    ``wait4``: a child forked or vforked from here would inherit this
    interpreter's high-water mark at ``exec`` (the kernel folds the old
    mm's peak into ``ru_maxrss``), while time's children start from a tiny
    C program.  The wall time is taken here; time adds well under 1 ms.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    rfd, wfd = os.pipe()
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, devnull, 2),
            (os.POSIX_SPAWN_DUP2, wfd, 3),
        ]
        cmd = [TIME, "-f", "%x %M %U %S", "-o", "/dev/fd/3", *argv]
        t0 = time.perf_counter()
        pid = os.posix_spawn(TIME, cmd, CHILD_ENV, file_actions=actions)
        _, status, _ = os.wait4(pid, 0)
        elapsed = time.perf_counter() - t0
        os.close(wfd)
        wfd = -1
        out = b""
        while chunk := os.read(rfd, 4096):
            out += chunk
    finally:
        os.close(devnull)
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)
    # time writes "Command exited with non-zero status N" first when N != 0
    last = out.split(b"\n")[-2] if out.endswith(b"\n") else out
    try:
        code, rss_kib, user, system = last.split()
        return elapsed, int(rss_kib) * 1024, int(code), float(user) + float(system)
    except ValueError:
        return elapsed, 0, os.waitstatus_to_exitcode(status), 0.0


class Tool:
    def __init__(self, name: str, argv: list[str] | None, missing: str = "") -> None:
        self.name = name
        # short key for progress lines and --skip: "floor", "floor2", "zxmem", ...
        self.key = "floor2" if "parallel" in name else name.split(" ")[0]
        self.argv = argv
        self.missing = missing
        self.times: list[float] = []
        self.ratios: list[float] = []
        self.rss: list[int] = []
        self.cpu: list[float] = []
        self.failures = 0


def tools(zxmem: str | None) -> list[Tool]:
    sh = shutil.which("sh") or "/bin/sh"
    out = [Tool("floor (cat smaps_rollup)", [sh, "-c", FLOOR])]
    out.append(Tool("floor, 2 cats in parallel", [sh, "-c", FLOOR2]))
    out.append(
        Tool("zxmem ps", [zxmem, "ps"]) if zxmem else Tool("zxmem ps", None, "zxmem not found")
    )
    try:
        import psutil  # type: ignore  # noqa: F401 - only checking that it is installed

        out.append(Tool("psutil memory_full_info", [sys.executable, "-c", PSUTIL_SCRIPT]))
    except ImportError:
        out.append(Tool("psutil memory_full_info", None, "pip install psutil"))
    out.extend(peers())
    return out


def peers() -> list[Tool]:
    """ps_mem (PyPI, the ``bench`` extra) and smem (Debian's ``smem`` package,
    one Python script: ``apt-get install -y smem``, or the script from
    ``apt-get download smem`` copied next to this interpreter)."""
    ps_mem = _which("ps_mem")
    smem = _which("smem")
    return [
        Tool("ps_mem", [ps_mem]) if ps_mem else Tool("ps_mem", None, "pip install ps_mem"),
        Tool("smem", [smem]) if smem else Tool("smem", None, "apt-get install -y smem"),
    ]


def measure(tool_list: list[Tool], rounds: int, label: str) -> None:
    """Alternate the tools for ``rounds`` rounds after one warm-up round."""
    active = [t for t in tool_list if t.argv]
    floor = active[0]
    for r in range(rounds + 1):
        order = active[r % len(active) :] + active[: r % len(active)]
        got = {}
        for t in order:
            assert t.argv is not None  # only the active tools
            got[t.name] = run_once(t.argv)
        if r == 0:
            continue  # warm-up: caches, dentries, lazily built kernel state
        for t in active:
            elapsed, rss, status, cpu = got[t.name]
            # cat exits 1 when a process vanished between glob and open
            if status != 0 and not t.name.startswith("floor"):
                t.failures += 1
            t.times.append(elapsed)
            t.rss.append(rss)
            t.cpu.append(cpu)
            t.ratios.append(elapsed / got[floor.name][0])
        print(
            f"  {label} round {r}/{rounds}: "
            + ", ".join(f"{t.key} {got[t.name][0]:.3f}s" for t in active),
            flush=True,
        )


def report(tool_list: list[Tool], floor_name: str) -> list[str]:
    lines = [
        f"| command | median s | ratio to {floor_name} (median) | peak RSS MB (max) "
        "| CPU s (median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for t in tool_list:
        if not t.argv:
            lines.append(f"| {t.name} | skipped: {t.missing} | | | |")
            continue
        note = f" ({t.failures} runs failed)" if t.failures else ""
        lines.append(
            f"| {t.name}{note} | {statistics.median(t.times):.3f} | "
            f"{statistics.median(t.ratios):.2f}x | {max(t.rss) / 1e6:.1f} | "
            f"{statistics.median(t.cpu):.2f} |"
        )
    return lines


def kernel_pss(pids) -> dict[int, int]:
    """Pss + Private_Hugetlb of each PID from the kernel's smaps_rollup, bytes."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = {}
        for line in data.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and parts[0] in (b"Pss:", b"Private_Hugetlb:"):
                fields[parts[0]] = int(parts[1]) * 1024
        if fields:
            out[pid] = fields.get(b"Pss:", 0) + fields.get(b"Private_Hugetlb:", 0)
    return out


def check_pss(zxmem: str, workload: set[int], tolerance: float) -> tuple[bool, str]:
    """zxmem's per-process PSS summed vs the kernel's ``smaps_rollup``.

    PSS divides each shared page among the processes mapping it, so zxmem's
    own mappings of the interpreter lower everyone else's PSS a little while
    it runs.  The kernel's numbers are therefore read while zxmem is still
    alive: its output goes to a one-page pipe, so it blocks writing the JSON
    (the scan is over by then) until the kernel read is done.
    """
    import fcntl

    rfd, wfd = os.pipe()
    try:
        fcntl.fcntl(wfd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
    except OSError:
        pass
    proc = subprocess.Popen(
        [zxmem, "ps", "--json", "--jobs=none"], stdout=wfd, stderr=subprocess.DEVNULL,
        env=CHILD_ENV,
    )
    os.close(wfd)
    with os.fdopen(rfd, "rb") as out:
        first = out.read1(1)  # returns once zxmem has started writing
        theirs = kernel_pss(int(n) for n in os.listdir("/proc") if n.isdigit())
        data = first + out.read()
    if proc.wait() != 0:
        return False, f"zxmem ps --json failed (exit {proc.returncode})"
    doc = json.loads(data)
    ours = {
        t["koid"]: t["pss_bytes"]
        for t in doc["tasks"]
        if t["type"] == "p" and t["pss_bytes"] is not None
    }
    both = sorted((set(ours) & set(theirs)) - {proc.pid})
    if os.environ.get("PS_BENCH_DEBUG"):
        worst = sorted(both, key=lambda p: -abs(ours[p] - theirs[p]))[:5]
        for p in worst:
            print(f"  pid {p}: zxmem {ours[p]} kernel {theirs[p]}")
    lines = []
    ok = True
    # The workload's processes hold still, so they must agree closely; the
    # rest of the machine (other users' jobs) may change between the reads.
    for label, pids, judged in (
        ("the workload's", [p for p in both if p in workload], True),
        ("all", both, False),
    ):
        a = sum(ours[p] for p in pids)
        b = sum(theirs[p] for p in pids)
        diff = abs(a - b) / b if b else 0.0
        verdict = ""
        if judged:
            good = diff <= tolerance and len(pids) == len(workload)
            ok = ok and good
            verdict = f" ({'OK' if good else 'FAIL'}, tolerance {tolerance * 100:.1f}%)"
        lines.append(
            f"PSS total of {label} {len(pids)} processes: zxmem {a / 2**20:.1f} MiB, "
            f"kernel smaps_rollup {b / 2**20:.1f} MiB, difference {diff * 100:.3f}%{verdict}"
        )
    return ok, "\n".join(lines)


def load_average() -> str:
    """The 1/5/15-minute load averages: how busy the machine was meanwhile."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def mem_available() -> int:
    with open("/proc/meminfo", "rb") as f:
        for line in f:
            if line.startswith(b"MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_facts() -> list[str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        total = int(f.readline().split()[1]) * 1024
    return [
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"kernel: {platform.release()}",
        f"cpu: {cpu}, {os.cpu_count()} logical CPUs",
        f"memory: {total / 2**30:.1f} GiB",
        f"python: {platform.python_version()} ({sys.executable})",
        f"load average at the start: {load_average()}",
    ]


def start_workload(procs: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, os.path.join(HERE, "workload.py"), "--procs", str(procs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,  # its own process group, killed as one
    )


def wait_ready(wl: subprocess.Popen) -> list[int]:
    """The workload's PIDs, once every child has touched its memory."""
    assert wl.stdout is not None  # started with stdout=PIPE
    line = wl.stdout.readline().decode()
    if not line.startswith("ready"):
        raise RuntimeError(f"workload did not start (exit {wl.poll()})")
    return [int(p) for p in line.split()[1:]]


def stop_workload(wl: subprocess.Popen | None) -> None:
    if wl is None:
        return
    try:
        if wl.stdin is not None:
            wl.stdin.close()  # the workload's cue to leave
    except OSError:
        pass
    try:
        wl.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(wl.pid, signal.SIGKILL)  # anything left in its group
    except ProcessLookupError:
        pass
    wl.wait()


def bytecode_cache() -> str | None:
    """Let the timed Python programs cache their bytecode, in a private dir.

    An installed package has its modules compiled (pip does it at install
    time); an editable checkout under ``PYTHONDONTWRITEBYTECODE=1`` would
    instead compile every module on every run, which is not what users see.
    The cache lives under a bench-owned ``PYTHONPYCACHEPREFIX``, so nothing
    is written into the source tree.  Returns the directory to remove.
    """
    import tempfile

    prefix = tempfile.mkdtemp(prefix="zxmem-bench-pyc-")
    CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    CHILD_ENV["PYTHONPYCACHEPREFIX"] = prefix
    return prefix


def bytecode_setting(cache: bool) -> str | None:
    """:func:`bytecode_cache` when ``cache``, saying which setting the timed
    commands run with.  Returns the directory to remove, if any."""
    if cache:
        pyc = bytecode_cache()
        print(f"bytecode: cached under {pyc} (PYTHONPYCACHEPREFIX) for the timed commands")
        return pyc
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("bytecode: PYTHONDONTWRITEBYTECODE is set; uncached modules compile on every run")
    return None


NO_BYTECODE_CACHE_HELP = "run Python tools with this environment's bytecode settings as they are"


def install_signal_handlers() -> None:
    """SIGTERM and Ctrl-C raise KeyboardInterrupt, so workloads are cleaned up."""

    def _term(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    # Ctrl-C must clean up even when started with SIGINT ignored (a shell's
    # background job): install Python's handler explicitly.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def prepare(not_root_note: str) -> str | None:
    """The common start of a workload bench: handlers, GNU time, facts.

    Returns the ``zxmem`` command to time, or None (with the reason printed)
    when the bench cannot run.
    """
    install_signal_handlers()
    if not os.access(TIME, os.X_OK):
        print(f"{TIME} is missing (apt-get install -y time): it measures peak RSS")
        return None
    if os.geteuid() != 0:
        print(not_root_note)
    zxmem = _which("zxmem")
    if zxmem is None:
        print("zxmem not found (pip install -e .)")
        return None
    for fact in machine_facts():
        print(fact)
    return zxmem


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=1000,
                    help="workload processes (1000); 0 runs the idle comparison only")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds with the workload (7)")
    ap.add_argument("--idle-rounds", type=int, default=15, help="timed idle rounds (15)")
    ap.add_argument("--tolerance", type=float, default=0.005,
                    help="allowed relative PSS difference (0.005)")
    ap.add_argument("--skip", default="", metavar="NAMES",
                    help="comma-separated tools to leave out: floor2, psutil, ps_mem, smem")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help=NO_BYTECODE_CACHE_HELP)
    args = ap.parse_args(argv)
    install_signal_handlers()

    if not os.access(TIME, os.X_OK):
        print(f"{TIME} is missing (apt-get install -y time): it measures peak RSS")
        return 2
    if os.geteuid() != 0:
        print("note: not root; other users' processes are unreadable to every tool")
    for fact in machine_facts():
        print(fact)
    pyc = bytecode_setting(not args.no_bytecode_cache)
    zxmem = _which("zxmem")
    print(f"zxmem: {zxmem or 'MISSING (pip install -e .)'}")
    tool_list = tools(zxmem)
    skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    for t in tool_list:
        if t.argv and t.key in skip:
            t.argv, t.missing = None, "--skip"
    for t in tool_list:
        if not t.argv and t.missing != "--skip":
            print(f"MISSING peer, skipped: {t.name} ({t.missing})")

    ok = True
    wl = None
    try:
        # 1. Idle start-up.
        idle = []
        if zxmem:
            idle = [
                Tool("python3 -c pass", [sys.executable, "-c", "pass"]),
                Tool("zxmem ps (idle)", [zxmem, "ps"]),
            ]
            idle += [t for t in peers() if t.argv and t.key not in skip]
            idle_procs = sum(1 for n in os.listdir("/proc") if n.isdigit())
            print(f"\nidle machine ({idle_procs} processes), {args.idle_rounds} rounds:")
            measure(idle, args.idle_rounds, "idle")

        if args.procs <= 0:  # idle comparison only
            if idle:
                print(f"\nIdle ({idle_procs} processes):")
                print("\n".join(report(idle, "python3 -c pass")))
            return 0

        # 2. The crowd.
        before = mem_available()
        t0 = time.perf_counter()
        wl = start_workload(args.procs)
        pids = wait_ready(wl)
        took = time.perf_counter() - t0
        time.sleep(1.0)
        used = before - mem_available()
        print(
            f"\nworkload: {len(pids)} processes in {took:.1f}s, "
            f"MemAvailable down by {used / 2**30:.2f} GiB"
        )

        # 3. Alternating timings.
        print(f"{args.rounds} rounds:")
        measure(tool_list, args.rounds, "crowd")

        # 4. PSS agreement.
        pss_text = "PSS check skipped: zxmem missing"
        if zxmem:
            ok, pss_text = check_pss(zxmem, set(pids), args.tolerance)
        nprocs = sum(1 for n in os.listdir("/proc") if n.isdigit())
    except KeyboardInterrupt:
        print("\ninterrupted; removing the workload", file=sys.stderr)
        return 130
    finally:
        stop_workload(wl)
        if pyc:
            shutil.rmtree(pyc, ignore_errors=True)

    print()
    if idle:
        print(f"Idle (without the workload; {idle_procs} processes):")
        print("\n".join(report(idle, "python3 -c pass")))
        print()
    print(f"With {len(pids)} workload processes ({nprocs} processes in all):")
    print("\n".join(report(tool_list, "floor")))
    print()
    print(pss_text)
    print(f"load average at the end: {load_average()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
