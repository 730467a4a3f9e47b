"""`symphony db init`: create the store's tables, or print their DDL."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..config import mask_url
from ..render import make_console
from ..stores import open_store, schema_sql
from ._common import ConfigOption, DatabaseUrlOption, TableOption, handle_errors, settings_from_flags

app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True, rich_markup_mode=None,
                  suggest_commands=False)


@app.command("init")
@handle_errors
def init(
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    table: TableOption = None,
    print_sql: Annotated[bool, typer.Option("--print-sql", help="Print the DDL instead of running it")] = False,
) -> None:
    """Create the message, key and attempt tables; safe to run twice."""
    settings = settings_from_flags(config, database__url=(database_url, "--database-url"),
                                   database__table=(table, "--table"))
    if print_sql:
        sys.stdout.write(schema_sql(settings))
        return
    store = open_store(settings.replace(auto_create=True))
    try:
        store.create_schema()
    finally:
        store.close()
    make_console(stderr=True).print(f"tables for {settings.table!r} are ready in {mask_url(settings.database_url)}")
