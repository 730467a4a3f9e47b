"""Read message records from JSON Lines, JSON array and CSV files.

`read_records` is the first step of the pipeline. It yields one `Record` per message with
the line where the message starts, and leaves checking the fields to the validation step.
A record that cannot be parsed carries an error, and reading continues with the next
record. Problems with the whole file raise InputError.

Lines end at \\r\\n, a bare \\r or \\n, and every line ending counts for line numbers.
JSON Lines and CSV files are streamed, so memory use does not grow with the file size.

NOTE: only ASCII-compatible encodings (UTF-8, cp1252, latin-1 and the like) are supported.
UTF-16 and UTF-32 files must be converted to UTF-8 first.
NOTE: a .json file (one array of message objects) is read into memory whole.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any, BinaryIO

from ._lines import describe_decode_error, read_lines, resolve_encoding
from .errors import InputError

# Maximum length of one CSV field. csv.field_size_limit counts characters, and its default of
# 131072 is too small for large payloads. The cap still stops an unclosed quote from reading
# the rest of a large file into one field.
MAX_FIELD_BYTES = 16 * 1024 * 1024
FORMATS = ("jsonl", "json", "csv")
STDIN_NAME = "<stdin>"

_EXTENSION_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv"}
_DELIMITERS = {",": ",", ";": ";", "|": "|", "\t": "\t", "tab": "\t", "\\t": "\t"}
_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True, slots=True)
class Record:
    """One message read from the input, or the reason it could not be parsed."""

    line: int  # 1-based line of the record's first character in the file
    fields: dict[str, Any] | None  # the message object's top-level fields, None when error is set
    error: str | None = None  # why the record could not be parsed, without a "file:line:" prefix


@dataclass(frozen=True, slots=True)
class _Input:
    """Resolved arguments of one read_records call."""

    name: str  # the file as the user gave it, or <stdin>
    path: str | os.PathLike | None  # None for standard input
    stdin: BinaryIO | None
    format: str | None  # None until sniffed from standard input
    encoding: str
    delimiter: str | None  # None to detect it from the CSV header


class DuplicateMemberError(ValueError):
    """A JSON object repeats a member name. The message names the member and its path."""


def read_records(source: str | os.PathLike, *, format: str | None = None, encoding: str | None = None,
                 delimiter: str | None = None) -> Iterator[Record]:
    """Yield the records of a JSON Lines, JSON or CSV file, or of standard input for "-".

    `format` is "jsonl", "json" or "csv". Without it the format comes from the extension
    (after .gz): .jsonl and .ndjson, .json, .csv and .tsv. Standard input without a format
    is JSON Lines when its first non-blank byte is {, JSON when it is [, and CSV otherwise.
    `encoding` defaults to UTF-8. `delimiter` is one of , ; | and tab (or \\t); without it
    .tsv files use tab and other CSV input detects it from the header line.

    Raises InputError at once for invalid arguments, and during iteration for problems
    with the whole file: not found, unreadable, empty, corrupt gzip data or a bad CSV header.
    """
    text = os.fsdecode(os.fspath(source))
    path = None if text == "-" else source
    name = STDIN_NAME if path is None else text

    if format is not None and format not in FORMATS:
        raise InputError(f"unknown format {format!r}; use jsonl, json or csv")
    if format is None and path is not None and os.path.isfile(path):
        # A missing file or a directory gets its own error when it is opened, not one about its extension.
        format = _format_from_extension(name)
    if delimiter is not None:
        delimiter = _resolve_delimiter(delimiter)
    elif path is not None and _strip_gzip_suffix(name).lower().endswith(".tsv"):
        delimiter = "\t"

    stdin = sys.stdin.buffer if path is None else None
    return _generate_records(_Input(name, path, stdin, format, resolve_encoding(encoding), delimiter))


def _strip_gzip_suffix(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def _format_from_extension(name: str) -> str:
    extension = os.path.splitext(_strip_gzip_suffix(name))[1].lower()
    if extension not in _EXTENSION_FORMATS:
        raise InputError(
            f"{name}: cannot tell the format from the extension {extension or '(none)'!r}; "
            "pass --input-format jsonl, json or csv"
        )
    return _EXTENSION_FORMATS[extension]


def _resolve_delimiter(delimiter: str) -> str:
    if delimiter.lower() not in _DELIMITERS:
        raise InputError(f"invalid delimiter {delimiter!r}; use one of , ; | or tab")
    return _DELIMITERS[delimiter.lower()]


def _generate_records(source: _Input) -> Iterator[Record]:
    lines = read_lines(source.path, source.stdin, source.name, source.encoding)
    with closing(lines):
        first = _first_content_line(lines, source.name)
        format = source.format or _sniff_format(first[1])
        lines_from_first = itertools.chain([first], lines)

        if format == "jsonl":
            yield from _read_jsonl(lines_from_first, source.encoding)
        elif format == "json":
            yield from _read_json_array(lines_from_first, source.name, source.encoding)
        else:
            # Imported here because _csv_reader imports Record and decode_json from this module.
            from ._csv_reader import read_csv

            yield from read_csv(lines_from_first, source.name, source.encoding, source.delimiter)


def _first_content_line(lines: Iterator[tuple[int, bytes]], name: str) -> tuple[int, bytes]:
    """Return the first line that is not blank, or raise InputError for an empty file."""
    any_line = False
    for number, raw in lines:
        any_line = True
        if raw.strip():
            return number, raw

    if any_line:
        raise InputError(f"{name}: file contains only blank lines; add at least one message")
    raise InputError(f"{name}: file is empty; add at least one message")


def _sniff_format(first_line: bytes) -> str:
    first_byte = first_line.lstrip()[:1]
    if first_byte == b"{":
        return "jsonl"
    if first_byte == b"[":
        return "json"
    return "csv"


# JSON parsing. Duplicate member names are an error at any depth, because json.loads
# would silently keep the last value. The fast hook only compares lengths. The path of a
# duplicate is searched for only after the hook has found one.


class _DuplicateFound(Exception):
    pass


class _ObjectWithDuplicate(dict):
    __slots__ = ("duplicate",)


def _build_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateFound
    return result


def _mark_duplicate(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result

    seen = set()
    for member, _ in pairs:
        if member in seen:
            break
        seen.add(member)
    marked = _ObjectWithDuplicate(result)
    marked.duplicate = member
    return marked


_DECODER = json.JSONDecoder(object_pairs_hook=_build_object)
_MARKING_DECODER = json.JSONDecoder(object_pairs_hook=_mark_duplicate)
# Spreadsheets put real line breaks and tabs inside JSON strings of a cell; strict=False accepts them.
_LENIENT_DECODER = json.JSONDecoder(object_pairs_hook=_build_object, strict=False)
_LENIENT_MARKING_DECODER = json.JSONDecoder(object_pairs_hook=_mark_duplicate, strict=False)


def decode_json(text: str, root: str = "", *, allow_control_characters: bool = False) -> Any:
    """Parse one JSON value, rejecting duplicate member names at any depth.

    NaN, Infinity and numbers too large for a float (1e400) become float values, and
    lone surrogate escapes stay in strings, so that the validation step can name them.
    `root` is the path that DuplicateMemberError messages start from, such as "payload".
    `allow_control_characters` accepts raw control characters (a line break) inside strings.
    Raises DuplicateMemberError, json.JSONDecodeError, ValueError for an integer of more
    than 4300 digits, or RecursionError for values nested too deeply.
    """
    decoder, marking_decoder = ((_LENIENT_DECODER, _LENIENT_MARKING_DECODER) if allow_control_characters
                                else (_DECODER, _MARKING_DECODER))
    try:
        return decoder.decode(text)
    except _DuplicateFound:
        raise DuplicateMemberError(_describe_duplicate(marking_decoder.decode(text), root)) from None


def describe_json_kind(value: Any) -> str:
    """Return the JSON name of a parsed value's type with its article, such as "an array"."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _describe_duplicate(value: Any, root: str) -> str:
    found = _find_duplicate(value, root)
    if found is None:
        return "duplicate member name; remove the repeated member"
    member, path = found
    place = f" in {path}" if path else ""
    return f"duplicate member {json.dumps(member)}{place}; remove the repeated member"


def _find_duplicate(value: Any, root: str) -> tuple[str, str] | None:
    """Return the first duplicate member name and the path of its object, in document order."""
    # An explicit stack, because values nested nearly as deep as the parser allows would
    # exceed the recursion limit here.
    stack = [(root, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _ObjectWithDuplicate):
            return node.duplicate, path
        if isinstance(node, dict):
            children = [(f"{path}.{member}" if path else member, child) for member, child in node.items()]
        elif isinstance(node, list):
            children = [(f"{path}[{index}]", child) for index, child in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))
    return None


def _read_jsonl(lines: Iterator[tuple[int, bytes]], encoding: str) -> Iterator[Record]:
    for number, raw in lines:
        if not raw.strip():
            continue
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            yield Record(number, None, describe_decode_error(exc, encoding))
            continue
        yield _parse_jsonl_line(number, text)


def _parse_jsonl_line(number: int, text: str) -> Record:
    try:
        value = decode_json(text)
    except DuplicateMemberError as exc:
        return Record(number, None, str(exc))
    except json.JSONDecodeError as exc:
        return Record(number, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
    except (ValueError, RecursionError) as exc:
        return Record(number, None, f"invalid JSON: {_describe_parse_failure(exc)}")

    if not isinstance(value, dict):
        return Record(number, None, f"expected a JSON object, found {describe_json_kind(value)}")
    return Record(number, value)


def _describe_parse_failure(error: ValueError | RecursionError) -> str:
    if isinstance(error, RecursionError):
        return "values are nested too deeply to parse"
    return str(error)


class _JsonDocument:
    """The decoded text of a whole .json file, with the offsets where its lines start."""

    def __init__(self, lines: Iterator[tuple[int, bytes]], name: str, encoding: str) -> None:
        parts: list[str] = []
        self.line_starts: list[int] = []
        self.first_line = 0
        offset = 0
        for number, raw in lines:
            self.first_line = self.first_line or number
            try:
                part = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise InputError(f"{name}:{number}: {describe_decode_error(exc, encoding)}") from None
            self.line_starts.append(offset)
            parts.append(part)
            offset += len(part)
        self.text = "".join(parts)
        self.name = name

    def locate(self, offset: int) -> tuple[int, int]:
        """Return the line and the 1-based column of a character offset in the text."""
        index = bisect.bisect_right(self.line_starts, offset) - 1
        return self.first_line + index, offset - self.line_starts[index] + 1

    def skip_whitespace(self, offset: int) -> int:
        return _JSON_WHITESPACE.match(self.text, offset).end()

    def error(self, offset: int, problem: str, fix: str) -> InputError:
        line, column = self.locate(offset)
        return InputError(f"{self.name}:{line}: {problem} (column {column}); {fix}")


def _read_json_array(lines: Iterator[tuple[int, bytes]], name: str, encoding: str) -> Iterator[Record]:
    """Yield one record per element of the array that is the file's only top-level value.

    Records before a syntax error are yielded, and then InputError names its line.
    """
    document = _JsonDocument(lines, name, encoding)
    text = document.text
    offset = document.skip_whitespace(0)
    if not text.startswith("[", offset):
        found = _describe_top_level_value(text, offset)
        raise document.error(offset, f"expected a JSON array of message objects, found {found}",
                             "for one object per line use a .jsonl file or --format jsonl")

    offset = document.skip_whitespace(offset + 1)
    if text.startswith("]", offset):
        raise InputError(f"{name}: the array is empty; add at least one message object")
    while True:
        record, offset = _decode_element(document, offset)
        yield record
        offset = document.skip_whitespace(offset)
        if text.startswith(",", offset):
            offset = document.skip_whitespace(offset + 1)
        elif text.startswith("]", offset):
            break
        else:
            raise document.error(offset, "invalid JSON: expected ',' or ']' after an array element",
                                 "fix the syntax there")

    offset = document.skip_whitespace(offset + 1)
    if offset < len(text):
        raise document.error(offset, "unexpected data after the array",
                             "a .json file must contain exactly one array")


def _decode_element(document: _JsonDocument, offset: int) -> tuple[Record, int]:
    """Parse the array element at `offset` and return its record and the offset after it."""
    line, _ = document.locate(offset)
    try:
        value, end = _DECODER.raw_decode(document.text, offset)
    except _DuplicateFound:
        value, end = _MARKING_DECODER.raw_decode(document.text, offset)
        return Record(line, None, _describe_duplicate(value, "")), end
    except json.JSONDecodeError as exc:
        raise document.error(exc.pos, f"invalid JSON: {exc.msg}", "fix the syntax there") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{document.name}:{line}: invalid JSON: {_describe_parse_failure(exc)}") from None

    if not isinstance(value, dict):
        return Record(line, None, f"expected a JSON object, found {describe_json_kind(value)}"), end
    return Record(line, value), end


def _describe_top_level_value(text: str, offset: int) -> str:
    try:
        value, _ = _MARKING_DECODER.raw_decode(text, offset)
    except (ValueError, RecursionError):
        return "text that is not JSON"
    return describe_json_kind(value)
