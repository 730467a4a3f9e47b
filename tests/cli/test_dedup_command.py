"""`symphony dedup`: inspect a key, list attempts, statistics per transport and purge."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from cli_support import closed_port, message, table_rows, write_jsonl

FIRST = "first.jsonl"
# For tests whose store makes no difference: the `history` fixture then uses SQLite only.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def history(cli, backend) -> dict[str, str]:
    """Send key-1 (default) and key-2, key-3 (sms), send them again, then key-2 with other content.

    Returns each key's message id. The store then contains 3 duplicate attempts and 1 conflict.
    """
    write_jsonl(Path(FIRST), [message(1), message(2, transport="sms"), message(3, transport="sms")])
    write_jsonl(Path("changed.jsonl"), [message(2, transport="sms", payload={"n": 99})])
    rows = table_rows(cli("send", FIRST, *backend.cli_args).stdout)
    cli("send", FIRST, *backend.cli_args)
    cli("send", "changed.jsonl", *backend.cli_args)
    return {row["key"]: row["id"] for row in rows}


# -- inspect


def test_inspect_key_table(cli, backend, history):
    result = cli("dedup", "inspect", "key-2", *backend.cli_args)
    lines = result.stdout.splitlines()

    assert result.exit_code == 0
    assert lines[0].startswith("key key-2: active, expires at ")
    assert lines[1].startswith(f"message {history['key-2']}: type email, transport sms, priority 5, created at ")
    assert lines[2].strip() == "2 attempts (newest first, --limit 20)"


def test_inspect_key_json(cli, backend, history):
    result = cli("dedup", "inspect", "key-2", "--format", "json", *backend.cli_args)
    info = json.loads(result.stdout)

    assert info["state"] == "active"
    assert info["message_id"] == int(history["key-2"])
    assert info["message"]["transport"] == "sms"
    assert [(attempt["outcome"], attempt["source"]) for attempt in info["attempts"]] == [
        ("conflict", "changed.jsonl"), ("duplicate", FIRST)]
    assert info["expires_at"] > info["created_at"]


@sqlite_only
def test_inspect_limit_attempts(cli, backend, history):
    result = cli("dedup", "inspect", "key-2", "--format", "json", "--limit", "1", *backend.cli_args)

    assert [attempt["outcome"] for attempt in json.loads(result.stdout)["attempts"]] == ["conflict"]


@sqlite_only
def test_inspect_unknown_key_exit_one(cli, backend, history):
    result = cli("dedup", "inspect", "no-such-key", *backend.cli_args)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: key 'no-such-key' not found: no message was sent with it, or 'dedup purge' removed it"]


def test_inspect_deleted_message(cli, backend, history):
    backend.query("DELETE FROM {messages}")  # as a worker does after delivering

    result = cli("dedup", "inspect", "key-1", "--format", "json", *backend.cli_args)
    info = json.loads(result.stdout)

    assert info["message"] is None
    assert info["message_id"] == int(history["key-1"])


def test_inspect_unreachable_store_exit_four(cli):
    password = f"pw-{uuid.uuid4().hex}"
    url = f"postgresql://app:{password}@127.0.0.1:{closed_port()}/outbox"

    result = cli("dedup", "inspect", "key-1", "--database-url", url)

    assert result.exit_code == 4
    assert password not in result.stderr
    assert len(result.stderr.splitlines()) == 1


# -- attempts


def test_attempts_filtered_json(cli, backend, history):
    result = cli("dedup", "attempts", "--since", "1h", "--transport", "sms", "--status", "duplicate",
                 "--format", "json", *backend.cli_args)
    attempts = json.loads(result.stdout)

    assert result.exit_code == 0
    assert sorted(attempt["idempotency_key"] for attempt in attempts) == ["key-2", "key-3"]
    assert {(attempt["transport"], attempt["outcome"]) for attempt in attempts} == {("sms", "duplicate")}
    assert {attempt["message_id"] for attempt in attempts} == {int(history["key-2"]), int(history["key-3"])}


@sqlite_only
def test_attempts_limit_newest_first(cli, backend, history):
    result = cli("dedup", "attempts", "--limit", "1", "--format", "json", *backend.cli_args)

    assert [(attempt["idempotency_key"], attempt["outcome"]) for attempt in json.loads(result.stdout)] == [
        ("key-2", "conflict")]


@sqlite_only
def test_attempts_status_filter(cli, backend, history):
    result = cli("dedup", "attempts", "--status", "conflict", "--format", "json", *backend.cli_args)

    assert [attempt["line"] for attempt in json.loads(result.stdout)] == [1]


@sqlite_only
def test_attempts_table(cli, backend, history):
    result = cli("dedup", "attempts", "--transport", "default", *backend.cli_args)
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines() if "│" in line]

    assert result.stdout.splitlines()[0].strip() == "1 attempts"
    assert [row[1:] for row in cells] == [["key-1", "duplicate", "default", FIRST, "1", history["key-1"]]]


@pytest.mark.parametrize("command", ["attempts", "stats"])
@pytest.mark.parametrize("since", ["1x", "h1", "-1h", "1.5h"])
def test_bad_since_exit_two(cli, sqlite_backend, command, since):
    result = cli("dedup", command, "--since", since, *sqlite_backend.cli_args)

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: --since {since!r} is invalid; write a number and a unit, such as 30m, 1h or 2d"]


def test_attempts_zero_limit_exit_two(cli, sqlite_backend):
    result = cli("dedup", "attempts", "--limit", "0", *sqlite_backend.cli_args)

    assert result.exit_code == 2


# -- stats


def test_stats_json_per_transport(cli, backend, history):
    result = cli("dedup", "stats", "--format", "json", *backend.cli_args)

    # sms: 2 sent, 2 duplicates and 1 conflict, so 2 of 5 offered messages were repeats.
    assert json.loads(result.stdout) == [
        {"transport": "default", "sent": 1, "duplicates": 1, "rejected": 0, "conflicts": 0, "duplicate_rate": 0.5},
        {"transport": "sms", "sent": 2, "duplicates": 2, "rejected": 0, "conflicts": 1, "duplicate_rate": 0.4},
    ]


def test_stats_counts_rejected(cli, sqlite_backend):
    write_jsonl(Path(FIRST), [message(1)])
    cli("send", FIRST, *sqlite_backend.cli_args)
    cli("send", FIRST, "--reject-duplicates", *sqlite_backend.cli_args)

    result = cli("dedup", "stats", "--format", "json", *sqlite_backend.cli_args)

    assert [(row["rejected"], row["duplicate_rate"]) for row in json.loads(result.stdout)] == [(1, 0.5)]


@sqlite_only
def test_stats_table_rate(cli, backend, history):
    result = cli("dedup", "stats", *backend.cli_args)
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines() if "│" in line]

    assert result.stdout.splitlines()[0].strip() == "deduplication over the last 24h"
    assert cells == [["default", "1", "1", "0", "50.0%", "0"], ["sms", "2", "2", "0", "40.0%", "1"]]


# -- purge


def test_purge_expired_keys(cli, backend):
    write_jsonl(Path(FIRST), [message(1), message(2)])
    cli("send", FIRST, "--dedup-window-ms", "1", *backend.cli_args)
    time.sleep(0.05)

    result = cli("dedup", "purge", *backend.cli_args)

    assert result.exit_code == 0
    assert result.stdout.startswith("deleted 2 expired keys and 0 attempts older than ")
    assert backend.query("SELECT count(*) FROM {keys}")[0][0] == 0
    assert backend.count_messages() == 2


@sqlite_only
def test_purge_keeps_active_keys(cli, backend, history):
    result = cli("dedup", "purge", *backend.cli_args)

    assert result.stdout.startswith("deleted 0 expired keys and 0 attempts older than ")
    assert backend.query("SELECT count(*) FROM {keys}")[0][0] == 3


@sqlite_only
def test_purge_old_attempts(cli, backend, history):
    time.sleep(0.05)

    result = cli("dedup", "purge", "--older-than", "10ms", *backend.cli_args)

    assert result.stdout.startswith("deleted 0 expired keys and 4 attempts older than ")
    assert backend.query("SELECT count(*) FROM {attempts}")[0][0] == 0


def test_purge_bad_older_than(cli, sqlite_backend):
    result = cli("dedup", "purge", "--older-than", "soon", *sqlite_backend.cli_args)

    assert result.exit_code == 2
    assert "--older-than 'soon' is invalid" in result.stderr


def test_inspect_escapes_control_characters(cli, sqlite_backend):
    key = "x\u001b[31mred"
    write_jsonl(Path("m.jsonl"), [message(1, idempotency_key=key), message(1, idempotency_key=key)])
    cli("send", "m.jsonl", *sqlite_backend.cli_args)

    inspected = cli("dedup", "inspect", key, *sqlite_backend.cli_args)
    listed = cli("dedup", "attempts", *sqlite_backend.cli_args)

    assert "\u001b" not in inspected.stdout
    assert "x\\x1b[31mred" in inspected.stdout
    assert "\u001b" not in listed.stdout
