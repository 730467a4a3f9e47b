"""Tests of the PostgreSQL and PgBouncer fixtures in postgres_fixtures.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from postgres_fixtures import (
    PostgresServer,
    fresh_schema_name,
    mask_password,
    replace_database,
    report_unavailable,
)


def connect(url: str) -> psycopg.Connection:
    """Open an autocommit connection that never prepares statements on the server."""
    return psycopg.connect(url, autocommit=True, prepare_threshold=None, connect_timeout=10)


def read_backend_pid(conn: psycopg.Connection) -> int:
    """Return the PID of the server process running the current transaction of ``conn``."""
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return row[0]


@contextmanager
def only_other_backend_free(url: str, backend_pid: int) -> Iterator[None]:
    """Hold pooled server connections so that the one free backend is not ``backend_pid``.

    The pool has two server connections, so two clients inside transactions hold both.
    Committing the transaction whose backend is not ``backend_pid`` frees exactly that one.
    """
    with ExitStack() as stack:
        holders = {}
        for _ in range(2):
            conn = stack.enter_context(connect(url))
            conn.execute("BEGIN")
            holders[read_backend_pid(conn)] = conn
        assert len(holders) == 2

        released_pid = next(pid for pid in holders if pid != backend_pid)
        holder = next(conn for pid, conn in holders.items() if pid != released_pid)
        holders[released_pid].execute("COMMIT")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")


def test_database_url_is_fresh_database(postgres_database_url: str) -> None:
    expected = conninfo_to_dict(postgres_database_url)["dbname"]

    with connect(postgres_database_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]

    assert name == expected
    assert name.startswith("symphony_test_")
    assert tables == 0


def test_server_fields_match_connection(postgres_server: PostgresServer) -> None:
    with connect(postgres_server.url) as conn:
        host, port, user = conn.info.host, conn.info.port, conn.info.user
        database = conn.execute("SELECT current_database()").fetchone()[0]

    assert host == postgres_server.host
    assert port == postgres_server.port
    assert user == postgres_server.user
    assert database == conninfo_to_dict(postgres_server.url)["dbname"]


def test_pgbouncer_reaches_same_database(pgbouncer_url: str, postgres_database_url: str) -> None:
    with connect(pgbouncer_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]

    assert name == conninfo_to_dict(postgres_database_url)["dbname"]


def test_pgbouncer_moves_client_between_backends(pgbouncer_url: str) -> None:
    with connect(pgbouncer_url) as client:
        with client.transaction():
            first_pid = read_backend_pid(client)

        with only_other_backend_free(pgbouncer_url, first_pid):
            with client.transaction():
                second_pid = read_backend_pid(client)

    assert second_pid != first_pid


def test_pgbouncer_loses_named_prepared_statement(pgbouncer_url: str) -> None:
    with connect(pgbouncer_url) as client:
        statement = fresh_schema_name("s")
        with client.transaction():
            client.execute(f"PREPARE {statement} AS SELECT 1")
            first_pid = read_backend_pid(client)

        with only_other_backend_free(pgbouncer_url, first_pid):
            with pytest.raises(psycopg.errors.InvalidSqlStatementName):
                client.execute(f"EXECUTE {statement}")

        # The statement stays prepared on the first backend, under a name no other test uses.


def test_pgbouncer_runs_repeated_query_unprepared(pgbouncer_url: str) -> None:
    with connect(pgbouncer_url) as conn:
        results = [conn.execute("SELECT %s::int + 1", (i,)).fetchone()[0] for i in range(20)]

    assert results == list(range(1, 21))


def test_fresh_schema_name_is_unique_identifier() -> None:
    names = {fresh_schema_name() for _ in range(100)}

    assert len(names) == 100
    for name in names:
        assert name == name.lower()
        assert name.startswith("t_")
        assert name.isidentifier()


def test_fresh_schema_name_rejects_invalid_prefix() -> None:
    with pytest.raises(ValueError, match="invalid"):
        fresh_schema_name("Bad-Prefix")
    with pytest.raises(ValueError, match="too long"):
        fresh_schema_name("p" * 60)


def test_mask_password_hides_password() -> None:
    masked_url = mask_password("postgresql://alice:s3cret@db.example:5433/postgres")
    masked_keywords = mask_password("host=db.example password=s3cret user=alice")

    assert "s3cret" not in masked_url
    assert "***" in masked_url
    assert "s3cret" not in masked_keywords
    assert "***" in masked_keywords
    assert mask_password("postgresql://alice@db.example/postgres") == (
        "postgresql://alice@db.example/postgres"
    )


def test_replace_database_keeps_url_form() -> None:
    url = replace_database("postgresql://alice@127.0.0.1:5433/postgres?sslmode=disable", "other")
    keywords = replace_database("host=127.0.0.1 dbname=postgres", "other")

    assert url == "postgresql://alice@127.0.0.1:5433/other?sslmode=disable"
    assert conninfo_to_dict(keywords)["dbname"] == "other"


@pytest.mark.parametrize("value", ["true", "TRUE", "1"])
def test_report_unavailable_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)

    with pytest.raises(pytest.fail.Exception, match="no server"):
        report_unavailable("no server")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_report_unavailable_skips_outside_ci(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)

    with pytest.raises(pytest.skip.Exception, match="no server"):
        report_unavailable("no server")
