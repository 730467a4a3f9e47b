"""PostgreSQL store: a transaction-mode pooler, the server's clock, rejected values and lost connections."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from symphony_cli import dispatch_batch
from symphony_cli.cli import app

PASSWORD = "s3cret-Pa55"
SSL_REQUEST_CODE = 80877103  # the startup packet codes of PostgreSQL's frontend/backend protocol 3.0
GSSENC_REQUEST_CODE = 80877104
WAIT_SECONDS = 30


def order(number: int, **payload) -> dict:
    return {"type": "OrderPlaced", "transport": "email", "payload": {"order": number, **payload},
            "idempotency_key": f"order-{number}"}


def statuses(results) -> list[str]:
    return [result.status.value for result in results]


def with_password(url: str, user: str | None = None) -> str:
    """Return the URL with PASSWORD in it, and with another user when given."""
    parts = urlsplit(url)
    login = f"{user or parts.username}:{PASSWORD}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=login))


def send_cli(*args: str):
    return CliRunner().invoke(app, ["send", *args])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def last_line(stderr: str) -> str:
    """Return stderr's last line, which is the error line when the error message is one line."""
    return stderr.splitlines()[-1] if stderr else ""


def jsonl_results(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


# -- a transaction-mode pooler


def test_pgbouncer_repeated_chunks_succeed(postgres_backend, pgbouncer_url):
    # 30 chunks run the same two statements 30 times each. psycopg prepares a statement after
    # 5 runs by default (prepare_threshold), and PgBouncer in transaction mode may run the next
    # transaction on a server connection that lacks the prepared statement.
    settings = postgres_backend.settings(database_url=pgbouncer_url, max_batch_size=10)
    messages = [order(number) for number in range(300)]

    first = dispatch_batch(messages, settings=settings)
    second = dispatch_batch(messages, settings=settings)

    assert Counter(statuses(first)) == {"sent": 300}
    assert Counter(statuses(second)) == {"duplicate": 300}
    assert [result.message_id for result in second] == [result.message_id for result in first]
    assert postgres_backend.count_messages() == 300


def test_pgbouncer_concurrent_imports_share_pool(postgres_backend, pgbouncer_url):
    settings = postgres_backend.settings(database_url=pgbouncer_url, max_batch_size=10)
    message_lists = [[order(number) for number in range(0, 300)],
                     [order(number) for number in reversed(range(150, 450))]]
    start = threading.Barrier(len(message_lists))
    results: list = [None] * len(message_lists)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(WAIT_SECONDS)
            results[index] = dispatch_batch(message_lists[index], settings=settings)
        except BaseException as error:  # checked by the test's thread below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(message_lists))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS * 2)

    assert failures == []
    sent_by_key = Counter(result.idempotency_key for run in results for result in run if result.status.value == "sent")
    assert set(sent_by_key.values()) == {1}
    assert len(sent_by_key) == 450
    assert Counter(status for run in results for status in statuses(run)) == {"sent": 450, "duplicate": 150}
    assert postgres_backend.count_messages() == 450


# -- the deduplication window on the server's clock


# 1 day, 1 hour, 1 minute and 1.001 seconds, so that every field of the interval counts.
# The largest window that deduplication.window_ms accepts, 3,650 days, needs a bigint.
@pytest.mark.parametrize("window_ms", [90_061_001, 10 * 365 * 86_400_000], ids=["mixed", "maximum"])
def test_window_uses_server_clock(postgres_backend, window_ms):
    settings = postgres_backend.settings(window_ms=window_ms)

    server_before = postgres_backend.query("SELECT now()")[0][0]
    dispatch_batch([order(number) for number in range(3)], settings=settings)
    server_after = postgres_backend.query("SELECT now()")[0][0]

    rows = postgres_backend.query(
        "SELECT k.created_at, k.expires_at - k.created_at, m.created_at "
        "FROM {keys} k JOIN {messages} m ON m.id = k.message_id")
    assert len(rows) == 3
    for key_created_at, window, message_created_at in rows:
        assert window == dt.timedelta(milliseconds=window_ms)
        assert server_before <= key_created_at <= server_after
        # Both rows take now() of the one transaction that wrote the chunk.
        assert message_created_at == key_created_at


def test_key_expires_at_server_now(postgres_backend):
    settings = postgres_backend.settings()
    first = dispatch_batch([order(1), order(2)], settings=settings)

    # order-1's window ends at the server's current time, and order-2's ends in an hour.
    postgres_backend.query("UPDATE {keys} SET expires_at = now() WHERE idempotency_key = 'order-1'")
    postgres_backend.query("UPDATE {keys} SET expires_at = now() + interval '1 hour' "
                           "WHERE idempotency_key = 'order-2'")
    second = dispatch_batch([order(1), order(2)], settings=settings)

    assert statuses(second) == ["sent", "duplicate"]
    assert second[0].message_id != first[0].message_id
    assert second[1].message_id == first[1].message_id
    stored = dict(postgres_backend.query("SELECT idempotency_key, message_id FROM {keys}"))
    assert stored == {"order-1": second[0].message_id, "order-2": first[1].message_id}


# -- a value that PostgreSQL rejects


def test_nan_payload_fails_alone(postgres_backend, tmp_path):
    # Python's json writes NaN, which jsonb rejects, and --no-validate lets it reach the server.
    lines = [json.dumps(order(number, amount=math.nan if number == 4 else number)) for number in range(1, 21)]
    lines.append(json.dumps(order(4, amount=4)))  # the same key again, valid this time
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = send_cli(str(path), *postgres_backend.cli_args, "--no-validate", "--batch-size", "10",
                      "--format", "jsonl")

    rows = {row["line"]: row for row in jsonl_results(result.stdout)}
    assert result.exit_code == 1
    assert rows[4]["status"] == "failed"
    assert rows[4]["error"] == ('the store rejected the message: invalid input syntax for type json: '
                                'Token "NaN" is invalid; context: JSON data, line 1: {"amount":NaN...')
    assert {line: row["status"] for line, row in rows.items() if line != 4} == {
        line: "sent" for line in range(1, 22) if line != 4}
    assert postgres_backend.count_messages() == 20
    stored_key = postgres_backend.query("SELECT message_id FROM {keys} WHERE idempotency_key = 'order-4'")
    assert stored_key == [(rows[21]["message_id"],)]


# -- connection failures: exit status 4, one error line, no password


@pytest.fixture
def closed_port():
    """Yield a loopback port that is bound but not listening, so connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as reserved:
        reserved.bind(("127.0.0.1", 0))
        yield reserved.getsockname()[1]


def test_closed_port_exits_4(closed_port, tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps(order(1)) + "\n", encoding="utf-8")
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{closed_port}/outbox"

    result = send_cli(str(path), "--database-url", url, "--format", "jsonl")

    assert result.exit_code == 4
    assert result.stdout == ""
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert last_line(result.stderr) == error_lines(result.stderr)[0], result.stderr
    assert f"port {closed_port} failed: Connection refused" in error_lines(result.stderr)[0]
    assert PASSWORD not in result.stderr


def test_unknown_role_exits_4(postgres_database_url, tmp_path):
    # The test cluster trusts every login, so it would accept a wrong password. A role that
    # does not exist is rejected at login instead.
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps(order(1)) + "\n", encoding="utf-8")
    url = with_password(postgres_database_url, user="no_such_role")

    result = send_cli(str(path), "--database-url", url, "--format", "jsonl")

    assert result.exit_code == 4
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert last_line(result.stderr) == error_lines(result.stderr)[0], result.stderr
    assert 'role "no_such_role" does not exist' in error_lines(result.stderr)[0]
    assert PASSWORD not in result.stderr


class PasswordRejectingServer:
    """A loopback server that requests a cleartext password and rejects it, as a real server does.

    It speaks only the start of protocol 3.0: it declines SSL and GSS encryption, requests
    the password, records it and replies with SQLSTATE 28P01 (invalid_password).
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.settimeout(0.05)  # so that _serve notices `stopped` between connections
        self.passwords: list[bytes] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> PasswordRejectingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        self.thread.join(WAIT_SECONDS)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(WAIT_SECONDS)
                try:
                    self._reject(connection)
                except (ConnectionError, TimeoutError):  # the client gave up; serve the next one
                    continue

    def _reject(self, connection: socket.socket) -> None:
        while True:
            length, code = struct.unpack("!ii", _receive(connection, 8))
            if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
                connection.sendall(b"N")
                continue
            _receive(connection, length - 8)  # the rest of the startup packet
            break
        connection.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        _receive(connection, 1)  # "p", the PasswordMessage
        (length,) = struct.unpack("!i", _receive(connection, 4))
        self.passwords.append(_receive(connection, length - 4).rstrip(b"\0"))
        fields = b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "app"\0\0'
        connection.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)


