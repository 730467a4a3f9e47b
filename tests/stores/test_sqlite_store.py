"""SQLite store: the variable limit, the window's edge on an injected clock, WAL and the busy timeout."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from symphony_cli import dispatch_batch
from symphony_cli.messages import MessageDefaults, build_message
from symphony_cli.stores.base import TableNames
from symphony_cli.stores.sqlite import BUSY_TIMEOUT_MS, SQLiteStore

START_MS = 1_700_000_000_000  # an arbitrary fixed time, in milliseconds since the epoch
WINDOW_MS = 60_000
ONE_DAY = dt.timedelta(days=1)


def order(number: int) -> dict:
    return {"type": "OrderPlaced", "transport": "email", "payload": {"order": number},
            "idempotency_key": f"order-{number}"}


def statuses(results) -> list[str]:
    return [result.status.value for result in results]


class FixedClock:
    """A store clock that returns `now` (milliseconds) until a test moves it."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def database_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def settings(sqlite_backend):
    return sqlite_backend.settings()


# -- SQLITE_LIMIT_VARIABLE_NUMBER


def test_low_variable_limit_one_chunk(sqlite_backend, settings, database_path):
    store = SQLiteStore(database_path, TableNames(None, "messages"))
    statements: list[str] = []
    try:
        store.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
        store.connection.set_trace_callback(statements.append)
        messages = [order(number) for number in range(5000)]

        first = dispatch_batch(messages, settings=settings.replace(max_batch_size=5000), store=store)
        second = dispatch_batch(messages, settings=settings.replace(max_batch_size=5000), store=store)
        limit_after = store.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        store.close()

    assert Counter(statuses(first)) == {"sent": 5000}
    assert Counter(statuses(second)) == {"duplicate": 5000}
    assert limit_after == 100
    # One write transaction per run, plus one for the second run's duplicate attempts: a
    # statement over the limit would have rolled back and split the chunk.
    assert statements.count("BEGIN IMMEDIATE") == 3
    assert statements.count("ROLLBACK") == 0
    assert sqlite_backend.count_messages() == 5000
    assert sqlite_backend.query("SELECT count(*) FROM {attempts}") == [(5000,)]


def test_rows_per_statement_respect_limit(database_path):
    store = SQLiteStore(database_path, TableNames(None, "messages"))
    defaults = MessageDefaults()
    messages = [build_message(order(number), number + 1, defaults) for number in range(50)]
    rows_per_insert: list[int] = []
    try:
        store.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 13)
        store.connection.set_trace_callback(lambda text: rows_per_insert.append(text.count("), (") + 1)
                                            if text.startswith("INSERT") else None)
        with store.transaction():
            ids = store.insert_messages(messages, window_ms=WINDOW_MS, deduplicate=True)
    finally:
        store.close()

    assert ids == list(range(1, 51))
    # 13 variables: one 7-column message row or two 6-column key rows (with one variable left for now).
    assert max(rows_per_insert) == 2


# -- the window's edge, on an injected clock


def test_window_edge_fixed_clock(settings, database_path):
    clock = FixedClock(START_MS)
    store = SQLiteStore(database_path, TableNames(None, "messages"), clock=clock)
    window_settings = settings.replace(window_ms=WINDOW_MS)
    try:
        first = dispatch_batch([order(1)], settings=window_settings, store=store)

        clock.now = START_MS + WINDOW_MS - 1
        inside = dispatch_batch([order(1)], settings=window_settings, store=store)

        clock.now = START_MS + WINDOW_MS
        at_edge = dispatch_batch([order(1)], settings=window_settings, store=store)
        key_row = store.connection.execute(
            "SELECT message_id, created_at, expires_at FROM messages_keys").fetchall()
    finally:
        store.close()

    assert statuses(first) == ["sent"]
    assert statuses(inside) == ["duplicate"]
    assert inside[0].message_id == first[0].message_id
    assert statuses(at_edge) == ["sent"]
    assert at_edge[0].message_id != first[0].message_id
    assert key_row == [(at_edge[0].message_id, START_MS + WINDOW_MS, START_MS + 2 * WINDOW_MS)]


