"""The store contract that the SQLite and PostgreSQL stores both implement.

A store owns three tables, all named after `database.table` (T):
T (the outbox messages), T_keys (one row per idempotency key with its expiry and the
content hash of its message) and T_attempts (duplicate, rejected and conflict attempts).
Messages may be deleted from T by the workers that drain it; T_keys keeps deduplicating
for the whole window regardless.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from ..dedup import StoredKey
from ..errors import ConfigError
from ..messages import Message

KEYS_SUFFIX = "_keys"
ATTEMPTS_SUFFIX = "_attempts"


class RetryableError(Exception):
    """The transaction was rolled back by a deadlock or serialization failure; retrying it may succeed."""


class QueryError(Exception):
    """A statement failed because of its data or the schema, while the connection is still usable.

    The dispatcher isolates the message that caused it; connection-level failures raise
    errors.StoreError instead and end the run.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class TableNames:
    """The store's table names: an optional schema and the message table's name."""

    schema: str | None
    messages: str

    @property
    def keys(self) -> str:
        return self.messages + KEYS_SUFFIX

    @property
    def attempts(self) -> str:
        return self.messages + ATTEMPTS_SUFFIX

    @classmethod
    def parse(cls, setting: str) -> TableNames:
        """Split `schema.table` or `table`; raise ConfigError for anything else."""
        parts = setting.split(".")
        if len(parts) > 2 or not all(part.strip() for part in parts):
            raise ConfigError(f"database.table {setting!r} is invalid; write TABLE or SCHEMA.TABLE")
        return cls(parts[0], parts[1]) if len(parts) == 2 else cls(None, parts[0])


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """A duplicate, rejected or conflict attempt to record."""

    idempotency_key: str
    source: str  # input file name, "<stdin>" or "api"
    line: int
    transport: str
    outcome: str
    message_id: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptRow:
    """A recorded attempt, as read back."""

    attempted_at: dt.datetime
    idempotency_key: str
    source: str
    line: int
    transport: str
    outcome: str
    message_id: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    type: str
    transport: str
    priority: int
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class KeyInfo:
    """Everything `dedup inspect` shows about one key."""

    idempotency_key: str
    message_id: int | None
    transport: str | None
    created_at: dt.datetime
    expires_at: dt.datetime
    active: bool
    message: StoredMessage | None  # None once a worker has deleted the message
    attempts: list[AttemptRow]


@dataclasses.dataclass(frozen=True, slots=True)
class TransportStats:
    transport: str
    sent: int
    duplicates: int
    rejected: int
    conflicts: int

    @property
    def duplicate_rate(self) -> float:
        """Return duplicate and rejected attempts as a share of all messages offered."""
        repeats = self.duplicates + self.rejected
        offered = self.sent + repeats + self.conflicts
        return repeats / offered if offered else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class PurgeCounts:
    keys: int
    attempts: int


class Store(Protocol):
    """Operations every store offers; each method runs inside `transaction()` unless its docstring states otherwise."""

    name: str  # "sqlite" or "postgresql"
    supports_batch_insert: bool

    def transaction(self) -> AbstractContextManager[None]:
        """Open a transaction that commits on success and rolls back on any exception."""

    def find_existing_keys(self, keys: Sequence[str]) -> dict[str, StoredKey]:
        """Return the keys among `keys` that are active (inside their window) in one query."""

    def insert_messages(self, messages: Sequence[Message], *, window_ms: int,
                        deduplicate: bool) -> list[int | None]:
        """Insert the messages and claim their keys; return each message's new id.

        The id is None for a message whose key another transaction claimed since the
        pre-query (the caller looks the key up again). With deduplicate=False no key is
        claimed or checked.
        """

    def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        """Insert the attempts in one statement, in a transaction of their own."""

    def inspect_key(self, key: str, limit: int) -> KeyInfo | None: ...

    def list_attempts(self, within: dt.timedelta | None, transport: str | None, outcome: str | None,
                      limit: int) -> list[AttemptRow]:
        """Return recorded attempts newest first; `within` counts back from the store's clock."""

    def stats(self, within: dt.timedelta | None) -> list[TransportStats]: ...

    def purge(self, attempts_older_than: dt.timedelta) -> PurgeCounts:
        """Delete expired keys and older attempts in one transaction; never touch an active key."""

    def create_schema(self) -> None: ...

    def hold_lock(self, name: str) -> AbstractContextManager[None]:
        """Hold a named lock for the run, or raise LockedError at once when another run holds it."""

    def close(self) -> None: ...


def combine_stats(sent: dict[str, int], outcome_counts: Iterable[tuple[str, str, int]]) -> list[TransportStats]:
    """Merge messages sent per transport with (transport, outcome, count) rows of attempts."""
    outcomes: dict[str, dict[str, int]] = {}
    for transport, outcome, count in outcome_counts:
        outcomes.setdefault(transport, {})[outcome] = count
    return [TransportStats(transport, sent.get(transport, 0), outcomes.get(transport, {}).get("duplicate", 0),
                           outcomes.get(transport, {}).get("rejected", 0), outcomes.get(transport, {}).get("conflict", 0))
            for transport in sorted(set(sent) | set(outcomes))]


def utc_from_ms(milliseconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(milliseconds / 1000, tz=dt.timezone.utc)
