"""Reading a delimited text file into a frame of text cells: bytes, decompression, text encoding and BOM,
delimiter sniffing, CSV records, header names and ragged rows.

Every cell comes back as the exact text of the file (no number parsing, no missing-value conversion: that
is the job of `abag.data.cells`). `read_bytes` and `decode_bytes` are shared with the other text formats
(FASTA, AIRR: `abag.data.formats`). May import: abag.data.report, the standard library, pandas.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import gc
import gzip
import io
import lzma
import os
import re
import sys
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from abag.data.report import DataValidationError, RowProblem, file_error

__all__ = ["read_delimited", "read_bytes", "decode_bytes", "table_from_text", "gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building ~10^5 small lists: it otherwise triples load time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_TAB_SUFFIXES = (".tsv", ".tab")
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zip")


def read_delimited(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV/TSV file (optionally compressed) with every cell as a string.

    Accepts UTF-8 with or without BOM, UTF-16/UTF-32 with BOM, CRLF/LF/CR line ends, .gz/.bz2/
    .xz/.zip, and comma, tab or semicolon delimiters. Any failure is a `DataValidationError`.
    """
    source = str(path)
    return table_from_text(decode_bytes(read_bytes(path), source), source)  # the bytes are freed here


def table_from_text(text: str, source: str) -> pd.DataFrame:
    """The frame of text cells of a decoded CSV/TSV text (the delimiter is sniffed from the header)."""
    delimiter = _choose_delimiter(source, text)
    with gc_paused():
        records = _parse_records(text, delimiter, source)
        return _records_to_frame(records, source)


def decode_bytes(raw: bytes, source: str) -> str:
    """Decompress (gzip, xz, bz2, one-member zip) and decode (UTF-8/16/32, BOM) a file's bytes into text."""
    return _decode(_decompress(raw, source), source)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The raw bytes of a file; a missing file, a directory or an unreadable file is a `DataValidationError`."""
    return _read_bytes(Path(path), str(path))


def _read_bytes(path: Path, source: str) -> bytes:
    if not path.exists():
        raise file_error(source, f"file not found: {source}")
    if path.is_dir():
        raise file_error(source, f"{source} is a directory, not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise file_error(source, f"could not read the file: {exc.strerror or exc}") from None


# RuntimeError and NotImplementedError come from encrypted or exotic .zip members.
_DECOMPRESSION_ERRORS = (
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
    ValueError,
    RuntimeError,
    NotImplementedError,
)


def _decompress(raw: bytes, source: str) -> bytes:
    """Decompress by magic bytes, so a mis-named file still works and a plain .gz name is no trap."""
    name = source.lower()
    try:
        if raw.startswith(b"\x1f\x8b"):
            return gzip.decompress(raw)
        if raw.startswith(b"\xfd7zXZ\x00"):
            return lzma.decompress(raw)
        if raw.startswith(b"BZh") and name.endswith(".bz2"):
            return bz2.decompress(raw)
        if raw.startswith(b"PK\x03\x04"):
            return _unzip_single_member(raw, source)
    except DataValidationError:
        raise
    except _DECOMPRESSION_ERRORS as exc:
        raise file_error(source, f"could not decompress the file (corrupt or truncated archive): {exc}") from None
    return raw


def _unzip_single_member(raw: bytes, source: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if any(m.filename == "[Content_Types].xml" for m in members):  # xlsx/docx: workbooks are read before this
            raise file_error(source, "an Office file that is not a readable Excel workbook (no xl/workbook.xml): "
                                     "open it and save it as .xlsx or as CSV UTF-8")
        if len(members) != 1:
            raise file_error(source, f"a .zip file must hold exactly one table, found {len(members)} files")
        return archive.read(members[0])


_BOMS = (  # UTF-32 first: its little-endian BOM starts with the UTF-16 one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _guess_encoding(raw: bytes) -> str:
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return encoding
    return _guess_bomless_utf16(raw) or "utf-8"


def _guess_bomless_utf16(raw: bytes) -> str | None:
    """UTF-16 without BOM: ASCII text shows up as every other byte being zero."""
    head = raw[:2000]
    if len(head) < 4 or len(raw) % 2 or b"\x00" not in head:
        return None
    if head[1::2].count(0) > 0.9 * len(head[1::2]):
        return "utf-16-le"
    if head[0::2].count(0) > 0.9 * len(head[0::2]):
        return "utf-16-be"
    return None


def _decode(raw: bytes, source: str) -> str:
    if not raw.strip():
        raise file_error(source, "the file is empty")
    try:
        text = raw.decode(_guess_encoding(raw))
    except UnicodeDecodeError as exc:
        raise file_error(
            source,
            f"not a UTF-8 or UTF-16 text file (undecodable byte at offset {exc.start}); save it as CSV UTF-8",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:  # NUL never occurs in text tables; it means binary data (xlsx, pickle, …)
        raise file_error(source, "not a UTF-8 or UTF-16 text file (contains NUL bytes: binary data?)")
    if not text.strip():
        raise file_error(source, "the file is empty")
    return text


def _choose_delimiter(source: str, text: str) -> str:
    """The header decides when it is unambiguous; otherwise the file extension does."""
    header = re.split(r"\r\n|\r|\n", text.lstrip("\r\n"), maxsplit=1)[0]
    has_comma, has_tab = "," in header, "\t" in header
    if has_tab and not has_comma:
        return "\t"
    if has_comma and not has_tab:
        return ","
    name = source.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    if name.endswith(_TAB_SUFFIXES):
        return "\t"
    if not has_comma and ";" in header:  # spreadsheet exports in comma-decimal locales
        return ";"
    return ","


def _raise_csv_field_limit() -> None:
    """Sequences can be huge; the csv module's default field limit is 128 KiB."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # C long is 32-bit on some platforms
            limit //= 2


