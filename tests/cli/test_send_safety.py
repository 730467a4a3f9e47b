"""`symphony send` against hostile or mistaken input: output safety and option checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_support import message, table_rows, write_jsonl


def test_report_on_input_rejected(cli, sqlite_backend):
    path = write_jsonl(Path("orders.jsonl"), [message(1)])
    before = path.read_bytes()

    result = cli("send", path, "--report", path, *sqlite_backend.cli_args)

    assert result.exit_code == 2
    assert "is the input file" in result.stderr
    assert path.read_bytes() == before


def test_log_file_on_input_rejected(cli, sqlite_backend):
    path = write_jsonl(Path("orders.jsonl"), [message(1)])

    result = cli("send", path, "--log-file", path, *sqlite_backend.cli_args)

    assert result.exit_code == 2
    assert sqlite_backend.count_messages() == 0


@pytest.mark.parametrize("key", ["a[/]", "[bold]rich[/bold]", "[link=http://example.com]x"])
def test_markup_in_key_printed_literally(cli, sqlite_backend, key):
    write_jsonl(Path("m.jsonl"), [message(1, idempotency_key=key)])

    result = cli("send", "m.jsonl", *sqlite_backend.cli_args)

    assert result.exit_code == 0
    assert table_rows(result.stdout)[0]["key"] == key


def test_control_characters_escaped(cli, sqlite_backend):
    write_jsonl(Path("m.jsonl"), [message(1, type="T\u001b[31mRED", idempotency_key="esc\u001b]0;x\u0007")])

    result = cli("send", "m.jsonl", *sqlite_backend.cli_args)

    assert "\u001b" not in result.stdout
    assert "\u0007" not in result.stdout
    assert table_rows(result.stdout)[0]["type"] == "T\\x1b[31mRED"


@pytest.mark.parametrize("option", [["--delimiter", "x"], ["--encoding", "nonsense"], ["--encoding", "utf-16"],
                                    ["--lock", " "], ["--report", "results.txt"]])
def test_bad_option_exit_two(cli, sqlite_backend, option):
    write_jsonl(Path("m.jsonl"), [message(1)])

    result = cli("send", "m.jsonl", *option, *sqlite_backend.cli_args)

    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_dry_run_creates_no_database(cli, tmp_path):
    write_jsonl(Path("m.jsonl"), [message(1), message(1)])
    database = tmp_path / "dry.db"

    result = cli("send", "m.jsonl", "--dry-run", "--format", "jsonl", "--database-url", f"sqlite:///{database}")

    assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["would-send", "duplicate"]
    assert not database.exists()


def test_dry_run_creates_no_tables(cli, postgres_backend):
    write_jsonl(Path("m.jsonl"), [message(1)])

    result = cli("send", "m.jsonl", "--dry-run", *postgres_backend.cli_args)

    assert result.exit_code == 0
    schema = postgres_backend.table.split(".")[0]
    import psycopg
    with psycopg.connect(postgres_backend.url) as connection:
        found = connection.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)).fetchone()[0]
    assert found == 0


def test_stats_creates_no_database(cli, tmp_path):
    database = tmp_path / "typo.db"

    result = cli("dedup", "stats", "--database-url", f"sqlite:///{database}")

    assert result.exit_code == 4
    assert not database.exists()


def test_attempts_status_choice(cli, sqlite_backend):
    result = cli("dedup", "attempts", "--status", "bogus", *sqlite_backend.cli_args)
    assert result.exit_code == 2


def test_purge_zero_age_deletes_attempts(cli, sqlite_backend):
    write_jsonl(Path("m.jsonl"), [message(1)])
    cli("send", "m.jsonl", *sqlite_backend.cli_args)
    cli("send", "m.jsonl", *sqlite_backend.cli_args)
    time.sleep(0.01)

    result = cli("dedup", "purge", "--older-than", "0s", *sqlite_backend.cli_args)

    assert "and 1 attempts older than 0s" in result.stdout
    assert sqlite_backend.query("SELECT count(*) FROM {attempts}") == [(0,)]


def test_interrupt_while_waiting_for_stdin(sqlite_backend, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"), "COLUMNS": "200"}
    process = subprocess.Popen([sys.executable, "-m", "symphony_cli", "send", "-", "--input-format", "jsonl",
                                "--format", "jsonl", *sqlite_backend.cli_args],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdin.write((json.dumps(message(1)) + "\n").encode())
    process.stdin.flush()
    time.sleep(1.5)  # the process has read line 1 and waits for more input

    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        stdout, stderr = process.communicate(timeout=10)
    finally:
        process.stdin.close()
    lines = [json.loads(line) for line in stdout.decode().splitlines()]

    assert process.returncode == 130
    assert time.monotonic() - started < 5
    assert [(row["line"], row["status"]) for row in lines] == [(1, "failed")]
    assert sqlite_backend.count_messages() == 0


def test_report_on_database_rejected(cli, tmp_path):
    database = tmp_path / "store.csv"
    write_jsonl(Path("m.jsonl"), [message(1)])
    url = f"sqlite:///{database}"
    cli("send", "m.jsonl", "--database-url", url)

    result = cli("send", "m.jsonl", "--database-url", url, "--report", database)

    assert result.exit_code == 2
    assert "is the SQLite database" in result.stderr
    assert database.read_bytes().startswith(b"SQLite format 3")


def test_log_file_on_report_rejected(cli, sqlite_backend):
    write_jsonl(Path("m.jsonl"), [message(1)])

    result = cli("send", "m.jsonl", "--report", "out.jsonl", "--log-file", "out.jsonl", *sqlite_backend.cli_args)

    assert result.exit_code == 2
    assert "is the --report file" in result.stderr


def test_unknown_command_suggested_once(cli):
    result = cli("sned", "x")

    assert result.exit_code == 2
    assert result.stderr.count("Did you mean 'send'?") == 1