def _receive(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        block = connection.recv(size - len(data))
        if not block:
            raise ConnectionError("the client closed the connection")
        data += block
    return data


def test_wrong_password_exits_4(tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps(order(1)) + "\n", encoding="utf-8")

    with PasswordRejectingServer() as server:
        url = f"postgresql://app:{PASSWORD}@127.0.0.1:{server.port}/outbox?sslmode=disable"
        result = send_cli(str(path), "--database-url", url, "--format", "jsonl")

    assert server.passwords == [PASSWORD.encode()]
    assert result.exit_code == 4
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert last_line(result.stderr) == error_lines(result.stderr)[0], result.stderr
    assert 'password authentication failed for user "app"' in error_lines(result.stderr)[0]
    assert PASSWORD not in result.stderr


def test_server_lost_mid_import(postgres_backend, postgres_database_url, tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_text("".join(json.dumps(order(number)) + "\n" for number in range(3000)), encoding="utf-8")
    application_name = f"symphony-test-{secrets.token_hex(4)}"
    url = with_password(postgres_database_url)  # trust auth ignores it; it must still never be printed
    keys_table = postgres_backend.query("SELECT %s::regclass::text", (postgres_backend.table + "_keys",))[0][0]

    stderr_path = tmp_path / "send.err"
    with stderr_path.open("wb") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "symphony_cli", "send", str(path), "--database-url", url,
             "--table", postgres_backend.table, "--format", "jsonl", "--batch-size", "10"],
            stdout=subprocess.PIPE, stderr=stderr_file, text=True,
            env={**os.environ, "PGAPPNAME": application_name, "PYTHONUNBUFFERED": "1"})
    watchdog = threading.Timer(WAIT_SECONDS, process.kill)  # a hung import ends the reads below
    watchdog.start()
    output = OutputReader(process.stdout)
    try:
        output.wait_for_lines(50)  # 5 chunks committed

        # Block the importer inside its next chunk's transaction, then end its session there.
        with psycopg.connect(postgres_database_url) as blocker:
            blocker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.SQL(keys_table)))
            backend_pid = wait_for_lock_waiter(postgres_database_url, application_name)
            blocker.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
            blocker.rollback()

        process.wait()
        stdout = output.finish()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = stderr_path.read_text(encoding="utf-8")

    results = jsonl_results(stdout)
    by_status: dict[str, list[dict]] = {}
    for row in results:
        by_status.setdefault(row["status"], []).append(row)
    assert process.returncode == 4
    assert len(error_lines(stderr)) == 1, stderr
    assert last_line(stderr) == error_lines(stderr)[0], stderr
    assert "terminating connection due to administrator command" in error_lines(stderr)[0]
    assert PASSWORD not in stderr
    assert [row["line"] for row in results] == list(range(1, len(results) + 1))
    assert set(by_status) == {"sent", "failed"}
    assert len(by_status["sent"]) % 10 == 0  # whole chunks only
    assert len(by_status["sent"]) >= 50
    assert len(by_status["failed"]) == 10  # the chunk whose transaction was cut off
    for row in by_status["failed"]:
        assert row["error"] == "not sent: PostgreSQL: terminating connection due to administrator command", row
    stored = set(postgres_backend.query("SELECT idempotency_key, id FROM {messages}"))
    assert stored == {(row["idempotency_key"], row["message_id"]) for row in by_status["sent"]}


