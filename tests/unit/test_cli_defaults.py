"""``zxmem COMMAND`` with no option is answered without argparse
(zxmem.commands._defaults): its arguments must be exactly argparse's."""

from __future__ import annotations

import pytest

from zxmem.cli import build_parser, command_modules
from zxmem.commands._defaults import bare_command_args


@pytest.mark.parametrize("name", command_modules())
def test_bare_command_args_are_argparses(name):
    bare = bare_command_args(name)
    parser = build_parser(name)
    try:
        expected = parser.parse_args([name])
    except Exception:  # a command that needs an argument: argparse refuses it
        assert bare is None
        return
    if bare is not None:
        assert vars(bare) == vars(expected)


def test_ps_is_answered_without_argparse():
    # The point of the module: the commonest command takes the short way.
    assert bare_command_args("ps") is not None


def test_what_the_recorder_cannot_tell_goes_to_argparse():
    from zxmem.commands._defaults import _Recorder, _Subparsers, _Unsupported

    def refused(add) -> bool:
        sub = _Subparsers("x")
        try:
            add(sub.add_parser("x"))
        except _Unsupported:
            return True
        return False

    assert refused(lambda p: p.add_argument("pid"))  # positional
    assert refused(lambda p: p.add_argument("--n", required=True))
    assert refused(lambda p: p.add_argument("--n", type=int, default="3"))  # argparse converts
    assert refused(lambda p: p.add_subparsers())
    assert not refused(lambda p: p.add_argument("--n", type=int, default=3))
    r = _Recorder()
    r.add_argument("--a-b", action="store_true")
    r.add_argument("-c", dest="see", default=5)
    r.add_argument("--out", dest="o", action="store_const", const="x")
    r.add_argument("--csv", dest="o", action="store_const", const="y", default="z")
    r.set_defaults(run=len, see=6)
    assert r.namespace() == {"a_b": False, "see": 6, "o": None, "run": len}
