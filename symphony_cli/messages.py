"""Validation: turn a parsed record into a Message, or explain why it is invalid.

Payload values are checked against what both stores accept (PostgreSQL's jsonb is the
stricter one), so that one file gives the same results on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from .config import PRIORITY_RANGE

KNOWN_FIELDS = frozenset({"type", "payload", "transport", "priority", "idempotency_key", "idempotencyKey"})
MAX_KEY_LENGTH = 255  # characters; a key is an identifier, not a payload
MAX_TEXT_LENGTH = 255  # characters, for type and transport


class InvalidMessage(ValueError):
    """A message cannot be sent; the text names the field and the fix."""


@dataclasses.dataclass(slots=True)
class Message:
    """A validated message, ready to be keyed and sent."""

    line: int
    type: str
    transport: str
    priority: int
    payload: dict[str, Any]
    payload_json: str  # canonical JSON: sorted keys, no insignificant whitespace
    idempotency_key: str | None = None
    _content_hash: str | None = None

    @property
    def content_hash(self) -> str:
        """Return the SHA-256 of type, transport and the canonical payload, as hex."""
        if self._content_hash is None:
            self._content_hash = content_hash(self.type, self.transport, self.payload_json)
        return self._content_hash


@dataclasses.dataclass(frozen=True, slots=True)
class MessageDefaults:
    """Values for fields that a message omits, and whether to check payload values."""

    transport: str = "default"
    priority: int = 5
    check_values: bool = True


def content_hash(type_: str, transport: str, payload_json: str) -> str:
    # The unit separator cannot occur unescaped in canonical JSON, so fields cannot run together.
    text = f"{type_}\x1f{transport}\x1f{payload_json}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def canonical_json(value: Any, *, allow_nan: bool = False) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan)


def build_message(fields: Mapping[str, Any], line: int, defaults: MessageDefaults) -> Message:
    """Validate one record's fields and return the Message.

    Raises InvalidMessage naming the first field that is wrong.
    """
    if not KNOWN_FIELDS.issuperset(fields):  # builds no set for the usual message, which has no unknown field
        unknown = sorted(set(fields) - KNOWN_FIELDS)
        raise InvalidMessage(f"unknown field {unknown[0]!r}; known fields: {', '.join(sorted(KNOWN_FIELDS))}")

    type_ = _text_field(fields, "type", required=True)
    transport = _text_field(fields, "transport", required=False) or defaults.transport
    priority = _priority(fields.get("priority"), defaults.priority)
    key = _idempotency_key(fields)

    payload = fields.get("payload")
    if "payload" not in fields:
        raise InvalidMessage("payload is missing; every message needs a JSON object payload")
    if not isinstance(payload, dict):
        raise InvalidMessage(f"payload must be a JSON object, found {_json_kind(payload)}")

    payload_json = _serialize_payload(payload, defaults.check_values)
    return Message(line, type_, transport, priority, payload, payload_json, key)


def check_key(key: str, field: str = "idempotency_key") -> str:
    """Return the key unchanged, or raise InvalidMessage if it is empty, too long or unencodable."""
    if not key:
        raise InvalidMessage(f"{field} is empty; omit it or give a non-empty key")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidMessage(f"{field} is {len(key)} characters long; the maximum is {MAX_KEY_LENGTH}")
    problem = _text_problem(key)
    if problem:
        raise InvalidMessage(f"{field} {problem}")
    return key


def _text_field(fields: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = fields.get(name)
    if value is None:
        if required:
            raise InvalidMessage(f"{name} is missing")
        return None
    if not isinstance(value, str):
        raise InvalidMessage(f"{name} must be a string, found {_json_kind(value)}")
    if not value.strip():
        raise InvalidMessage(f"{name} is empty")
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidMessage(f"{name} is {len(value)} characters long; the maximum is {MAX_TEXT_LENGTH}")
    problem = _text_problem(value)
    if problem:
        raise InvalidMessage(f"{name} {problem}")
    return value


def _priority(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage(f"priority must be an integer from 0 to 10, found {_json_kind(value)} "
                             f"{json.dumps(value, ensure_ascii=False, default=repr)}")
    if value not in PRIORITY_RANGE:
        raise InvalidMessage(f"priority {value} is out of range; it must be from 0 to 10")
    return value


def _idempotency_key(fields: Mapping[str, Any]) -> str | None:
    snake, camel = fields.get("idempotency_key"), fields.get("idempotencyKey")
    if snake is not None and camel is not None and snake != camel:
        raise InvalidMessage("idempotency_key and idempotencyKey are both given and differ; give one")
    value, name = (snake, "idempotency_key") if snake is not None else (camel, "idempotencyKey")
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidMessage(f"{name} must be a string, found {_json_kind(value)}")
    return check_key(value, name)


def _serialize_payload(payload: dict[str, Any], check_values: bool) -> str:
    try:
        if not check_values:
            return canonical_json(payload, allow_nan=True)
        text = canonical_json(payload)
        text.encode("utf-8")
    except (ValueError, UnicodeEncodeError, TypeError):
        text = None  # TypeError: a value JSON has no form for, or member names of mixed types
    except RecursionError:
        raise InvalidMessage("payload is nested too deeply to serialise") from None
    # json.dumps writes U+0000 as the escape \u0000, which jsonb rejects. A literal backslash
    # before "u0000" also matches here, so the exact walk below distinguishes the two.
    if text is None or "\\u0000" in text:
        problem = find_value_problem(payload, "payload")
        if problem:
            raise InvalidMessage(problem)
        text = canonical_json(payload, allow_nan=not check_values)
    return text


def find_value_problem(value: Any, path: str) -> str | None:
    """Return a description of the first value neither store accepts, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            shown = "NaN"
        else:
            shown = "Infinity" if value > 0 else "-Infinity"
        return f"{path} is {shown}; JSON numbers must be finite"
    if isinstance(value, str):
        problem = _text_problem(value)
        return f"{path} {problem}" if problem else None
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                return f"a member name in {path} is {type(name).__name__} {name!r}; JSON member names are strings"
            problem = _text_problem(name)
            if problem:
                return f"a member name in {path} {problem}"
            found = find_value_problem(item, f"{path}.{name}")
            if found:
                return found
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_value_problem(item, f"{path}[{index}]")
            if found:
                return found
        return None
    if value is not None and not isinstance(value, (bool, int, float, str, dict)):
        return f"{path} is a Python {type(value).__name__}, which JSON cannot represent; convert it first"
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains the NUL character (U+0000), which PostgreSQL text and jsonb reject"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"contains the lone surrogate U+{ord(text[error.start]):04X}, which is not valid Unicode"
    return None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