class BackwardClock(FixedClock):
    """A clock that runs backwards by 1 ms per reading, as a wall clock may after an NTP step."""

    def __call__(self) -> int:
        self.now -= 1
        return self.now + 1


def test_backward_clock_claims_key(settings, database_path):
    clock = FixedClock(START_MS)
    store = SQLiteStore(database_path, TableNames(None, "messages"), clock=clock)
    window_settings = settings.replace(window_ms=WINDOW_MS)
    try:
        dispatch_batch([order(1)], settings=window_settings, store=store)

        # The window has just ended when the chunk starts, and the clock then steps back.
        store.clock = BackwardClock(START_MS + WINDOW_MS)
        resent = dispatch_batch([order(1)], settings=window_settings, store=store)
        key_rows = store.connection.execute("SELECT message_id FROM messages_keys").fetchall()

        store.clock = FixedClock(START_MS + WINDOW_MS + 1)
        again = dispatch_batch([order(1)], settings=window_settings, store=store)
    finally:
        store.close()

    assert statuses(resent) == ["sent"]
    # The message that went in must own the key, or the next send inside its window goes in too.
    assert key_rows == [(resent[0].message_id,)]
    assert statuses(again) == ["duplicate"]


def test_expired_key_purged_at_edge(settings, database_path):
    clock = FixedClock(START_MS)
    store = SQLiteStore(database_path, TableNames(None, "messages"), clock=clock)
    try:
        dispatch_batch([order(1), order(2)], settings=settings.replace(window_ms=WINDOW_MS), store=store)
        clock.now = START_MS + WINDOW_MS - 1
        before_edge = store.purge(attempts_older_than=ONE_DAY)
        clock.now = START_MS + WINDOW_MS
        at_edge = store.purge(attempts_older_than=ONE_DAY)
    finally:
        store.close()

    assert before_edge.keys == 0
    assert at_edge.keys == 2


# -- WAL mode and the busy timeout


def test_wal_and_busy_timeout_set(database_path):
    store = SQLiteStore(database_path, TableNames(None, "messages"))
    try:
        journal_mode = store.connection.execute("PRAGMA journal_mode").fetchone()[0]
        busy_timeout = store.connection.execute("PRAGMA busy_timeout").fetchone()[0]
    finally:
        store.close()

    assert journal_mode == "wal"
    assert busy_timeout == BUSY_TIMEOUT_MS
    assert BUSY_TIMEOUT_MS >= 10_000


def test_importer_waits_for_writer(settings, database_path):
    holder = SQLiteStore(database_path, TableNames(None, "messages"))
    results: list = []
    failures: list[BaseException] = []

    def import_orders() -> None:
        try:
            results.extend(dispatch_batch([order(1), order(2)], settings=settings))
        except BaseException as error:  # checked by the test's thread below
            failures.append(error)

    try:
        with holder.transaction():
            messages = [build_message(order(number), number, MessageDefaults()) for number in (1, 2)]
            held_ids = holder.insert_messages(messages, window_ms=WINDOW_MS, deduplicate=True)
            importer = threading.Thread(target=import_orders)
            importer.start()
            time.sleep(0.5)  # the importer now waits for this transaction's write lock
        importer.join(30)
    finally:
        holder.close()

    assert failures == []
    assert statuses(results) == ["duplicate", "duplicate"]
    assert [result.message_id for result in results] == held_ids


# -- identifiers


def test_table_name_injection_quoted(sqlite_backend, settings, database_path):
    connection = sqlite3.connect(database_path)
    connection.execute("CREATE TABLE y (id INTEGER)")
    connection.commit()
    table = 'x"; drop table y; --'

    results = dispatch_batch([order(1), order(1)], settings=settings.replace(table=table))
    tables = [name for (name,) in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    connection.close()

    assert statuses(results) == ["sent", "duplicate"]
    assert tables == [table, table + "_attempts", table + "_keys", "y"]
