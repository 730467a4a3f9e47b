"""`symphony send`: enqueue the messages of one file."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import signal
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..api import send_records
from ..config import Settings, mask_url
from ..dedup import KeySource, make_key_function
from ..dispatcher import SendOptions
from ..errors import ConfigError, ExitCode, InputError, SymphonyError
from ..readers import Record, read_records
from ..render import ErrorLines, JsonLinesOutput, ReportWriter, TableOutput, make_console, summary_line
from ..results import Result, RunSummary
from ..stores import sqlite_path, store_kind
from ._common import (ConfigOption, DatabaseUrlOption, TableOption, configure_logging, handle_errors, print_error,
                      settings_from_flags)

DEFAULT_TABLE_LIMIT = 1000


class OutputFormat(str, Enum):
    table = "table"
    jsonl = "jsonl"


class InputFormat(str, Enum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"


class DedupErrorMode(str, Enum):
    fail = "fail"
    send = "send"


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """Output choices of `send`: the stdout format, the table limit, a report file, quiet and logging."""

    format: OutputFormat
    table_limit: int
    report: Path | None
    quiet: bool
    log_file: Path | None


class StopRequest:
    """Turn the first SIGINT or SIGTERM into a request to stop after the current chunk.

    Inside `shield()`, while a message or chunk is handled, the first signal only sets the
    request. Outside it, while waiting for input, the signal raises KeyboardInterrupt at once.
    A second signal always raises KeyboardInterrupt. The chunk already handed to the store's
    writer thread still commits or rolls back whole, and is reported.
    """

    def __init__(self) -> None:
        self.requested = False
        self.shielded = 0

    def __call__(self) -> bool:
        return self.requested

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        self.shielded += 1
        try:
            yield
        finally:
            self.shielded -= 1

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested or not self.shielded:
            self.requested = True
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # signals can only be set in the main thread
                previous[signum] = signal.signal(signum, self._handle)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


@handle_errors
def send(
    file: Annotated[str, typer.Argument(metavar="FILE", help="JSONL, JSON or CSV file, optionally .gz; - reads stdin")],
    config: ConfigOption = None,
    database_url: DatabaseUrlOption = None,
    table: TableOption = None,
    batch_size: Annotated[int | None, typer.Option(metavar="N", help="Messages per chunk [batch.max_size]")] = None,
    batch_insert: Annotated[bool | None, typer.Option(
        "--batch-insert/--no-batch-insert", help="One INSERT per chunk, or one per message [batch.use_batch_insert]")] = None,
    validate: Annotated[bool | None, typer.Option(
        "--validate/--no-validate", help="Check payload values before sending [batch.validate_before_send]")] = None,
    dedup_window_ms: Annotated[int | None, typer.Option(
        metavar="MS", help="Deduplication window in milliseconds [deduplication.window_ms]")] = None,
    track_attempts: Annotated[bool | None, typer.Option(
        "--track-attempts/--no-track-attempts",
        help="Record duplicate, rejected and conflict attempts [deduplication.track_attempts]")] = None,
    reject_duplicates: Annotated[bool | None, typer.Option(
        "--reject-duplicates/--return-duplicates",
        help="Report duplicates as rejected, or return the existing id [deduplication.reject_duplicates]")] = None,
    on_dedup_error: Annotated[DedupErrorMode | None, typer.Option(
        help="When the duplicate check fails: fail the chunk or send without it [deduplication.on_error]")] = None,
    transport: Annotated[str | None, typer.Option(metavar="NAME", help="Transport for messages that name none [defaults.transport]")] = None,
    priority: Annotated[int | None, typer.Option(metavar="0-10", help="Priority for messages that name none [defaults.priority]")] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="stdout: a table, or one JSON object per message")] = OutputFormat.table,
    input_format: Annotated[InputFormat | None, typer.Option(help="Input format (default: from the file extension)")] = None,
    encoding: Annotated[str | None, typer.Option(metavar="NAME", help="Input text encoding, e.g. cp1252 (default: UTF-8)")] = None,
    delimiter: Annotated[str | None, typer.Option(metavar="CHAR", help="CSV delimiter: ',' ';' 'tab' or '|' (default: detected)")] = None,
    key_field: Annotated[str | None, typer.Option(metavar="PATH", help="Take each key from this payload field (payload.order.id)")] = None,
    key_template: Annotated[str | None, typer.Option(metavar="TEMPLATE", help="Build each key from fields: '{type}:{payload.order_id}'")] = None,
    key_from_content: Annotated[bool, typer.Option(help="Key each message by the SHA-256 of type, transport and payload")] = False,
    dry_run: Annotated[bool, typer.Option(help="Validate and check duplicates without writing anything")] = False,
    max_errors: Annotated[int | None, typer.Option(min=1, metavar="N", help="Stop after this many messages that were not enqueued")] = None,
    table_limit: Annotated[int, typer.Option(min=0, metavar="N", help="Show every message up to this count, then only the ones not enqueued")] = DEFAULT_TABLE_LIMIT,
    report: Annotated[Path | None, typer.Option(metavar="PATH", help="Write every message's result to this .csv or .jsonl file")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the summary")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print debug output on stderr")] = False,
    log_file: Annotated[Path | None, typer.Option(metavar="PATH", help="Append one JSON line per run to this file")] = None,
    lock: Annotated[str | None, typer.Option(metavar="NAME", help="Exit with status 5 if another run holds this lock")] = None,
) -> None:
    """Enqueue the messages in FILE and print one result per message.

    FILE is a JSON Lines, JSON or CSV file, optionally gzip-compressed; - reads stdin.
    """
    configure_logging(verbose)
    settings = settings_from_flags(
        config,
        database__url=(database_url, "--database-url"), database__table=(table, "--table"),
        batch__max_size=(batch_size, "--batch-size"), batch__use_batch_insert=(batch_insert, "--batch-insert"),
        batch__validate_before_send=(validate, "--validate"),
        deduplication__window_ms=(dedup_window_ms, "--dedup-window-ms"),
        deduplication__track_attempts=(track_attempts, "--track-attempts"),
        deduplication__reject_duplicates=(reject_duplicates, "--reject-duplicates"),
        deduplication__on_error=(on_dedup_error.value if on_dedup_error else None, "--on-dedup-error"),
        defaults__transport=(transport, "--transport"), defaults__priority=(priority, "--priority"),
    )
    source_name = "<stdin>" if file == "-" else file
    options = SendOptions(KeySource(key_field, key_template, key_from_content), dry_run, max_errors, source_name)
    make_key_function(options.key_source)  # raises ConfigError for bad key flags before the store is opened
    output = OutputOptions(output_format, table_limit, report, quiet, log_file)
    _check_outputs_spare_input(file, settings.database_url, output)
    if lock is not None and not lock.strip():
        raise ConfigError("--lock needs a non-empty name")
    try:
        records = read_records(file, format=input_format.value if input_format else None,
                               encoding=encoding, delimiter=delimiter)
    except InputError as error:  # raised at once only for invalid --encoding, --delimiter or format
        raise ConfigError(str(error)) from None
    raise typer.Exit(run_send(records, settings, options, output, lock))


def _check_outputs_spare_input(file: str, database_url: str, output: OutputOptions) -> None:
    """Raise ConfigError when --report or --log-file names the input, the SQLite database or each other.

    Writing either file would destroy the other one.
    """
    protected = [("the input file", None if file == "-" else Path(file))]
    if store_kind(database_url) == "sqlite":
        protected.append(("the SQLite database", sqlite_path(database_url)))
    if output.report is not None:
        protected.append(("the --report file", output.report))
    for option, path in (("--report", output.report), ("--log-file", output.log_file)):
        for name, other in protected:
            if path is not None and other is not None and path is not other and _same_file(path, other):
                raise ConfigError(f"{option} {path} is {name}; choose another path")


def _same_file(first: Path, second: Path) -> bool:
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def run_send(records: Iterator[Record], settings: Settings, options: SendOptions, output: OutputOptions,
             lock: str | None) -> int:
    """Send the records, render every result and return the exit status."""
    stderr = make_console(stderr=True)
    if output.log_file:
        _check_log_file(output.log_file)
    sinks = _Sinks(output, options.source_name, stderr)
    stop = StopRequest()
    summary = RunSummary()
    started_at = dt.datetime.now(dt.timezone.utc)
    exit_code = ExitCode.OK
    error: SymphonyError | None = None
    try:
        with stop.installed(), _progress(stderr, output.quiet) as advance:
            records = _read_first(records)
            send_records(records, settings, options, lambda result: (sinks.add(result), advance()),
                         should_stop=stop, lock=lock, summary=summary, shield=stop.shield)
    except SymphonyError as caught:
        error, exit_code = caught, caught.exit_code
    except KeyboardInterrupt:
        exit_code = ExitCode.INTERRUPTED
        summary.stopped_reason = "interrupted"
    finally:
        summary.finish()
        sinks.finish(options.dry_run)

    if summary.stopped_reason == "interrupted":
        exit_code = ExitCode.INTERRUPTED
    elif exit_code is ExitCode.OK and not summary.all_ok:
        exit_code = ExitCode.MESSAGES_NOT_ENQUEUED
    if summary.total or error is None:
        stderr.print(summary_line(summary), soft_wrap=True)
    if error is not None:
        print_error(str(error))
    if output.log_file:
        _append_log(output.log_file, started_at, options.source_name, summary, exit_code, error)
    return int(exit_code)


class _Sinks:
    """Everything a result goes to: stderr error lines, the stdout table or JSON Lines, a report."""

    def __init__(self, output: OutputOptions, source_name: str, stderr) -> None:
        self.source_name = source_name
        self.error_lines = ErrorLines(stderr, source_name)
        self.results_output = None
        if not output.quiet:
            self.results_output = (JsonLinesOutput(sys.stdout) if output.format is OutputFormat.jsonl
                                   else TableOutput(make_console(), output.table_limit))
        self.report = ReportWriter(output.report) if output.report else None
        self.all = [sink for sink in (self.error_lines, self.results_output, self.report) if sink is not None]

    def add(self, result: Result) -> None:
        for sink in self.all:
            sink.add(result)

    def finish(self, dry_run: bool) -> None:
        if self.report:
            self.report.close()
        if self.results_output is not None:
            self.results_output.finish(f"{self.source_name}{' (dry run)' if dry_run else ''}")
        self.error_lines.finish()


def _read_first(records: Iterator[Record]) -> Iterator[Record]:
    """Read the first record now, so that unreadable input fails before the store is opened."""
    first = next(records, None)  # a missing, empty or unreadable file raises InputError here
    return records if first is None else itertools.chain([first], records)


@contextlib.contextmanager
def _progress(console, quiet: bool):
    """Yield a function to call per result; it drives a progress display only on a terminal."""
    if quiet or not console.is_terminal:
        yield lambda: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.completed:,} messages"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("send", total=None)
        yield lambda: progress.advance(task)


def _check_log_file(path: Path) -> None:
    """Raise ConfigError if the run log cannot be appended to, so that no message is sent first."""
    try:
        path.open("a", encoding="utf-8").close()
    except OSError as error:
        raise ConfigError(f"--log-file {path}: cannot append to the file: {error.strerror or error}") from None


def _append_log(path: Path, started_at: dt.datetime, source: str, summary: RunSummary, exit_code: int,
                error: SymphonyError | None) -> None:
    entry = {
        "started_at": started_at.isoformat(timespec="milliseconds"),
        "pid": os.getpid(),
        "file": source,
        "counts": {status.value: count for status, count in summary.counts.items()},
        "duration_s": round(summary.elapsed, 3),
        "stopped": summary.stopped_reason,
        "exit_code": int(exit_code),
        "error": mask_url(str(error)) if error else None,
    }
    with path.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(entry, ensure_ascii=False) + "\n")
