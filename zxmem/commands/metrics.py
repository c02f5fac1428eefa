"""``zxmem metrics``: one sample of the exporter's metrics, printed or written
atomically for node_exporter's textfile collector."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from zxmem.commands import _prom, common
from zxmem.errors import ZxmemError

if TYPE_CHECKING:
    from zxmem.cli import Environment

HELP = "print one sample of the exporter's Prometheus metrics (or write it with -o)"

DESCRIPTION = """\
Collect once and print the metrics `zxmem exporter` serves, in the
Prometheus text format (--openmetrics: OpenMetrics).  With -o FILE.prom the
text is written to a temporary file and renamed over FILE.prom, so
node_exporter's textfile collector never reads half a file.  Run
`zxmem exporter --help` for the list of metrics.
"""

EPILOG = """\
examples:
  zxmem metrics | grep zxmem_kernel_bytes
  zxmem metrics -o /var/lib/node_exporter/textfile/zxmem.prom   (from a timer)
  zxmem metrics --group-by cgroup --openmetrics
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("metrics", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the sample to FILE atomically instead of standard output "
                   "('-': standard output)")
    p.add_argument("--openmetrics", action="store_true",
                   help="the OpenMetrics text format (ends in '# EOF')")
    _prom.add_options(p)
    common.add_proc_root(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env: Environment) -> int:
    from zxmem.views import metrics as view

    sampler, root = _prom.sampler_from_args(args, env)
    if not sampler.step():
        raise ZxmemError(f"cannot collect from {root}: {sampler.last_error}")
    text = view.exposition(sampler.collect(), openmetrics=args.openmetrics)
    from zxmem.outfile import write_result

    write_result(args.output, text, env.stdout)
    return 0
