"""Interrupted `symphony send` runs leave whole chunks only, and a rerun completes the file exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from symphony_cli.api import send_records
from symphony_cli.cli import app
from symphony_cli.dispatcher import SendOptions
from symphony_cli.readers import Record

MESSAGES = 20_000
BATCH_SIZE = 100
TIMEOUT_SECONDS = 60
INTERRUPTED_EXIT = 130
LOCKED_EXIT = 5
# Estimated wall time of one uninterrupted run of MESSAGES, start-up included, measured on a 2-core machine.
RUN_SECONDS_ESTIMATE = {"sqlite": 1.2, "postgresql": 2.5}


@pytest.fixture
def orders_file(tmp_path: Path) -> Path:
    path = tmp_path / "orders.jsonl"
    with path.open("w", encoding="utf-8") as stream:
        for number in range(MESSAGES):
            message = {"type": "OrderPlaced", "transport": "email", "payload": {"order": number},
                       "idempotency_key": f"order-{number}"}
            stream.write(json.dumps(message) + "\n")
    return path


class SendRun:
    """A `symphony send` subprocess whose stdout a thread collects, so a full pipe never pauses it."""

    def __init__(self, backend, path: Path) -> None:
        self.stderr_path = path.with_suffix(".err")
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "symphony_cli", "send", str(path), *backend.cli_args,
                 "--format", "jsonl", "--batch-size", str(BATCH_SIZE)],
                stdout=subprocess.PIPE, stderr=stderr, text=True, env=dict(os.environ))
        self.lines: list[str] = []
        self.first_line = threading.Event()
        self.reader = threading.Thread(target=self._collect, daemon=True)
        self.reader.start()

    def _collect(self) -> None:
        for line in self.process.stdout:
            if line.endswith("\n"):  # a killed process can leave a line cut short
                self.lines.append(line)
            self.first_line.set()
        self.first_line.set()  # also when the process printed nothing

    def wait_for_first_result(self) -> None:
        assert self.first_line.wait(TIMEOUT_SECONDS), "no result within the timeout"
        assert self.lines, f"the process printed no result:\n{self.stderr_path.read_text()}"

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)  # Popen signals only its own, still unreaped, process

    def finish(self) -> tuple[int, list[dict], str]:
        """Wait for the process and return its exit status, results and stderr; kill it after TIMEOUT_SECONDS."""
        try:
            self.process.wait(TIMEOUT_SECONDS)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self.reader.join(TIMEOUT_SECONDS)
        self.process.stdout.close()
        results = [json.loads(line) for line in self.lines]
        return self.process.returncode, results, self.stderr_path.read_text(encoding="utf-8")


def stored_messages(backend) -> set[tuple[str, int]]:
    return set(backend.query("SELECT idempotency_key, id FROM {messages}"))


def sent_messages(results: list[dict]) -> set[tuple[str, int]]:
    return {(row["idempotency_key"], row["message_id"]) for row in results if row["status"] == "sent"}


def assert_file_stored_once(backend, first_run: list[dict], rerun: list[dict]) -> None:
    """Check that the rerun completed the file: one message per key, first-run ids kept."""
    first_ids = {row["idempotency_key"]: row["message_id"] for row in first_run if row["status"] == "sent"}
    expected = Counter({"sent": MESSAGES - len(first_ids), "duplicate": len(first_ids)})
    assert Counter(row["status"] for row in rerun) == +expected  # unary + drops zero counts
    for row in rerun:
        if row["status"] == "duplicate":
            assert row["message_id"] == first_ids[row["idempotency_key"]], row
    repeated = backend.query("SELECT idempotency_key FROM {messages} GROUP BY idempotency_key HAVING count(*) > 1")
    assert repeated == []
    assert backend.count_messages() == MESSAGES
    assert {key for key, _ in stored_messages(backend)} == {f"order-{number}" for number in range(MESSAGES)}


def feed_in_two_parts(fifo: Path, text: str, second_part_allowed: threading.Event) -> None:
    """Write the first half of the lines to the named pipe, and the rest once allowed."""
    lines = text.splitlines(keepends=True)
    with contextlib.suppress(BrokenPipeError):  # an interrupted importer stops reading
        with fifo.open("w", encoding="utf-8") as stream:  # blocks until the importer opens the pipe
            stream.writelines(lines[:len(lines) // 2])
            stream.flush()
            second_part_allowed.wait(TIMEOUT_SECONDS)
            stream.writelines(lines[len(lines) // 2:])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_signal_stops_after_chunk(backend, orders_file, tmp_path, signum):
    # The importer reads the file through a named pipe that gets its second half only after
    # the signal, so the signal always arrives before the end of the input.
    fifo = tmp_path / "orders-pipe.jsonl"
    os.mkfifo(fifo)
    signal_sent = threading.Event()
    feeder = threading.Thread(target=feed_in_two_parts,
                              args=(fifo, orders_file.read_text(encoding="utf-8"), signal_sent), daemon=True)
    feeder.start()
    run = SendRun(backend, fifo)
    try:
        run.wait_for_first_result()  # the first chunk is committed
        run.send_signal(signum)
    finally:
        signal_sent.set()
    returncode, results, stderr = run.finish()
    feeder.join(TIMEOUT_SECONDS)

    lines = [row["line"] for row in results]
    statuses = Counter(row["status"] for row in results)
    assert returncode == INTERRUPTED_EXIT, stderr
    assert "interrupted" in stderr
    assert lines == list(range(1, len(lines) + 1))
    assert set(statuses) <= {"sent", "failed"}
    assert 0 < statuses["sent"] < MESSAGES
    assert statuses["sent"] % BATCH_SIZE == 0  # whole chunks only
    for row in results:
        if row["status"] == "failed":
            assert row["error"].startswith("not sent: the run was interrupted"), row
    assert stored_messages(backend) == sent_messages(results)

    rerun_code, rerun_results, rerun_stderr = SendRun(backend, orders_file).finish()
    assert rerun_code == 0, rerun_stderr
    assert_file_stored_once(backend, results, rerun_results)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_random_interrupt_then_rerun(backend, orders_file, signum):
    # The delay spans about start-up and the whole import, so the signal can land anywhere:
    # before symphony installs its handler, inside a chunk's transaction, or after the end.
    delay = random.Random(f"{backend.kind}-{signum.name}").uniform(0.0, RUN_SECONDS_ESTIMATE[backend.kind])
    run = SendRun(backend, orders_file)
    time.sleep(delay)
    if run.process.poll() is None:
        run.send_signal(signum)
    returncode, results, stderr = run.finish()

    assert returncode in (0, INTERRUPTED_EXIT, -signum), stderr
    stored = stored_messages(backend)
    assert len(stored) % BATCH_SIZE == 0  # whole chunks only
    assert {key for key, _ in stored} == {f"order-{number}" for number in range(len(stored))}
    if returncode != -signum:  # a killed run reports nothing it had not printed
        assert stored == sent_messages(results)

    rerun_code, rerun_results, rerun_stderr = SendRun(backend, orders_file).finish()
    first_run = [{"idempotency_key": key, "message_id": message_id, "status": "sent"} for key, message_id in stored]
    assert rerun_code == 0, rerun_stderr
    assert_file_stored_once(backend, first_run, rerun_results)


def test_held_lock_exits_5(backend, tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps({"type": "OrderPlaced", "payload": {"order": 1}, "idempotency_key": "order-1"}) + "\n",
                    encoding="utf-8")
    command = ["send", str(path), *backend.cli_args, "--format", "jsonl", "--lock", "nightly-orders"]
    store = backend.open()
    try:
        with store.hold_lock("nightly-orders"):
            started = time.monotonic()
            locked = CliRunner().invoke(app, command)
            elapsed = time.monotonic() - started
            count_while_locked = backend.count_messages()
        unlocked = CliRunner().invoke(app, command)
    finally:
        store.close()

    error_lines = [line for line in locked.stderr.splitlines() if line.startswith("error:")]
    assert locked.exit_code == LOCKED_EXIT
    assert len(error_lines) == 1, locked.stderr
    assert "another run holds the lock 'nightly-orders'" in error_lines[0]
    assert elapsed < 5  # it does not wait for the lock
    assert count_while_locked == 0
    assert unlocked.exit_code == 0, unlocked.stderr
    assert backend.count_messages() == 1


def test_stop_during_final_flush(backend):
    # Each transport's messages wait in their own buffer until the input ends. A stop that is
    # requested while the first of those chunks is sent leaves the other transports unsent.
    messages = [{"type": "OrderPlaced", "transport": transport, "payload": {"order": number},
                 "idempotency_key": f"{transport}-{number}"}
                for transport in ("email", "sms", "push") for number in range(5)]
    records = [Record(line, fields) for line, fields in enumerate(messages, 1)]
    results: list = []

    summary = send_records(records, backend.settings(), SendOptions(), results.append,
                           should_stop=lambda: bool(results))

    by_transport = {transport: Counter(result.status.value for result in results if result.transport == transport)
                    for transport in ("email", "sms", "push")}
    assert by_transport == {"email": {"sent": 5}, "sms": {"failed": 5}, "push": {"failed": 5}}
    assert summary.stopped_reason == "interrupted"
    assert backend.count_messages() == 5
