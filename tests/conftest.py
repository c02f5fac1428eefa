"""Shared test fixtures: run the CLI in-process with an injectable environment."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from zxmem.cli import Environment, main


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str


def run_cli(args: list[str], **env_kwargs) -> Result:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, **env_kwargs)
    env_kwargs.setdefault("stdout_isatty", False)
    if env.stdout_isatty is None:
        env.stdout_isatty = False
    status = main(args, env)
    return Result(status, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli
