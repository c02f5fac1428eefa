"""``zxmem exporter``: serve /metrics for Prometheus from a sample collected
on a timer (the metrics themselves are :mod:`zxmem.views.metrics`)."""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from typing import TYPE_CHECKING

from zxmem.commands import common
from zxmem.errors import ZxmemError

if TYPE_CHECKING:
    from zxmem.cli import Environment

HELP = "serve memory metrics for Prometheus on /metrics, collected on a timer"

DEFAULT_PORT = 9756

DESCRIPTION = f"""\
Serve /metrics in the Prometheus text format (and OpenMetrics, when the
scraper asks for it) from the last complete sample.  A timer thread collects
every --interval (process totals, status, the cgroup tree, /proc/meminfo);
a scrape never reads /proc and never waits for a collection.

Binds 127.0.0.1:{DEFAULT_PORT} by default; another address only when given
(--listen :PORT listens on every interface, --listen [::1]:PORT on IPv6).

Metrics (bytes, seconds; `zxmem metrics` prints one sample):
  zxmem_process_{{pss,uss,rss,swap_pss}}_bytes{{group}}, zxmem_processes{{group}}
      readable processes grouped by --group-by; past --max-groups the rest
      sum into group="(other)", so sum() is every readable process
  zxmem_processes_unreadable   processes whose memory is unknown (not 0)
  zxmem_cgroup_{{pss,uss,swap}}_bytes{{cgroup}}   per cgroup, including the cgroups
      below it (do not sum across cgroups); past --max-cgroups left out
      and counted in zxmem_cgroups_omitted
  zxmem_cgroup_{{charged,limit}}_bytes{{cgroup}},
  zxmem_cgroup_memory_events_total{{cgroup,event}},
  zxmem_cgroup_pressure_memory_{{waiting,stalled}}_seconds_total{{cgroup}}
      what each exported cgroup's own memory files say (no series for a
      file the kernel does not give: no limit, no pressure on v1)
  zxmem_pid_pss_bytes{{pid,comm}}   with --per-pid: the --max-pids largest
  zxmem_object_pss_bytes{{kind,object}}   with --objects N: the N largest memory
      objects (PSS over their mappings; hidden memfd/SysV/tmpfs objects by
      resident bytes) and one object="(other)" with the rest; read every
      --objects-every'th collection in a short-lived child process, which
      gives its memory back when it exits
  zxmem_memory_total_bytes, zxmem_memory_free_bytes, zxmem_kernel_bytes{{kind}}
      kinds do not overlap: sum(zxmem_kernel_bytes) + free
      + sum(zxmem_process_pss_bytes) = total (MemTotal)
  zxmem_build_info{{version}}, zxmem_collection_duration_seconds,
  zxmem_collection_errors_total, zxmem_collections_total

Series: 5 per process group, 3 per cgroup plus what its memory files give
(charged, limit, memory.events: 2 counters on cgroup v1, 6 on v2; pressure:
2 on v2), and at most 30 more.  At most 5 x --max-groups + 13 x --max-cgroups
+ 30: 3,130 with the defaults; --per-pid adds --max-pids, --objects N adds
N + 1.
"""

EPILOG = f"""\
examples:
  zxmem exporter                              127.0.0.1:{DEFAULT_PORT}, every 15 s
  zxmem exporter --listen :{DEFAULT_PORT} --interval 30s   every interface
  zxmem exporter --group-by cgroup --per-pid --max-pids 20
  curl -s 127.0.0.1:{DEFAULT_PORT}/metrics | grep zxmem_kernel_bytes
"""

MIN_INTERVAL_S = 0.1
SWITCH_INTERVAL_S = 0.001
MAX_INTERVAL_S = 86400.0
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_SCALE = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}


def parse_interval(value: str) -> float:
    """``15s``, ``500ms``, ``2m``, ``1h`` or plain seconds."""
    m = _DURATION.match(value.strip())
    if not m:
        raise argparse.ArgumentTypeError(
            f"--interval {value!r}: want a duration such as 15s, 500ms, 2m")
    seconds = float(m.group(1)) * _SCALE[m.group(2)]
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise argparse.ArgumentTypeError(
            f"--interval {value!r}: must be between 100ms and 24h")
    return seconds


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT``, ``:PORT`` (every interface) or ``PORT``
    (127.0.0.1)."""
    text = value.strip()
    if text.isdigit():
        host, port_text = "127.0.0.1", text
    elif text.startswith("["):
        end = text.find("]:")
        if end < 0:
            raise argparse.ArgumentTypeError(f"--listen {value!r}: want [ADDRESS]:PORT")
        host, port_text = text[1:end], text[end + 2:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise argparse.ArgumentTypeError(
                f"--listen {value!r}: want HOST:PORT, [IPV6]:PORT or :PORT")
        host = host or "0.0.0.0"
    if not port_text.isdigit() or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(f"--listen {value!r}: port must be 0..65535")
    return host, int(port_text)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("exporter", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", DEFAULT_PORT),
                   metavar="HOST:PORT",
                   help=f"address to serve on (default 127.0.0.1:{DEFAULT_PORT}; "
                   ":PORT is every interface; port 0 picks a free one, printed on stderr)")
    p.add_argument("--interval", type=parse_interval, default=15.0, metavar="DURATION",
                   help="time between collections: 15s (default), 500ms, 2m")
    from zxmem.commands import _prom

    _prom.add_options(p)
    p.add_argument("--objects-every", type=_prom._cap("--objects-every"), default=4,
                   metavar="K", help="with --objects: read the objects every K-th "
                   "collection (default 4); samples between serve the last ones")
    common.add_proc_root(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env: Environment) -> int:
    from zxmem.commands import _prom

    sampler, _ = _prom.sampler_from_args(args, env, objects_every=args.objects_every,
                                         objects_in_child=True)
    host, port = args.listen
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(sampler)
    rendered = _prom.Rendered(registry)
    try:
        server = _prom.serve(rendered, host, port)
    except OSError as exc:
        raise ZxmemError(f"--listen {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = server.server_address[:2]
    if isinstance(bound_host, bytes):  # an AF_UNIX-style address: not from start_http_server
        bound_host = bound_host.decode("utf-8", "replace")
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    env.stderr.write(f"zxmem: serving http://{shown}:{bound_port}/metrics "
                     f"every {args.interval:g} s\n")
    env.stderr.flush()
    # A scrape's thread waits for the interpreter while the collector runs
    # Python; each wait lasts up to the switch interval (5 ms by default)
    # and a scrape needs several.  This process is a server of its own: a
    # 1 ms interval keeps a scrape's waits short.
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    stop = threading.Event()
    sleep = stop.wait if env.sleep is time.sleep else env.sleep
    collector = threading.Thread(
        target=_prom.run_loop, name="zxmem-collector", daemon=True,
        args=(sampler, args.interval, env.monotonic, sleep, stop),
        kwargs={"after_step": rendered.refresh})
    collector.start()
    try:
        while collector.is_alive():
            collector.join(0.5)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
    raise ZxmemError("the collector thread stopped")  # pragma: no cover - step() catches
