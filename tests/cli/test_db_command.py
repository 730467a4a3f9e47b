"""`symphony db init`: create the tables, print their DDL, and the store without tables."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg

from cli_support import closed_port, message, write_jsonl
from symphony_cli.errors import SchemaMissingError

NO_AUTO_CREATE = {"SYMPHONY_DATABASE_AUTO_CREATE": "false"}


def tables_exist(backend) -> bool:
    """Return whether the store's tables exist, without creating them (Backend.query would)."""
    try:
        backend.open(auto_create=False).close()
    except SchemaMissingError:
        return False
    return True


def test_init_twice_succeeds(cli, backend):
    assert not tables_exist(backend)

    first = cli("db", "init", *backend.cli_args)
    second = cli("db", "init", *backend.cli_args)

    assert first.exit_code == 0
    assert second.exit_code == 0
    assert tables_exist(backend)
    assert second.stderr.startswith(f"tables for {backend.table!r} are ready in ")


def test_init_with_auto_create_off(cli, backend):
    result = cli("db", "init", *backend.cli_args, env=NO_AUTO_CREATE)

    assert result.exit_code == 0
    assert tables_exist(backend)


def test_print_sql_sqlite_quoted(cli):
    result = cli("db", "init", "--print-sql", "--database-url", "sqlite:///outbox.db", "--table", 'out"box')

    assert result.exit_code == 0
    assert 'CREATE TABLE IF NOT EXISTS "out""box" (' in result.stdout
    assert 'CREATE TABLE IF NOT EXISTS "out""box_keys" (' in result.stdout
    assert 'CREATE TABLE IF NOT EXISTS "out""box_attempts" (' in result.stdout
    assert "jsonb" not in result.stdout
    assert not Path("outbox.db").exists()


def test_print_sql_postgres_quoted(cli):
    # Nothing listens on the port: printing the DDL must not connect.
    url = f"postgresql://app@127.0.0.1:{closed_port()}/outbox"

    result = cli("db", "init", "--print-sql", "--database-url", url, "--table", "queue.messages")

    assert result.exit_code == 0
    assert 'CREATE SCHEMA IF NOT EXISTS "queue";' in result.stdout
    assert 'CREATE TABLE IF NOT EXISTS "queue"."messages" (' in result.stdout
    assert 'CREATE TABLE IF NOT EXISTS "queue"."messages_keys" (' in result.stdout
    assert 'CREATE TABLE IF NOT EXISTS "queue"."messages_attempts" (' in result.stdout
    assert "payload jsonb NOT NULL" in result.stdout


def test_init_unreachable_store_exit_four(cli):
    password = f"pw-{uuid.uuid4().hex}"
    url = f"postgresql://app:{password}@127.0.0.1:{closed_port()}/outbox"

    result = cli("db", "init", "--database-url", url)

    assert result.exit_code == 4
    assert password not in result.stdout + result.stderr
    assert result.stderr.startswith("error: cannot connect to PostgreSQL at postgresql://app:***@127.0.0.1:")


def apply_sql(backend, sql_text: str) -> None:
    """Run a DDL script on the backend's database as a DBA would, without symphony."""
    if backend.kind == "sqlite":
        connection = sqlite3.connect(backend.url.removeprefix("sqlite:///"))
        try:
            connection.executescript(sql_text)
        finally:
            connection.close()
        return
    with psycopg.connect(backend.url, autocommit=True) as connection:
        connection.execute(sql_text)  # several statements are allowed in a query without parameters


def test_print_sql_creates_usable_tables(cli, backend):
    write_jsonl(Path("orders.jsonl"), [message(1)])

    apply_sql(backend, cli("db", "init", "--print-sql", *backend.cli_args).stdout)
    result = cli("send", "orders.jsonl", *backend.cli_args, env=NO_AUTO_CREATE)

    assert result.exit_code == 0
    assert backend.count_messages() == 1


def test_missing_tables_exit_four(cli, backend):
    write_jsonl(Path("orders.jsonl"), [message(1)])

    result = cli("send", "orders.jsonl", *backend.cli_args, env=NO_AUTO_CREATE)
    error = result.stderr.splitlines()[-1]

    assert result.exit_code == 4
    assert error.startswith("error: ")
    assert "run 'symphony db init'" in error


def test_dedup_missing_tables_exit_four(cli, sqlite_backend):
    result = cli("dedup", "stats", *sqlite_backend.cli_args, env=NO_AUTO_CREATE)

    assert result.exit_code == 4
    assert "run 'symphony db init'" in result.stderr


def test_no_auto_create_leaves_no_file(cli, tmp_path):
    database = tmp_path / "absent.db"
    write = Path("m.jsonl")
    write.write_text('{"type": "A", "payload": {}}\n')

    result = cli("send", str(write), "--database-url", f"sqlite:///{database}",
                 env={"SYMPHONY_DATABASE_AUTO_CREATE": "false"})

    assert result.exit_code == 4
    assert "symphony db init" in result.stderr
    assert not database.exists()
