"""Fixtures for the CLI tests: a runner that keeps stdout and stderr apart."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from symphony_cli.cli import app


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Return a function that runs `symphony ARGS...` in this process. Unexpected exceptions propagate."""
    runner = CliRunner()

    def run(*args: Any, input: str | None = None, env: Mapping[str, str | None] | None = None) -> Result:
        return runner.invoke(app, [str(arg) for arg in args], input=input, env=env, catch_exceptions=False)

    return run
