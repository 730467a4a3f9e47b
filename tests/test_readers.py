"""Tests of symphony_cli.readers on real files written byte for byte into tmp_path."""

from __future__ import annotations

import gzip
import io
import math
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from symphony_cli import _lines
from symphony_cli.errors import InputError
from symphony_cli.readers import MAX_FIELD_BYTES, Record, read_records

STDLIB_CSV_FIELD_LIMIT = 131072  # csv.field_size_limit() before symphony raises it


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read(path: Path | str, **options) -> list[Record]:
    return list(read_records(path, **options))


def read_error(path: Path | str, **options) -> str:
    with pytest.raises(InputError) as caught:
        read(path, **options)
    return str(caught.value)


def use_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    class FakeStdin:
        buffer = io.BytesIO(data)

    monkeypatch.setattr(sys, "stdin", FakeStdin())


# JSON Lines


def test_jsonl_reads_objects(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"type": "a", "payload": {"id": 1}}\n{"type": "b"}\n')

    assert read(path) == [
        Record(1, {"type": "a", "payload": {"id": 1}}),
        Record(2, {"type": "b"}),
    ]


def test_jsonl_skips_blank_lines(tmp_path):
    path = write(tmp_path, "m.jsonl", b'\n{"n": 1}\n\n  \t \n{"n": 2}\n\n')

    assert [record.line for record in read(path)] == [2, 5]


def test_jsonl_crlf_line_endings(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"n": 1}\r\n\r\n{"n": 2}\r\n')

    assert read(path) == [Record(1, {"n": 1}), Record(3, {"n": 2})]


def test_jsonl_bare_cr_line_endings(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"n": 1}\r\r{"n": 2}\r')

    assert read(path) == [Record(1, {"n": 1}), Record(3, {"n": 2})]


def test_jsonl_mixed_line_endings_counted(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"n": 1}\n\r\n\r{"n": 4}')

    assert [record.line for record in read(path)] == [1, 4]


def test_jsonl_crlf_split_across_blocks(tmp_path):
    first = b'{"pad": "' + b"x" * (_lines.BLOCK_SIZE - 12) + b'"}'
    data = first + b"\r\n" + b'{"n": 2}\n'
    assert data[_lines.BLOCK_SIZE - 1:_lines.BLOCK_SIZE + 1] == b"\r\n"
    path = write(tmp_path, "m.jsonl", data)

    records = read(path)

    assert [record.line for record in records] == [1, 2]
    assert records[1].fields == {"n": 2}


def test_jsonl_bare_cr_at_block_end(tmp_path):
    first = b'{"pad": "' + b"x" * (_lines.BLOCK_SIZE - 12) + b'"}'
    data = first + b"\r" + b'{"n": 2}\n'
    assert data[_lines.BLOCK_SIZE - 1] == ord("\r")
    path = write(tmp_path, "m.jsonl", data)

    assert [record.line for record in read(path)] == [1, 2]


def test_jsonl_line_longer_than_block(tmp_path):
    text = "y" * (3 * _lines.BLOCK_SIZE + 5)
    path = write(tmp_path, "m.jsonl", b'{"n": 1}\n{"long": "' + text.encode() + b'"}\n{"n": 3}\n')

    records = read(path)

    assert records[1] == Record(2, {"long": text})
    assert records[2] == Record(3, {"n": 3})


def test_jsonl_drops_byte_order_mark(tmp_path):
    path = write(tmp_path, "m.jsonl", b'\xef\xbb\xbf{"n": 1}\n')

    assert read(path) == [Record(1, {"n": 1})]


def test_explicit_utf8_drops_byte_order_mark(tmp_path):
    path = write(tmp_path, "m.jsonl", b'\xef\xbb\xbf{"n": 1}\n')

    assert read(path, encoding="utf-8") == [Record(1, {"n": 1})]


