"""The console entry point, kept tiny so Ctrl-C during start-up exits quietly.

A SIGINT that arrives while ``zxmem.cli`` and its imports load would
otherwise print a ``KeyboardInterrupt`` traceback; here it is caught and
mapped to the usual 130.
"""

import sys


def run() -> None:
    try:
        from zxmem import runtime
        from zxmem.cli import main

        runtime.ending_after_command = True
        status = main()
    except KeyboardInterrupt:
        status = 130
    if "zxmem.runtime" in sys.modules and sys.modules["zxmem.runtime"].kept():
        _end_now(status)
    sys.exit(status)


def _end_now(status: int) -> None:
    """End the process at once, not freeing what the command kept
    (:func:`zxmem.runtime.keep_until_exit`); standard output and error are
    flushed first.  Returns if they cannot be: Python's own exit then
    reports it as usual."""
    import os

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - any failure: the ordinary exit
        return
    os._exit(status)
