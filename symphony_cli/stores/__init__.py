"""Stores: where messages, keys and attempts live. `open_store` picks one from the URL."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from ..config import Settings
from ..errors import ConfigError, StoreError
from .base import QueryError, Store, TableNames

POSTGRES_SCHEMES = ("postgresql", "postgres")


def sqlite_path(url: str) -> Path:
    """Return the file path of an SQLite URL or plain path.

    As in SQLAlchemy, sqlite:///relative.db is relative to the working directory and
    sqlite:////absolute/path.db is absolute.
    """
    if not url.startswith("sqlite:"):
        return Path(url).expanduser()
    rest = url[len("sqlite:"):]
    if not rest.startswith("///") or len(rest) == 3:
        raise ConfigError(f"database.url {url!r} is not a valid SQLite URL; write sqlite:///relative.db, "
                          "sqlite:////absolute/path.db or a plain file path")
    return Path(unquote(rest[3:])).expanduser()


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_DSN = re.compile(r"^\s*[A-Za-z_]+\s*=")  # libpq key=value form: host=... dbname=...


def store_kind(url: str) -> str:
    """Return "postgresql" or "sqlite" for a database URL; raise ConfigError for anything else."""
    match = _SCHEME.match(url)
    scheme = match[1].lower() if match else ""
    if scheme in POSTGRES_SCHEMES or (not scheme and _DSN.match(url)):
        return "postgresql"
    if scheme == "sqlite" or not scheme:
        return "sqlite"
    raise ConfigError(f"database.url has the unsupported scheme {scheme!r}; use postgresql://, "
                      "a key=value connection string, sqlite:/// or a file path")


def postgres_conninfo(url: str) -> str:
    """Return the URL with its scheme in lower case, which libpq requires."""
    match = _SCHEME.match(url)
    return match[1].lower() + url[len(match[1]):] if match else url


def open_store(settings: Settings) -> Store:
    """Connect to the store that settings.database_url names, creating its tables if allowed."""
    try:
        return _connect(settings)
    except QueryError as error:  # for example a table name in a schema the user may not write to
        raise StoreError(f"cannot use the table {settings.table!r}: {error}") from None


def _connect(settings: Settings) -> Store:
    tables = TableNames.parse(settings.table)
    if store_kind(settings.database_url) == "postgresql":
        from .postgres import PostgresStore  # psycopg loads only for PostgreSQL runs

        return PostgresStore(postgres_conninfo(settings.database_url), tables, auto_create=settings.auto_create,
                             connect_timeout=settings.connect_timeout)
    from .sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(settings.database_url), tables, auto_create=settings.auto_create)


def open_empty_store() -> Store:
    """Return an in-memory store with empty tables, for a dry run against a store with none yet."""
    from .sqlite import SQLiteStore

    return SQLiteStore(Path(":memory:"), TableNames(None, "messages"))


def schema_sql(settings: Settings) -> str:
    """Return the DDL that `open_store` would run for these settings, without connecting."""
    tables = TableNames.parse(settings.table)
    if store_kind(settings.database_url) == "postgresql":
        from .postgres import schema_sql as postgres_schema_sql

        return postgres_schema_sql(tables)
    from .sqlite import schema_sql as sqlite_schema_sql

    return sqlite_schema_sql(tables)
