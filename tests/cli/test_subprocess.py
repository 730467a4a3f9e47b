"""The installed `symphony` script and `python -m symphony_cli`, run as real processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cli_support import message, write_jsonl

SCRIPT = Path(sys.executable).parent / "symphony"
TIMEOUT_S = 60


@pytest.fixture
def process_env(tmp_path: Path) -> dict[str, str]:
    """Return an environment with a fresh HOME and XDG_CONFIG_HOME and no SYMPHONY_* variables."""
    home = tmp_path / "process-home"
    home.mkdir()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SYMPHONY_") and name not in ("COLUMNS", "FORCE_COLOR", "NO_COLOR")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"))
    return env


def run(args: list[str | Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in args], env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
                          stdin=subprocess.DEVNULL)


def test_module_help_exit_zero(process_env):
    result = run([sys.executable, "-m", "symphony_cli", "--help"], process_env)

    assert result.returncode == 0
    assert "send" in result.stdout
    assert "Exit status:" in result.stdout
    assert "  0    every message was enqueued or was a duplicate" in result.stdout


def test_script_default_store_in_app_dir(process_env):
    write_jsonl(Path("orders.jsonl"), [message(1), message(2)])
    database = Path(process_env["XDG_CONFIG_HOME"]) / "symphony" / "symphony.db"

    result = run([SCRIPT, "send", "orders.jsonl"], process_env)
    connection = sqlite3.connect(database)
    try:
        keys = [row[0] for row in connection.execute("SELECT idempotency_key FROM messages ORDER BY id")]
    finally:
        connection.close()

    assert result.returncode == 0
    assert keys == ["key-1", "key-2"]


def test_script_invalid_message_exit_one(process_env):
    write_jsonl(Path("orders.jsonl"), [message(1), message(2, priority=11)])

    result = run([SCRIPT, "send", "orders.jsonl"], process_env)

    assert result.returncode == 1
    assert "orders.jsonl:2: invalid: priority 11 is out of range; it must be from 0 to 10" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr


def test_script_summary_not_on_stdout(process_env):
    write_jsonl(Path("orders.jsonl"), [message(1)])

    result = run([SCRIPT, "send", "orders.jsonl", "--format", "jsonl"], process_env)

    assert [line[:1] for line in result.stdout.splitlines()] == ["{"]
    assert "1 sent; 1 message in " in result.stderr


def test_ascii_locale_does_not_crash(process_env):
    write_jsonl(Path("orders.jsonl"), [message(1, idempotency_key="ключ-1", payload={"to": "zoë"})])
    env = {**process_env, "PYTHONIOENCODING": "ascii", "LC_ALL": "C"}

    result = subprocess.run([sys.executable, "-m", "symphony_cli", "send", "orders.jsonl"], env=env,
                            capture_output=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)

    assert result.returncode == 0
    assert b"Traceback" not in result.stderr
    assert b"\\u043a\\u043b\\u044e\\u0447-1" in result.stdout


def test_verbose_prints_chunk_lines(process_env):
    write_jsonl(Path("orders.jsonl"), [message(number) for number in range(1, 6)])

    result = run([sys.executable, "-m", "symphony_cli", "send", "orders.jsonl", "-v", "--batch-size", "2"],
                 process_env)

    chunk_lines = [line for line in result.stderr.splitlines() if line.startswith("DEBUG: chunk of")]
    assert result.returncode == 0
    assert len(chunk_lines) == 3
    assert chunk_lines[0] == "DEBUG: chunk of 2 default messages (lines 1-2): 2 sent"
