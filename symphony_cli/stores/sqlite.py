"""The embedded store: one SQLite file, in WAL mode, one writer at a time.

Every write transaction starts with BEGIN IMMEDIATE, which takes SQLite's write lock
before the duplicate pre-query, so the pre-query and the INSERT see the same keys and
concurrent importers queue on the busy timeout instead of failing with "database is locked".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..dedup import StoredKey
from ..errors import ConfigError, LockedError, SchemaMissingError, StoreError
from ..messages import Message
from .base import (Attempt, AttemptRow, KeyInfo, PurgeCounts, QueryError, StoredMessage, TableNames,
                   TransportStats, combine_stats, utc_from_ms)

BUSY_TIMEOUT_MS = 60_000  # how long a writer waits for another process's transaction
MESSAGE_COLUMNS = ("id", "type", "transport", "priority", "payload", "idempotency_key", "created_at")
KEY_COLUMNS = ("idempotency_key", "message_id", "content_hash", "transport", "created_at", "expires_at")
ATTEMPT_COLUMNS = ("idempotency_key", "attempted_at", "source", "line", "transport", "outcome", "message_id")


def quote(identifier: str) -> str:
    """Quote an SQLite identifier: wrap it in double quotes and double any inside."""
    return '"' + identifier.replace('"', '""') + '"'


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def schema_statements(tables: TableNames) -> list[str]:
    """Return the DDL, safe to run twice. A schema-qualified name is one SQLite table name."""
    messages, keys, attempts = (quote(_flat(tables, name)) for name in
                                (tables.messages, tables.keys, tables.attempts))
    index_prefix = _flat(tables, tables.messages)
    return [
        f"CREATE TABLE IF NOT EXISTS {messages} (\n"
        "    id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    type TEXT NOT NULL,\n"
        "    transport TEXT NOT NULL,\n"
        "    priority INTEGER NOT NULL,\n"
        "    payload TEXT NOT NULL,\n"
        "    idempotency_key TEXT,\n"
        "    status TEXT NOT NULL DEFAULT 'pending',\n"
        "    created_at INTEGER NOT NULL  -- milliseconds since the Unix epoch, UTC\n"
        ")",
        f"CREATE TABLE IF NOT EXISTS {keys} (\n"
        "    idempotency_key TEXT PRIMARY KEY,\n"
        "    message_id INTEGER,\n"
        "    content_hash TEXT,\n"
        "    transport TEXT,\n"
        "    created_at INTEGER NOT NULL,\n"
        "    expires_at INTEGER NOT NULL\n"
        ")",
        f"CREATE INDEX IF NOT EXISTS {quote(index_prefix + '_keys_expires_at')} ON {keys} (expires_at)",
        f"CREATE TABLE IF NOT EXISTS {attempts} (\n"
        "    id INTEGER PRIMARY KEY,\n"
        "    idempotency_key TEXT NOT NULL,\n"
        "    attempted_at INTEGER NOT NULL,\n"
        "    source TEXT NOT NULL,\n"
        "    line INTEGER NOT NULL,\n"
        "    transport TEXT NOT NULL,\n"
        "    outcome TEXT NOT NULL,\n"
        "    message_id INTEGER\n"
        ")",
        f"CREATE INDEX IF NOT EXISTS {quote(index_prefix + '_attempts_key')} "
        f"ON {attempts} (idempotency_key, attempted_at)",
        f"CREATE INDEX IF NOT EXISTS {quote(index_prefix + '_attempts_time')} ON {attempts} (attempted_at)",
    ]


def schema_sql(tables: TableNames) -> str:
    return "".join(statement + ";\n\n" for statement in schema_statements(tables))


def _flat(tables: TableNames, name: str) -> str:
    return f"{tables.schema}.{name}" if tables.schema else name


def _translate(error: sqlite3.Error, path: Path) -> Exception:
    text = str(error)
    if isinstance(error, sqlite3.OperationalError) and any(
            marker in text for marker in ("locked", "busy", "unable to open", "disk I/O", "readonly", "full")):
        return StoreError(f"SQLite database {path}: {text}")
    return QueryError(text)


class SQLiteStore:
    """The store on one SQLite file."""

    name = "sqlite"
    supports_batch_insert = True

    def __init__(self, path: Path, tables: TableNames, *, auto_create: bool = True,
                 clock: Callable[[], int] = now_ms) -> None:
        if _flat(tables, tables.messages).lower().startswith("sqlite_"):
            raise ConfigError(f"database.table {_flat(tables, tables.messages)!r} is invalid; SQLite reserves "
                              "names that start with sqlite_")
        self.path = path
        self.tables = tables
        self.clock = clock  # milliseconds since the epoch; tests pass a fixed clock
        self._transaction_now: int | None = None
        self._messages, self._keys, self._attempts = (
            quote(_flat(tables, name)) for name in (tables.messages, tables.keys, tables.attempts))
        self.connection = self._connect(create=auto_create)
        if not self._schema_exists():
            if not auto_create:
                raise SchemaMissingError(
                    f"SQLite database {path} has no table {_flat(tables, tables.messages)!r}; run "
                    "'symphony db init', or send with database.auto_create on")
            self.create_schema()

    def _connect(self, create: bool) -> sqlite3.Connection:
        if not create and not self.path.is_file():
            raise SchemaMissingError(f"SQLite database {self.path} does not exist; run 'symphony db init', "
                                     "or send with database.auto_create on")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The dispatcher's writer thread uses the connection; it is never used by two threads at once.
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                                         check_same_thread=False)
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")  # durable with WAL except on power loss
        except (sqlite3.Error, OSError) as error:
            raise StoreError(f"cannot open SQLite database {self.path}: {error}") from None
        return connection

    def _schema_exists(self) -> bool:
        row = self.connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?, ?)",
            [_flat(self.tables, name) for name in (self.tables.messages, self.tables.keys, self.tables.attempts)],
        ).fetchone()
        return row[0] == 3

    def create_schema(self) -> None:
        with self.transaction():
            for statement in schema_statements(self.tables):
                self.connection.execute(statement)

    @contextlib.contextmanager
    def transaction(self, read_only: bool = False) -> Iterator[None]:
        try:
            self.connection.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise _translate(error, self.path) from None
        # The clock is read once per transaction, like PostgreSQL's now(), so the pre-query and
        # the key claim agree on which keys expired even if the wall clock steps back between them.
        self._transaction_now = self.clock()
        try:
            try:
                yield
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            try:
                self.connection.execute("COMMIT")
            except sqlite3.Error as error:
                self.connection.execute("ROLLBACK")
                raise _translate(error, self.path) from None
        finally:
            self._transaction_now = None

    def _now(self) -> int:
        """Return the current transaction's time, or the clock's outside a transaction."""
        return self.clock() if self._transaction_now is None else self._transaction_now

    def _execute(self, sql: str, params: Sequence = ()) -> sqlite3.Cursor:
        try:
            return self.connection.execute(sql, params)
        except sqlite3.Error as error:
            raise _translate(error, self.path) from None

    def _rows_per_statement(self, columns: int, reserved: int = 0) -> int:
        # SQLITE_LIMIT_VARIABLE_NUMBER is a per-connection limit (32,766 by default since 3.32).
        limit = self.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return max(1, (limit - reserved) // columns)

    def _insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[tuple], suffix: str = "",
                     extra: Sequence = ()) -> None:
        """Insert rows with multi-row VALUES, as few statements as the variable limit allows."""
        per_statement = self._rows_per_statement(len(columns), reserved=len(extra))
        row_sql = "(" + ", ".join("?" * len(columns)) + ")"
        for start in range(0, len(rows), per_statement):
            batch = rows[start:start + per_statement]
            sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                   + ", ".join([row_sql] * len(batch)) + suffix)
            self._execute(sql, [value for row in batch for value in row] + list(extra))

    def find_existing_keys(self, keys: Sequence[str]) -> dict[str, StoredKey]:
        # json_each binds the whole key list as one parameter, so no variable limit applies.
        rows = self._execute(
            f"SELECT idempotency_key, message_id, content_hash FROM {self._keys} "
            "WHERE expires_at > ? AND idempotency_key IN (SELECT value FROM json_each(?))",
            (self._now(), json.dumps(list(keys))),
        )
        return {key: StoredKey(message_id, content_hash) for key, message_id, content_hash in rows}

    def insert_messages(self, messages: Sequence[Message], *, window_ms: int,
                        deduplicate: bool) -> list[int | None]:
        # The write lock (BEGIN IMMEDIATE) makes this the only writer, so ids can be assigned
        # here from AUTOINCREMENT's counter, which never reuses an id of a deleted message.
        now = self._now()
        row = self._execute("SELECT seq FROM sqlite_sequence WHERE name = ?",
                            (_flat(self.tables, self.tables.messages),)).fetchone()
        first_id = (row[0] if row else 0) + 1
        ids = list(range(first_id, first_id + len(messages)))
        self._insert_rows(self._messages, MESSAGE_COLUMNS, [
            (message_id, m.type, m.transport, m.priority, m.payload_json, m.idempotency_key, now)
            for message_id, m in zip(ids, messages)])
        if deduplicate:
            keyed = [(m.idempotency_key, message_id, m.content_hash, m.transport, now, now + window_ms)
                     for message_id, m in zip(ids, messages) if m.idempotency_key is not None]
            # The pre-query ran under the same write lock, so only expired keys can conflict here.
            self._insert_rows(self._keys, KEY_COLUMNS, keyed,
                              " ON CONFLICT (idempotency_key) DO UPDATE SET message_id = excluded.message_id, "
                              "content_hash = excluded.content_hash, transport = excluded.transport, "
                              f"created_at = excluded.created_at, expires_at = excluded.expires_at "
                              f"WHERE {self._keys}.expires_at <= ?", extra=(now,))
        return list(ids)

    def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        if not attempts:
            return
        now = self.clock()
        with self.transaction():
            self._insert_rows(self._attempts, ATTEMPT_COLUMNS, [
                (a.idempotency_key, now, a.source, a.line, a.transport, a.outcome, a.message_id)
                for a in attempts])

    def _attempt_rows(self, where: str, params: Sequence, limit: int) -> list[AttemptRow]:
        rows = self._execute(
            f"SELECT attempted_at, idempotency_key, source, line, transport, outcome, message_id "
            f"FROM {self._attempts} {where} ORDER BY attempted_at DESC, id DESC LIMIT ?", [*params, limit])
        return [AttemptRow(utc_from_ms(row[0]), *row[1:]) for row in rows]

    def inspect_key(self, key: str, limit: int) -> KeyInfo | None:
        row = self._execute(
            f"SELECT message_id, transport, created_at, expires_at FROM {self._keys} WHERE idempotency_key = ?",
            (key,)).fetchone()
        if row is None:
            return None
        message_id, transport, created_at, expires_at = row
        found = self._execute(
            f"SELECT id, type, transport, priority, created_at FROM {self._messages} WHERE id = ?",
            (message_id,)).fetchone()
        message = StoredMessage(*found[:4], utc_from_ms(found[4])) if found else None
        attempts = self._attempt_rows("WHERE idempotency_key = ?", (key,), limit)
        return KeyInfo(key, message_id, transport, utc_from_ms(created_at), utc_from_ms(expires_at),
                       expires_at > self.clock(), message, attempts)

    def _start_of(self, within: dt.timedelta | None) -> int:
        return self.clock() - int(within.total_seconds() * 1000) if within is not None else 0

    def list_attempts(self, within: dt.timedelta | None, transport: str | None, outcome: str | None,
                      limit: int) -> list[AttemptRow]:
        conditions, params = ["attempted_at >= ?"], [self._start_of(within)]
        if transport:
            conditions.append("transport = ?")
            params.append(transport)
        if outcome:
            conditions.append("outcome = ?")
            params.append(outcome)
        return self._attempt_rows("WHERE " + " AND ".join(conditions), params, limit)

    def stats(self, within: dt.timedelta | None) -> list[TransportStats]:
        start = self._start_of(within)
        sent = dict(self._execute(
            f"SELECT transport, count(*) FROM {self._messages} WHERE created_at >= ? GROUP BY transport", (start,)))
        outcome_counts = self._execute(
            f"SELECT transport, outcome, count(*) FROM {self._attempts} WHERE attempted_at >= ? "
            "GROUP BY transport, outcome", (start,))
        return combine_stats(sent, outcome_counts)

    def purge(self, attempts_older_than: dt.timedelta) -> PurgeCounts:
        with self.transaction():
            keys = self._execute(f"DELETE FROM {self._keys} WHERE expires_at <= ?", (self.clock(),)).rowcount
            attempts = self._execute(f"DELETE FROM {self._attempts} WHERE attempted_at < ?",
                                     (self._start_of(attempts_older_than),)).rowcount
        return PurgeCounts(keys, attempts)

    @contextlib.contextmanager
    def hold_lock(self, name: str) -> Iterator[None]:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        lock_path = self.path.with_name(f"{self.path.name}.lock-{digest}")
        with open(lock_path, "a+") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockedError(f"another run holds the lock {name!r} ({lock_path}); "
                                  "wait for it to finish or use another --lock name") from None
            lock_file.seek(0)
            lock_file.truncate()
            lock_file.write(f"{os.getpid()}\n")
            lock_file.flush()
            yield

    def close(self) -> None:
        self.connection.close()
