"""Three `symphony send` processes race on overlapping idempotency keys, on both stores.

Importer i sends keys i*1000 .. i*1000+2999 in its own shuffled order, so every key in
1000..3999 is offered by two or three importers at once and their chunks overlap.
"""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import BinaryIO

IMPORTERS = 3
KEYS_PER_IMPORTER = 3000
KEY_OFFSET = 1000  # importer i starts at key i * KEY_OFFSET
BATCH_SIZE = 200
TIMEOUT_SECONDS = 60


def key_name(number: int) -> str:
    return f"order-{number}"


def importer_numbers(importer: int) -> list[int]:
    """Return the importer's key numbers in its own shuffled order, which is its file order."""
    numbers = list(range(importer * KEY_OFFSET, importer * KEY_OFFSET + KEYS_PER_IMPORTER))
    random.Random(importer).shuffle(numbers)
    return numbers


def input_text(importer: int) -> str:
    lines = []
    for number in importer_numbers(importer):
        # Every importer writes the same content for a key, so a repeat is a duplicate, not a conflict.
        message = {"type": "OrderPlaced", "transport": "email", "payload": {"order": number},
                   "idempotency_key": key_name(number)}
        lines.append(json.dumps(message) + "\n")
    return "".join(lines)


def run_importers(backend, tmp_path: Path) -> list[dict]:
    """Start every importer, release their input to all at once, and return exit codes and output.

    Each importer reads its input from a named pipe, which it opens only after it has opened
    the store. The test writes the messages once every importer has opened its pipe, so the
    chunks race even when the processes finish starting up at different times.
    """
    runs = []
    for importer in range(IMPORTERS):
        fifo = tmp_path / f"importer{importer}.jsonl"
        os.mkfifo(fifo)
        text = input_text(importer)
        runs.append({"fifo": fifo, "text": text, "stdout": tmp_path / f"importer{importer}.out",
                     "stderr": tmp_path / f"importer{importer}.err"})

    # Output goes to files, so a full pipe can never stall one importer while the others race on.
    processes = []
    for run in runs:
        with run["stdout"].open("wb") as stdout, run["stderr"].open("wb") as stderr:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "symphony_cli", "send", str(run["fifo"]), *backend.cli_args,
                 "--format", "jsonl", "--batch-size", str(BATCH_SIZE)],
                stdout=stdout, stderr=stderr, env=dict(os.environ)))

    try:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        streams = [open_when_reader_opens(run["fifo"], process, deadline) for run, process in zip(runs, processes)]
        writers = [threading.Thread(target=write_and_close, args=(stream, run["text"]))
                   for stream, run in zip(streams, runs)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(TIMEOUT_SECONDS)
        for run, process in zip(runs, processes):
            run["returncode"] = process.wait(timeout=TIMEOUT_SECONDS)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    for run in runs:
        run["results"] = [json.loads(line) for line in run["stdout"].read_text(encoding="utf-8").splitlines()]
        run["stderr_text"] = run["stderr"].read_text(encoding="utf-8")
    return runs


def open_when_reader_opens(fifo: Path, process: subprocess.Popen, deadline: float) -> BinaryIO:
    """Open the named pipe for writing as soon as its importer has opened it for reading."""
    while True:
        try:
            descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            if error.errno != errno.ENXIO:  # ENXIO: no process has the pipe open for reading yet
                raise
            if process.poll() is not None:
                raise AssertionError(f"the importer of {fifo.name} exited with {process.returncode} "
                                     "before reading its input") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"the importer of {fifo.name} did not open its input in time") from None
            time.sleep(0.01)
        else:
            os.set_blocking(descriptor, True)
            return os.fdopen(descriptor, "wb")


def write_and_close(stream: BinaryIO, text: str) -> None:
    with stream:
        stream.write(text.encode("utf-8"))


def test_racing_importers_store_key_once(backend, tmp_path):
    runs = run_importers(backend, tmp_path)
    all_numbers = {number for importer in range(IMPORTERS) for number in importer_numbers(importer)}

    for importer, run in enumerate(runs):
        assert run["returncode"] == 0, f"importer {importer} failed:\n{run['stderr_text']}"
        if backend.kind == "sqlite":
            assert "locked" not in run["stderr_text"], f"importer {importer}:\n{run['stderr_text']}"

    # Every input line is reported exactly once, with its own key.
    for importer, run in enumerate(runs):
        reported_lines = Counter(result["line"] for result in run["results"])
        assert sorted(reported_lines) == list(range(1, KEYS_PER_IMPORTER + 1)), f"importer {importer}"
        assert max(reported_lines.values()) == 1, f"importer {importer} reported a line twice"
        keys_by_line = {result["line"]: result["idempotency_key"] for result in run["results"]}
        expected_keys = {line: key_name(number) for line, number in enumerate(importer_numbers(importer), 1)}
        assert keys_by_line == expected_keys, f"importer {importer}"

    # Across all importers each key is sent once; every other offer is a duplicate of that message.
    outcomes_by_key: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        for result in run["results"]:
            outcomes_by_key[result["idempotency_key"]].append(result)
    statuses = Counter(result["status"] for results in outcomes_by_key.values() for result in results)
    assert set(statuses) == {"sent", "duplicate"}
    winners = {}
    for key, results in outcomes_by_key.items():
        sent = [result for result in results if result["status"] == "sent"]
        assert len(sent) == 1, f"{key} was sent {len(sent)} times"
        winners[key] = sent[0]["message_id"]
        for result in results:
            assert result["message_id"] == winners[key], f"{key}: {result}"
    assert statuses["sent"] == len(all_numbers)

    # The table contains exactly the winners.
    repeated = backend.query("SELECT idempotency_key, count(*) FROM {messages} "
                             "GROUP BY idempotency_key HAVING count(*) > 1")
    assert repeated == []
    assert backend.count_messages() == len(all_numbers)
    stored = dict(backend.query("SELECT idempotency_key, id FROM {messages}"))
    assert stored == winners
