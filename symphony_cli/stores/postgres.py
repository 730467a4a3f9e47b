"""The production store: PostgreSQL through psycopg 3.

Deduplication is enforced by the database, not only by the pre-query: each key is claimed
with INSERT ... ON CONFLICT on the keys table's primary key, and an existing row is taken
over only when its window has passed, measured with the server's now(). Two importers
racing for one key therefore end with one message; the loser finds the winner's id.
Values travel as arrays (unnest), so a chunk of any size is one statement with nine
parameters, far from PostgreSQL's limit of 65,535 parameters per statement.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence

import psycopg
import psycopg.conninfo
from psycopg import sql

from ..config import mask_secrets, mask_url
from ..dedup import StoredKey
from ..errors import ConfigError, LockedError, SchemaMissingError, StoreError
from ..messages import Message
from .base import (Attempt, AttemptRow, KeyInfo, PurgeCounts, QueryError, RetryableError, StoredMessage,
                   TableNames, TransportStats, combine_stats)

# PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1); the longest derived
# name is the table name plus "_attempts_time", so longer names could collide.
MAX_TABLE_NAME_BYTES = 63 - len("_attempts_time")
SCHEMA_LOCK_ID = 0x73796D70  # "symp": serializes concurrent CREATE TABLE IF NOT EXISTS


# One statement per chunk. Ids come from the sequence inside `input`, so the key rows can
# point at their message in the same statement. `claimed` contains only the keys this
# transaction won. The final SELECT returns one id (or NULL) per input row, in order.
# The arrays go in binary (%b): psycopg's text format escapes every quote of every JSON
# payload with a regular expression, which took half of a chunk's time in a profile.
_INPUT = """
WITH input AS MATERIALIZED (
    SELECT t.*, nextval(%(sequence)s::regclass) AS id
    FROM unnest(%(ords)b::int[], %(types)b::text[], %(transports)b::text[], %(priorities)b::smallint[],
                %(payloads)b::text[], %(keys)b::text[], %(hashes)b::text[])
         AS t(ord, type, transport, priority, payload, key, hash)
)"""
_INSERT_WITH_KEYS = sql.SQL(_INPUT + """, claimed AS (
    INSERT INTO {keys} AS k (idempotency_key, message_id, content_hash, transport, created_at, expires_at)
    SELECT key, id, hash, transport, now(), now() + %(window_ms)s * interval '1 millisecond'
    FROM input WHERE key IS NOT NULL
    ORDER BY key  -- every importer locks keys in the same order, so two cannot deadlock
    ON CONFLICT (idempotency_key) DO UPDATE
        SET message_id = excluded.message_id, content_hash = excluded.content_hash,
            transport = excluded.transport, created_at = excluded.created_at, expires_at = excluded.expires_at
        WHERE k.expires_at <= now()
    RETURNING idempotency_key
), inserted AS (
    INSERT INTO {messages} (id, type, transport, priority, payload, idempotency_key)
    SELECT id, type, transport, priority, payload::jsonb, key FROM input
    WHERE key IS NULL OR key IN (SELECT idempotency_key FROM claimed)
    ORDER BY ord
    RETURNING id
)
SELECT inserted.id FROM input LEFT JOIN inserted ON inserted.id = input.id ORDER BY input.ord
""")
# The same without the keys table, for deduplication.on_error = send after a failed check.
_INSERT_WITHOUT_KEYS = sql.SQL(_INPUT + """, inserted AS (
    INSERT INTO {messages} (id, type, transport, priority, payload, idempotency_key)
    SELECT id, type, transport, priority, payload::jsonb, key FROM input
    ORDER BY ord
    RETURNING id
)
SELECT inserted.id FROM input LEFT JOIN inserted ON inserted.id = input.id ORDER BY input.ord
""")


def _translate(error: psycopg.Error) -> Exception:
    if isinstance(error, psycopg.errors.TransactionRollback):
        return RetryableError(describe_error(error))
    if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
        return StoreError(f"PostgreSQL: {mask_url(describe_error(error))}")
    return QueryError(describe_error(error))


def describe_error(error: psycopg.Error) -> str:
    """Return the error as one line, because it ends up in one result or one stderr line.

    A server error gives its primary message, detail, hint and context (which shows the
    rejected value). The statement excerpt and caret that str(error) adds are left out.
    A client error (no server message) has its lines joined.
    """
    diagnostic = error.diag
    if not diagnostic.message_primary:
        return _join_lines(str(error))
    text = diagnostic.message_primary
    if diagnostic.message_detail:  # detail and hint are sentences, so their final period is dropped
        text += f": {diagnostic.message_detail.rstrip('.')}"
    if diagnostic.message_hint:
        text += f"; hint: {diagnostic.message_hint.rstrip('.')}"
    if diagnostic.context:
        text += f"; context: {diagnostic.context}"
    return _join_lines(text)


def _join_lines(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def schema_statements(tables: TableNames) -> list[sql.Composable]:
    """Return the DDL, safe to run twice."""
    messages, keys, attempts = table_identifiers(tables)
    base = tables.messages
    statements: list[sql.Composable] = []
    if tables.schema:
        statements.append(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(tables.schema)))
    statements += [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (\n"
                "    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n"
                "    type text NOT NULL,\n"
                "    transport text NOT NULL,\n"
                "    priority smallint NOT NULL,\n"
                "    payload jsonb NOT NULL,\n"
                "    idempotency_key text,\n"
                "    status text NOT NULL DEFAULT 'pending',\n"
                "    created_at timestamptz NOT NULL DEFAULT now()\n"
                ")").format(messages),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (\n"
                "    idempotency_key text PRIMARY KEY,\n"
                "    message_id bigint,\n"
                "    content_hash text,\n"
                "    transport text,\n"
                "    created_at timestamptz NOT NULL,\n"
                "    expires_at timestamptz NOT NULL\n"
                ")").format(keys),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (expires_at)").format(
            sql.Identifier(base + "_keys_expires_at"), keys),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (\n"
                "    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
                "    idempotency_key text NOT NULL,\n"
                "    attempted_at timestamptz NOT NULL DEFAULT now(),\n"
                "    source text NOT NULL,\n"
                "    line integer NOT NULL,\n"
                "    transport text NOT NULL,\n"
                "    outcome text NOT NULL,\n"
                "    message_id bigint\n"
                ")").format(attempts),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (idempotency_key, attempted_at)").format(
            sql.Identifier(base + "_attempts_key"), attempts),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (attempted_at)").format(
            sql.Identifier(base + "_attempts_time"), attempts),
    ]
    return statements


def schema_sql(tables: TableNames) -> str:
    """Return the DDL as text for a DBA to review; needs no connection."""
    return "".join(statement.as_string(None) + ";\n\n" for statement in schema_statements(tables))


def table_identifiers(tables: TableNames) -> tuple[sql.Identifier, sql.Identifier, sql.Identifier]:
    """Return the quoted, schema-qualified names of the messages, keys and attempts tables."""
    return tuple(sql.Identifier(*filter(None, (tables.schema, name)))  # type: ignore[return-value]
                 for name in (tables.messages, tables.keys, tables.attempts))


class PostgresStore:
    """The store on a PostgreSQL database."""

    name = "postgresql"
    supports_batch_insert = True

    def __init__(self, url: str, tables: TableNames, *, auto_create: bool = True, connect_timeout: int = 10) -> None:
        for part in (tables.schema, tables.messages):
            if part is not None and len(part.encode()) > MAX_TABLE_NAME_BYTES:
                raise ConfigError(f"database.table {part!r} is longer than {MAX_TABLE_NAME_BYTES} bytes")
        self.tables = tables
        self._messages, self._keys, self._attempts = table_identifiers(tables)
        self.connection = self._connect(url, connect_timeout)
        if not self._schema_exists():
            if not auto_create:
                raise SchemaMissingError(
                    f"PostgreSQL table {self._messages.as_string(self.connection)} does not exist; run "
                    "'symphony db init' (or apply 'symphony db init --print-sql'), or send with database.auto_create on")
            try:
                self.create_schema()
            except QueryError:
                # Seen through PgBouncer: a concurrent importer's CREATE SCHEMA IF NOT EXISTS can
                # still fail with a unique violation despite the advisory lock. If the tables
                # exist now, another importer created them, which is all this one needs.
                if not self._schema_exists():
                    raise
        self._sequence = self._execute(
            "SELECT pg_get_serial_sequence(%s, 'id')", (self._messages.as_string(self.connection),)).fetchone()[0]

    @staticmethod
    def _connect(url: str, connect_timeout: int) -> psycopg.Connection:
        try:
            psycopg.conninfo.conninfo_to_dict(url)  # libpq's own parser: syntax and option names
        except psycopg.Error as error:
            raise ConfigError(f"database.url {mask_url(url)} is invalid: {mask_secrets(describe_error(error), url)}") from None
        # prepare_threshold=None: no server-side prepared statements, which a
        # transaction-mode pooler (PgBouncer pool_mode=transaction) would hand to another client.
        try:
            return psycopg.connect(url, autocommit=True, prepare_threshold=None, connect_timeout=connect_timeout)
        except psycopg.Error as error:
            raise StoreError(f"cannot connect to PostgreSQL at {mask_url(url)}: "
                             f"{mask_secrets(describe_error(error), url)}") from None

    def _execute(self, query: str | sql.Composable, params: Sequence | dict | None = None) -> psycopg.Cursor:
        try:
            return self.connection.execute(query, params)
        except psycopg.Error as error:
            raise _translate(error) from None

    def _schema_exists(self) -> bool:
        names = [name.as_string(self.connection) for name in (self._messages, self._keys, self._attempts)]
        row = self._execute("SELECT to_regclass(%s), to_regclass(%s), to_regclass(%s)", names).fetchone()
        return all(row)

    def create_schema(self) -> None:
        with self.transaction():
            self._execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
            for statement in schema_statements(self.tables):
                self._execute(statement)

    @contextlib.contextmanager
    def transaction(self, read_only: bool = False) -> Iterator[None]:
        try:
            with self.connection.transaction():
                if read_only:
                    self._execute("SET TRANSACTION READ ONLY")
                yield
        except psycopg.Error as error:
            raise _translate(error) from None

    def find_existing_keys(self, keys: Sequence[str]) -> dict[str, StoredKey]:
        # One primary-key probe per key. With `idempotency_key = ANY(...)` a keys table without
        # statistics (a new table before autovacuum analyzes it) is planned as a scan of every
        # active key, so each chunk of a first large import read the whole table again.
        # LIMIT 1 keeps the planner from turning the probes into a join on that scan.
        rows = self._execute(sql.SQL(
            "SELECT k.idempotency_key, k.message_id, k.content_hash FROM unnest(%b::text[]) AS wanted(key), "
            "LATERAL (SELECT idempotency_key, message_id, content_hash FROM {} "
            "WHERE idempotency_key = wanted.key AND expires_at > now() LIMIT 1) AS k").format(self._keys),
            (list(keys),))
        return {key: StoredKey(message_id, content_hash) for key, message_id, content_hash in rows.fetchall()}

    def insert_messages(self, messages: Sequence[Message], *, window_ms: int,
                        deduplicate: bool) -> list[int | None]:
        query = (_INSERT_WITH_KEYS if deduplicate else _INSERT_WITHOUT_KEYS).format(
            keys=self._keys, messages=self._messages)
        params = {
            "sequence": self._sequence,
            "ords": list(range(len(messages))),
            "types": [m.type for m in messages],
            "transports": [m.transport for m in messages],
            "priorities": [m.priority for m in messages],
            "payloads": [m.payload_json for m in messages],
            "keys": [m.idempotency_key for m in messages],
            "hashes": [m.content_hash if m.idempotency_key is not None else None for m in messages],
            "window_ms": window_ms,
        }
        return [row[0] for row in self._execute(query, params).fetchall()]  # fetchall loads the rows in C

    def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        if not attempts:
            return
        query = sql.SQL(
            "INSERT INTO {} (idempotency_key, source, line, transport, outcome, message_id) "
            "SELECT * FROM unnest(%b::text[], %b::text[], %b::int[], %b::text[], %b::text[], %b::bigint[])"
        ).format(self._attempts)
        columns = list(zip(*((a.idempotency_key, a.source, a.line, a.transport, a.outcome, a.message_id)
                             for a in attempts)))
        with self.transaction():
            self._execute(query, [list(column) for column in columns])

    def _attempt_rows(self, where: sql.Composable, params: Sequence, limit: int) -> list[AttemptRow]:
        rows = self._execute(sql.SQL(
            "SELECT attempted_at, idempotency_key, source, line, transport, outcome, message_id "
            "FROM {} WHERE {} ORDER BY attempted_at DESC, id DESC LIMIT %s").format(self._attempts, where),
            [*params, limit])
        return [AttemptRow(*row) for row in rows]

    def inspect_key(self, key: str, limit: int) -> KeyInfo | None:
        row = self._execute(sql.SQL(
            "SELECT message_id, transport, created_at, expires_at, expires_at > now() FROM {} "
            "WHERE idempotency_key = %s").format(self._keys), (key,)).fetchone()
        if row is None:
            return None
        found = self._execute(sql.SQL(
            "SELECT id, type, transport, priority, created_at FROM {} WHERE id = %s").format(self._messages),
            (row[0],)).fetchone()
        attempts = self._attempt_rows(sql.SQL("idempotency_key = %s"), (key,), limit)
        return KeyInfo(key, *row, StoredMessage(*found) if found else None, attempts)

    def list_attempts(self, within: dt.timedelta | None, transport: str | None, outcome: str | None,
                      limit: int) -> list[AttemptRow]:
        conditions, params = [sql.SQL("true")], []
        if within:
            conditions.append(sql.SQL("attempted_at >= now() - %s"))
            params.append(within)
        if transport:
            conditions.append(sql.SQL("transport = %s"))
            params.append(transport)
        if outcome:
            conditions.append(sql.SQL("outcome = %s"))
            params.append(outcome)
        return self._attempt_rows(sql.SQL(" AND ").join(conditions), params, limit)

    def stats(self, within: dt.timedelta | None) -> list[TransportStats]:
        start = sql.SQL("now() - %s::interval") if within else sql.SQL("'-infinity'::timestamptz")
        params = [within] if within else []
        sent = dict(self._execute(sql.SQL(
            "SELECT transport, count(*) FROM {} WHERE created_at >= {} GROUP BY transport").format(
                self._messages, start), params).fetchall())
        outcome_counts = self._execute(sql.SQL(
            "SELECT transport, outcome, count(*) FROM {} WHERE attempted_at >= {} "
            "GROUP BY transport, outcome").format(self._attempts, start), params)
        return combine_stats(sent, outcome_counts)

    def purge(self, attempts_older_than: dt.timedelta) -> PurgeCounts:
        # Under READ COMMITTED, a key that an importer reclaims meanwhile is re-checked
        # against expires_at <= now() after the importer commits, so an active key survives.
        with self.transaction():
            keys = self._execute(sql.SQL("DELETE FROM {} WHERE expires_at <= now()").format(self._keys)).rowcount
            attempts = self._execute(sql.SQL("DELETE FROM {} WHERE attempted_at < now() - %s").format(
                self._attempts), (attempts_older_than,)).rowcount
        return PurgeCounts(keys, attempts)

    @contextlib.contextmanager
    def hold_lock(self, name: str) -> Iterator[None]:
        # NOTE: this is a session-level advisory lock. Behind a transaction-mode pooler it can
        # land on a server connection that other clients share, so --lock needs a direct connection.
        acquired = self._execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)).fetchone()[0]
        if not acquired:
            raise LockedError(f"another run holds the lock {name!r}; wait for it to finish or use another --lock name")
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                self.connection.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))

    def close(self) -> None:
        self.connection.close()
