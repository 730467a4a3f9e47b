"""`symphony send` through CliRunner: results, exit codes, output formats and options."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import uuid
from pathlib import Path

import pytest

from cli_support import SUMMARY_PATTERN, closed_port, message, summary_of, table_rows, write_jsonl
from symphony_cli.messages import canonical_json, content_hash
from symphony_cli.render import RESULT_FIELDS

INPUT = "orders.jsonl"
NOT_AN_OBJECT = "payload must be a JSON object, found a string"
# An SGR sequence that sets a foreground color: 30-38 or 90-97, alone or after other attributes.
COLOR_CODE = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|9[0-7])[;m]")


def write_mixed_input() -> Path:
    """Write two valid messages (one on transport sms) and an invalid third one."""
    return write_jsonl(Path(INPUT), [message(1), message(2, transport="sms"), message(3, payload="oops")])


def stored_ids(backend) -> list[int]:
    return [row[0] for row in backend.query("SELECT id FROM {messages} ORDER BY id")]


# -- the result table and the summary


def test_send_table_row_per_message(cli, backend):
    write_mixed_input()

    result = cli("send", INPUT, *backend.cli_args)
    rows = table_rows(result.stdout)

    assert result.exit_code == 1
    assert [row["line"] for row in rows] == ["1", "2", "3"]
    assert [row["type"] for row in rows] == ["email", "email", "email"]
    assert [row["transport"] for row in rows] == ["default", "sms", ""]
    assert [row["key"] for row in rows] == ["key-1", "key-2", "key-3"]
    assert [row["status"] for row in rows] == ["sent", "sent", "invalid"]
    assert [row["id"] for row in rows] == [str(id_) for id_ in stored_ids(backend)] + [""]
    assert [row["error"] for row in rows] == ["", "", NOT_AN_OBJECT]


def test_send_summary_on_stderr(cli, backend):
    write_mixed_input()

    result = cli("send", INPUT, *backend.cli_args)

    assert re.fullmatch(rf"2 sent, 1 invalid; {SUMMARY_PATTERN}", summary_of(result.stderr))
    assert "messages/s" not in result.stdout


def test_send_error_line_on_stderr(cli, sqlite_backend):
    write_mixed_input()

    result = cli("send", INPUT, *sqlite_backend.cli_args)

    assert f"{INPUT}:3: invalid: {NOT_AN_OBJECT}" in result.stderr.splitlines()


def test_send_second_run_duplicates(cli, backend):
    write_jsonl(Path(INPUT), [message(1), message(2), message(3)])

    first = cli("send", INPUT, *backend.cli_args)
    second = cli("send", INPUT, *backend.cli_args)
    first_rows, second_rows = table_rows(first.stdout), table_rows(second.stdout)

    assert first.exit_code == 0
    assert second.exit_code == 0
    assert [row["status"] for row in second_rows] == ["duplicate"] * 3
    assert [row["id"] for row in second_rows] == [row["id"] for row in first_rows]
    assert re.fullmatch(rf"3 duplicate; {SUMMARY_PATTERN}", summary_of(second.stderr))
    assert backend.count_messages() == 3


# -- --format jsonl


def test_send_jsonl_objects_only(cli, sqlite_backend):
    write_mixed_input()

    result = cli("send", INPUT, "--format", "jsonl", *sqlite_backend.cli_args)
    objects = [json.loads(line) for line in result.stdout.splitlines()]

    assert result.exit_code == 1
    assert [sorted(item) for item in objects] == [sorted(RESULT_FIELDS)] * 3
    assert sorted((item["line"], item["status"]) for item in objects) == [(1, "sent"), (2, "sent"), (3, "invalid")]
    assert re.fullmatch(rf"2 sent, 1 invalid; {SUMMARY_PATTERN}", summary_of(result.stderr))


def test_send_jsonl_field_values(cli, sqlite_backend):
    write_mixed_input()

    result = cli("send", INPUT, "--format", "jsonl", *sqlite_backend.cli_args)
    by_line = {item["line"]: item for item in map(json.loads, result.stdout.splitlines())}

    assert by_line[2] == {"line": 2, "status": "sent", "message_id": stored_ids(sqlite_backend)[1],
                          "idempotency_key": "key-2", "transport": "sms", "type": "email", "error": None}
    assert by_line[3]["error"] == NOT_AN_OBJECT


# -- exit statuses


def test_send_all_sent_exit_zero(cli, sqlite_backend):
    write_jsonl(Path(INPUT), [message(1), message(2)])

    result = cli("send", INPUT, *sqlite_backend.cli_args)

    assert result.exit_code == 0


def test_send_conflict_exit_one(cli, backend):
    write_jsonl(Path(INPUT), [message(1)])
    write_jsonl(Path("changed.jsonl"), [message(1, payload={"n": 99})])
    first_id = table_rows(cli("send", INPUT, *backend.cli_args).stdout)[0]["id"]

    result = cli("send", "changed.jsonl", *backend.cli_args)
    row = table_rows(result.stdout)[0]

    assert result.exit_code == 1
    assert row["status"] == "conflict"
    assert f"already used by message {first_id} with different content" in row["error"]
    assert backend.count_messages() == 1


CONFIG_ERRORS = {
    "env not an integer": ({"SYMPHONY_BATCH_MAX_SIZE": "abc"}, None, [],
                           ["SYMPHONY_BATCH_MAX_SIZE", "batch.max_size", "'abc'"]),
    "file value out of range": ({}, "[batch]\nmax_size = 0\n", [], ["symphony.toml", "batch.max_size"]),
    "file unknown key": ({}, "[batch]\nmax_sise = 10\n", [], ["symphony.toml", "batch.max_sise"]),
    "file syntax error": ({}, "[batch\nmax_size = 10\n", [], ["symphony.toml", "invalid TOML", "line 1"]),
    "flag zero batch size": ({}, None, ["--batch-size", "0"], ["--batch-size", "batch.max_size"]),
    "flag priority out of range": ({}, None, ["--priority", "11"], ["--priority", "defaults.priority"]),
}


@pytest.mark.parametrize("env, toml_text, args, expected", CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_send_config_error_exit_two(cli, sqlite_backend, env, toml_text, args, expected):
    write_jsonl(Path(INPUT), [message(1)])
    if toml_text is not None:
        Path("symphony.toml").write_text(toml_text, encoding="utf-8")

    result = cli("send", INPUT, *args, *sqlite_backend.cli_args, env=env)
    lines = result.stderr.splitlines()

    assert result.exit_code == 2
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    for fragment in expected:
        assert fragment in lines[0]
    assert result.stdout == ""


KEY_FLAG_ERRORS = {
    "field and content": (["--key-field", "order.id", "--key-from-content"], "--key-field and --key-from-content"),
    "field and template": (["--key-field", "order.id", "--key-template", "{type}"], "--key-field and --key-template"),
    "unclosed template": (["--key-template", "{type"], "--key-template '{type' is invalid"),
}


@pytest.mark.parametrize("args, expected", KEY_FLAG_ERRORS.values(), ids=KEY_FLAG_ERRORS.keys())
def test_send_key_flags_exit_two(cli, args, expected):
    write_jsonl(Path(INPUT), [message(1)])
    Path("blocker").write_text("", encoding="utf-8")

    # The store URL cannot be opened, so exit 2 shows the flags are checked before the store.
    result = cli("send", INPUT, *args, "--database-url", "sqlite:///blocker/store.db")
    lines = result.stderr.splitlines()

    assert result.exit_code == 2
    assert len(lines) == 1
    assert expected in lines[0]


INPUT_ERRORS = {
    "missing file": ("absent.jsonl", None, "file not found"),
    "directory": ("inbox.jsonl", "directory", "is a directory"),
    "directory without extension": ("inbox", "directory", "is a directory"),
    "empty file": ("empty.jsonl", "", "file is empty"),
    "only blank lines": ("blank.jsonl", "\n  \n\t\n", "file contains only blank lines"),
}


@pytest.mark.parametrize("name, content, expected", INPUT_ERRORS.values(), ids=INPUT_ERRORS.keys())
def test_send_unreadable_input_exit_three(cli, sqlite_backend, name, content, expected):
    if content == "directory":
        Path(name).mkdir()
    elif content is not None:
        Path(name).write_text(content, encoding="utf-8")

    result = cli("send", name, *sqlite_backend.cli_args)

    assert result.exit_code == 3
    assert result.stderr.splitlines()[-1].startswith(f"error: {name}: {expected}")
    assert result.stdout == ""


def test_send_unreachable_postgres_exit_four(cli):
    write_jsonl(Path(INPUT), [message(1)])
    password = "pw-" + uuid.uuid4().hex
    url = f"postgresql://symphony:{password}@127.0.0.1:{closed_port()}/outbox"

    result = cli("send", INPUT, "--database-url", url, "--log-file", "run.log")
    error_lines = [line for line in result.stderr.splitlines() if not re.search(SUMMARY_PATTERN, line)]

    assert result.exit_code == 4
    assert password not in result.stdout
    assert password not in result.stderr
    assert password not in Path("run.log").read_text(encoding="utf-8")
    assert "postgresql://symphony:***@127.0.0.1" in result.stderr
    assert len(error_lines) == 1


@pytest.mark.parametrize("location", ["not a directory", "read-only file system"])
def test_send_unopenable_sqlite_exit_four(cli, location):
    write_jsonl(Path(INPUT), [message(1)])
    if location == "not a directory":
        Path("blocker").write_text("", encoding="utf-8")
        path = "blocker/store.db"
    else:
        path = "/proc/symphony-test/store.db"  # even root cannot create a directory in /proc

    result = cli("send", INPUT, "--database-url", f"sqlite:///{path}")

    assert result.exit_code == 4
    assert f"cannot open SQLite database {path}" in result.stderr


def test_send_held_lock_exit_five(cli, backend):
    write_jsonl(Path(INPUT), [message(1)])
    name = f"nightly-{uuid.uuid4().hex}"  # PostgreSQL advisory locks are database-wide

    store = backend.open()
    try:
        with store.hold_lock(name):
            result = cli("send", INPUT, "--lock", name, *backend.cli_args)
    finally:
        store.close()

    assert result.exit_code == 5
    assert f"another run holds the lock {name!r}" in result.stderr
    assert backend.count_messages() == 0


def test_send_other_lock_name_runs(cli, backend):
    write_jsonl(Path(INPUT), [message(1)])
    name = f"nightly-{uuid.uuid4().hex}"

    store = backend.open()
    try:
        with store.hold_lock(name):
            result = cli("send", INPUT, "--lock", name + "-other", *backend.cli_args)
    finally:
        store.close()

    assert result.exit_code == 0
    assert backend.count_messages() == 1


def test_send_released_lock_runs(cli, sqlite_backend):
    write_jsonl(Path(INPUT), [message(1)])
    store = sqlite_backend.open()
    try:
        with store.hold_lock("nightly"):
            pass
    finally:
        store.close()

    result = cli("send", INPUT, "--lock", "nightly", *sqlite_backend.cli_args)

    assert result.exit_code == 0


@pytest.mark.parametrize("option, problem", [("--report", "cannot write the file"),
                                             ("--log-file", "cannot append to the file")])
def test_send_unwritable_output_exit_two(cli, sqlite_backend, option, problem):
    write_jsonl(Path(INPUT), [message(1)])

    result = cli("send", INPUT, option, "missing-dir/out.csv", *sqlite_backend.cli_args)

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {option} missing-dir/out.csv: {problem}: No such file or directory"]
    assert sqlite_backend.count_messages() == 0


# -- chunks and duplicates inside one file


def test_send_batch_size_5000(cli, sqlite_backend):
    write_jsonl(Path(INPUT), [message(number) for number in range(6000)])

    # 5,000 rows of 7 columns exceed SQLite's 32,766 variables, so the store splits the INSERT.
    result = cli("send", INPUT, "--batch-size", "5000", "--quiet", *sqlite_backend.cli_args)

    assert result.exit_code == 0
    assert re.fullmatch(rf"6,000 sent; {SUMMARY_PATTERN}", summary_of(result.stderr))
    assert sqlite_backend.count_messages() == 6000
    assert sqlite_backend.query("SELECT count(*) FROM {keys}")[0][0] == 6000


@pytest.mark.parametrize("batch_size", ["100", "2"], ids=["same chunk", "across chunks"])
def test_send_in_file_duplicate(cli, backend, batch_size):
    write_jsonl(Path(INPUT), [message(1), message(2), message(1), message(3)])

    result = cli("send", INPUT, "--batch-size", batch_size, *backend.cli_args)
    rows = table_rows(result.stdout)

    assert result.exit_code == 0
    assert [row["status"] for row in rows] == ["sent", "sent", "duplicate", "sent"]
    assert rows[2]["id"] == rows[0]["id"]
    assert backend.count_messages() == 3


@pytest.mark.parametrize("batch_size", ["100", "2"], ids=["same chunk", "across chunks"])
def test_send_in_file_conflict(cli, sqlite_backend, batch_size):
    write_jsonl(Path(INPUT), [message(1), message(2), message(1, payload={"n": 99})])

    result = cli("send", INPUT, "--batch-size", batch_size, *sqlite_backend.cli_args)
    rows = table_rows(result.stdout)

    assert result.exit_code == 1
    assert [row["status"] for row in rows] == ["sent", "sent", "conflict"]
    assert sqlite_backend.count_messages() == 2


# -- options


def test_send_dry_run_writes_nothing(cli, backend):
    write_jsonl(Path(INPUT), [message(1), message(2), message(1)])

    result = cli("send", INPUT, "--dry-run", *backend.cli_args)
    rows = table_rows(result.stdout)

    assert result.exit_code == 0
    assert [row["status"] for row in rows] == ["would-send", "would-send", "duplicate"]
    assert result.stdout.splitlines()[0].strip() == f"{INPUT} (dry run)"
    assert backend.count_messages() == 0


def test_send_dry_run_finds_stored(cli, sqlite_backend):
    write_jsonl(Path("first.jsonl"), [message(1)])
    write_jsonl(Path(INPUT), [message(1), message(2)])
    first_id = table_rows(cli("send", "first.jsonl", *sqlite_backend.cli_args).stdout)[0]["id"]

    result = cli("send", INPUT, "--dry-run", *sqlite_backend.cli_args)
    rows = table_rows(result.stdout)

    assert [(row["status"], row["id"]) for row in rows] == [("duplicate", first_id), ("would-send", "")]
    assert sqlite_backend.count_messages() == 1
    assert sqlite_backend.query("SELECT count(*) FROM {attempts}")[0][0] == 0


def test_send_reject_duplicates_exit_one(cli, backend):
    write_jsonl(Path(INPUT), [message(1), message(2)])
    first_ids = [row["id"] for row in table_rows(cli("send", INPUT, *backend.cli_args).stdout)]

    result = cli("send", INPUT, "--reject-duplicates", *backend.cli_args)
    rows = table_rows(result.stdout)

    assert result.exit_code == 1
    assert [row["status"] for row in rows] == ["rejected", "rejected"]
    assert [row["id"] for row in rows] == first_ids
    assert rows[0]["error"].startswith(f"duplicate of message {first_ids[0]}; duplicates are rejected")


def test_send_key_field_nested(cli, sqlite_backend):
    write_jsonl(Path(INPUT), [
        {"type": "email", "payload": {"order": {"id": 7}}},
        {"type": "email", "payload": {"order": {"id": 7}}},
        {"type": "email", "payload": {"order": {}}},
    ])

    result = cli("send", INPUT, "--key-field", "order.id", *sqlite_backend.cli_args)
    rows = table_rows(result.stdout)

    assert [row["key"] for row in rows[:2]] == ["7", "7"]
    assert [row["status"] for row in rows] == ["sent", "duplicate", "invalid"]
    assert rows[2]["error"] == "payload.order.id is missing or null, and --key-field takes the key from it"


def test_send_key_template_fields(cli, sqlite_backend):
    write_jsonl(Path(INPUT), [{"type": "email", "payload": {"order_id": "A-1"}, "idempotency_key": "own"}])

    result = cli("send", INPUT, "--key-template", "{type}:{payload.order_id}", *sqlite_backend.cli_args)

    assert table_rows(result.stdout)[0]["key"] == "email:A-1"
    assert sqlite_backend.query("SELECT idempotency_key FROM {messages}") == [("email:A-1",)]


def test_send_key_from_content(cli, sqlite_backend):
    payload = {"to": "a@example.com", "n": 1}
    write_jsonl(Path(INPUT), [{"type": "email", "payload": payload},
                              {"type": "email", "payload": dict(reversed(payload.items()))}])
    expected = "sha256:" + content_hash("email", "default", canonical_json(payload))

    result = cli("send", INPUT, "--key-from-content", *sqlite_backend.cli_args)
    rows = table_rows(result.stdout)

    assert [row["key"] for row in rows] == [expected, expected]
    assert [row["status"] for row in rows] == ["sent", "duplicate"]


def test_send_max_errors_stops(cli, sqlite_backend):
    invalid = message(0, payload=[])
    write_jsonl(Path(INPUT), [message(1), invalid, message(3), invalid, message(5), message(6)])

    result = cli("send", INPUT, "--max-errors", "2", *sqlite_backend.cli_args)

    assert result.exit_code == 1
    assert [row["line"] for row in table_rows(result.stdout)] == ["1", "2", "3", "4"]
    assert summary_of(result.stderr).endswith("; stopped after line 4: 2 messages not enqueued (--max-errors)")
    assert sqlite_backend.count_messages() == 2


def test_send_table_limit_hides_sent(cli, sqlite_backend):
    messages = [message(number) for number in range(1, 11)]
    messages.insert(3, message(0, payload="oops"))  # line 4, whose result comes before the chunk's results
    write_jsonl(Path(INPUT), messages)

    result = cli("send", INPUT, "--table-limit", "3", *sqlite_backend.cli_args)
    rows = table_rows(result.stdout)

    assert [row["status"] for row in rows] == ["sent", "sent", "sent", "invalid"]
    assert [row["line"] for row in rows] == ["1", "2", "3", "4"]
    assert ("7 more enqueued messages are not shown (--table-limit 3); use --report PATH to list every message."
            in result.stdout.splitlines())
    assert sqlite_backend.count_messages() == 10


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_send_report_every_message(cli, sqlite_backend, suffix):
    write_mixed_input()
    report = Path("out" + suffix)

    cli("send", INPUT, "--report", report, "--quiet", *sqlite_backend.cli_args)
    with report.open(encoding="utf-8", newline="") as stream:
        records = list(csv.DictReader(stream)) if suffix == ".csv" else [json.loads(line) for line in stream]
    by_line = {int(record["line"]): record for record in records}

    assert [sorted(record) for record in records] == [sorted(RESULT_FIELDS)] * 3
    assert {line: record["status"] for line, record in by_line.items()} == {1: "sent", 2: "sent", 3: "invalid"}
    assert str(by_line[2]["message_id"]) == str(stored_ids(sqlite_backend)[1])
    assert by_line[3]["error"] == NOT_AN_OBJECT


def test_send_quiet_keeps_errors(cli, sqlite_backend):
    write_mixed_input()

    result = cli("send", INPUT, "--quiet", *sqlite_backend.cli_args)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"{INPUT}:3: invalid: {NOT_AN_OBJECT}" in result.stderr.splitlines()
    assert re.fullmatch(rf"2 sent, 1 invalid; {SUMMARY_PATTERN}", summary_of(result.stderr))


def test_send_log_file_appends(cli, sqlite_backend):
    write_mixed_input()

    for _ in range(2):
        cli("send", INPUT, "--log-file", "runs.log", *sqlite_backend.cli_args)
    entries = [json.loads(line) for line in Path("runs.log").read_text(encoding="utf-8").splitlines()]

    assert len(entries) == 2
    assert [entry["counts"] for entry in entries] == [{"sent": 2, "invalid": 1}, {"duplicate": 2, "invalid": 1}]
    assert [entry["exit_code"] for entry in entries] == [1, 1]
    assert [entry["file"] for entry in entries] == [INPUT, INPUT]
    assert all(dt.datetime.fromisoformat(entry["started_at"]).tzinfo for entry in entries)
    assert all(isinstance(entry["duration_s"], float) and entry["duration_s"] >= 0 for entry in entries)


def test_send_stdin_dash(cli, sqlite_backend):
    text = json.dumps(message(1)) + "\n" + json.dumps(message(2, payload=[])) + "\n"

    result = cli("send", "-", *sqlite_backend.cli_args, input=text)

    assert [row["status"] for row in table_rows(result.stdout)] == ["sent", "invalid"]
    assert "<stdin>:2: invalid: payload must be a JSON object, found an array" in result.stderr.splitlines()
    assert sqlite_backend.count_messages() == 1


def test_send_defaults_fill_missing(cli, backend):
    write_jsonl(Path(INPUT), [message(1), message(2, transport="push", priority=9)])

    result = cli("send", INPUT, "--transport", "sms", "--priority", "3", *backend.cli_args)

    assert result.exit_code == 0
    assert backend.query("SELECT transport, priority FROM {messages} ORDER BY id") == [("sms", 3), ("push", 9)]


def test_send_csv_input(cli, sqlite_backend):
    Path("orders.csv").write_text(
        "type,idempotency_key,priority,payload.order.id\n"
        "email,c-1,2,A-1\n"
        "sms,c-2,,A-2\n", encoding="utf-8")

    result = cli("send", "orders.csv", *sqlite_backend.cli_args)
    stored = sqlite_backend.query("SELECT type, priority, payload, idempotency_key FROM {messages} ORDER BY id")

    assert result.exit_code == 0
    assert [row["line"] for row in table_rows(result.stdout)] == ["2", "3"]
    assert [(type_, priority, json.loads(payload), key) for type_, priority, payload, key in stored] == [
        ("email", 2, {"order": {"id": "A-1"}}, "c-1"), ("sms", 5, {"order": {"id": "A-2"}}, "c-2")]


# -- output off a terminal


def test_send_plain_off_terminal(cli, sqlite_backend):
    write_mixed_input()

    result = cli("send", INPUT, *sqlite_backend.cli_args)

    assert "\x1b" not in result.stdout
    assert "\x1b" not in result.stderr


def test_send_narrow_columns_fold(cli, sqlite_backend):
    keys = [f"order-2024-{number:06d}-retry" for number in range(1, 4)]
    write_jsonl(Path(INPUT), [message(number, idempotency_key=key) for number, key in enumerate(keys, 1)])

    result = cli("send", INPUT, *sqlite_backend.cli_args, env={"COLUMNS": "40"})
    rows = table_rows(result.stdout)

    assert max(len(line) for line in result.stdout.splitlines()) <= 40
    assert [row["key"] for row in rows] == keys
    assert [row["status"] for row in rows] == ["sent"] * 3
    assert [row["id"] for row in rows] == [str(id_) for id_ in stored_ids(sqlite_backend)]


def test_send_forced_terminal_colors(cli, sqlite_backend):
    write_mixed_input()

    # The control case for NO_COLOR: a forced terminal does color the statuses.
    result = cli("send", INPUT, *sqlite_backend.cli_args, env={"FORCE_COLOR": "1", "TERM": "xterm"})

    assert COLOR_CODE.search(result.stdout)


def test_send_no_color_honoured(cli, sqlite_backend):
    write_mixed_input()

    result = cli("send", INPUT, *sqlite_backend.cli_args, env={"FORCE_COLOR": "1", "TERM": "xterm", "NO_COLOR": "1"})

    assert not COLOR_CODE.search(result.stdout)
    assert not COLOR_CODE.search(result.stderr)
    assert [row["status"] for row in table_rows(re.sub(r"\x1b\[[0-9;]*m", "", result.stdout))] == [
        "sent", "sent", "invalid"]


# -- the input is read before the store is opened


def test_missing_input_before_unreachable_store(cli):
    url = f"postgresql://symphony:secret@127.0.0.1:{closed_port()}/db"

    result = cli("send", "absent.jsonl", "--database-url", url)

    assert result.exit_code == 3
    assert "absent.jsonl" in result.stderr
    assert "secret" not in result.stderr


def test_missing_input_without_extension(cli, sqlite_backend):
    result = cli("send", "orders", *sqlite_backend.cli_args)

    assert result.exit_code == 3
    assert "not found" in result.stderr


def test_missing_input_creates_no_database(cli, tmp_path):
    database = tmp_path / "never.db"

    cli("send", "absent.jsonl", "--database-url", f"sqlite:///{database}")

    assert not database.exists()
