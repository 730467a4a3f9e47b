"""Read message records from CSV files: a header row, then one message per row.

Columns map to the fields of a JSON Lines message object:

- `type`, `transport` and `idempotency_key` (or `idempotencyKey`) are strings.
- `priority` becomes an int when the cell is an optional sign and digits. Any other text
  stays a string, and the validation step rejects it.
- `payload` is a JSON object as text, parsed like a JSON Lines line.
- `payload.FIELD` columns build the payload instead, with dots nesting objects:
  `payload.order.id` sets {"order": {"id": ...}}. Their values stay strings.
- Any other column is passed through under its own name, and the validation step reports it.

Header names match after surrounding whitespace and a byte order mark are stripped.

An empty cell leaves its field out of the record, so the validation step applies the
default or reports the missing field. An empty payload.FIELD cell is kept as "", because
an empty string can be a real payload value.

A row whose cells are all empty or whitespace is skipped. A row with more or fewer
fields than the header, or a field longer than MAX_FIELD_BYTES characters, is a record
error. Line endings inside a quoted field are kept as written, so an embedded CRLF stays
"\\r\\n".
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ._lines import describe_decode_error
from .errors import InputError
from .readers import MAX_FIELD_BYTES, DuplicateMemberError, Record, decode_json

_DELIMITER_CANDIDATES = (",", ";", "\t", "|")  # in order of preference when counts tie
_QUOTED_TEXT = re.compile(r'"[^"]*"?')
_QUOTED_FIELD = re.compile(r'"[^"]*(?:""[^"]*)*("?)')  # group 1 is empty when the quote is not closed
_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class _Column:
    """One header column and the field that its cells fill."""

    index: int  # 0-based position in the header
    header: str  # the header cell as written
    kind: str  # "field", "priority", "payload", "payload_path" or "unnamed"
    key: str = ""  # the field name, for kinds "field", "priority" and "payload"
    path: tuple[str, ...] = ()  # the member names below payload, for kind "payload_path"


class _LineFeed:
    """Decoded lines for csv.reader, with the line bookkeeping that the reader does not expose.

    A line that does not decode is passed on decoded with surrogateescape, so the reader
    stays in step with the file, and its error is kept for the record that contains it.
    """

    def __init__(self, lines: Iterator[tuple[int, bytes]], first_line: int, encoding: str) -> None:
        self._lines = lines
        self.encoding = encoding
        self.last_line = first_line - 1  # number of the last line handed to the reader
        self.exhausted = False
        self.record_lines: list[str] = []
        self.decode_errors: list[tuple[int, UnicodeDecodeError]] = []

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        try:
            number, raw = next(self._lines)
        except StopIteration:
            self.exhausted = True
            raise
        self.last_line = number
        try:
            text = raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            self.decode_errors.append((number, exc))
            text = raw.decode(self.encoding, "surrogateescape")
        self.record_lines.append(text)
        return text

    def start_record(self) -> int:
        """Forget the previous record's lines and return the line where the next one starts."""
        self.record_lines.clear()
        self.decode_errors.clear()
        return self.last_line + 1


