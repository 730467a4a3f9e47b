"""Shared fixtures: an isolated home per test and one `backend` fixture for both stores."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from symphony_cli.config import Settings, load_settings
from symphony_cli.stores import open_store

pytest_plugins = ("postgres_fixtures",)

@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every test away from the user's app directory, config files and SYMPHONY_* variables."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in list(os.environ):
        if name.startswith("SYMPHONY_") and name != "SYMPHONY_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


@dataclasses.dataclass
class Backend:
    """One store for one test: a fresh SQLite file, or a fresh schema in the test database."""

    kind: str
    url: str
    table: str

    def settings(self, **changes) -> Settings:
        base = load_settings(env={}, flags={"database.url": (self.url, "--database-url"),
                                            "database.table": (self.table, "--table")})
        return base.replace(**changes) if changes else base

    def open(self, **changes):
        return open_store(self.settings(**changes))

    @property
    def cli_args(self) -> list[str]:
        return ["--database-url", self.url, "--table", self.table]

    @property
    def env(self) -> dict[str, str]:
        return {"SYMPHONY_DATABASE_URL": self.url, "SYMPHONY_DATABASE_TABLE": self.table}

    def query(self, sql_text: str, params: tuple = ()) -> list[tuple]:
        """Run one SQL statement; {messages}, {keys} and {attempts} name this backend's tables."""
        store = self.open()
        try:
            if self.kind == "sqlite":
                from symphony_cli.stores.sqlite import quote
                names = {name: quote(getattr(store.tables, name)) for name in ("messages", "keys", "attempts")}
                cursor = store.connection.execute(sql_text.format(**names).replace("%s", "?"), params)
                return cursor.fetchall()
            names = dict(zip(("messages", "keys", "attempts"),
                             (name.as_string(store.connection) for name in (store._messages, store._keys, store._attempts))))
            cursor = store.connection.execute(sql_text.format(**names), params)
            return cursor.fetchall() if cursor.description else []
        finally:
            store.close()

    def count_messages(self) -> int:
        return self.query("SELECT count(*) FROM {messages}")[0][0]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Run the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'store.db'}", "messages")
        return
    url = request.getfixturevalue("postgres_database_url")
    yield Backend("postgresql", url, f"{_fresh_schema()}.messages")


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    return Backend("sqlite", f"sqlite:///{tmp_path / 'store.db'}", "messages")


@pytest.fixture
def postgres_backend(postgres_database_url: str) -> Backend:
    return Backend("postgresql", postgres_database_url, f"{_fresh_schema()}.messages")


def _fresh_schema() -> str:
    from postgres_fixtures import fresh_schema_name  # imported late so pytest can rewrite its asserts

    return fresh_schema_name()
