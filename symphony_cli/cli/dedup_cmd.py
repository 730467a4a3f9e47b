"""`symphony dedup`: inspect keys and attempts, duplicate statistics, purge."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..errors import ConfigError, KeyNotFoundError
from ..render import make_console, print_json, printable
from ..stores import open_store
from ..stores.base import AttemptRow
from ._common import ConfigOption, DatabaseUrlOption, TableOption, handle_errors, settings_from_flags

app = typer.Typer(help="Inspect idempotency keys and duplicate attempts.", no_args_is_help=True, rich_markup_mode=None,
                  suggest_commands=False)

DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SinceOption = Annotated[str | None, typer.Option(metavar="DURATION", help="Only the last 30m, 1h, 2d, ... (units ms s m h d w)")]
LimitOption = Annotated[int, typer.Option(min=1, help="Maximum number of attempts to show")]


class AttemptOutcome(str, Enum):
    duplicate = "duplicate"
    rejected = "rejected"
    conflict = "conflict"


class ViewFormat(str, Enum):
    table = "table"
    json = "json"


def parse_duration(text: str, option: str) -> dt.timedelta:
    """Parse '90s', '30m', '1h', '2d' or '1w'; raise ConfigError naming the option otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d|w)\s*", text)
    if not match:
        raise ConfigError(f"{option} {text!r} is invalid; write a number and a unit, such as 30m, 1h or 2d")
    try:
        return dt.timedelta(seconds=int(match[1]) * DURATION_UNITS[match[2]])
    except OverflowError:
        raise ConfigError(f"{option} {text!r} is too long; the maximum is 999999999d") from None


def format_duration(milliseconds: int) -> str:
    """Return the duration in the largest unit that divides it: 86400000 becomes '1d'."""
    for unit in ("w", "d", "h", "m", "s"):
        unit_ms = int(DURATION_UNITS[unit] * 1000)
        if milliseconds % unit_ms == 0:
            return f"{milliseconds // unit_ms}{unit}"
    return f"{milliseconds}ms"


def _open(config: str | None, database_url: str | None, table: str | None):
    settings = settings_from_flags(config, database__url=(database_url, "--database-url"),
                                   database__table=(table, "--table"))
    return settings, open_store(settings.replace(auto_create=False))  # reading creates no database


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


def _attempts_table(title: str, attempts: list[AttemptRow]) -> Table:
    view = Table(title=title, title_justify="left")
    for name in ("Attempted at (UTC)", "Key", "Outcome", "Transport", "Source", "Line", "Message ID"):
        view.add_column(name, overflow="fold", justify="right" if name in ("Line", "Message ID") else "left")
    for row in attempts:
        view.add_row(_iso(row.attempted_at), printable(row.idempotency_key), row.outcome, printable(row.transport),
                     printable(row.source),
                     str(row.line), "" if row.message_id is None else str(row.message_id))
    return view


def _attempt_dict(row: AttemptRow) -> dict[str, object]:
    return {**dataclasses.asdict(row), "attempted_at": _iso(row.attempted_at)}


@app.command("inspect")
@handle_errors
def inspect(
    key: Annotated[str, typer.Argument(metavar="KEY", help="The idempotency key, exactly as sent")],
    config: ConfigOption = None, database_url: DatabaseUrlOption = None, table: TableOption = None,
    limit: LimitOption = 20,
    output_format: Annotated[ViewFormat, typer.Option("--format", help="A table, or JSON")] = ViewFormat.table,
) -> None:
    """Show a key's state, message and attempts.

    The attempts are listed newest first.
    """
    _, store = _open(config, database_url, table)
    try:
        info = store.inspect_key(key, limit)
    finally:
        store.close()
    if info is None:
        raise KeyNotFoundError(f"key {key!r} not found: no message was sent with it, or 'dedup purge' removed it")
    message = info.message
    if output_format is ViewFormat.json:
        print_json({
            "idempotency_key": info.idempotency_key, "state": "active" if info.active else "expired",
            "created_at": _iso(info.created_at), "expires_at": _iso(info.expires_at),
            "message_id": info.message_id,
            "message": None if message is None else {**dataclasses.asdict(message), "created_at": _iso(message.created_at)},
            "attempts": [_attempt_dict(row) for row in info.attempts],
        })
        return
    console = make_console()
    state = Text("active", style="green") if info.active else Text("expired", style="yellow")
    console.print(Text.assemble("key ", (printable(info.idempotency_key), "bold"), ": ", state,
                                f", expires at {_iso(info.expires_at)}"))
    if message is None:
        console.print(f"message {info.message_id}: no longer in the message table (a worker may have removed it)")
    else:
        console.print(f"message {message.id}: type {printable(message.type)}, transport {printable(message.transport)}, "
                      f"priority {message.priority}, created at {_iso(message.created_at)}")
    console.print(_attempts_table(f"{len(info.attempts)} attempts (newest first, --limit {limit})", info.attempts))


