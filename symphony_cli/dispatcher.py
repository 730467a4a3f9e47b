"""The send pipeline: validate, key, group by transport, chunk, deduplicate and insert.

Messages stream through: each transport has a buffer that is sent as one chunk when it
reaches max_batch_size, and the rest are sent at the end of the input. A chunk costs one
pre-query for its keys and one INSERT for the new messages, in one transaction. That
transaction runs on a writer thread while the main thread reads and validates the next chunk.

Duplicates inside the input never reach the store twice. While a key's first message
(its leader) waits in a buffer, later messages with that key wait beside it as followers
and take their result from the leader's: a duplicate of its id, or a conflict when their
content differs. Once the leader's chunk is committed, the store's pre-query finds the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager

from .config import Settings
from .dedup import KeySource, StoredKey, classify_existing, describe_existing, make_key_function
from .errors import InputError, StoreError
from .messages import InvalidMessage, Message, MessageDefaults, build_message
from .readers import Record
from .results import Result, RunSummary, Status
from .stores.base import Attempt, QueryError, RetryableError, Store

logger = logging.getLogger(__name__)

MAX_TRANSACTION_RETRIES = 5  # for deadlocks and serialization failures, which PostgreSQL documents as safe to retry
ATTEMPT_STATUSES = frozenset({Status.DUPLICATE, Status.REJECTED, Status.CONFLICT})
INTERRUPTED_ERROR = "not sent: the run was interrupted before this message's chunk was sent"


@dataclasses.dataclass(frozen=True)
class SendOptions:
    """Per-run choices that are not settings."""

    key_source: KeySource = KeySource()
    dry_run: bool = False
    max_errors: int | None = None  # stop after this many invalid, rejected, conflict or failed messages
    source_name: str = "api"  # recorded with each attempt: the input file, "<stdin>" or "api"


class DedupCheckError(Exception):
    """The duplicate pre-query failed while the connection is still usable."""


@dataclasses.dataclass(slots=True)
class Outcome:
    message: Message
    status: Status
    message_id: int | None = None
    error: str | None = None
    stored: StoredKey | None = None  # what the key points to after this chunk


class Dispatcher:
    """Send records to a store and report one Result per record through `on_result`."""

    def __init__(self, store: Store, settings: Settings, options: SendOptions,
                 on_result: Callable[[Result], None], should_stop: Callable[[], bool] = lambda: False,
                 summary: RunSummary | None = None,
                 shield: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext) -> None:
        self.store = store
        self.settings = settings
        self.options = options
        self.on_result = on_result
        self.should_stop = should_stop
        self.shield = shield  # defers a stop request (SIGINT, SIGTERM) while a message or chunk is handled
        self.key_of = make_key_function(options.key_source)
        self.defaults = MessageDefaults(settings.default_transport, settings.default_priority,
                                        settings.validate_before_send)
        batch = settings.use_batch_insert and store.supports_batch_insert
        self.chunk_size = settings.max_batch_size if batch else 1
        self.summary = summary if summary is not None else RunSummary()
        self.buffers: dict[str, list[Message]] = {}
        self.pending: dict[str, Message] = {}  # key -> its leader, waiting in a buffer
        self.followers: dict[str, list[Message]] = {}
        self.dry_run_keys: dict[str, StoredKey] = {}  # NOTE: grows with the distinct keys of a dry run
        # One writer thread runs the store's transactions, so that the main thread validates
        # and groups the next chunk while the store works on the current one. At most one
        # chunk is in flight, and only the writer thread touches the store during a run.
        self._writer: ThreadPoolExecutor | None = None
        self._inflight: tuple[str, list[Message], Future[list[Outcome]]] | None = None
        self._attempts_job: Future[None] | None = None

    # -- reading and buffering

    def run(self, records: Iterable[Record]) -> RunSummary:
        """Send every record and return the summary; stop early on should_stop or max_errors.

        Every message read before the run stops gets a result. A KeyboardInterrupt (a
        second signal, or one while waiting for input) reports the buffered messages as
        not sent and is raised again.
        """
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="symphony-writer")
        try:
            try:
                self._read(records)
            except InputError:
                self.summary.stopped_reason = "the rest of the input cannot be read"
                with self.shield():
                    self.flush_all()  # the messages read before the unreadable part still go in
                raise
            with self.shield():
                if self.summary.stopped_reason == "interrupted":
                    self._abandon_buffers(INTERRUPTED_ERROR)
                else:
                    self.flush_all()
        except StoreError as error:
            self._abandon_buffers(f"not sent: {error}")
            raise
        except KeyboardInterrupt:
            self.summary.stopped_reason = "interrupted"
            self._abandon_buffers(INTERRUPTED_ERROR)
            raise
        finally:
            self._writer.shutdown(wait=True)  # a transaction in flight commits or rolls back first
            self.summary.finish()
        return self.summary

    def _read(self, records: Iterable[Record]) -> None:
        # Outside the shield only while waiting for the next record, where an interrupt loses nothing.
        for record in records:
            with self.shield():
                if self.should_stop():
                    self.summary.stopped_reason = "interrupted"
                    return
                if self._max_errors_reached():
                    count = self.summary.error_count
                    noun = "message" if count == 1 else "messages"
                    self.summary.stopped_reason = f"{count} {noun} not enqueued (--max-errors)"
                    return
                self.add(record)

    def add(self, record: Record) -> None:
        if record.error is not None:
            self._emit(Result(record.line, Status.INVALID, error=record.error))
            return
        try:
            message = build_message(record.fields, record.line, self.defaults)
            message.idempotency_key = self.key_of(message)
        except InvalidMessage as error:
            self._emit(_invalid_result(record, str(error)))
            return
        self._enqueue(message)

    def _enqueue(self, message: Message, *, flush: bool = True) -> None:
        key = message.idempotency_key
        if key is not None:
            if key in self.pending:
                self.followers.setdefault(key, []).append(message)
                return
            self.pending[key] = message
        buffer = self.buffers.setdefault(message.transport, [])
        buffer.append(message)
        if flush and len(buffer) >= self.chunk_size:
            self.flush(message.transport)

    def flush_all(self) -> None:
        """Send every buffered chunk, but after a stop request report the remaining ones as not sent."""
        while self.buffers:
            if self.should_stop():
                self.summary.stopped_reason = "interrupted"
                self._abandon_buffers(INTERRUPTED_ERROR)
                return
            self.flush(next(iter(self.buffers)))
        self._settle_inflight()
        self._wait_for_attempts()

    def flush(self, transport: str) -> None:
        """Hand up to one chunk of the transport's buffer to the writer; what is left stays buffered.

        The chunk in flight before it is reported first, so at most one chunk is in flight.
        """
        buffer = self.buffers.pop(transport, [])
        chunk, rest = buffer[:self.chunk_size], buffer[self.chunk_size:]
        if rest:
            self.buffers[transport] = rest
        if not chunk:
            return
        self._settle_inflight()
        if self.should_stop():  # a stop requested meanwhile: this chunk stays unsent, and is reported so
            self.buffers[transport] = chunk + self.buffers.get(transport, [])
            return
        self._inflight = (transport, chunk, self._writer.submit(self._write, chunk))

    def _settle_inflight(self) -> None:
        """Wait for the chunk in flight, if any, and report its results."""
        if self._inflight is None:
            return
        transport, chunk, job = self._inflight
        try:
            outcomes = job.result()
        except StoreError as error:
            self._inflight = None
            self._abandon_chunk(chunk, f"not sent: {error}")
            raise
        self._inflight = None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("chunk of %d %s messages (lines %d-%d): %s", len(chunk), transport, chunk[0].line,
                         chunk[-1].line, _count_statuses(outcomes))
        reports = [self._report(outcome) for outcome in outcomes]
        for outcome in outcomes:
            reports += self._resolve_followers(outcome)
        for result, _ in sorted(reports, key=lambda report: report[0].line):
            self._emit(result)
        attempts = [attempt for _, attempt in reports if attempt is not None]
        if attempts and self.settings.track_attempts and not self.options.dry_run:
            self._wait_for_attempts()
            self._attempts_job = self._writer.submit(self._record_attempts, attempts)

    def _wait_for_attempts(self) -> None:
        """Raise the error, if any, of the last attempts job, which runs on the writer thread."""
        job, self._attempts_job = self._attempts_job, None
        if job is not None:
            job.result()

    def _max_errors_reached(self) -> bool:
        limit = self.options.max_errors
        return limit is not None and self.summary.error_count >= limit

    # -- writing one chunk

    def _write(self, chunk: list[Message]) -> list[Outcome]:
        """Write a chunk. On a data error, split the chunk until the failing message is alone."""
        for _ in range(MAX_TRANSACTION_RETRIES):
            try:
                return self._write_once(chunk)
            except RetryableError as error:
                logger.debug("retrying a chunk of %d messages after: %s", len(chunk), error)
            except DedupCheckError as error:
                return self._handle_dedup_failure(chunk, str(error))
            except QueryError as error:
                if len(chunk) == 1:
                    return [Outcome(chunk[0], Status.FAILED, error=f"the store rejected the message: {error}")]
                logger.debug("isolating the failing message in a chunk of %d: %s", len(chunk), error)
                middle = len(chunk) // 2
                return self._write(chunk[:middle]) + self._write(chunk[middle:])
        reason = f"not sent: the transaction failed {MAX_TRANSACTION_RETRIES} times on deadlocks or serialization"
        return [Outcome(message, Status.FAILED, error=reason) for message in chunk]

    def _write_once(self, chunk: list[Message]) -> list[Outcome]:
        keys = [message.idempotency_key for message in chunk if message.idempotency_key is not None]
        with self.store.transaction(read_only=self.options.dry_run):
            existing = self._find_existing(keys) if keys else {}
            outcomes, fresh = self._classify(chunk, existing)
            if self.options.dry_run:
                return outcomes + [self._would_send(message) for message in fresh]
            if not fresh:
                return outcomes
            ids = self.store.insert_messages(fresh, window_ms=self.settings.window_ms, deduplicate=True)
            lost = []
            for message, message_id in zip(fresh, ids, strict=True):
                if message_id is None:
                    lost.append(message)
                else:
                    outcomes.append(Outcome(message, Status.SENT, message_id, stored=_stored_key(message, message_id)))
            if lost:
                outcomes += self._classify_lost(lost)
        return outcomes

    def _find_existing(self, keys: list[str]) -> dict[str, StoredKey]:
        try:
            return self.store.find_existing_keys(keys)
        except QueryError as error:
            raise DedupCheckError(str(error)) from None

    def _classify(self, chunk: list[Message], existing: dict[str, StoredKey]) -> tuple[list[Outcome], list[Message]]:
        outcomes, fresh = [], []
        for message in chunk:
            key = message.idempotency_key
            stored = existing.get(key) or self.dry_run_keys.get(key) if key is not None else None
            if stored is None:
                fresh.append(message)
            else:
                outcomes.append(self._existing_outcome(message, stored))
        return outcomes, fresh

    def _existing_outcome(self, message: Message, stored: StoredKey) -> Outcome:
        status = classify_existing(message, stored, self.settings.reject_duplicates)
        error = describe_existing(status, stored, message.idempotency_key)
        return Outcome(message, status, stored.message_id, error, stored)

    def _classify_lost(self, lost: list[Message]) -> list[Outcome]:
        """Classify messages whose keys a concurrent importer claimed after the pre-query."""
        winners = self.store.find_existing_keys([message.idempotency_key for message in lost])
        outcomes = []
        for message in lost:
            stored = winners.get(message.idempotency_key)
            if stored is None:  # the winner's key expired in between: rare, and a rerun sends it
                outcomes.append(Outcome(message, Status.FAILED, error="not sent: a concurrent import claimed the "
                                        "key and its window ended meanwhile; send the message again"))
            else:
                outcomes.append(self._existing_outcome(message, stored))
        return outcomes

    def _would_send(self, message: Message) -> Outcome:
        stored = StoredKey(None, message.content_hash)
        if message.idempotency_key is not None:
            self.dry_run_keys[message.idempotency_key] = stored
        return Outcome(message, Status.WOULD_SEND, stored=stored)

    def _handle_dedup_failure(self, chunk: list[Message], reason: str) -> list[Outcome]:
        if self.settings.on_dedup_error == "fail" or self.options.dry_run:
            error = f"not sent: the duplicate check failed, so no message of this chunk was written: {reason}"
            return [Outcome(message, Status.FAILED, error=error) for message in chunk]
        logger.warning("the duplicate check failed for a chunk of %d messages (lines %d-%d); sending them without "
                       "deduplication (deduplication.on_error = send): %s",
                       len(chunk), chunk[0].line, chunk[-1].line, reason)
        with self.store.transaction():
            ids = self.store.insert_messages(chunk, window_ms=self.settings.window_ms, deduplicate=False)
        note = f"sent without deduplication because the duplicate check failed: {reason}"
        return [Outcome(message, Status.SENT, message_id, note, _stored_key(message, message_id))
                for message, message_id in zip(chunk, ids, strict=True)]

    # -- reporting

    def _report(self, outcome: Outcome) -> tuple[Result, Attempt | None]:
        message = outcome.message
        result = Result(message.line, outcome.status, outcome.message_id, message.idempotency_key,
                        message.transport, message.type, outcome.error)
        return result, self._attempt(message, outcome.status, outcome.message_id)

    def _resolve_followers(self, outcome: Outcome) -> list[tuple[Result, Attempt | None]]:
        key = outcome.message.idempotency_key
        if key is None:
            return []
        self.pending.pop(key, None)
        followers = self.followers.pop(key, [])
        if not followers:
            return []
        if outcome.stored is None:  # the leader failed, so the next message with its key goes in its place
            leader, *rest = followers
            if rest:
                self.followers[key] = rest
            self._enqueue(leader, flush=False)  # sent with a later chunk: no flush inside this one
            return []
        return [self._report(self._existing_outcome(follower, outcome.stored)) for follower in followers]

    def _attempt(self, message: Message, status: Status, message_id: int | None) -> Attempt | None:
        if status not in ATTEMPT_STATUSES or message.idempotency_key is None:
            return None
        return Attempt(message.idempotency_key, self.options.source_name, message.line, message.transport,
                       status.value, message_id)

    def _record_attempts(self, attempts: list[Attempt]) -> None:
        try:
            self.store.record_attempts(attempts)
        except QueryError as error:
            logger.warning("could not record %d duplicate attempts: %s", len(attempts), error)

    def _emit(self, result: Result) -> None:
        self.summary.add(result)
        self.on_result(result)

    def _abandon_chunk(self, chunk: list[Message], reason: str) -> None:
        """Report a chunk that the store did not write, and the messages waiting on its keys."""
        waiting = list(chunk)
        for message in chunk:
            if message.idempotency_key is not None:
                self.pending.pop(message.idempotency_key, None)
                waiting += self.followers.pop(message.idempotency_key, [])
        self._report_unsent(waiting, reason)

    def _abandon_buffers(self, reason: str) -> None:
        """Report every message still buffered as failed, so no read message goes unreported.

        The chunk in flight is waited for first and reported with the store's results.
        """
        with contextlib.suppress(StoreError):  # its messages are then reported by _settle_inflight
            self._settle_inflight()
        waiting = [message for buffer in self.buffers.values() for message in buffer]
        waiting += [message for followers in self.followers.values() for message in followers]
        self.buffers.clear()
        self.followers.clear()
        self.pending.clear()
        self._report_unsent(waiting, reason)

    def _report_unsent(self, messages: list[Message], reason: str) -> None:
        for message in sorted(messages, key=lambda m: m.line):
            self._emit(Result(message.line, Status.FAILED, None, message.idempotency_key, message.transport,
                              message.type, reason))


def _stored_key(message: Message, message_id: int) -> StoredKey | None:
    """Return what the message's key points to once it is sent; a message without a key needs no hash."""
    return StoredKey(message_id, message.content_hash) if message.idempotency_key is not None else None


def _count_statuses(outcomes: list[Outcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
    return ", ".join(f"{count} {status}" for status, count in counts.items())


def _invalid_result(record: Record, error: str) -> Result:
    fields = record.fields or {}
    texts = {name: fields.get(name) if isinstance(fields.get(name), str) else None
             for name in ("type", "transport", "idempotency_key")}
    return Result(record.line, Status.INVALID, None, texts["idempotency_key"], texts["transport"],
                  texts["type"], error)