def read_csv(lines: Iterator[tuple[int, bytes]], name: str, encoding: str,
             delimiter: str | None) -> Iterator[Record]:
    """Yield one record per row of a CSV file whose first line in `lines` is the header.

    Detects the delimiter from the header line when `delimiter` is None. Raises
    InputError for a header that cannot be decoded or lacks a required column, and when
    the file has no rows.
    """
    # csv counts the limit in characters, so non-ASCII text may use more bytes than the cap.
    csv.field_size_limit(MAX_FIELD_BYTES)

    header_line, header_raw = next(lines)
    try:
        header_text = header_raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{name}:{header_line}: cannot decode the header: {describe_decode_error(exc, encoding)}"
        ) from None
    delimiter = delimiter or _detect_delimiter(header_text)

    feed = _LineFeed(itertools.chain([(header_line, header_raw)], lines), header_line, encoding)
    reader = csv.reader(feed, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    columns = _read_header(reader, feed, name, delimiter)

    any_row = False
    for record in _read_rows(reader, feed, columns, delimiter):
        any_row = True
        yield record
    if not any_row:
        raise InputError(f"{name}: file contains a header but no rows; add one row per message")


def _detect_delimiter(header: str) -> str:
    """Return the candidate delimiter that occurs most often outside quotes, or a comma."""
    unquoted = _QUOTED_TEXT.sub("", header)
    best = max(_DELIMITER_CANDIDATES, key=unquoted.count)
    return best if unquoted.count(best) else ","


def _read_header(reader: Iterator[list[str]], feed: _LineFeed, name: str, delimiter: str) -> list[_Column]:
    line = feed.start_record()
    try:
        cells = next(reader)
    except csv.Error as exc:
        raise InputError(f"{name}:{line}: invalid CSV header: {exc}; fix the header line") from None
    if feed.exhausted:
        raise InputError(f"{name}:{line}: unclosed quote in the header; end the quoted column name with \"")
    if feed.decode_errors:
        number, error = feed.decode_errors[0]
        raise InputError(f"{name}:{number}: cannot decode the header: {describe_decode_error(error, feed.encoding)}")

    columns = [_classify_column(index, cell) for index, cell in enumerate(cells)]
    _check_header(columns, f"{name}:{line}", delimiter)
    return columns


def _classify_column(index: int, header: str) -> _Column:
    label = header.strip().removeprefix("\ufeff").strip()
    if not label:
        return _Column(index, header, "unnamed")
    if label == "priority":
        return _Column(index, header, "priority", label)
    if label == "payload":
        return _Column(index, header, "payload", label)
    if label.startswith("payload."):
        return _Column(index, header, "payload_path", "payload", tuple(label[len("payload."):].split(".")))
    return _Column(index, header, "field", label)


def _check_header(columns: list[_Column], place: str, delimiter: str) -> None:
    """Raise InputError for a header that lacks a required column, repeats a column or mixes
    the two forms of payload columns."""
    kinds = {column.kind for column in columns}
    keys = [column.key for column in columns if column.kind in ("field", "priority", "payload")]
    missing = []
    if "type" not in keys:
        missing.append("'type'")
    if "payload" not in kinds and "payload_path" not in kinds:
        missing.append("'payload' (or payload.FIELD columns)")
    if missing:
        found = [column.header for column in columns]
        plural = "s" if len(missing) > 1 else ""
        raise InputError(
            f"{place}: missing required column{plural} {' and '.join(missing)}; found columns: {found!r} "
            f"with delimiter {delimiter!r}; fix the header or pass --delimiter"
        )

    if "payload" in kinds and "payload_path" in kinds:
        raise InputError(f"{place}: the header has both a 'payload' column and payload.FIELD columns; use one or the other")
    for key in keys:
        if keys.count(key) > 1:
            raise InputError(f"{place}: duplicate column {key!r}; keep one column per field")
    _check_payload_paths([column for column in columns if column.kind == "payload_path"], place)


def _check_payload_paths(columns: list[_Column], place: str) -> None:
    paths = set()
    for column in columns:
        if "" in column.path:
            raise InputError(f"{place}: column {column.header.strip()!r} has an empty member name; "
                             "name payload columns payload.FIELD or payload.FIELD.SUBFIELD")
        if column.path in paths:
            raise InputError(f"{place}: duplicate column {column.header.strip()!r}; keep one column per field")
        paths.add(column.path)

    for column in columns:
        for length in range(1, len(column.path)):
            if column.path[:length] in paths:
                prefix = ".".join(("payload",) + column.path[:length])
                raise InputError(f"{place}: column {column.header.strip()!r} puts a member inside {prefix}, "
                                 f"which the column {prefix!r} sets to a string; remove one of the two")


def _read_rows(reader: Iterator[list[str]], feed: _LineFeed, columns: list[_Column],
               delimiter: str) -> Iterator[Record]:
    while True:
        line = feed.start_record()
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Record(line, None, _describe_csv_error(exc, feed, columns, delimiter))
            continue

        # Every line the reader takes ends its record unless a quoted field is still
        # open, so a row that reached the end of the input has an unclosed quote.
        if feed.exhausted:
            yield Record(line, None, f"unclosed quote starting at line {_unclosed_quote_line(feed, row)}; "
                                     "end the quoted field with \" and write a quote inside it as \"\"")
            return
        if feed.decode_errors:
            number, error = feed.decode_errors[0]
            yield Record(line, None, describe_decode_error(error, feed.encoding, number if number != line else None))
            continue
        if all(not cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            yield Record(line, None, f"expected {len(columns)} fields, found {len(row)}; "
                                     f"quote fields that contain the delimiter {delimiter!r}")
            continue
        yield _map_row(line, columns, row)


def _map_row(line: int, columns: list[_Column], row: list[str]) -> Record:
    """Return the record of one row, with its cells placed as JSON Lines fields."""
    fields: dict = {}
    payload: dict = {}  # filled by payload.FIELD columns, which keep empty cells
    for column, cell in zip(columns, row):
        if column.kind == "payload_path":
            _set_member(payload, column.path, cell)
        elif not cell:
            continue
        elif column.kind == "field":
            fields[column.key] = cell
        elif column.kind == "priority":
            fields["priority"] = _parse_priority(cell)
        elif column.kind == "payload":
            value, error = _parse_payload(cell)
            if error:
                return Record(line, None, error)
            fields["payload"] = value
        else:
            return Record(line, None, f"column {column.index + 1} has no name in the header but contains "
                                      f"{_preview(cell)}; name the column or delete the value")

    if payload:
        fields["payload"] = payload
    return Record(line, fields)


def _set_member(payload: dict, path: tuple[str, ...], value: str) -> None:
    node = payload
    for member in path[:-1]:
        node = node.setdefault(member, {})
    node[path[-1]] = value


def _parse_priority(cell: str) -> int | str:
    text = cell.strip()
    if not _INTEGER.fullmatch(text):
        return cell
    try:
        return int(text)
    except ValueError:  # more than 4300 digits
        return cell


def _parse_payload(cell: str) -> tuple[object, str | None]:
    try:
        return decode_json(cell, "payload", allow_control_characters=True), None
    except DuplicateMemberError as exc:
        return None, str(exc)
    except json.JSONDecodeError as exc:
        problem = f"{exc.msg} (column {exc.colno} of the cell)"
    except RecursionError:
        problem = "values are nested too deeply to parse"
    except ValueError as exc:
        problem = str(exc)
    return None, (f"payload column is not valid JSON: {problem}; write a JSON object such as "
                  '{"id": 1}, and double each quote inside a quoted CSV field')


def _preview(text: str, length: int = 40) -> str:
    return repr(text) if len(text) <= length else repr(text[:length]) + "..."


def _unclosed_quote_line(feed: _LineFeed, row: list[str]) -> int:
    """Return the line where the quoted field that runs to the end of the input starts."""
    # The open field is the row's last one and contains every line ending after its quote.
    field = row[-1] if row else ""
    line_endings = field.count("\n") + field.count("\r") - field.count("\r\n")
    last_line_ended = feed.record_lines[-1].endswith(("\n", "\r"))
    return feed.last_line - line_endings + (1 if last_line_ended else 0)


def _describe_csv_error(error: csv.Error, feed: _LineFeed, columns: list[_Column], delimiter: str) -> str:
    if "field larger than field limit" not in str(error):
        return f"invalid CSV: {error}"

    index, quote_open = _find_long_field("".join(feed.record_lines), delimiter)
    if quote_open:
        _skip_quoted_lines(feed)
    column = repr(columns[index].header.strip()) if index < len(columns) else str(index + 1)
    return (f"field in column {column} is longer than the maximum of {MAX_FIELD_BYTES:,} characters; "
            "shorten the value, or close the quote if the field runs on by mistake")


def _find_long_field(text: str, delimiter: str) -> tuple[int, bool]:
    """Return the index of the first field of `text` longer than the cap, and whether the
    quoted field at the end of `text` is still open.

    Used only after csv.reader failed, to name the column. The text may end in the middle
    of the field that grew past the cap.
    """
    unquoted = re.compile(f"[^{re.escape(delimiter)}\r\n]*")
    index = offset = 0
    while True:
        start = offset
        if text.startswith('"', offset):
            match = _QUOTED_FIELD.match(text, offset)
            if not match.group(1):
                return index, True
            offset = match.end()
        offset = unquoted.match(text, offset).end()
        if offset - start > MAX_FIELD_BYTES or not text.startswith(delimiter, offset):
            return index, False
        index += 1
        offset += len(delimiter)


def _skip_quoted_lines(feed: _LineFeed) -> None:
    """Read past the rest of an open quoted field, so its lines are not read as new rows.

    A doubled quote inside the field leaves it open, so the first line with an odd number
    of quotes is the line that closes it.
    """
    for line in feed:
        if line.count('"') % 2:
            return