def test_jsonl_invalid_json_error(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"n": 1}\n{"n": 2,}\n{"n": 3}\n')

    records = read(path)

    assert records[1] == Record(2, None, "invalid JSON: Expecting property name enclosed in double quotes (column 9)")
    assert records[2] == Record(3, {"n": 3})


@pytest.mark.parametrize(("line", "kind"), [
    (b"[1, 2]", "an array"),
    (b'"text"', "a string"),
    (b"42", "a number"),
    (b"true", "a boolean"),
    (b"null", "null"),
])
def test_jsonl_non_object_line(tmp_path, line, kind):
    path = write(tmp_path, "m.jsonl", line + b"\n")

    assert read(path) == [Record(1, None, f"expected a JSON object, found {kind}")]


def test_jsonl_duplicate_top_level_member(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"type": "a", "type": "b"}\n')

    [record] = read(path)

    assert record.fields is None
    assert record.error.startswith('duplicate member "type";')


def test_jsonl_duplicate_payload_member(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"type": "a", "payload": {"a": 1, "a": 2}}\n')

    [record] = read(path)

    assert record.error.startswith('duplicate member "a" in payload;')


def test_jsonl_duplicate_deeply_nested_member(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"payload": {"items": [{"id": 1}, {"id": 2, "id": 3}]}}\n')

    [record] = read(path)

    assert record.error.startswith('duplicate member "id" in payload.items[1];')


def test_jsonl_sibling_objects_share_names(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"payload": {"a": {"id": 1}, "b": {"id": 2}}}\n')

    assert read(path) == [Record(1, {"payload": {"a": {"id": 1}, "b": {"id": 2}}})]


