"""Split an input file into numbered lines of bytes and decode them one at a time.

Every input format is read through `read_lines`, so all of them count lines the same way
and keep memory use near one block plus the longest line.
"""

from __future__ import annotations

import codecs
import gzip
import os
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from typing import BinaryIO

from .errors import InputError

BLOCK_SIZE = 64 * 1024  # bytes per read
GZIP_MAGIC = b"\x1f\x8b"
# The UTF-32 little-endian byte order mark starts with the UTF-16 one, so both are caught.
_UTF16_BYTE_ORDER_MARKS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)
_ASCII_SAMPLE = "\r\n\t ,;|\"{}[]:azAZ09"


def resolve_encoding(encoding: str | None) -> str:
    """Return the Python codec name for `encoding`, which defaults to UTF-8.

    Raises InputError when the codec is unknown or is not ASCII-compatible, because lines,
    quotes and delimiters are found in the raw bytes before decoding.
    """
    if encoding is None:
        return "utf-8"

    try:
        name = codecs.lookup(encoding).name
        sample_matches = _ASCII_SAMPLE.encode(name) == _ASCII_SAMPLE.encode("ascii")
    except LookupError:
        raise InputError(
            f"unknown encoding {encoding!r}; pass a Python codec name such as utf-8 or cp1252"
        ) from None
    if not sample_matches:
        raise InputError(
            f"encoding {encoding!r} is not supported because it is not ASCII-compatible; "
            "convert the file to UTF-8 first (for example with iconv -t UTF-8)"
        )

    # utf-8-sig would drop a byte order mark at the start of every line, so the single
    # file-level mark is dropped by read_lines instead.
    return "utf-8" if name == "utf-8-sig" else name


def describe_decode_error(error: UnicodeDecodeError, encoding: str, line: int | None = None) -> str:
    """Return the record error for a line that `encoding` cannot decode.

    The column is the 1-based byte offset in the line. `line` is given when the byte is
    on a later line than the one where the record starts.
    """
    byte = error.object[error.start]
    place = f"on line {line} at column {error.start + 1}" if line else f"at column {error.start + 1}"
    if encoding == "utf-8":
        return f"byte 0x{byte:02X} {place} is not valid UTF-8; pass --encoding (for example --encoding cp1252)"
    return (
        f"byte 0x{byte:02X} {place} is not valid {encoding}; "
        "pass the file's encoding with --encoding (for example --encoding utf-8)"
    )


def read_lines(path: str | os.PathLike | None, stdin: BinaryIO | None, name: str,
               encoding: str) -> Iterator[tuple[int, bytes]]:
    """Open `path` (or read `stdin` when path is None) and yield (line number, line) pairs.

    Each line keeps its line ending, which is one of \\r\\n, \\r and \\n. Gzip data is
    decompressed when the name ends in .gz or the data starts with the gzip magic bytes.
    A UTF-8 byte order mark at the start is dropped when `encoding` is utf-8. Raises
    InputError naming `name` when the file cannot be opened, read or decompressed.
    """
    with ExitStack() as stack:
        if path is None:
            stream = stdin
        else:
            stream = stack.enter_context(_open_file(path, name))
        gzip_expected = path is not None and name.lower().endswith(".gz")
        lines = _split_lines(_read_blocks(stream, name, gzip_expected))

        first = next(lines, None)
        if first is None:
            return
        if first.startswith(_UTF16_BYTE_ORDER_MARKS):
            raise InputError(
                f"{name}: file starts with a UTF-16 or UTF-32 byte order mark; "
                "convert it to UTF-8 (for example with iconv -f UTF-16 -t UTF-8)"
            )
        if encoding == "utf-8" and first.startswith(codecs.BOM_UTF8):
            first = first[len(codecs.BOM_UTF8):]
        if first:
            yield 1, first
        yield from enumerate(lines, 2)


def _open_file(path: str | os.PathLike, name: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{name}: file not found; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory; pass a file") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied; make the file readable or pass another file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot open the file: {exc.strerror or exc}") from None


def _read_blocks(stream: BinaryIO, name: str, gzip_expected: bool) -> Iterator[bytes]:
    """Yield the stream's data in blocks, decompressed when it is gzip data."""
    # read1 returns what one read of the source gives, up to BLOCK_SIZE, so that lines arriving
    # slowly through a pipe are handled as they come instead of once 64 KiB have gathered.
    try:
        first = _read_some(stream)
        if gzip_expected or first.startswith(GZIP_MAGIC):
            stream = gzip.GzipFile(fileobj=_PrefixedStream(first, stream), mode="rb")
            first = _read_some(stream)
        block = first
        while block:
            yield block
            block = _read_some(stream)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InputError(
            f"{name}: invalid gzip data ({exc}); check that the file is complete, "
            "or rename it without .gz if it is not compressed"
        ) from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read the file: {exc.strerror or exc}") from None


def _read_some(stream: BinaryIO) -> bytes:
    read1 = getattr(stream, "read1", None)
    return read1(BLOCK_SIZE) if read1 is not None else stream.read(BLOCK_SIZE)


class _PrefixedStream:
    """Binary stream that returns `prefix` and then the rest of `stream`.

    GzipFile reads through it after the first block was read to look for the gzip magic
    bytes, which works on pipes that cannot seek back.
    """

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if not self._prefix:
            return self._stream.read(size)

        if size < 0:
            data = self._prefix + self._stream.read()
            self._prefix = b""
            return data
        data = self._prefix[:size]
        self._prefix = self._prefix[size:]
        return data


def _split_lines(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Yield the lines of a stream of blocks, each with its \\r\\n, \\r or \\n ending."""
    pending: list[bytes] = []  # parts of a line whose end was not read yet
    for block in blocks:
        if pending and pending[-1].endswith(b"\r"):
            # A \r that ended the previous block is a whole line ending unless \n follows.
            if block.startswith(b"\n"):
                pending.append(b"\n")
                block = block[1:]
            yield b"".join(pending)
            pending = []
            if not block:
                continue

        parts = block.splitlines(keepends=True)  # bytes split only on \r\n, \r and \n
        # The last part is unfinished unless it ends in \n, and a \r may still gain its \n.
        tail = None if parts[-1].endswith(b"\n") else parts.pop()
        if parts and pending:
            pending.append(parts[0])
            parts[0] = b"".join(pending)
            pending = []
        yield from parts
        if tail is not None:
            pending.append(tail)

    if pending:
        yield b"".join(pending)
