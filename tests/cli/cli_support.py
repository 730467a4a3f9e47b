"""Helpers for the CLI tests: input files, the result table parser and the summary line."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# Columns of the `send` result table, in the order the table prints them.
RESULT_COLUMNS = ("line", "type", "transport", "key", "status", "id", "error")
SUMMARY_PATTERN = r"[\d,]+ messages? in \d+\.\d\d s \([\d,]+ messages/s\)"


def message(number: int, **fields: Any) -> dict[str, Any]:
    """Return a valid message with the key `key-NUMBER`. `fields` replace or add top-level fields."""
    return {"type": "email", "payload": {"n": number}, "idempotency_key": f"key-{number}", **fields}


def write_jsonl(path: Path, messages: Iterable[Mapping[str, Any] | str]) -> Path:
    """Write one message per line. A str item is written unchanged, for lines that are not valid JSON."""
    lines = [item if isinstance(item, str) else json.dumps(item) for item in messages]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def table_rows(stdout: str) -> list[dict[str, str]]:
    """Parse the `send` result table into one dict per row, joining cells that rich folded.

    A row starts on the first body line whose Line cell is filled. Folded pieces of a cell
    are joined without spaces, so keys, ids and statuses come back whole.
    """
    rows: list[list[str]] = []
    for text in stdout.splitlines():
        if "│" not in text:
            continue
        cells = [cell.strip() for cell in text.split("│")[1:-1]]
        if len(cells) != len(RESULT_COLUMNS):
            continue
        if cells[0]:
            rows.append(cells)
        elif rows:
            rows[-1] = [joined + piece for joined, piece in zip(rows[-1], cells)]
    return [dict(zip(RESULT_COLUMNS, cells)) for cells in rows]


def summary_of(stderr: str) -> str:
    """Return the summary line: the last non-empty line on stderr that reports the message count."""
    lines = [line for line in stderr.splitlines() if re.search(SUMMARY_PATTERN, line)]
    assert lines, f"no summary line on stderr:\n{stderr}"
    return lines[-1]


def closed_port() -> int:
    """Return a loopback TCP port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
