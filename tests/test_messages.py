"""Validation of one message's fields, without a store."""

from __future__ import annotations

import pytest

from symphony_cli.messages import (MAX_KEY_LENGTH, InvalidMessage, MessageDefaults, build_message, canonical_json,
                                   content_hash)

DEFAULTS = MessageDefaults(transport="email", priority=4)


def invalid_reason(fields: dict) -> str:
    with pytest.raises(InvalidMessage) as caught:
        build_message(fields, 1, DEFAULTS)
    return str(caught.value)


def test_defaults_fill_missing_fields():
    message = build_message({"type": "A", "payload": {}}, 7, DEFAULTS)
    assert (message.line, message.transport, message.priority) == (7, "email", 4)
    assert message.idempotency_key is None


def test_camel_case_key_accepted():
    message = build_message({"type": "A", "payload": {}, "idempotencyKey": "k"}, 1, DEFAULTS)
    assert message.idempotency_key == "k"


def test_both_key_spellings_differ():
    assert "both given and differ" in invalid_reason(
        {"type": "A", "payload": {}, "idempotency_key": "a", "idempotencyKey": "b"})


@pytest.mark.parametrize("fields, reason", [
    ({"type": "A", "payload": {}, "colour": "red"}, "unknown field 'colour'"),
    ({"payload": {}}, "type is missing"),
    ({"type": "", "payload": {}}, "type is empty"),
    ({"type": "   ", "payload": {}}, "type is empty"),
    ({"type": 5, "payload": {}}, "type must be a string, found a number"),
    ({"type": "A"}, "payload is missing"),
    ({"type": "A", "payload": "x"}, "payload must be a JSON object, found a string"),
    ({"type": "A", "payload": None}, "payload must be a JSON object, found null"),
    ({"type": "A", "payload": {}, "priority": 11}, "priority 11 is out of range"),
    ({"type": "A", "payload": {}, "priority": -1}, "priority -1 is out of range"),
    ({"type": "A", "payload": {}, "priority": True}, "found a boolean"),
    ({"type": "A", "payload": {}, "priority": "5"}, "found a string"),
    ({"type": "A", "payload": {}, "idempotency_key": ""}, "idempotency_key is empty"),
    ({"type": "A", "payload": {}, "idempotency_key": 12}, "idempotency_key must be a string"),
    ({"type": "A", "payload": {}, "idempotency_key": "k" * (MAX_KEY_LENGTH + 1)}, "the maximum is 255"),
    ({"type": "A", "payload": {}, "transport": ""}, "transport is empty"),
    ({"type": "A\x00", "payload": {}}, "type contains the NUL character"),
])
def test_invalid_field_reason(fields, reason):
    assert reason in invalid_reason(fields)


def test_key_kept_exactly():
    message = build_message({"type": "A", "payload": {}, "idempotency_key": " Key "}, 1, DEFAULTS)
    assert message.idempotency_key == " Key "


def test_payload_json_is_canonical():
    message = build_message({"type": "A", "payload": {"b": 1, "a": [1, {"d": 2, "c": "é"}]}}, 1, DEFAULTS)
    assert message.payload_json == '{"a":[1,{"c":"é","d":2}],"b":1}'


def test_literal_backslash_u0000_accepted():
    message = build_message({"type": "A", "payload": {"s": "\\u0000"}}, 1, DEFAULTS)
    assert message.payload_json == '{"s":"\\\\u0000"}'


def test_nan_names_nested_path():
    reason = invalid_reason({"type": "A", "payload": {"items": [{"price": float("nan")}]}})
    assert reason == "payload.items[0].price is NaN; JSON numbers must be finite"


def test_negative_infinity_named():
    assert "is -Infinity" in invalid_reason({"type": "A", "payload": {"v": float("-inf")}})


def test_nul_in_member_name():
    assert "a member name in payload contains the NUL" in invalid_reason({"type": "A", "payload": {"a\x00": 1}})


def test_values_unchecked_when_validation_off():
    message = build_message({"type": "A", "payload": {"v": float("nan")}}, 1,
                            MessageDefaults(check_values=False))
    assert message.payload_json == '{"v":NaN}'


def test_content_hash_covers_transport():
    payload = canonical_json({"to": "ann"})
    assert content_hash("A", "email", payload) != content_hash("A", "sms", payload)


def test_content_hash_ignores_key_order():
    first = build_message({"type": "A", "payload": {"x": 1, "y": 2}}, 1, DEFAULTS)
    second = build_message({"type": "A", "payload": {"y": 2, "x": 1}}, 2, DEFAULTS)
    assert first.content_hash == second.content_hash