def wait_for_lock_waiter(url: str, application_name: str) -> int:
    """Return the pid of the importer's session once it waits for a lock."""
    deadline = time.monotonic() + WAIT_SECONDS
    with psycopg.connect(url, autocommit=True) as observer:
        while time.monotonic() < deadline:
            row = observer.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                (application_name,)).fetchone()
            if row is not None:
                return row[0]
            time.sleep(0.02)
    raise AssertionError(f"no session named {application_name!r} waited for a lock")


class OutputReader:
    """Read a process's stdout in a thread, so the process never blocks on a full pipe."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.stream:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append("")  # the end of the output
            self.changed.notify_all()

    def wait_for_lines(self, count: int) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.lines) >= count, WAIT_SECONDS):
                raise AssertionError(f"the process printed {len(self.lines)} lines, not {count}")
            if "" in self.lines:
                raise AssertionError(f"the process ended after {len(self.lines) - 1} lines")

    def finish(self) -> str:
        """Return the whole output once the stream has ended."""
        self.thread.join(WAIT_SECONDS)
        self.stream.close()
        return "".join(self.lines)


# -- identifiers


def test_table_name_injection_quoted(postgres_backend, postgres_database_url):
    victim = f"victim_{secrets.token_hex(4)}"
    schema = postgres_backend.table.split(".")[0]
    table = f'{schema}.x"; drop table {victim}; --'
    with psycopg.connect(postgres_database_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(victim)))
        try:
            settings = postgres_backend.settings(table=table)
            results = dispatch_batch([order(1), order(1)], settings=settings)
            victim_exists = connection.execute("SELECT to_regclass(%s)", (victim,)).fetchone()[0]
            created = connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
                (schema,)).fetchall()
        finally:
            connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(victim)))

    assert statuses(results) == ["sent", "duplicate"]
    assert victim_exists == victim
    assert [name for (name,) in created] == [f'x"; drop table {victim}; --{suffix}'
                                             for suffix in ("", "_attempts", "_keys")]
