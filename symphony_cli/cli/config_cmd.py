"""`symphony config show`: every setting, its value and where the value came from."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from ..config import SPECS, Settings, mask_url
from ..render import make_console
from ._common import ConfigOption, DatabaseUrlOption, TableOption, handle_errors, settings_from_flags

app = typer.Typer(help="Show the configuration.", no_args_is_help=True, rich_markup_mode=None,
                  suggest_commands=False)


class ShowFormat(str, Enum):
    table = "table"
    toml = "toml"


def display_value(settings: Settings, key: str) -> object:
    value = settings.value_of(key)
    return mask_url(value) if key == "database.url" else value


def settings_document(settings: Settings) -> dict[str, dict[str, object]]:
    """Return the settings as nested TOML tables, with any password masked."""
    document: dict[str, dict[str, object]] = {}
    for spec in SPECS:
        section, name = spec.key.split(".")
        document.setdefault(section, {})[name] = display_value(settings, spec.key)
    return document


@app.command("show")
@handle_errors
def show(
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    table: TableOption = None,
    output_format: Annotated[ShowFormat, typer.Option("--format", help="A table with sources, or a TOML file")] = ShowFormat.table,
) -> None:
    """Print every setting with its value and source.

    The source is the default, the configuration file's path, the environment variable's
    name or the flag.
    """
    settings = settings_from_flags(config, database__url=(database_url, "--database-url"),
                                   database__table=(table, "--table"))
    if output_format is ShowFormat.toml:
        import tomli_w

        sys.stdout.write(tomli_w.dumps(settings_document(settings)))
        return
    view = Table(title=f"configuration file: {settings.config_file or 'none'}", title_justify="left")
    for name in ("Setting", "Value", "Source", "Environment variable"):
        view.add_column(name, overflow="fold")
    for spec in SPECS:
        value = display_value(settings, spec.key)
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value).lower()
        view.add_row(spec.key, shown, settings.source_of(spec.key), spec.env_var)
    make_console().print(view)
