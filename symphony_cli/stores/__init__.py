"""Stores: where messages, keys and attempts live. `open_store` picks one from the URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..config import Settings
from ..errors import ConfigError
from .base import Store, TableNames

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


def store_kind(url: str) -> str:
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in POSTGRES_SCHEMES or (not scheme and "=" in url and "dbname" in url):
        return "postgresql"
    if scheme in ("", "sqlite", "file") or url.startswith("sqlite:"):
        return "sqlite"
    raise ConfigError(f"database.url has the unsupported scheme {scheme!r}; use postgresql:// or sqlite:///")


def open_store(settings: Settings) -> Store:
    """Connect to the store that settings.database_url names, creating its tables if allowed."""
    tables = TableNames.parse(settings.table)
    if store_kind(settings.database_url) == "postgresql":
        from .postgres import PostgresStore  # psycopg loads only for PostgreSQL runs

        return PostgresStore(settings.database_url, tables, auto_create=settings.auto_create,
                             connect_timeout=settings.connect_timeout)
    from .sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(settings.database_url), tables, auto_create=settings.auto_create)


def schema_sql(settings: Settings) -> str:
    """Return the DDL that `open_store` would run for these settings, without connecting."""
    tables = TableNames.parse(settings.table)
    if store_kind(settings.database_url) == "postgresql":
        from .postgres import schema_sql as postgres_schema_sql

        return postgres_schema_sql(tables)
    from .sqlite import schema_sql as sqlite_schema_sql

    return sqlite_schema_sql(tables)
