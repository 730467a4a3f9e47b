"""The sample files in samples/ as end-to-end inputs, on both stores."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from symphony_cli.cli import app

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
# Each sample: status counts on the first run; the second run turns every valid message into a duplicate.
EXPECTED_FIRST_RUN = {
    "emails.jsonl": {"sent": 300, "duplicate": 5, "invalid": 2},
    "invoices.csv": {"sent": 200, "duplicate": 2, "invalid": 1},
}


def send_jsonl(backend, name: str) -> tuple[int, dict[int, dict]]:
    result = CliRunner().invoke(app, ["send", str(SAMPLES / name), "--format", "jsonl", *backend.cli_args])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return result.exit_code, {row["line"]: row for row in rows}


@pytest.mark.parametrize("name", sorted(EXPECTED_FIRST_RUN))
def test_sample_first_run_counts(backend, name):
    exit_code, rows = send_jsonl(backend, name)
    assert Counter(row["status"] for row in rows.values()) == EXPECTED_FIRST_RUN[name]
    assert exit_code == 1


@pytest.mark.parametrize("name", sorted(EXPECTED_FIRST_RUN))
def test_sample_second_run_same_ids(backend, name):
    _, first = send_jsonl(backend, name)
    exit_code, second = send_jsonl(backend, name)
    valid = [line for line, row in first.items() if row["status"] != "invalid"]
    assert {second[line]["status"] for line in valid} == {"duplicate"}
    assert [second[line]["message_id"] for line in valid] == [first[line]["message_id"] for line in valid]
    assert exit_code == 1


def test_sample_duplicates_carry_first_id(backend):
    _, rows = send_jsonl(backend, "emails.jsonl")
    by_key = {row["idempotency_key"]: row["message_id"] for row in rows.values() if row["status"] == "sent"}
    duplicates = [row for row in rows.values() if row["status"] == "duplicate"]
    assert all(row["message_id"] == by_key[row["idempotency_key"]] for row in duplicates)


def test_sample_invalid_rows_name_field(backend):
    _, rows = send_jsonl(backend, "emails.jsonl")
    errors = sorted(row["error"] for row in rows.values() if row["status"] == "invalid")
    assert errors == ["payload must be a JSON object, found a string",
                      "priority 11 is out of range; it must be from 0 to 10"]


def test_sample_table_output(backend):
    result = CliRunner().invoke(app, ["send", str(SAMPLES / "invoices.csv"), *backend.cli_args])
    body = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(body) == 203
    assert sum("│ sent " in line for line in body) == 200
