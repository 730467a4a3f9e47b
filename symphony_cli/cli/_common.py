"""Pieces every command shares: option types, the error wrapper and settings from flags."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.text import Text

from ..config import Settings, load_settings, mask_url, warn_unknown_variables
from ..errors import SymphonyError
from ..render import make_console

F = TypeVar("F", bound=Callable[..., Any])

ConfigOption = Annotated[str | None, typer.Option("--config", "-c", metavar="PATH",
                                                  help="TOML configuration file (default: $SYMPHONY_CONFIG, "
                                                       "./symphony.toml, then config.toml in the app directory)")]
DatabaseUrlOption = Annotated[str | None, typer.Option("--database-url", metavar="URL",
                                                       help="postgresql://user@host/db, sqlite:///file.db or a path")]
TableOption = Annotated[str | None, typer.Option("--table", metavar="NAME",
                                                 help="Message table, optionally schema-qualified")]


def error_console():
    return make_console(stderr=True)


def print_error(text: str) -> None:
    """Print `error: TEXT` as one line; libpq's multi-line messages are joined with spaces."""
    one_line = " ".join(line.strip() for line in text.splitlines() if line.strip())
    error_console().print(Text(f"error: {mask_url(one_line)}"), soft_wrap=True)


def handle_errors(command: F) -> F:
    """Wrap a command so that a SymphonyError prints one line on stderr and sets the exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SymphonyError as error:
            print_error(str(error))
            raise typer.Exit(int(error.exit_code)) from None

    return wrapper  # type: ignore[return-value]


def settings_from_flags(config: str | None, **flags: tuple[Any, str]) -> Settings:
    """Load settings with the given flags, each passed as key=(value, '--flag'); warn of unknown variables."""
    settings = load_settings(config, {key.replace("__", "."): value for key, value in flags.items()})
    for warning in warn_unknown_variables(os.environ):
        error_console().print(Text(f"warning: {warning}"), soft_wrap=True)
    return settings


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to sys.stderr as it is when a record is emitted, not when created."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(verbose: bool) -> None:
    """Send the library's log records to stderr: warnings always, debug with -v."""
    logger = logging.getLogger("symphony_cli")
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
