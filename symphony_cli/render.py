"""Output: the result table or JSON Lines on stdout, errors and the summary on stderr, reports."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import ConfigError
from .results import OK_STATUSES, Result, RunSummary, Status

MAX_ERROR_LINES = 50  # per run on stderr; the table and --report list every error
STATUS_STYLES = {
    Status.SENT: "green", Status.WOULD_SEND: "green", Status.DUPLICATE: "cyan",
    Status.REJECTED: "yellow", Status.CONFLICT: "yellow", Status.INVALID: "red", Status.FAILED: "bold red",
}
REPORT_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")  # .json files get JSON Lines too
RESULT_FIELDS = ("line", "status", "message_id", "idempotency_key", "transport", "type", "error")


# Off a terminal with no COLUMNS, tables take their natural width instead of rich's default of
# 80 columns, so that a log line is never folded. With COLUMNS set, long cells fold, never cut.
UNBOUNDED_WIDTH = 10_000


# C0 and C1 control characters, which could move the cursor or retitle a terminal.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str | None) -> str:
    """Return text with control characters escaped (\x1b), so input data cannot drive the terminal."""
    if not text:
        return ""
    return _CONTROL_CHARACTERS.sub(lambda match: match[0].encode("unicode_escape").decode("ascii"), text)


def make_console(stream: IO[str] | None = None, *, stderr: bool = False) -> Console:
    """Return a console that never cuts text; rich honours NO_COLOR and writes plain text off a terminal.

    Markup is off, because values from input files (keys, types, file names) may contain
    square brackets that rich would otherwise read as style tags.
    """
    console = Console(file=stream, stderr=stderr, soft_wrap=False, highlight=False, emoji=False, markup=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = UNBOUNDED_WIDTH
    return console


class TableOutput:
    """Collect results for the table: every one not enqueued, and the first `limit` enqueued ones."""

    def __init__(self, console: Console, limit: int) -> None:
        self.console = console
        self.limit = limit
        self.rows: list[Result] = []
        self.shown_ok = 0  # enqueued results in rows; results not enqueued never count against the limit
        self.hidden = 0

    def add(self, result: Result) -> None:
        if result.status not in OK_STATUSES:
            self.rows.append(result)
        elif self.shown_ok < self.limit:
            self.rows.append(result)
            self.shown_ok += 1
        else:
            self.hidden += 1

    def finish(self, title: str) -> None:
        if not self.rows:
            return
        table = Table()
        for name, justify in (("Line", "right"), ("Type", "left"), ("Transport", "left"), ("Idempotency key", "left"),
                              ("Status", "left"), ("Message ID", "right"), ("Error", "left")):
            table.add_column(name, justify=justify, overflow="fold")
        for result in sorted(self.rows, key=lambda row: row.line):
            table.add_row(str(result.line), printable(result.type), printable(result.transport),
                          printable(result.idempotency_key),
                          Text(result.status.value, style=STATUS_STYLES[result.status]),
                          "" if result.message_id is None else str(result.message_id), printable(result.error))
        self.console.print(printable(title))
        self.console.print(table)
        if self.hidden:
            self.console.print(f"{self.hidden:,} more enqueued {'message is' if self.hidden == 1 else 'messages are'} "
                               f"not shown (--table-limit {self.limit:,}); use --report PATH to list every message.")


class JsonLinesOutput:
    """Write one JSON object per result to stdout as it completes.

    When stdout is closed early (`| head`), the import goes on and the summary on stderr
    still counts every message; only the printing stops.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream: IO[str] | None = stream

    def add(self, result: Result) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        except BrokenPipeError:
            self._close_quietly()

    def finish(self, title: str) -> None:
        if self.stream is not None:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._close_quietly()

    def _close_quietly(self) -> None:
        # Point stdout at /dev/null, so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        self.stream = None


class ReportWriter:
    """Write every result to a CSV or JSON Lines file, chosen by the file's extension."""

    def __init__(self, path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix not in REPORT_SUFFIXES:
            raise ConfigError(f"--report {path}: unknown report format {suffix or '(no extension)'!r}; "
                              "name the file .csv or .jsonl")
        self.path = path
        self.is_csv = suffix == ".csv"
        try:
            self.stream = path.open("w", encoding="utf-8", newline="" if self.is_csv else None)
        except OSError as error:
            raise ConfigError(f"--report {path}: cannot write the file: {error.strerror or error}") from None
        if self.is_csv:
            self.writer = csv.DictWriter(self.stream, fieldnames=RESULT_FIELDS)
            self.writer.writeheader()

    def add(self, result: Result) -> None:
        row = result.to_dict()
        if self.is_csv:
            self.writer.writerow(row)
        else:
            self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.stream.close()


class ErrorLines:
    """Print `FILE:LINE: error` on stderr for results that were not enqueued, up to a cap."""

    def __init__(self, console: Console, source: str) -> None:
        self.console = console
        self.source = source
        self.count = 0

    def add(self, result: Result) -> None:
        if result.status in OK_STATUSES:
            return
        self.count += 1
        if self.count <= MAX_ERROR_LINES:
            text = result.error or result.status.value
            self.console.print(printable(f"{self.source}:{result.line}: {result.status.value}: {text}"), soft_wrap=True)

    def finish(self) -> None:
        if self.count > MAX_ERROR_LINES:
            self.console.print(f"... and {self.count - MAX_ERROR_LINES:,} more not shown here; "
                               "--report PATH lists every result")


def summary_line(summary: RunSummary) -> str:
    """Return e.g. '95 sent, 3 duplicate, 2 invalid; 100 messages in 0.21 s (476 messages/s)'."""
    counts = ", ".join(f"{summary.counts[status]:,} {status.value}" for status in Status if summary.counts[status])
    rate = summary.total / summary.elapsed if summary.elapsed > 0 else 0.0
    noun = "message" if summary.total == 1 else "messages"
    if summary.total:
        line = f"{counts}; {summary.total:,} {noun} in {summary.elapsed:.2f} s ({rate:,.0f} messages/s)"
    else:
        line = f"no messages in {summary.elapsed:.2f} s"
    if summary.stopped_reason:
        line += f"; stopped after line {summary.last_line}: {summary.stopped_reason}"
    return line


def print_json(data: Any, stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
