"""The Python API: `dispatch` and `dispatch_batch`, with the CLI's semantics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from .config import SPECS_BY_KEY, Settings, load_settings
from .dedup import KeySource
from .dispatcher import Dispatcher, SendOptions
from .readers import Record
from .results import Result, RunSummary
from .errors import ConfigError, SchemaMissingError
from .stores import open_empty_store, open_store
from .stores.base import Store

logger = logging.getLogger(__name__)

KeyCallable = Callable[[Mapping[str, Any], int], "str | None"]


def send_records(records: Iterable[Record], settings: Settings, options: SendOptions,
                 on_result: Callable[[Result], None], *, should_stop: Callable[[], bool] = lambda: False,
                 lock: str | None = None, store: Store | None = None,
                 summary: RunSummary | None = None,
                 shield: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext) -> RunSummary:
    """Open the store (unless given), hold the optional lock and send every record.

    Pass `summary` to read the counts even when the run ends with an exception.
    """
    with contextlib.ExitStack() as stack:
        if store is None:
            store = _open_store_for(settings, options)
            stack.callback(store.close)
        if lock and not options.dry_run:  # a dry run writes nothing, so it needs no lock
            stack.enter_context(store.hold_lock(lock))
        return Dispatcher(store, settings, options, on_result, should_stop, summary, shield).run(records)


def _open_store_for(settings: Settings, options: SendOptions) -> Store:
    """Open the store; a dry run creates no tables and compares against empty ones if there are none."""
    if not options.dry_run:
        return open_store(settings)
    try:
        return open_store(settings.replace(auto_create=False))
    except SchemaMissingError:
        logger.info("the store has no tables yet, so the dry run compares against an empty store")
        return open_empty_store()


def dispatch_batch(
    messages: Iterable[Mapping[str, Any]],
    priority: int | None = None,
    transport: str | None = None,
    idempotency_key: KeyCallable | None = None,
    *,
    settings: Settings | None = None,
    key_source: KeySource = KeySource(),
    dry_run: bool = False,
    store: Store | None = None,
) -> list[Result]:
    """Enqueue messages and return one Result per message, in input order.

    `priority` and `transport` apply to messages that omit them. `idempotency_key` is called
    as idempotency_key(message, index) and its return value replaces the message's key; if
    it raises, that message is invalid. Settings default to the configuration file and
    SYMPHONY_* environment variables, as for the CLI. A Result's `line` is the message's
    1-based position in `messages`. Raises TypeError for arguments of the wrong type and
    ConfigError for an invalid priority or transport.
    """
    if isinstance(messages, (Mapping, str, bytes)):
        raise TypeError(f"messages must be an iterable of mappings, not one {type(messages).__name__}")
    if idempotency_key is not None and not callable(idempotency_key):
        raise TypeError("idempotency_key must be a callable(message, index); use dispatch() for one fixed key")
    settings = _with_defaults(settings or load_settings(), priority, transport)

    def records() -> Iterable[Record]:
        for index, message in enumerate(messages):
            yield _record(index, message, idempotency_key)

    collected: list[Result] = []
    options = SendOptions(key_source=key_source, dry_run=dry_run, source_name="api")
    send_records(records(), settings, options, collected.append, store=store)
    return sorted(collected, key=lambda result: result.line)


def dispatch(message: Mapping[str, Any], idempotency_key: str | None = None, *, priority: int | None = None,
             transport: str | None = None, settings: Settings | None = None, store: Store | None = None) -> Result:
    """Enqueue one message and return its Result; `idempotency_key` replaces the message's own key."""
    key_function = (lambda _message, _index: idempotency_key) if idempotency_key is not None else None
    return dispatch_batch([message], priority, transport, key_function, settings=settings, store=store)[0]


def _with_defaults(settings: Settings, priority: int | None, transport: str | None) -> Settings:
    """Return settings whose default priority and transport are the given ones, validated like flags."""
    flags = {"defaults.priority": (priority, "priority="), "defaults.transport": (transport, "transport=")}
    overrides = {}
    for key, (value, name) in flags.items():
        if value is not None:
            spec = SPECS_BY_KEY[key]
            try:
                overrides[spec.attribute] = spec.parse(value)
            except ValueError as error:
                raise ConfigError(f"{name} {value!r} is invalid: {error}") from None
    return settings.replace(**overrides) if overrides else settings


def _record(index: int, message: Any, key_function: KeyCallable | None) -> Record:
    line = index + 1
    if not isinstance(message, Mapping):
        return Record(line, None, f"message must be a mapping (a JSON object), found {type(message).__name__}")
    if key_function is None:
        return Record(line, message)  # read only, so the caller's mapping needs no copy
    try:
        key = key_function(message, index)
    except Exception as error:  # the caller's code: its failure is this message's error
        return Record(line, None, f"the idempotency_key callable raised {type(error).__name__}: {error}")
    fields = dict(message)
    fields["idempotency_key"] = key
    fields.pop("idempotencyKey", None)
    return Record(line, fields)
