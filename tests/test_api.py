"""The Python API's argument handling, on SQLite."""

from __future__ import annotations

import datetime as dt

import pytest

from symphony_cli import Status, dispatch, dispatch_batch
from symphony_cli.errors import ConfigError


def test_priority_argument_validated(sqlite_backend):
    with pytest.raises(ConfigError, match="priority= 11 is invalid"):
        dispatch_batch([{"type": "A", "payload": {}}], priority=11, settings=sqlite_backend.settings())


def test_transport_argument_validated(sqlite_backend):
    with pytest.raises(ConfigError, match="transport= '' is invalid"):
        dispatch_batch([{"type": "A", "payload": {}}], transport="", settings=sqlite_backend.settings())


def test_defaults_apply_to_messages(sqlite_backend):
    dispatch_batch([{"type": "A", "payload": {}}], priority=9, transport="sms", settings=sqlite_backend.settings())
    assert sqlite_backend.query("SELECT transport, priority FROM {messages}") == [("sms", 9)]


@pytest.mark.parametrize("messages", [{"type": "A", "payload": {}}, "abc", b"abc"])
def test_single_mapping_or_text_rejected(sqlite_backend, messages):
    with pytest.raises(TypeError, match="iterable of mappings"):
        dispatch_batch(messages, settings=sqlite_backend.settings())


def test_key_argument_must_be_callable(sqlite_backend):
    with pytest.raises(TypeError, match="callable"):
        dispatch_batch([{"type": "A", "payload": {}}], idempotency_key="k", settings=sqlite_backend.settings())


def test_failing_key_callable_invalidates_message(sqlite_backend):
    def key_of(message, index):
        if index == 1:
            raise KeyError("order_id")
        return f"k{index}"

    results = dispatch_batch([{"type": "A", "payload": {"n": n}} for n in range(3)], idempotency_key=key_of,
                             settings=sqlite_backend.settings())
    assert [result.status for result in results] == [Status.SENT, Status.INVALID, Status.SENT]
    assert results[1].error == "the idempotency_key callable raised KeyError: 'order_id'"


def test_generator_input_accepted(sqlite_backend):
    results = dispatch_batch(({"type": "A", "payload": {"n": n}} for n in range(3)), settings=sqlite_backend.settings())
    assert [result.line for result in results] == [1, 2, 3]


def test_non_mapping_message_invalid(sqlite_backend):
    results = dispatch_batch([{"type": "A", "payload": {}}, ["not", "a", "mapping"]], settings=sqlite_backend.settings())
    assert [result.status for result in results] == [Status.SENT, Status.INVALID]
    assert results[1].error == "message must be a mapping (a JSON object), found list"


def test_python_value_in_payload_invalid(sqlite_backend):
    results = dispatch_batch([{"type": "A", "payload": {"at": dt.date(2026, 1, 1)}}, {"type": "A", "payload": {}}],
                             settings=sqlite_backend.settings())
    assert [result.status for result in results] == [Status.INVALID, Status.SENT]
    assert results[0].error.startswith("payload.at is a Python date")


def test_dispatch_takes_defaults(sqlite_backend):
    result = dispatch({"type": "A", "payload": {}}, priority=1, transport="push", settings=sqlite_backend.settings())
    assert result.transport == "push"
    assert sqlite_backend.query("SELECT priority FROM {messages}") == [(1,)]
