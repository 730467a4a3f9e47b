"""The `symphony` command: one module per command group."""

from __future__ import annotations

import io
import sys
from typing import Annotated

import typer

from . import config_cmd, db, dedup_cmd
from .send import send

# "\b" keeps click from rewrapping the lines of this paragraph.
EXIT_CODES_HELP = """\b
Exit status:
  0    every message was enqueued or was a duplicate
  1    a message was invalid, rejected, a conflict or failed
  2    usage or configuration error
  3    the input cannot be read
  4    the store cannot be opened or reached
  5    another run holds the --lock name
  130  interrupted by SIGINT or SIGTERM
"""

app = typer.Typer(
    name="symphony",
    help="Bulk-enqueue messages into an outbox table, without duplicates.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    suggest_commands=False,  # click 8.2+ suggests a close command name itself; typer would repeat it
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # plain click help: paragraphs rewrap to the terminal width
    add_completion=False,
)
app.command("send", epilog=EXIT_CODES_HELP)(send)
app.add_typer(dedup_cmd.app, name="dedup")
app.add_typer(config_cmd.app, name="config")
app.add_typer(db.app, name="db")


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"symphony {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Bulk-enqueue messages into an outbox table, without duplicates."""


def main() -> None:
    # Under an ASCII-only locale, show characters the terminal cannot encode as \u escapes
    # instead of failing with UnicodeEncodeError halfway through the output.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    app()
