"""Idempotency keys: where a message's key comes from, and how a stored key is compared.

Exactly one key source applies to a run. The default is the message's own
`idempotency_key` field. `--key-field`, `--key-template` and `--key-from-content` each
replace it for every message of the run, so at most one of them may be given.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable
from typing import Any

from .errors import ConfigError
from .messages import InvalidMessage, Message, check_key
from .readers import describe_json_kind
from .results import Status

KeyFunction = Callable[[Message], "str | None"]


@dataclasses.dataclass(frozen=True, slots=True)
class KeySource:
    """The run's key source: one of field, template or content, or none for the message field."""

    field: str | None = None
    template: str | None = None
    from_content: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class StoredKey:
    """An active key in the store: the message it points to and that message's content hash."""

    message_id: int | None
    content_hash: str | None


def make_key_function(source: KeySource) -> KeyFunction:
    """Return the function that computes a message's key for this key source.

    The function raises InvalidMessage when the source cannot produce a key for a message.
    """
    given = [name for name, value in (("--key-field", source.field), ("--key-template", source.template),
                                      ("--key-from-content", source.from_content)) if value]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} cannot be combined; choose one key source")
    if source.field:
        return _field_key(source.field)
    if source.template:
        return _template_key(source.template)
    if source.from_content:
        return lambda message: "sha256:" + message.content_hash
    return lambda message: message.idempotency_key


def classify_existing(message: Message, stored: StoredKey, reject_duplicates: bool) -> Status:
    """Return the status of a message whose key is already active in the store."""
    if stored.content_hash is not None and stored.content_hash != message.content_hash:
        return Status.CONFLICT
    return Status.REJECTED if reject_duplicates else Status.DUPLICATE


def describe_existing(status: Status, stored: StoredKey, key: str) -> str | None:
    """Return the error text for a duplicate outcome, or None when it is no error."""
    if status is Status.CONFLICT:
        return (f"key {key!r} is already used by message {stored.message_id} with different content "
                "(type, transport or payload); use a new key for new content")
    if status is Status.REJECTED:
        return f"duplicate of message {stored.message_id}; duplicates are rejected (deduplication.reject_duplicates)"
    return None


def _message_fields(message: Message) -> dict[str, Any]:
    return {"type": message.type, "transport": message.transport, "priority": message.priority,
            "payload": message.payload, "idempotency_key": message.idempotency_key}


def _lookup(fields: dict[str, Any], path: str) -> Any:
    """Return the value at a dotted path, or raise KeyError when any part is missing."""
    value: Any = fields
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value or value[part] is None:
            raise KeyError(path)
        value = value[part]
    return value


def _key_text(value: Any, path: str) -> str:
    """Return a string or integer field as key text; other JSON types make no sensible key."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidMessage(f"{path} is {describe_json_kind(value)}; a key field must be a string or an integer")


def _field_key(path: str) -> KeyFunction:
    full_path = path if path.startswith("payload.") else f"payload.{path}"

    def key_of(message: Message) -> str:
        try:
            value = _lookup(_message_fields(message), full_path)
        except KeyError:
            raise InvalidMessage(f"{full_path} is missing or null, and --key-field takes the key from it") from None
        return check_key(_key_text(value, full_path), full_path)

    return key_of


def _template_key(template: str) -> KeyFunction:
    try:
        parts = [(text, name, spec) for text, name, spec, _ in string.Formatter().parse(template)]
    except ValueError as error:
        raise ConfigError(f"--key-template {template!r} is invalid: {error}") from None
    if not any(name for _, name, _ in parts):
        raise ConfigError(f"--key-template {template!r} names no field; write fields as {{type}} or {{payload.id}}")
    if any(spec for _, _, spec in parts):
        raise ConfigError(f"--key-template {template!r}: format specs are not supported; write {{field}} only")
    conversions = [conversion for _, _, _, conversion in string.Formatter().parse(template) if conversion]
    if conversions:
        raise ConfigError(f"--key-template {template!r}: conversions such as !{conversions[0]} are not "
                          "supported; write {field} only")

    def key_of(message: Message) -> str:
        fields = _message_fields(message)
        pieces = []
        for text, name, _ in parts:
            pieces.append(text)
            if name is not None:
                try:
                    pieces.append(_key_text(_lookup(fields, name), name))
                except KeyError:
                    raise InvalidMessage(f"{name} is missing or null, and --key-template uses it") from None
        return check_key("".join(pieces), "key")

    return key_of
