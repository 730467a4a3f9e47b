"""Key sources and duplicate classification, without a store."""

from __future__ import annotations

import pytest

from symphony_cli.dedup import KeySource, StoredKey, classify_existing, make_key_function
from symphony_cli.errors import ConfigError
from symphony_cli.messages import InvalidMessage, MessageDefaults, build_message
from symphony_cli.results import Status


def message(payload: dict, **fields):
    return build_message({"type": "Order", "payload": payload, **fields}, 1, MessageDefaults())


def test_default_source_uses_message_key():
    key_of = make_key_function(KeySource())
    assert key_of(message({}, idempotency_key="k1")) == "k1"


def test_field_source_reads_nested_path():
    key_of = make_key_function(KeySource(field="payload.order.id"))
    assert key_of(message({"order": {"id": 42}})) == "42"


def test_field_source_without_prefix():
    key_of = make_key_function(KeySource(field="order_id"))
    assert key_of(message({"order_id": "o-1"})) == "o-1"


def test_field_source_missing_field_invalid():
    key_of = make_key_function(KeySource(field="payload.order.id"))
    with pytest.raises(InvalidMessage, match="payload.order.id is missing"):
        key_of(message({"order": {}}))


def test_field_source_replaces_message_key():
    key_of = make_key_function(KeySource(field="payload.id"))
    assert key_of(message({"id": "p"}, idempotency_key="own")) == "p"


def test_template_fills_fields():
    key_of = make_key_function(KeySource(template="{type}:{transport}:{payload.order_id}"))
    assert key_of(message({"order_id": 7})) == "Order:default:7"


def test_template_missing_field_invalid():
    key_of = make_key_function(KeySource(template="{type}:{payload.order_id}"))
    with pytest.raises(InvalidMessage, match="payload.order_id is missing"):
        key_of(message({}))


def test_template_null_field_invalid():
    key_of = make_key_function(KeySource(template="{payload.order_id}"))
    with pytest.raises(InvalidMessage):
        key_of(message({"order_id": None}))


@pytest.mark.parametrize("template", ["no fields", "{payload.id:>10}", "{unclosed"])
def test_template_rejected_at_start(template):
    with pytest.raises(ConfigError):
        make_key_function(KeySource(template=template))


def test_content_key_is_stable():
    key_of = make_key_function(KeySource(from_content=True))
    first = key_of(message({"a": 1, "b": [1, 2]}))
    second = key_of(message({"b": [1, 2], "a": 1}))
    assert first == second
    assert first.startswith("sha256:")
    assert len(first) == len("sha256:") + 64


def test_two_sources_rejected():
    with pytest.raises(ConfigError, match="cannot be combined"):
        make_key_function(KeySource(field="payload.id", from_content=True))


def test_same_content_is_duplicate():
    candidate = message({"a": 1})
    assert classify_existing(candidate, StoredKey(3, candidate.content_hash), False) is Status.DUPLICATE


def test_same_content_rejected_when_configured():
    candidate = message({"a": 1})
    assert classify_existing(candidate, StoredKey(3, candidate.content_hash), True) is Status.REJECTED


def test_other_content_is_conflict():
    assert classify_existing(message({"a": 2}), StoredKey(3, message({"a": 1}).content_hash), False) is Status.CONFLICT