@app.command("attempts")
@handle_errors
def attempts(
    config: ConfigOption = None, database_url: DatabaseUrlOption = None, table: TableOption = None,
    since: SinceOption = None,
    transport: Annotated[str | None, typer.Option(help="Only this transport")] = None,
    status: Annotated[AttemptOutcome | None, typer.Option(help="Only this outcome")] = None,
    limit: LimitOption = 100,
    output_format: Annotated[ViewFormat, typer.Option("--format", help="A table, or JSON")] = ViewFormat.table,
) -> None:
    """List recent duplicate attempts.

    Duplicate, rejected and conflict attempts, newest first.
    """
    within = parse_duration(since, "--since") if since else None
    _, store = _open(config, database_url, table)
    try:
        rows = store.list_attempts(within, transport, status.value if status else None, limit)
    finally:
        store.close()
    if output_format is ViewFormat.json:
        print_json([_attempt_dict(row) for row in rows])
        return
    make_console().print(_attempts_table(f"{len(rows)} attempts", rows))


@app.command("stats")
@handle_errors
def stats(
    config: ConfigOption = None, database_url: DatabaseUrlOption = None, table: TableOption = None,
    since: SinceOption = "24h",
    output_format: Annotated[ViewFormat, typer.Option("--format", help="A table, or JSON")] = ViewFormat.table,
) -> None:
    """Show duplicate rates per transport.

    For each transport: messages sent, duplicate and rejected attempts, the duplicate rate
    (repeats as a share of all messages offered) and conflicts.
    """
    within = parse_duration(since, "--since") if since else None
    _, store = _open(config, database_url, table)
    try:
        rows = store.stats(within)
    finally:
        store.close()
    if output_format is ViewFormat.json:
        print_json([{**dataclasses.asdict(row), "duplicate_rate": round(row.duplicate_rate, 6)} for row in rows])
        return
    view = Table(title=f"deduplication over the last {since}" if since else "deduplication, all time",
                 title_justify="left")
    for name in ("Transport", "Sent", "Duplicates", "Rejected", "Duplicate rate", "Conflicts"):
        view.add_column(name, justify="left" if name == "Transport" else "right", overflow="fold")
    for row in rows:
        view.add_row(printable(row.transport), f"{row.sent:,}", f"{row.duplicates:,}", f"{row.rejected:,}",
                     f"{row.duplicate_rate:.1%}", f"{row.conflicts:,}")
    make_console().print(view)


@app.command("purge")
@handle_errors
def purge(
    config: ConfigOption = None, database_url: DatabaseUrlOption = None, table: TableOption = None,
    older_than: Annotated[str | None, typer.Option(metavar="DURATION", help="Delete attempts older than this (default: the deduplication window)")] = None,
) -> None:
    """Delete expired keys and old attempts.

    Keys inside their deduplication window are never deleted, so purge is safe to run from
    cron while imports run.
    """
    age = parse_duration(older_than, "--older-than") if older_than else None
    settings, store = _open(config, database_url, table)
    if age is None:
        age = dt.timedelta(milliseconds=settings.window_ms)
        older_than = f"{format_duration(settings.window_ms)} (the deduplication window)"
    try:
        counts = store.purge(age)
    finally:
        store.close()
    make_console().print(f"deleted {counts.keys:,} expired keys and {counts.attempts:,} attempts older than {older_than}")
