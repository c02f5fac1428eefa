"""The console entry point, kept tiny so Ctrl-C during start-up exits quietly.

A SIGINT that arrives while ``zxmem.cli`` and its imports load would
otherwise print a ``KeyboardInterrupt`` traceback; here it is caught and
mapped to the usual 130.
"""

import sys


def run() -> None:
    try:
        from zxmem.cli import main

        status = main()
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)