def test_jsonl_non_finite_numbers_pass_through(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"payload": {"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e400}}\n')

    [record] = read(path)
    payload = record.fields["payload"]

    assert math.isnan(payload["a"])
    assert payload["b"] == math.inf
    assert payload["c"] == -math.inf
    assert payload["d"] == math.inf


def test_jsonl_lone_surrogate_passes_through(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"payload": {"s": "\\ud800"}}\n')

    assert read(path) == [Record(1, {"payload": {"s": "\ud800"}})]


def test_jsonl_truncated_last_line(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"n": 1}\n{"n": 2, "payload": {"a')

    records = read(path)

    assert records[0] == Record(1, {"n": 1})
    assert records[1].line == 2
    assert records[1].error.startswith("invalid JSON: Unterminated string")


def test_jsonl_deep_nesting_is_record_error(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")

    [record] = read(path)

    assert record.error == "invalid JSON: values are nested too deeply to parse"


def test_jsonl_undecodable_byte_error(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"n": 1}\n{"name": "caf\xe9"}\n{"n": 3}\n')

    records = read(path)

    assert records[1] == Record(2, None, "byte 0xE9 at column 14 is not valid UTF-8; "
                                         "pass --encoding (for example --encoding cp1252)")
    assert records[2] == Record(3, {"n": 3})


def test_jsonl_cp1252_encoding(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"name": "caf\xe9 \x80"}\n')

    assert read(path, encoding="cp1252") == [Record(1, {"name": "café €"})]


def test_jsonl_undecodable_in_cp1252_suggests_utf8(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"a": "\x81"}\n')

    [record] = read(path, encoding="cp1252")

    assert record.error == ("byte 0x81 at column 8 is not valid cp1252; "
                            "pass the file's encoding with --encoding (for example --encoding utf-8)")


def test_ndjson_extension_is_jsonl(tmp_path):
    path = write(tmp_path, "m.ndjson", b'{"n": 1}\n')

    assert read(path) == [Record(1, {"n": 1})]


def test_jsonl_gzip_file(tmp_path):
    path = write(tmp_path, "m.jsonl.gz", gzip.compress(b'\n{"n": 1}\r\n{"n": 2}\n'))

    assert read(path) == [Record(2, {"n": 1}), Record(3, {"n": 2})]


def test_gzip_data_detected_without_suffix(tmp_path):
    path = write(tmp_path, "m.jsonl", gzip.compress(b'{"n": 1}\n'))

    assert read(path) == [Record(1, {"n": 1})]


def test_corrupt_gzip_raises(tmp_path):
    path = write(tmp_path, "m.jsonl.gz", b"this is not gzip data\n")

    assert read_error(path).startswith(f"{path}: invalid gzip data")


def test_truncated_gzip_raises_after_records(tmp_path):
    data = gzip.compress(b"".join(b'{"n": %d}\n' % n for n in range(100_000)))
    path = write(tmp_path, "m.jsonl.gz", data[: len(data) // 2])
    records = []

    with pytest.raises(InputError) as caught:
        for record in read_records(path):
            records.append(record)

    assert str(caught.value).startswith(f"{path}: invalid gzip data")
    assert records[0] == Record(1, {"n": 0})


# JSON arrays


def test_json_array_element_lines(tmp_path):
    path = write(tmp_path, "m.json", b'\n[\n  {"n": 1},\r\n  {"n": 2}, {"n": 3},\r  {\n"n": 4}\n]\n')

    records = read(path)

    assert [record.line for record in records] == [3, 4, 4, 5]
    assert [record.fields["n"] for record in records] == [1, 2, 3, 4]


def test_json_array_non_object_element(tmp_path):
    path = write(tmp_path, "m.json", b'[{"n": 1},\n "text",\n {"n": 3}]')

    assert read(path) == [
        Record(1, {"n": 1}),
        Record(2, None, "expected a JSON object, found a string"),
        Record(3, {"n": 3}),
    ]


def test_json_array_duplicate_member(tmp_path):
    path = write(tmp_path, "m.json", b'[\n{"payload": {"a": 1, "a": 2}},\n{"n": 3}\n]')

    records = read(path)

    assert records[0].line == 2
    assert records[0].error.startswith('duplicate member "a" in payload;')
    assert records[1] == Record(3, {"n": 3})


def test_json_array_syntax_error_after_records(tmp_path):
    path = write(tmp_path, "m.json", b'[\n{"n": 1},\n{"n": 2},\n{"n": 3 "x": 4}\n]')
    records = []

    with pytest.raises(InputError) as caught:
        for record in read_records(path):
            records.append(record)

    assert records == [Record(2, {"n": 1}), Record(3, {"n": 2})]
    assert str(caught.value) == f"{path}:4: invalid JSON: Expecting ',' delimiter (column 9); fix the syntax there"


def test_json_missing_comma_between_elements(tmp_path):
    path = write(tmp_path, "m.json", b'[{"n": 1}\n {"n": 2}]')

    assert read_error(path) == (f"{path}:2: invalid JSON: expected ',' or ']' after an array element "
                                "(column 2); fix the syntax there")


def test_json_top_level_object_raises(tmp_path):
    path = write(tmp_path, "m.json", b'{"n": 1}\n')

    assert read_error(path) == (f"{path}:1: expected a JSON array of message objects, found an object "
                                "(column 1); for one object per line use a .jsonl file or --format jsonl")


def test_json_data_after_array_raises(tmp_path):
    path = write(tmp_path, "m.json", b'[{"n": 1}]\n[{"n": 2}]\n')

    assert read_error(path).startswith(f"{path}:2: unexpected data after the array (column 1)")


def test_json_empty_array_raises(tmp_path):
    path = write(tmp_path, "m.json", b"[ ]\n")

    assert read_error(path) == f"{path}: the array is empty; add at least one message object"


def test_json_undecodable_byte_raises(tmp_path):
    path = write(tmp_path, "m.json", b'[\n{"a": "\xff"}]')

    assert read_error(path).startswith(f"{path}:2: byte 0xFF at column 8 is not valid UTF-8")


def test_json_format_option_overrides_extension(tmp_path):
    path = write(tmp_path, "m.txt", b'[{"n": 1}]')

    assert read(path, format="json") == [Record(1, {"n": 1})]


# CSV


def test_csv_maps_known_columns(tmp_path):
    path = write(tmp_path, "m.csv", (
        b'type,transport,priority,idempotency_key,payload\n'
        b'order.created,email,3,key-1,"{""id"": 7}"\n'
    ))

    assert read(path) == [Record(2, {
        "type": "order.created", "transport": "email", "priority": 3,
        "idempotency_key": "key-1", "payload": {"id": 7},
    })]


def test_csv_camel_case_key_passed_through(tmp_path):
    path = write(tmp_path, "m.csv", b'type,idempotencyKey,payload\na,k,{}\n')

    assert read(path) == [Record(2, {"type": "a", "idempotencyKey": "k", "payload": {}})]


@pytest.mark.parametrize(("cell", "value"), [
    (b"7", 7),
    (b"-3", -3),
    (b"+4", 4),
    (b" 5 ", 5),
    (b"high", "high"),
    (b"2.5", "2.5"),
])
def test_csv_priority_conversion(tmp_path, cell, value):
    path = write(tmp_path, "m.csv", b"type,priority,payload\na," + cell + b",{}\n")

    [record] = read(path)

    assert record.fields["priority"] == value


def test_csv_empty_cell_omits_field(tmp_path):
    path = write(tmp_path, "m.csv", b"type,transport,priority,payload\na,,,{}\n")

    assert read(path) == [Record(2, {"type": "a", "payload": {}})]


def test_csv_payload_columns_nest(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.order.id,payload.order.total,payload.note\na,17,9.5,\n")

    assert read(path) == [Record(2, {
        "type": "a", "payload": {"order": {"id": "17", "total": "9.5"}, "note": ""},
    })]


def test_csv_unknown_column_passed_through(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload,colour\na,{},red\n")

    assert read(path) == [Record(2, {"type": "a", "payload": {}, "colour": "red"})]


def test_csv_header_names_stripped(tmp_path):
    path = write(tmp_path, "m.csv", b" type , payload.id \na,1\n")

    assert read(path) == [Record(2, {"type": "a", "payload": {"id": "1"}})]


def test_csv_payload_invalid_json(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload\na,{id: 1}\nb,{}\n")

    records = read(path)

    assert records[0].line == 2
    assert records[0].error.startswith(
        "payload column is not valid JSON: Expecting property name enclosed in double quotes (column 2 of the cell)"
    )
    assert records[1] == Record(3, {"type": "b", "payload": {}})


def test_csv_payload_duplicate_member(tmp_path):
    path = write(tmp_path, "m.csv", b'type,payload\na,"{""x"": {""k"": 1, ""k"": 2}}"\n')

    [record] = read(path)

    assert record.error.startswith('duplicate member "k" in payload.x;')


def test_csv_payload_nan_passes_through(tmp_path):
    path = write(tmp_path, "m.csv", b'type,payload\na,"{""x"": NaN}"\n')

    [record] = read(path)

    assert math.isnan(record.fields["payload"]["x"])


def test_csv_payload_array_passes_through(tmp_path):
    path = write(tmp_path, "m.csv", b'type,payload\na,"[1]"\n')

    assert read(path) == [Record(2, {"type": "a", "payload": [1]})]


def test_csv_semicolon_detected(tmp_path):
    path = write(tmp_path, "m.csv", b"type;payload.amount\na;1,50\n")

    assert read(path) == [Record(2, {"type": "a", "payload": {"amount": "1,50"}})]


def test_csv_tab_detected(tmp_path):
    path = write(tmp_path, "m.csv", b"type\tpayload.a\tpayload.b\nx\t1,2\t3\n")

    assert read(path) == [Record(2, {"type": "x", "payload": {"a": "1,2", "b": "3"}})]


def test_csv_pipe_detected(tmp_path):
    path = write(tmp_path, "m.csv", b"type|payload.a\nx|1\n")

    assert read(path) == [Record(2, {"type": "x", "payload": {"a": "1"}})]


def test_csv_delimiter_in_quoted_header_ignored(tmp_path):
    path = write(tmp_path, "m.csv", b'type,"payload.a;b;c"\nx,1\n')

    assert read(path) == [Record(2, {"type": "x", "payload": {"a;b;c": "1"}})]


def test_tsv_extension_uses_tab(tmp_path):
    path = write(tmp_path, "m.tsv", b"type\tpayload.a,b;c|d\nx\t1\n")

    assert read(path) == [Record(2, {"type": "x", "payload": {"a,b;c|d": "1"}})]


@pytest.mark.parametrize(("option", "data"), [
    # Each header has more of another candidate delimiter, so detection would split it wrongly.
    ("tab", b"type\tpayload.a;b;c\nx\t1\n"),
    ("\t", b"type\tpayload.a;b;c\nx\t1\n"),
    (";", b"type;payload.a,b,c\nx;1\n"),
    (",", b"type,payload.a;b;c\nx,1\n"),
    ("|", b"type|payload.a;b;c\nx|1\n"),
])
def test_csv_delimiter_option(tmp_path, option, data):
    path = write(tmp_path, "m.csv", data)
    member = data.split(b"payload.")[1].split(b"\n")[0].decode()

    assert read(path, delimiter=option) == [Record(2, {"type": "x", "payload": {member: "1"}})]


def test_csv_invalid_delimiter_option_raises(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload\nx,{}\n")

    assert read_error(path, delimiter=":") == "invalid delimiter ':'; use one of , ; | or tab"


def test_csv_crlf_line_endings(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.a\r\nx,1\r\n\r\ny,2\r\n")

    assert read(path) == [
        Record(2, {"type": "x", "payload": {"a": "1"}}),
        Record(4, {"type": "y", "payload": {"a": "2"}}),
    ]


def test_csv_bare_cr_line_endings(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.a\rx,1\r\ry,2\r")

    assert read(path) == [
        Record(2, {"type": "x", "payload": {"a": "1"}}),
        Record(4, {"type": "y", "payload": {"a": "2"}}),
    ]


def test_csv_byte_order_mark_dropped(tmp_path):
    path = write(tmp_path, "m.csv", b"\xef\xbb\xbftype,payload.a\r\nx,1\r\n")

    assert read(path) == [Record(2, {"type": "x", "payload": {"a": "1"}})]


def test_csv_cp1252_encoding(tmp_path):
    path = write(tmp_path, "m.csv", b"type;payload.name\nx;Fran\xe7ois \x80\n")

    assert read(path, encoding="cp1252") == [Record(2, {"type": "x", "payload": {"name": "François €"}})]


def test_csv_embedded_newline_in_quoted_cell(tmp_path):
    path = write(tmp_path, "m.csv", b'type,payload.note\nx,"one\ntwo\nthree"\ny,after\n')

    records = read(path)

    assert records[0] == Record(2, {"type": "x", "payload": {"note": "one\ntwo\nthree"}})
    assert records[1] == Record(5, {"type": "y", "payload": {"note": "after"}})


def test_csv_embedded_crlf_kept(tmp_path):
    path = write(tmp_path, "m.csv", b'type,payload.note\r\nx,"one\r\ntwo"\r\ny,z\r\n')

    records = read(path)

    assert records[0].fields["payload"]["note"] == "one\r\ntwo"
    assert records[1].line == 4


def test_csv_undecodable_byte_error(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.name\nx,caf\xe9\ny,ok\n")

    records = read(path)

    assert records[0] == Record(2, None, "byte 0xE9 at column 6 is not valid UTF-8; "
                                         "pass --encoding (for example --encoding cp1252)")
    assert records[1] == Record(3, {"type": "y", "payload": {"name": "ok"}})


def test_csv_undecodable_byte_on_later_line(tmp_path):
    path = write(tmp_path, "m.csv", b'type,payload.note\nx,"one\ntw\xe9"\n')

    [record] = read(path)

    assert record.line == 2
    assert record.error.startswith("byte 0xE9 on line 3 at column 3 is not valid UTF-8")


def test_csv_undecodable_header_raises(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.caf\xe9\nx,1\n")

    assert read_error(path) == (f"{path}:1: cannot decode the header: byte 0xE9 at column 17 is not valid "
                                "UTF-8; pass --encoding (for example --encoding cp1252)")


def test_csv_too_many_fields(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.a\nx,1,2\ny,3\n")

    records = read(path)

    assert records[0].line == 2
    assert records[0].error.startswith("expected 2 fields, found 3")
    assert records[1] == Record(3, {"type": "y", "payload": {"a": "3"}})


def test_csv_too_few_fields(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.a,payload.b\nx,1\n")

    [record] = read(path)

    assert record.error.startswith("expected 3 fields, found 2")


def test_csv_empty_rows_skipped(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.a\n\n,\n  \nx,1\n")

    assert read(path) == [Record(5, {"type": "x", "payload": {"a": "1"}})]


def test_csv_unclosed_quote_line(tmp_path):
    path = write(tmp_path, "m.csv", b'type,payload.a\nx,1\ny,2\nz,"3\nmore\nand more\n')

    records = read(path)

    assert records[-1].line == 4
    assert records[-1].error.startswith("unclosed quote starting at line 4;")


def test_csv_unclosed_quote_on_continuation_line(tmp_path):
    path = write(tmp_path, "m.csv", b'type,payload.a,payload.b\nx,"one\ntwo","3\nfour')

    [record] = read(path)

    assert record.line == 2
    assert record.error.startswith("unclosed quote starting at line 3;")


def test_csv_field_over_stdlib_limit_accepted(tmp_path):
    text = "z" * (STDLIB_CSV_FIELD_LIMIT + 10)
    path = write(tmp_path, "m.csv", b"type,payload.big\nx," + text.encode() + b"\n")

    [record] = read(path)

    assert record.fields["payload"]["big"] == text


def test_csv_field_over_cap_rejected(tmp_path):
    big = b"z" * (MAX_FIELD_BYTES + 1)
    path = write(tmp_path, "m.csv", b"type,payload.big,payload.c\nx," + big + b",1\ny,2,3\n")

    records = read(path)

    assert records[0].line == 2
    assert records[0].error.startswith(
        f"field in column 'payload.big' is longer than the maximum of {MAX_FIELD_BYTES:,} characters"
    )
    assert records[1] == Record(3, {"type": "y", "payload": {"big": "2", "c": "3"}})


def test_csv_multiline_field_over_cap(tmp_path):
    big = b"z" * (MAX_FIELD_BYTES // 2)
    data = b'type,payload.big\nx,"' + big + b"\n" + big + b"\n" + big + b'"\ny,2\n'
    path = write(tmp_path, "m.csv", data)

    records = read(path)

    assert [record.line for record in records] == [2, 5]
    assert records[0].error.startswith("field in column 'payload.big' is longer than")
    assert records[1] == Record(5, {"type": "y", "payload": {"big": "2"}})


def test_csv_missing_type_column_lists_header(tmp_path):
    path = write(tmp_path, "m.csv", b"Type,payload\nx,{}\n")

    assert read_error(path) == (f"{path}:1: missing required column 'type'; found columns: ['Type', 'payload'] "
                                "with delimiter ','; fix the header or pass --delimiter")


def test_csv_missing_column_shows_hidden_characters(tmp_path):
    path = write(tmp_path, "m.csv", "type\u200b,payload\nx,{}\n".encode())

    assert "found columns: ['type\\u200b', 'payload']" in read_error(path)


def test_csv_missing_payload_column(tmp_path):
    path = write(tmp_path, "m.csv", b"type,data\nx,{}\n")

    assert read_error(path).startswith(f"{path}:1: missing required column 'payload' (or payload.FIELD columns);")


def test_csv_wrong_delimiter_names_both_columns(tmp_path):
    path = write(tmp_path, "m.csv", b"type:payload\nx:{}\n")

    message = read_error(path)

    assert message.startswith(f"{path}:1: missing required columns 'type' and 'payload'")
    assert "found columns: ['type:payload']" in message


def test_csv_header_error_names_header_line(tmp_path):
    path = write(tmp_path, "m.csv", b"\n\ntype,body\nx,{}\n")

    assert read_error(path).startswith(f"{path}:3: missing required column")


def test_csv_payload_and_payload_fields_raise(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload,payload.a\nx,{},1\n")

    assert read_error(path) == (f"{path}:1: the header has both a 'payload' column and payload.FIELD columns; "
                                "use one or the other")


def test_csv_duplicate_column_raises(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.a, type\nx,1,y\n")

    assert read_error(path) == f"{path}:1: duplicate column 'type'; keep one column per field"


def test_csv_duplicate_payload_column_raises(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.a,payload.a\nx,1,2\n")

    assert read_error(path) == f"{path}:1: duplicate column 'payload.a'; keep one column per field"


def test_csv_conflicting_payload_paths_raise(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.order,payload.order.id\nx,1,2\n")

    assert read_error(path).startswith(f"{path}:1: column 'payload.order.id' puts a member inside payload.order")


def test_csv_empty_payload_member_name_raises(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload..a\nx,1\n")

    assert read_error(path).startswith(f"{path}:1: column 'payload..a' has an empty member name")


def test_csv_unnamed_column_value_rejected(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload.a,\nx,1,\ny,2,stray\n")

    records = read(path)

    assert records[0] == Record(2, {"type": "x", "payload": {"a": "1"}})
    assert records[1] == Record(3, None, "column 3 has no name in the header but contains 'stray'; "
                                         "name the column or delete the value")


def test_csv_header_only_raises(tmp_path):
    path = write(tmp_path, "m.csv", b"type,payload\n\n")

    assert read_error(path) == f"{path}: file contains a header but no rows; add one row per message"


def test_csv_gzip_file(tmp_path):
    path = write(tmp_path, "m.csv.gz", gzip.compress(b"type,payload.a\r\nx,1\r\n"))

    assert read(path) == [Record(2, {"type": "x", "payload": {"a": "1"}})]


def test_tsv_gzip_file_uses_tab(tmp_path):
    path = write(tmp_path, "m.tsv.gz", gzip.compress(b"type\tpayload.a,b\nx\t1\n"))

    assert read(path) == [Record(2, {"type": "x", "payload": {"a,b": "1"}})]


# Standard input


def test_stdin_jsonl_sniffed(monkeypatch):
    use_stdin(monkeypatch, b'\n  {"n": 1}\n{"n": 2}\n')

    assert read("-") == [Record(2, {"n": 1}), Record(3, {"n": 2})]


def test_stdin_json_array_sniffed(monkeypatch):
    use_stdin(monkeypatch, b'\xef\xbb\xbf[\n{"n": 1}]')

    assert read("-") == [Record(2, {"n": 1})]


def test_stdin_csv_sniffed(monkeypatch):
    use_stdin(monkeypatch, b"type,payload.a\nx,1\n")

    assert read("-") == [Record(2, {"type": "x", "payload": {"a": "1"}})]


def test_stdin_gzip_detected(monkeypatch):
    use_stdin(monkeypatch, gzip.compress(b'{"n": 1}\n'))

    assert read("-") == [Record(1, {"n": 1})]


def test_stdin_format_option(monkeypatch):
    use_stdin(monkeypatch, b'{"n": 1}\n')

    assert read("-", format="jsonl") == [Record(1, {"n": 1})]


def test_stdin_named_in_errors(monkeypatch):
    use_stdin(monkeypatch, b"")

    assert read_error("-") == "<stdin>: file is empty; add at least one message"


def test_stdin_taken_at_call_time(monkeypatch):
    use_stdin(monkeypatch, b'{"n": 1}\n')
    records = read_records("-")
    use_stdin(monkeypatch, b'{"n": 2}\n')

    assert list(records) == [Record(1, {"n": 1})]


# Whole-file problems and arguments


def test_empty_file_raises(tmp_path):
    path = write(tmp_path, "m.jsonl", b"")

    assert read_error(path) == f"{path}: file is empty; add at least one message"


def test_byte_order_mark_only_file_is_empty(tmp_path):
    path = write(tmp_path, "m.csv", b"\xef\xbb\xbf")

    assert read_error(path) == f"{path}: file is empty; add at least one message"


def test_blank_lines_only_file_raises(tmp_path):
    path = write(tmp_path, "m.csv", b"\n  \r\n\t\r")

    assert read_error(path) == f"{path}: file contains only blank lines; add at least one message"


def test_empty_file_raises_only_at_iteration(tmp_path):
    path = write(tmp_path, "m.jsonl", b"")

    records = read_records(path)

    with pytest.raises(InputError):
        next(records)


def test_missing_file_raises(tmp_path):
    path = tmp_path / "absent.jsonl"

    assert read_error(path) == f"{path}: file not found; check the path"


def test_directory_raises(tmp_path):
    path = tmp_path / "orders.csv"
    path.mkdir()

    assert read_error(path) == f"{path}: is a directory; pass a file"


def test_permission_denied_raises(tmp_path, monkeypatch):
    path = write(tmp_path, "m.jsonl", b'{"n": 1}\n')

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # The tests may run as root, which chmod cannot lock out, so open itself is replaced.
    monkeypatch.setattr(_lines, "open", deny, raising=False)

    assert read_error(path) == f"{path}: permission denied; make the file readable or pass another file"


def test_unknown_extension_raises(tmp_path):
    path = write(tmp_path, "m.txt", b'{"n": 1}\n')

    assert read_error(path) == f"{path}: cannot tell the format from the extension '.txt'; pass --input-format jsonl, json or csv"


def test_unknown_format_option_raises(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"n": 1}\n')

    assert read_error(path, format="xml") == "unknown format 'xml'; use jsonl, json or csv"


def test_unknown_encoding_raises(tmp_path):
    path = write(tmp_path, "m.jsonl", b'{"n": 1}\n')

    assert read_error(path, encoding="klingon").startswith("unknown encoding 'klingon';")


def test_utf16_encoding_option_rejected(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"n": 1}\n'.encode("utf-16"))

    assert read_error(path, encoding="utf-16").startswith("encoding 'utf-16' is not supported")


def test_utf16_file_rejected(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"n": 1}\n'.encode("utf-16"))

    assert read_error(path).startswith(f"{path}: file starts with a UTF-16 or UTF-32 byte order mark")


def test_invalid_arguments_raise_at_call(tmp_path):
    with pytest.raises(InputError):
        read_records(tmp_path / "m.jsonl", format="xml")


# Memory


def test_jsonl_large_file_streams(tmp_path):
    line_count = 200_000
    path = tmp_path / "big.jsonl"
    with path.open("wb") as file:
        for number in range(line_count):
            file.write(b'{"type": "t", "payload": {"n": %d, "pad": "abcdefghijklmnopqrstuvwxyz"}}\n' % number)
    assert path.stat().st_size > 10_000_000

    started = time.perf_counter()
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_records(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == line_count
    assert peak < 2_000_000  # bytes; about one 64 KiB block, one line and small objects
    assert time.perf_counter() - started < 10  # seconds, with tracemalloc slowing allocations


def test_csv_payload_keeps_raw_line_break(tmp_path):
    path = write(tmp_path, "a.csv", b'type,payload\r\nA,"{""note"": ""two\r\nlines""}"\r\n')
    records = read(path)
    assert records[0].error is None
    assert records[0].fields["payload"] == {"note": "two\r\nlines"}


def test_jsonl_raw_control_character_invalid(tmp_path):
    path = write(tmp_path, "a.jsonl", b'{"type": "A", "payload": {"note": "tab\there"}}\n')
    records = read(path)
    assert records[0].error.startswith("invalid JSON: Invalid control character")
