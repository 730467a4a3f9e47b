"""The Python API: `dispatch` and `dispatch_batch`, with the CLI's semantics."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from .config import Settings, load_settings
from .dedup import KeySource
from .dispatcher import Dispatcher, SendOptions
from .readers import Record
from .results import Result, RunSummary
from .stores import open_store
from .stores.base import Store

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
            store = open_store(settings)
            stack.callback(store.close)
        if lock:
            stack.enter_context(store.hold_lock(lock))
        return Dispatcher(store, settings, options, on_result, should_stop, summary, shield).run(records)


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
    as idempotency_key(message, index) and its return value replaces the message's key.
    Settings default to the configuration file and SYMPHONY_* environment variables, as for
    the CLI. A Result's `line` is the message's 1-based position in `messages`.
    """
    settings = settings or load_settings()
    overrides: dict[str, Any] = {}
    if priority is not None:
        overrides["default_priority"] = priority
    if transport is not None:
        overrides["default_transport"] = transport
    settings = settings.replace(**overrides) if overrides else settings

    def records() -> Iterable[Record]:
        for index, message in enumerate(messages):
            if not isinstance(message, Mapping):
                yield Record(index + 1, None, f"message must be a mapping (a JSON object), found {type(message).__name__}")
                continue
            fields = dict(message)
            if idempotency_key is not None:
                fields["idempotency_key"] = idempotency_key(message, index)
                fields.pop("idempotencyKey", None)
            yield Record(index + 1, fields)

    collected: list[Result] = []
    options = SendOptions(key_source=key_source, dry_run=dry_run, source_name="api")
    send_records(records(), settings, options, collected.append, store=store)
    return sorted(collected, key=lambda result: result.line)


def dispatch(message: Mapping[str, Any], idempotency_key: str | None = None, *,
             settings: Settings | None = None, store: Store | None = None) -> Result:
    """Enqueue one message and return its Result; `idempotency_key` replaces the message's own key."""
    key_function = (lambda _message, _index: idempotency_key) if idempotency_key is not None else None
    return dispatch_batch([message], idempotency_key=key_function, settings=settings, store=store)[0]
