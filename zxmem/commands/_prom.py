"""What ``zxmem exporter`` and ``zxmem metrics`` share: their options and the
:class:`Sampler`, which collects and swaps in the families a scrape serves.

Loaded only by those two commands; ``prometheus_client`` itself only when
they run.
"""

from __future__ import annotations

import argparse
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from zxmem import __version__
from zxmem.collection import Plan, collect
from zxmem.errors import UsageError, ZxmemError
from zxmem.views import metrics as view

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry

    from zxmem.cli import Environment


def require_client() -> None:
    """A one-line error when the ``exporter`` extra is not installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ZxmemError("this command needs prometheus_client: "
                         "pip install 'zxmem[exporter]'") from None


def _cap(option: str, low: int = 1) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option} wants a whole number, not {value!r}") from None
        if n < low or n > 1_000_000:
            raise argparse.ArgumentTypeError(f"{option} must be {low}..1000000")
        return n
    return parse


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group-by", choices=view.GROUP_BY, default="comm",
                   help="what zxmem_process_* series are grouped by: comm (task name, "
                   "default), exe (argv[0]'s file name), cgroup (path) or user (UID)")
    p.add_argument("--max-groups", type=_cap("--max-groups"), default=view.DEFAULT_MAX_GROUPS,
                   metavar="N", help="process groups kept, the largest by PSS; the rest are "
                   f"summed into group=\"{view.OTHER_GROUP}\" (default {view.DEFAULT_MAX_GROUPS})")
    p.add_argument("--max-cgroups", type=_cap("--max-cgroups"),
                   default=view.DEFAULT_MAX_CGROUPS, metavar="N",
                   help="cgroups exported, the largest by PSS; the number left out is "
                   f"zxmem_cgroups_omitted (default {view.DEFAULT_MAX_CGROUPS})")
    p.add_argument("--per-pid", action="store_true",
                   help="also zxmem_pid_pss_bytes{pid,comm} for the largest processes")
    p.add_argument("--objects", type=_cap("--objects", 0), default=0, metavar="N",
                   help="also zxmem_object_pss_bytes{kind,object} for the N largest memory "
                   "objects, hidden ones (memfd, SysV, tmpfs) included, plus one (other); "
                   "reads every process's smaps (default 0: off)")
    p.add_argument("--max-pids", type=_cap("--max-pids"), default=view.DEFAULT_MAX_PIDS,
                   metavar="N", help="with --per-pid: how many processes "
                   f"(default {view.DEFAULT_MAX_PIDS})")


def options_from_args(args: argparse.Namespace) -> view.MetricsOptions:
    if args.max_pids != view.DEFAULT_MAX_PIDS and not args.per_pid:
        raise UsageError("zxmem: --max-pids needs --per-pid")
    return view.MetricsOptions(group_by=args.group_by, max_groups=args.max_groups,
                               max_cgroups=args.max_cgroups, per_pid=args.per_pid,
                               max_pids=args.max_pids, objects=args.objects)


def sampler_from_args(args: argparse.Namespace, env: Environment, *, objects_every: int = 1,
                      objects_in_child: bool = False) -> tuple[Sampler, str]:
    """The :class:`Sampler` of a ``metrics`` or ``exporter`` command line and
    the /proc it reads; its warnings are ``zxmem:`` lines on standard error
    (each said once)."""
    from zxmem.commands import common

    require_client()
    options = options_from_args(args)
    root = common.proc_root(args, env)

    def warn(line: str) -> None:
        env.stderr.write(f"zxmem: {line}\n")
        env.stderr.flush()

    sampler = Sampler(options, root, env.monotonic, warn=warn, objects_every=objects_every,
                      objects_in_child=objects_in_child)
    return sampler, root


# What every sample reads: process totals, status (UID, swap), the cgroup
# tree and the kernel counters.
PLAN = Plan(status=True, kernel=True, cgroup_memory=True)
# With --objects, every --objects-every'th sample also reads every mapping and
# the hidden objects (totals then come from the same smaps read).
OBJECTS_PLAN = Plan(status=True, kernel=True, objects=True, hidden=True, cgroup_memory=True,
                    memory_from_objects=True)


class Sampler:
    """Collects a sample and swaps it in; :meth:`collect` (the Prometheus
    collector interface) serves the last complete one and never reads /proc
    or waits for a collection in progress."""

    def __init__(self, options: view.MetricsOptions, proc_root: str,
                 monotonic: Callable[[], float], plan: Plan = PLAN,
                 warn: Callable[[str], None] | None = None, objects_every: int = 1,
                 objects_in_child: bool = False) -> None:
        self.options = options
        self.proc_root = proc_root
        self.plan = plan
        self.monotonic = monotonic
        self.warn = warn
        self.objects_every = objects_every
        # The objects tier holds every mapping of every process at once:
        # collected in a short-lived child, its peak memory is given back
        # when the child exits, and its Python work does not hold this
        # process's interpreter (scrapes) meanwhile.
        self.objects_in_child = objects_in_child
        self._sample: list[Metric] = []  # replaced whole, never changed in place
        self._objects: list[Metric] = []  # the last objects sample, likewise
        self._attempts = 0
        self.errors = 0
        self.collections = 0
        self.duration: float | None = None
        self.last_error: str | None = None
        self._warned: set[str] = set()
        # Whether thread stacks are vmalloc'ed: fixed for a boot, learnt from
        # the first collection, so later ones skip /proc/vmallocinfo.
        self._stacks_in_vmalloc: bool | None = None

    def step(self) -> bool:
        """One collection; True when it gave a new sample.  A failure is
        counted (zxmem_collection_errors_total) and the old sample stays."""
        start = self.monotonic()
        with_objects = (self.options.objects > 0
                        and self._attempts % self.objects_every == 0)
        self._attempts += 1
        try:
            plan = OBJECTS_PLAN if with_objects else self.plan
            if self._stacks_in_vmalloc is not None:
                plan = replace(plan, kernel_stacks_in_vmalloc=self._stacks_in_vmalloc)
            if with_objects and self.objects_in_child:
                sample, objects, warnings, stacks = _collect_in_child(
                    plan, self.proc_root, self.options)
                for line in warnings:
                    self._warn_once(line)
            else:
                sample, objects, stacks = _collect_families(
                    plan, self.proc_root, self.options, with_objects, self._warn_once)
                if not with_objects:
                    objects = self._objects
        except Exception as exc:  # noqa: BLE001 - a long-running server keeps going
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        self.duration = self.monotonic() - start
        if self._stacks_in_vmalloc is None:
            self._stacks_in_vmalloc = stacks
        # Reference assignments: a scrape sees the old or the new list.
        self._objects = objects
        self._sample = sample
        self.collections += 1
        return True

    def _warn_once(self, line: str) -> None:
        if self.warn is not None and line not in self._warned and len(self._warned) < 100:
            self._warned.add(line)
            self.warn(line)

    def collect(self) -> Iterable[Metric]:
        sample = self._sample
        stats = view.SelfStats(version=__version__, duration_seconds=self.duration,
                               errors_total=self.errors, collections_total=self.collections)
        return [*sample, *self._objects, *view.self_families(stats)]

    def describe(self) -> Iterable[Metric]:
        return []  # families differ per sample: nothing to check at registration


def _collect_families(plan: Plan, proc_root: str, options: view.MetricsOptions,
                      with_objects: bool, warn: Callable[[str], None] | None,
                      ) -> tuple[list[Metric], list[Metric], bool | None]:
    """One collection's families, its object families (empty without
    ``with_objects``), and whether thread stacks are vmalloc'ed (None:
    unknown)."""
    snapshot = collect(plan, proc_root, warn)
    sample = view.families(snapshot, options)
    objects = view.object_families(snapshot, options.objects) if with_objects else []
    stacks = None
    if snapshot.kernel is not None:
        known = snapshot.kernel.extra.get("kernel_stack_in_vmalloc")
        stacks = None if known is None else bool(known)
    return sample, objects, stacks


# Seconds an objects collection in a child may take before it is abandoned
# (counted as a failed collection).
CHILD_TIMEOUT_S = 600.0


def _collect_in_child(plan: Plan, proc_root: str, options: view.MetricsOptions,
                      ) -> tuple[list[Metric], list[Metric], list[str], bool | None]:
    """:func:`_collect_families` with the objects, in a new interpreter
    (:func:`child_main`); its warnings come back as lines."""
    import os
    import pickle
    import subprocess
    import sys

    import zxmem

    env = dict(os.environ)
    # The zxmem this process runs, whatever the child's working directory.
    top = os.path.dirname(os.path.dirname(os.path.abspath(zxmem.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (top, env.get("PYTHONPATH"))))
    r = subprocess.run(
        [sys.executable, "-c", "from zxmem.commands._prom import child_main; child_main()"],
        input=pickle.dumps((plan, proc_root, options)), capture_output=True, env=env,
        timeout=CHILD_TIMEOUT_S, check=False)
    if r.returncode != 0:
        lines = r.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"]
        raise ZxmemError(f"objects collection exited {r.returncode}: {lines[-1][:300]}")
    sample, objects, warnings, stacks = pickle.loads(r.stdout)  # our own child's output
    return sample, objects, warnings, stacks


def child_main() -> None:
    """The child of :func:`_collect_in_child`: a pickled (plan, proc_root,
    options) on stdin, the pickled families on stdout."""
    import pickle
    import sys

    plan, proc_root, options = pickle.loads(sys.stdin.buffer.read())
    warnings: list[str] = []
    sample, objects, stacks = _collect_families(plan, proc_root, options, True,
                                                warnings.append)
    sys.stdout.buffer.write(pickle.dumps((sample, objects, warnings, stacks)))
    sys.stdout.buffer.flush()


def run_loop(sampler: Sampler, interval: float, monotonic: Callable[[], float],
             sleep: Callable[[float], None], stop: threading.Event,
             count: int | None = None,
             after_step: Callable[[], None] | None = None) -> None:
    """Collect every ``interval`` seconds (a late collection starts the next
    at once, missed ticks are skipped) until ``stop`` is set or ``count``
    collections were attempted; ``after_step`` runs after each."""
    done = 0
    next_at = monotonic()
    while not stop.is_set():
        sampler.step()
        if after_step is not None:
            after_step()
        done += 1
        if count is not None and done >= count:
            return
        next_at += interval
        now = monotonic()
        if next_at < now:
            next_at = now
        wait = next_at - now
        if wait > 0:
            sleep(wait)


class Rendered:
    """The last sample as bytes, per content type a scraper asked for.

    :meth:`refresh` (the collector thread, after each collection) renders
    the sample once for every content type asked for so far, so that a
    scrape only writes bytes: no formatting competes for the interpreter
    with the next collection.  A content type not seen before is rendered
    on its scrape and then kept up to date (at most :attr:`MAX_TYPES`).
    """

    MAX_TYPES = 4

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._encoders: dict[str, Callable[[CollectorRegistry], bytes]] = {}
        self._bodies: dict[str, bytes] = {}  # replaced whole

    def refresh(self) -> None:
        with self._lock:
            encoders = dict(self._encoders)
        self._bodies = {ctype: enc(self.registry) for ctype, enc in encoders.items()}

    def body(self, accept: str | None) -> tuple[str, bytes]:
        from prometheus_client.exposition import choose_encoder

        encoder, ctype = choose_encoder(accept or "")
        body = self._bodies.get(ctype)
        if body is None:
            body = encoder(self.registry)
            with self._lock:
                if len(self._encoders) < self.MAX_TYPES:
                    self._encoders[ctype] = encoder
        return ctype, body


def serve(rendered: Rendered, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server answering ``GET /metrics`` (and ``/``) from
    ``rendered`` in threads of its own; the caller shuts it down."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "zxmem"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path not in ("/metrics", "/"):
                self.send_error(404, "only /metrics is served")
                return
            ctype, body = rendered.body(self.headers.get("Accept"))
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # no line per scrape on stderr

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="zxmem-http", daemon=True).start()
    return server