# A line and its ending, split like a file opened with newline="" (\n, \r or \r\n, kept).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _lines(text: str) -> Iterator[str]:
    """The lines csv.reader needs, one at a time: io.StringIO would first copy the text at 4 bytes a character."""
    return (match.group() for match in _LINE.finditer(text))


def _parse_records(text: str, delimiter: str, source: str) -> list[list[str]]:
    _raise_csv_field_limit()
    reader = csv.reader(_lines(text), delimiter=delimiter, strict=True)
    records: list[list[str]] = []
    try:
        for record in reader:
            records.append(record)
    except csv.Error as exc:
        raise DataValidationError([_csv_error_problem(str(exc), records)], source) from None
    return records


def _csv_error_problem(message: str, records_so_far: list[list[str]]) -> RowProblem:
    if "unexpected end of data" in message:
        reason = "unterminated quoted field: a '\"' opened here is never closed"
    elif "expected after" in message:
        reason = "malformed quoting: a closing '\"' must be followed by the delimiter"
    else:
        reason = f"malformed CSV: {message}"
    n_blank_leading = _count_leading_blank(records_so_far)
    data_row = len(records_so_far) - n_blank_leading  # the header is the first non-blank record
    if data_row <= 0:
        return RowProblem(None, None, f"header: {reason}")
    return RowProblem(data_row, None, reason)


def _is_blank_record(record: list[str]) -> bool:
    """A blank line: csv yields [] (or one whitespace-only field for a line of spaces)."""
    return not record or (len(record) == 1 and not record[0].strip())


def _count_leading_blank(records: list[list[str]]) -> int:
    count = 0
    while count < len(records) and _is_blank_record(records[count]):
        count += 1
    return count


def _records_to_frame(records: list[list[str]], source: str) -> pd.DataFrame:
    records = records[_count_leading_blank(records) :]
    while records and _is_blank_record(records[-1]):
        records.pop()
    if not records:
        raise file_error(source, "the file is empty")
    names = _column_names(records[0])
    data = records[1:]
    problems = _duplicate_name_problems(names) + _ragged_row_problems(data, len(names))
    if problems:
        raise DataValidationError(problems, source)
    # Blank lines inside the table become all-empty rows, so row numbers match the file.
    rows = [[""] * len(names) if _is_blank_record(r) else r for r in data]
    frame = pd.DataFrame(rows, columns=range(len(names)), dtype=str)
    frame.columns = names
    return frame


def _column_names(header: list[str]) -> list[str]:
    return [name if name.strip() else f"Unnamed: {i}" for i, name in enumerate(header)]


def _duplicate_name_problems(names: list[str]) -> list[RowProblem]:
    seen: dict[str, int] = {}
    problems = []
    for position, name in enumerate(names, start=1):
        if name in seen:
            problems.append(
                RowProblem(None, name, f"duplicate column name (columns {seen[name]} and {position})", name)
            )
        else:
            seen[name] = position
    return problems


def _ragged_row_problems(data: list[list[str]], n_columns: int) -> list[RowProblem]:
    return [
        RowProblem(row, None, f"expected {n_columns} field(s) like the header, found {len(record)}")
        for row, record in enumerate(data, start=1)
        if len(record) != n_columns and not _is_blank_record(record)
    ]
