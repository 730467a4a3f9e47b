"""Real-world input files with the results a user should get, on both stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from symphony_cli.cli import app

CASES = Path(__file__).resolve().parent / "cases"

EXPECTED = {
    "s01-same-key-in-chunk.jsonl": {1: "sent", 2: "duplicate", 3: "sent"},
    "s02-excel-bom-semicolon.csv": {2: "sent", 3: "sent"},
    "s03-nul-nan.jsonl": {1: "sent", 2: "invalid", 3: "invalid", 4: "sent"},
    "s04-blank-lines-crlf.jsonl": {1: "sent", 4: "sent"},
    "s05-priority.jsonl": {1: "invalid", 2: "invalid", 3: "invalid", 4: "sent"},
    "s06-mac-cr.csv": {2: "sent", 3: "sent"},
}


def send_case(backend, name: str, *extra: str) -> dict[int, dict]:
    result = CliRunner().invoke(app, ["send", str(CASES / name), "--format", "jsonl", *backend.cli_args, *extra])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {row["line"]: row for row in rows}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_case_file_statuses(backend, name):
    rows = send_case(backend, name)
    assert {line: row["status"] for line, row in rows.items()} == EXPECTED[name]


@pytest.mark.parametrize("batch_size", ["100", "1"])
def test_same_key_carries_first_id(backend, batch_size):
    rows = send_case(backend, "s01-same-key-in-chunk.jsonl", "--batch-size", batch_size)
    assert rows[2]["message_id"] == rows[1]["message_id"]
    assert rows[2]["error"] is None


def test_invalid_values_name_field(backend):
    rows = send_case(backend, "s03-nul-nan.jsonl")
    assert rows[2]["error"].startswith("payload.body ")
    assert rows[3]["error"].startswith("payload.v ")


def test_priority_errors_name_priority(backend):
    rows = send_case(backend, "s05-priority.jsonl")
    assert all(rows[line]["error"].startswith("priority") for line in (1, 2, 3))


def test_excel_multiline_cell_keeps_newline(backend):
    send_case(backend, "s02-excel-bom-semicolon.csv")
    stored = backend.query("SELECT payload FROM {messages} WHERE idempotency_key = 's02-b'")[0][0]
    payload = stored if isinstance(stored, dict) else json.loads(stored)
    assert payload["note"] == "two\r\nlines"


def test_mac_csv_payload_fields(backend):
    send_case(backend, "s06-mac-cr.csv")
    stored = backend.query("SELECT payload FROM {messages} WHERE idempotency_key = 's06-a'")[0][0]
    payload = stored if isinstance(stored, dict) else json.loads(stored)
    assert payload == {"to": "ann@example.com"}
