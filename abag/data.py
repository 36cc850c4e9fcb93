"""Loading and validating antibody–antigen affinity tables.

`load_pairs(path)` reads a CSV/TSV file and returns a canonical table plus a `LoadReport`;
`prepare_pairs(df)` does the same for a DataFrame already in memory. Every problem in the input
is collected and reported at once (`DataValidationError`), or, with `drop_invalid=True`, the
offending rows are dropped and listed in `LoadReport.rejected` — never silently.

Output columns, in this order: `heavy, light, antigen, pkd, censored, source_row` (plus `replicate`
with `replicates="flag"`), then every other column of the input, unchanged. `source_row` is the
1-based data row number in the input (the first row after the header is 1).

Accepted columns (names are case-insensitive; surrounding whitespace is ignored, and spaces or
hyphens inside a name count as underscores, so `Heavy Chain` = `heavy_chain`):

| canonical | accepted column names | notes |
|---|---|---|
| `heavy` | `heavy`, `heavy_chain`, `heavy_sequence`, `vh`, `antibody_sequence` | required, non-empty |
| `light` | `light`, `light_chain`, `light_sequence`, `vl` | optional; an empty cell or a missing column means a single-domain antibody (VHH) |
| `antigen` | `antigen`, `antigen_sequence`, `antigen_seq` | required; several chains joined with `\\|` |
| `pkd` | `pkd` (e.g. `pKd`) | −log10(Kd / M); required unless `require_pkd=False`; `<6` means censored (true pKd ≤ 6) |
| `pkd` from Kd | `kd` together with a unit column `kd_unit` or `unit` | unit values `M`, `mM`, `uM`, `µM`, `μM`, `nM`, `pM`, `fM` (any case); pKd = −log10(Kd in M) |
| `pkd` from Kd | unit in the name: `kd_M`, `kd_mM`, `kd_uM`, `kd_µM`, `kd_nM`, `kd_pM`, `kd_fM`, `Kd (nM)`, `Kd [nM]`, `Kd nM` | `>10000` means censored (Kd ≥ 10000, so pKd ≤ the converted value) |
| `censored` | `censored`, `at_lower_bound` | `true/false/1/0/yes/no` or empty (= false); true: the real pKd is at most the value (assay floor) |

Rules worth knowing:
- When both a pKd and a Kd column are present, the pKd column is used (with a warning) and the Kd
  column is kept as an ordinary column. When the canonical name and an alias are both present
  (`heavy` and `vh`), the canonical one is used (with a warning); two aliases and no canonical
  name is an error, because guessing could silently pick the wrong sequences.
- Sequences: all whitespace is removed and letters are upper-cased; only the 20 standard amino
  acids are accepted; each chain may hold at most `MAX_CHAIN_LENGTH` residues.
- Censoring qualifiers: `<`, `<=`, `≤` before a pKd and `>`, `>=`, `≥` before a Kd mark the row
  censored. `pkd >x` and `Kd <x` (true affinity above the reported value) are rejected:
  right-censored values are not supported.
- Numbers are plain decimals (`7.5`, `1e-9`); `nan`, `inf`, `7,5` and `1_0` are rejected.
- Replicates (same heavy, light, antigen after normalisation): `keep` all rows (default), `flag`
  them in a bool column `replicate`, or `mean` them into one row (the first row's other columns):
  exact values are averaged and censored ones ignored; if all are censored, the row stays censored
  with the smallest bound (the true pKd is below every bound).
- Rows whose cells are all empty are skipped with a warning; they are not counted as data rows.
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
import math
import numbers
import os
import re
import sys
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from abag.errors import AbagError
from abag.policy import AMINO_ACIDS, PKD_RANGE, STANDARD_AMINO_ACIDS

__all__ = [
    "STANDARD_AMINO_ACIDS",
    "PKD_MODEL_RANGE",
    "MAX_CHAIN_LENGTH",
    "REPLICATE_POLICIES",
    "OUTPUT_COLUMNS",
    "RowProblem",
    "DataValidationError",
    "LoadReport",
    "read_table",
    "prepare_pairs",
    "load_pairs",
    "write_rejected",
]

PKD_MODEL_RANGE = PKD_RANGE  # what the model can predict (kept under its old name)
MAX_CHAIN_LENGTH = 20_000  # longer chains are rejected with a reason
REPLICATE_POLICIES = ("keep", "mean", "flag")
OUTPUT_COLUMNS = ("heavy", "light", "antigen", "pkd", "censored", "source_row")

_VALUE_PREVIEW_CHARS = 40
_MAX_PROBLEMS_SHOWN = 20
_ALLOWED_RESIDUES_TEXT = "allowed: the 20 standard amino acids"


# --------------------------------------------------------------------------------------------
# Problems and errors
# --------------------------------------------------------------------------------------------


def _preview(value: object) -> str:
    """Shorten a value for messages: a 1 MB sequence must not flood the terminal."""
    text = str(value)
    if len(text) <= _VALUE_PREVIEW_CHARS:
        return text
    return text[: _VALUE_PREVIEW_CHARS - 1] + "…"


@dataclass(frozen=True)
class RowProblem:
    """One problem in the input: where it is (row, column as named in the file) and why."""

    row: int | None
    column: str | None
    reason: str
    value: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _preview(self.value))

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where) or 'file'}: {self.reason}"


def _format_problems(problems: Sequence[RowProblem], source: str) -> str:
    n_bad_rows = len({p.row for p in problems if p.row is not None})
    header = f"{n_bad_rows} invalid row(s) in {source}:" if n_bad_rows else f"cannot load {source}:"
    lines = [header] + [f"  {p}" for p in problems[:_MAX_PROBLEMS_SHOWN]]
    if len(problems) > _MAX_PROBLEMS_SHOWN:
        lines.append(f"  … and {len(problems) - _MAX_PROBLEMS_SHOWN} more")
    return "\n".join(lines)


class DataValidationError(AbagError, ValueError):
    """Raised with every problem found, all at once (`problems`); `str(err)` lists them."""

    exit_code = 2

    def __init__(self, problems: Sequence[RowProblem], source: str = "<DataFrame>"):
        self.problems: list[RowProblem] = list(problems)
        self.source = source
        super().__init__(_format_problems(self.problems, source))

    def __reduce__(self):  # keeps the error picklable (multiprocessing, joblib)
        return (type(self), (self.problems, self.source))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building ~10^5 small lists: it otherwise triples load time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _file_error(source: str, reason: str, value: str = "") -> DataValidationError:
    return DataValidationError([RowProblem(None, None, reason, value)], source)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What happened while loading: counts, rejected rows, replicates, censoring, warnings.

    `n_rows_read` counts data rows (blank rows excluded); `n_rows_kept + len(rejected) ==
    n_rows_read`. With `replicates="mean"` the kept rows are then merged, one per triplet, and
    `n_censored`, `n_outside_model_range` and `n_binders` describe the returned (merged) table.
    """

    source: str
    n_rows_read: int
    n_rows_kept: int
    rejected: list[RowProblem]
    n_outside_model_range: int
    n_replicate_groups: int
    n_replicate_rows: int
    replicates: str
    n_censored: int
    column_map: dict[str, str]
    warnings: list[str]
    binder_threshold: float = 9.0
    n_binders: int = 0  # output rows with an exact (uncensored) pKd >= binder_threshold

    @property
    def n_output_rows(self) -> int:
        """Rows in the returned table (smaller than n_rows_kept when replicates were averaged)."""
        if self.replicates == "mean":
            return self.n_rows_kept - self.n_replicate_rows + self.n_replicate_groups
        return self.n_rows_kept

    def summary(self) -> str:
        """A multi-line human summary of the load."""
        low, high = PKD_MODEL_RANGE
        lines = [
            f"Loaded {self.source}: {self.n_rows_read} row(s) read, {self.n_rows_kept} kept, "
            f"{len(self.rejected)} rejected."
        ]
        lines += [f"  rejected {p}" for p in self.rejected[:_MAX_PROBLEMS_SHOWN]]
        if len(self.rejected) > _MAX_PROBLEMS_SHOWN:
            lines.append(f"  … and {len(self.rejected) - _MAX_PROBLEMS_SHOWN} more (see write_rejected)")
        lines.append(
            f"pKd outside the model range [{low:g}, {high:g}]: {self.n_outside_model_range} row(s) "
            f"(kept; predictions are clamped to [{low:g}, {high:g}])."
        )
        lines.append(self._replicates_line())
        lines.append(f"Censored (true pKd at most the reported value): {self.n_censored} row(s).")
        lines.append(f"Binders (exact pKd >= {self.binder_threshold:g}): {self.n_binders} row(s).")
        lines.append("Columns used: " + ", ".join(f"{k} <- {v!r}" for k, v in self.column_map.items()))
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def _replicates_line(self) -> str:
        line = (
            f"Replicates: {self.n_replicate_groups} (heavy, light, antigen) triplet(s) with several rows, "
            f"{self.n_replicate_rows} row(s) in them; policy {self.replicates!r}"
        )
        if self.replicates == "mean":
            line += f" (averaged to {self.n_output_rows} row(s))"
        return line + "."

    def rejected_frame(self) -> pd.DataFrame:
        """The rejected rows as a table with columns row, column, reason, value."""
        return pd.DataFrame(
            {
                "row": pd.array([p.row for p in self.rejected], dtype="Int64"),
                "column": pd.Series([p.column for p in self.rejected], dtype=object),
                "reason": pd.Series([p.reason for p in self.rejected], dtype=object),
                "value": pd.Series([p.value for p in self.rejected], dtype=object),
            }
        )


def write_rejected(report: LoadReport, path: str | os.PathLike) -> None:
    """Write the rejected rows and their reasons as a UTF-8 CSV (row, column, reason, value)."""
    from abag.outputs import write_csv_atomic

    write_csv_atomic(path, report.rejected_frame())


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------

_TAB_SUFFIXES = (".tsv", ".tab")
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zip")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV/TSV file (optionally compressed) with every cell as a string.

    Accepts UTF-8 with or without BOM, UTF-16/UTF-32 with BOM, CRLF/LF/CR line ends, .gz/.bz2/
    .xz/.zip, and comma, tab or semicolon delimiters. Any failure is a `DataValidationError`.
    """
    source = str(path)
    raw = _decompress(_read_bytes(Path(path), source), source)
    text = _decode(raw, source)
    delimiter = _choose_delimiter(source, text)
    with _gc_paused():
        records = _parse_records(text, delimiter, source)
        return _records_to_frame(records, source)


def _read_bytes(path: Path, source: str) -> bytes:
    if not path.exists():
        raise _file_error(source, f"file not found: {source}")
    if path.is_dir():
        raise _file_error(source, f"{source} is a directory, not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _file_error(source, f"could not read the file: {exc.strerror or exc}") from None


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
        raise _file_error(source, f"could not decompress the file (corrupt or truncated archive): {exc}") from None
    return raw


def _unzip_single_member(raw: bytes, source: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) != 1:
            raise _file_error(source, f"a .zip file must hold exactly one table, found {len(members)} files")
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
        raise _file_error(source, "the file is empty")
    try:
        text = raw.decode(_guess_encoding(raw))
    except UnicodeDecodeError as exc:
        raise _file_error(
            source,
            f"not a UTF-8 or UTF-16 text file (undecodable byte at offset {exc.start}); save it as CSV UTF-8",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:  # NUL never occurs in text tables; it means binary data (xlsx, pickle, …)
        raise _file_error(source, "not a UTF-8 or UTF-16 text file (contains NUL bytes: binary data?)")
    if not text.strip():
        raise _file_error(source, "the file is empty")
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


def _parse_records(text: str, delimiter: str, source: str) -> list[list[str]]:
    _raise_csv_field_limit()
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
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
        raise _file_error(source, "the file is empty")
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


# --------------------------------------------------------------------------------------------
# Column recognition
# --------------------------------------------------------------------------------------------

_SEQUENCE_ALIASES = {  # canonical name first: it wins over an alias
    "heavy": ("heavy", "heavy_chain", "heavy_sequence", "vh", "antibody_sequence"),
    "light": ("light", "light_chain", "light_sequence", "vl"),
    "antigen": ("antigen", "antigen_sequence", "antigen_seq"),
}
_PKD_ALIASES = ("pkd",)
_CENSORED_ALIASES = ("censored", "at_lower_bound")
_KD_UNIT_COLUMN_ALIASES = ("kd_unit", "unit")
_KD_UNIT_EXPONENTS = {"m": 0, "mm": -3, "um": -6, "µm": -6, "μm": -6, "nm": -9, "pm": -12, "fm": -15}
_KD_UNITS_TEXT = "M, mM, uM, µM, nM, pM, fM"
_KD_NAME_WITH_UNIT = re.compile(r"kd_?[(\[]?(?P<unit>m|mm|um|µm|μm|nm|pm|fm)[)\]]?")


def _column_key(name: object) -> str:
    """How a column name is compared: case, BOM, surrounding space and separators ignored."""
    key = str(name).replace("\ufeff", "").strip().lower()
    return re.sub(r"[\s\-]+", "_", key)


@dataclass
class _ColumnPlan:
    heavy: Any = None
    light: Any = None
    antigen: Any = None
    affinity: Any = None  # the pkd or kd column
    affinity_is_kd: bool = False
    kd_exponent: int | None = None  # set when the unit is in the Kd column's name
    kd_unit_column: Any = None
    censored: Any = None
    warnings: list[str] = field(default_factory=list)

    def consumed(self) -> list[Any]:
        used = [self.heavy, self.light, self.antigen, self.affinity, self.kd_unit_column, self.censored]
        return [c for c in used if c is not None]

    def column_map(self) -> dict[str, str]:
        mapping = {"heavy": self.heavy, "light": self.light, "antigen": self.antigen}
        mapping = {k: str(v) for k, v in mapping.items() if v is not None}
        if self.affinity is not None:
            mapping["pkd"] = f"{self.affinity} (converted)" if self.affinity_is_kd else str(self.affinity)
        if self.kd_unit_column is not None:
            mapping["kd_unit"] = str(self.kd_unit_column)
        if self.censored is not None:
            mapping["censored"] = str(self.censored)
        return mapping


def _pick_column(
    columns: list[Any], aliases: tuple[str, ...], role: str, plan: _ColumnPlan
) -> tuple[Any, list[RowProblem]]:
    """Find the column for one role; the canonical name beats aliases, two aliases are ambiguous."""
    candidates = [c for c in columns if _column_key(c) in aliases]
    canonical = [c for c in candidates if _column_key(c) == aliases[0]]
    if len(canonical) == 1:
        others = [c for c in candidates if c is not canonical[0]]
        if others:
            plan.warnings.append(
                f"column(s) {_names(others)} also look like {role!r}; using {canonical[0]!r} "
                "and keeping the others as ordinary columns"
            )
        return canonical[0], []
    if len(candidates) == 1:
        return candidates[0], []
    if not candidates:
        return None, []
    reason = f"several columns could be {role!r}: {_names(candidates)}; rename or remove all but one"
    return None, [RowProblem(None, str(candidates[0]), reason)]


def _names(columns: Sequence[Any], limit: int = 30) -> str:
    shown = ", ".join(repr(str(c)) for c in columns[:limit])
    return shown + (f", … ({len(columns) - limit} more)" if len(columns) > limit else "")


def _missing_column_problem(role: str, accepted: str, columns: list[Any]) -> RowProblem:
    found = _names(columns) if columns else "none"
    reason = f"missing required column {role!r} (accepted names: {accepted}; columns found: {found})"
    return RowProblem(None, None, reason)


def _resolve_columns(columns: list[Any], require_pkd: bool) -> tuple[_ColumnPlan, list[RowProblem]]:
    plan = _ColumnPlan()
    problems: list[RowProblem] = []
    for role, aliases in _SEQUENCE_ALIASES.items():
        chosen, found_problems = _pick_column(columns, aliases, role, plan)
        setattr(plan, role, chosen)
        problems += found_problems
        if chosen is None and role != "light" and not found_problems:
            problems.append(_missing_column_problem(role, ", ".join(aliases), columns))
    if plan.light is None and not problems:
        plan.warnings.append("no light-chain column: every light chain is empty (single-domain antibodies)")
    plan.censored, found_problems = _pick_column(columns, _CENSORED_ALIASES, "censored", plan)
    problems += found_problems
    problems += _resolve_affinity(columns, plan, require_pkd)
    return plan, problems


def _kd_columns(columns: list[Any]) -> list[Any]:
    return [c for c in columns if _column_key(c) == "kd" or _KD_NAME_WITH_UNIT.fullmatch(_column_key(c))]


def _resolve_affinity(columns: list[Any], plan: _ColumnPlan, require_pkd: bool) -> list[RowProblem]:
    pkd_column, problems = _pick_column(columns, _PKD_ALIASES, "pkd", plan)
    if problems:
        return problems
    kd_columns = _kd_columns(columns)
    if pkd_column is not None:
        plan.affinity = pkd_column
        if kd_columns:
            plan.warnings.append(
                f"both a pKd column ({pkd_column!r}) and Kd column(s) ({_names(kd_columns)}) are present: "
                "using the pKd column; the Kd column(s) are kept as ordinary columns"
            )
        return []
    if len(kd_columns) > 1:
        reason = f"several Kd columns: {_names(kd_columns)}; keep only one (or add a 'pkd' column)"
        return [RowProblem(None, str(kd_columns[0]), reason)]
    if kd_columns:
        return _resolve_kd(columns, kd_columns[0], plan)
    if require_pkd:
        accepted = f"pkd, or a Kd column with its unit: kd + kd_unit/unit, kd_nM, 'Kd (nM)', … (units {_KD_UNITS_TEXT})"
        return [_missing_column_problem("pkd", accepted, columns)]
    return []


def _resolve_kd(columns: list[Any], kd_column: Any, plan: _ColumnPlan) -> list[RowProblem]:
    plan.affinity, plan.affinity_is_kd = kd_column, True
    name_match = _KD_NAME_WITH_UNIT.fullmatch(_column_key(kd_column))
    if name_match:
        plan.kd_exponent = _KD_UNIT_EXPONENTS[name_match["unit"]]
        return []
    unit_column, problems = _pick_column(columns, _KD_UNIT_COLUMN_ALIASES, "kd_unit", plan)
    if problems:
        return problems
    if unit_column is None:
        reason = (
            f"Kd column {str(kd_column)!r} has no unit: add a 'kd_unit' column ({_KD_UNITS_TEXT}) "
            "or put the unit in the column name, e.g. 'kd_nM' or 'Kd (nM)'"
        )
        return [RowProblem(None, str(kd_column), reason)]
    plan.kd_unit_column = unit_column
    return []


# --------------------------------------------------------------------------------------------
# Cell validation
# --------------------------------------------------------------------------------------------

_WHITESPACE = re.compile(r"\s+")
_NON_RESIDUE = re.compile(f"[^{AMINO_ACIDS}{AMINO_ACIDS.lower()}]")
# Python's float() also takes "1_0", "infinity" and non-ASCII digits; a table must not.
_DECIMAL_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_QUALIFIER = re.compile(r"(<=|>=|≤|≥|<|>)\s*(.*)", re.DOTALL)
_TRUE_TEXTS = frozenset({"true", "1", "yes"})
_FALSE_TEXTS = frozenset({"false", "0", "no", ""})


def _show_char(char: str) -> str:
    return repr(char) if char.isprintable() else f"U+{ord(char):04X}"


def _chain_problems(chain: str) -> list[str]:
    """Reasons a whitespace-free chain is invalid (empty list: valid)."""
    reasons = []
    if len(chain) > MAX_CHAIN_LENGTH:
        reasons.append(f"sequence too long: {len(chain):,} residues (maximum {MAX_CHAIN_LENGTH:,})")
    first_bad = _NON_RESIDUE.search(chain)
    if first_bad:
        n_more = len(_NON_RESIDUE.findall(chain)) - 1
        more = f" and {n_more} more invalid character(s)" if n_more else ""
        reasons.append(
            f"invalid character {_show_char(first_bad.group())} at position {first_bad.start() + 1}{more} "
            f"({_ALLOWED_RESIDUES_TEXT})"
        )
    return reasons


def _normalize_sequence(raw: str, *, required: bool, multi_chain: bool) -> tuple[str, list[str]]:
    """Remove whitespace, upper-case, validate. Returns (normalised, reasons)."""
    sequence = _WHITESPACE.sub("", raw)
    if not sequence:
        return "", (["missing sequence (required)"] if required else [])
    chains = sequence.split("|") if multi_chain else [sequence]
    reasons = []
    for number, chain in enumerate(chains, start=1):
        prefix = f"chain {number} of {len(chains)}: " if len(chains) > 1 else ""
        if not chain:
            reasons.append(f"empty chain {number} of {len(chains)} (antigen chains are separated by '|')")
        reasons += [prefix + reason for reason in _chain_problems(chain)]
    # ASCII upper-casing only after validation: str.upper() maps 'ß' or 'ﬀ' to valid letters.
    return "|".join(chain.upper() for chain in chains), reasons


def _parse_decimal(text: str) -> float | None:
    return float(text) if _DECIMAL_NUMBER.fullmatch(text) else None


def _is_non_finite_word(text: str) -> bool:
    """'nan', '-inf', 'Infinity': worth a clearer message than 'not a number'."""
    return text.strip().lower().lstrip("+-") in {"nan", "inf", "infinity"}


def _number_problem(label: str, text: str, number: str) -> str | None:
    value = _parse_decimal(number)
    if value is None and _is_non_finite_word(number):
        return f"{label} {text!r} is not a finite number"
    if value is None:
        hint = " (use '.' as the decimal separator)" if re.fullmatch(r"[+-]?[0-9]+,[0-9]+", number) else ""
        return f"{label} {text!r} is not a number{hint}"
    if not math.isfinite(value):
        return f"{label} {text!r} is not a finite number"
    return None


@dataclass
class _Affinity:
    pkd: float = math.nan
    censored_by_qualifier: bool = False
    reason: str | None = None
    reason_column: Any = None


def _split_qualifier(text: str) -> tuple[str, str]:
    match = _QUALIFIER.fullmatch(text)
    return (match.group(1), match.group(2).strip()) if match else ("", text)


def _parse_pkd_cell(text: str) -> _Affinity:
    qualifier, number = _split_qualifier(text)
    if qualifier[:1] in (">", "≥"):
        return _Affinity(
            reason=f"right-censored values are not supported: pKd {text!r} (only '<' for pKd, "
            "meaning the true pKd is at most the value)"
        )
    reason = _number_problem("pKd", text, number)
    if reason:
        return _Affinity(reason=reason)
    return _Affinity(pkd=float(number), censored_by_qualifier=bool(qualifier))


def _kd_exponent(unit_text: str) -> int | None:
    return _KD_UNIT_EXPONENTS.get(unit_text.strip().lower())


def _parse_kd_cell(text: str, exponent: int | None, unit_text: str, unit_column: Any) -> _Affinity:
    qualifier, number = _split_qualifier(text)
    if qualifier[:1] in ("<", "≤"):
        return _Affinity(
            reason=f"right-censored values are not supported: Kd {text!r} (only '>' for Kd, "
            "meaning the true Kd is at least the value)"
        )
    reason = _number_problem("Kd", text, number)
    if reason:
        return _Affinity(reason=reason)
    kd = float(number)
    if kd <= 0:
        return _Affinity(reason=f"Kd must be positive, got {text!r}")
    if exponent is None:
        exponent = _kd_exponent(unit_text)
        if exponent is None:
            shown = f"unknown Kd unit {unit_text!r}" if unit_text.strip() else "missing Kd unit"
            return _Affinity(reason=f"{shown} (accepted: {_KD_UNITS_TEXT})", reason_column=unit_column)
    # log10(kd) + exponent instead of log10(kd * 10**exponent): no underflow for tiny Kd.
    return _Affinity(pkd=-(math.log10(kd) + exponent), censored_by_qualifier=bool(qualifier))


def _parse_censored_flag(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in _TRUE_TEXTS:
        return True
    if lowered in _FALSE_TEXTS:
        return False
    return None


# --------------------------------------------------------------------------------------------
# Preparing a table
# --------------------------------------------------------------------------------------------


def _cell_text(value: object) -> str:
    """A DataFrame cell as text: missing values (None, NaN, NA) become ''."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):  # list-like cells: pd.isna returns an array
        pass
    return str(value)


def _column_texts(df: pd.DataFrame, column: Any) -> list[str]:
    return [_cell_text(v) for v in df[column].tolist()]


@dataclass
class _RowValues:
    """The canonical values of all rows, plus the problems found, keyed by 0-based position."""

    heavy: list[str]
    light: list[str]
    antigen: list[str]
    pkd: list[float]
    censored: list[bool]
    problems: list[RowProblem]


class _SequenceColumn:
    """Validates one sequence column, caching by raw text (67k rows often share a few antigens)."""

    def __init__(self, df: pd.DataFrame, column: Any, *, required: bool, multi_chain: bool):
        self.column = column
        self.texts = _column_texts(df, column) if column is not None else [""] * len(df)
        self.required, self.multi_chain = required, multi_chain
        self._cache: dict[str, tuple[str, list[str]]] = {}

    def check(self, position: int, problems: list[RowProblem]) -> str:
        raw = self.texts[position]
        if raw not in self._cache:
            self._cache[raw] = _normalize_sequence(raw, required=self.required, multi_chain=self.multi_chain)
        normalized, reasons = self._cache[raw]
        problems += [RowProblem(position + 1, str(self.column), reason, raw) for reason in reasons]
        return normalized


def _validate_rows(df: pd.DataFrame, plan: _ColumnPlan, require_pkd: bool, rows: list[int]) -> _RowValues:
    heavy = _SequenceColumn(df, plan.heavy, required=True, multi_chain=False)
    light = _SequenceColumn(df, plan.light, required=False, multi_chain=False)
    antigen = _SequenceColumn(df, plan.antigen, required=True, multi_chain=True)
    affinity = _column_texts(df, plan.affinity) if plan.affinity is not None else None
    units = _column_texts(df, plan.kd_unit_column) if plan.kd_unit_column is not None else None
    flags = _column_texts(df, plan.censored) if plan.censored is not None else None
    values = _RowValues([], [], [], [], [], [])
    for position in rows:
        problems: list[RowProblem] = []
        values.heavy.append(heavy.check(position, problems))
        values.light.append(light.check(position, problems))
        values.antigen.append(antigen.check(position, problems))
        pkd, censored = _check_affinity(position, plan, require_pkd, affinity, units, flags, problems)
        values.pkd.append(pkd)
        values.censored.append(censored)
        values.problems += problems
    return values


def _check_affinity(
    position: int,
    plan: _ColumnPlan,
    require_pkd: bool,
    affinity: list[str] | None,
    units: list[str] | None,
    flags: list[str] | None,
    problems: list[RowProblem],
) -> tuple[float, bool]:
    """Parse the pKd (or Kd) cell and the censored flag of one row; append problems."""
    row = position + 1
    result = _Affinity()
    raw = affinity[position] if affinity is not None else ""
    if raw.strip():
        if plan.affinity_is_kd:
            unit_text = units[position] if units is not None else ""
            result = _parse_kd_cell(raw.strip(), plan.kd_exponent, unit_text, plan.kd_unit_column)
        else:
            result = _parse_pkd_cell(raw.strip())
    elif require_pkd:
        name = "Kd" if plan.affinity_is_kd else "pKd"
        result.reason = f"missing {name} value (required)"
    if result.reason:
        if result.reason_column is not None:  # the unit cell is at fault, not the Kd cell
            problems.append(RowProblem(row, str(result.reason_column), result.reason, units[position]))
        else:
            problems.append(RowProblem(row, str(plan.affinity), result.reason, raw))
    censored = _check_censored_flag(row, plan, flags[position] if flags is not None else "", result, raw, problems)
    return result.pkd, censored


def _check_censored_flag(
    row: int, plan: _ColumnPlan, flag_text: str, result: _Affinity, raw_affinity: str, problems: list[RowProblem]
) -> bool:
    flag = _parse_censored_flag(flag_text)
    column = str(plan.censored)
    if flag is None:
        reason = f"censored flag must be true/false, 1/0, yes/no or empty, got {flag_text.strip()!r}"
        problems.append(RowProblem(row, column, reason, flag_text))
        return False
    explicit_false = flag is False and flag_text.strip() != ""
    if explicit_false and result.censored_by_qualifier:
        reason = f"says not censored, but the affinity {raw_affinity.strip()!r} has a censoring qualifier"
        problems.append(RowProblem(row, column, reason, flag_text))
    censored = flag or result.censored_by_qualifier
    if censored and math.isnan(result.pkd) and not result.reason:
        problems.append(RowProblem(row, column, "censored, but the row has no affinity value", flag_text))
    return censored


def _blank_rows(df: pd.DataFrame) -> list[int]:
    """Positions of rows whose every cell is empty (blank lines, trailing Excel rows)."""
    if df.shape[1] == 0:
        return []
    candidates = range(len(df))
    for column in df.columns:
        texts = _column_texts(df, column)
        candidates = [i for i in candidates if not texts[i].strip()]
        if not candidates:
            break
    return list(candidates)


def _one_problem_per_row(problems: list[RowProblem]) -> list[RowProblem]:
    """Merge the problems of a rejected row into one entry, so rejected rows can be counted."""
    by_row: dict[int | None, list[RowProblem]] = {}
    for problem in problems:
        by_row.setdefault(problem.row, []).append(problem)
    merged = []
    for row_problems in by_row.values():
        first = row_problems[0]
        extra = [f"; column {p.column!r}: {p.reason}" if p.column else f"; {p.reason}" for p in row_problems[1:]]
        merged.append(RowProblem(first.row, first.column, first.reason + "".join(extra), first.value))
    return merged


def _output_frame(
    df: pd.DataFrame, plan: _ColumnPlan, values: _RowValues, positions: list[int], keep: list[int], reserved: set[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Assemble canonical columns for the kept rows, then the user's other columns unchanged."""
    index_of = {p: i for i, p in enumerate(positions)}
    picked = [index_of[p] for p in keep]
    out = pd.DataFrame(
        {
            "heavy": [values.heavy[i] for i in picked],
            "light": [values.light[i] for i in picked],
            "antigen": [values.antigen[i] for i in picked],
            "pkd": np.array([values.pkd[i] for i in picked], dtype=np.float64),
            "censored": np.array([values.censored[i] for i in picked], dtype=bool),
            "source_row": np.array([p + 1 for p in keep], dtype=np.int64),
        }
    )
    consumed = plan.consumed()
    extras = [c for c in df.columns if c not in consumed]  # labels are unique (checked earlier)
    extra_frame = df[extras].iloc[keep].reset_index(drop=True)
    warnings = []
    renamed = {}
    for column in extras:
        if str(column) in reserved:
            new_name = _free_name(f"{column}_input", set(map(str, df.columns)))
            renamed[column] = new_name
            warnings.append(f"input column {str(column)!r} clashes with an output column; renamed to {new_name!r}")
    extra_frame = extra_frame.rename(columns=renamed)
    return pd.concat([out, extra_frame], axis=1), warnings


def _free_name(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_input"
    return name


def _apply_replicate_policy(out: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, int, int]:
    """Count (heavy, light, antigen) replicates and apply the policy. Returns (frame, groups, rows)."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, key in enumerate(zip(out["heavy"], out["light"], out["antigen"])):
        groups.setdefault(key, []).append(i)
    replicated = [members for members in groups.values() if len(members) > 1]
    n_groups, n_rows = len(replicated), sum(len(m) for m in replicated)
    if policy == "flag":
        flags = np.zeros(len(out), dtype=bool)
        for members in replicated:
            flags[members] = True
        out.insert(OUTPUT_COLUMNS.index("source_row") + 1, "replicate", flags)
    elif policy == "mean":
        out = _average_replicates(out, list(groups.values()))
    return out, n_groups, n_rows


def _merge_replicate_affinities(pkd: np.ndarray, censored: np.ndarray) -> tuple[float, bool]:
    """Exact values win over censored ones; censored bounds combine to the tightest (minimum)."""
    known = ~np.isnan(pkd)
    exact = pkd[known & ~censored]
    if exact.size:
        return float(exact.mean()), False
    bounds = pkd[known & censored]
    if bounds.size:
        return float(bounds.min()), True  # true pKd <= every bound, so <= the smallest
    return math.nan, False


def _average_replicates(out: pd.DataFrame, groups: list[list[int]]) -> pd.DataFrame:
    pkd = out["pkd"].to_numpy()
    censored = out["censored"].to_numpy()
    merged = [_merge_replicate_affinities(pkd[m], censored[m]) for m in groups]
    averaged = out.iloc[[members[0] for members in groups]].reset_index(drop=True)
    averaged["pkd"] = np.array([value for value, _ in merged], dtype=np.float64)
    averaged["censored"] = np.array([flag for _, flag in merged], dtype=bool)
    return averaged


def _check_arguments(df: Any, replicates: str, binder_threshold: float) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"prepare_pairs expects a pandas DataFrame, got {type(df).__name__}")
    if isinstance(df.columns, pd.MultiIndex):
        raise TypeError("prepare_pairs expects flat column names, not a MultiIndex")
    if replicates not in REPLICATE_POLICIES:
        raise ValueError(f"replicates must be one of {REPLICATE_POLICIES}, got {replicates!r}")
    is_number = isinstance(binder_threshold, numbers.Real) and not isinstance(binder_threshold, bool)
    if not is_number or not math.isfinite(binder_threshold):
        raise ValueError(f"binder_threshold must be a finite number, got {binder_threshold!r}")


def _duplicate_column_problems(df: pd.DataFrame) -> list[RowProblem]:
    duplicated = df.columns[df.columns.duplicated()].unique()
    return [RowProblem(None, str(c), "duplicate column name", str(c)) for c in duplicated]


def prepare_pairs(
    df: pd.DataFrame,
    *,
    source: str = "<DataFrame>",
    require_pkd: bool = True,
    drop_invalid: bool = False,
    replicates: str = "keep",
    binder_threshold: float = 9.0,
) -> tuple[pd.DataFrame, LoadReport]:
    """Validate and canonicalise a table of antibody–antigen pairs (see the module docstring).

    Raises `DataValidationError` listing every problem, unless `drop_invalid=True`, in which case
    invalid rows are dropped and listed in the report. `replicates`: "keep", "mean" or "flag".
    """
    _check_arguments(df, replicates, binder_threshold)
    with _gc_paused():
        return _prepare_pairs(df, source, require_pkd, drop_invalid, replicates, binder_threshold)


def _prepare_pairs(
    df: pd.DataFrame, source: str, require_pkd: bool, drop_invalid: bool, replicates: str, binder_threshold: float
) -> tuple[pd.DataFrame, LoadReport]:
    problems = _duplicate_column_problems(df)
    if problems:
        raise DataValidationError(problems, source)
    plan, problems = _resolve_columns(list(df.columns), require_pkd)
    blank = set(_blank_rows(df))
    positions = [i for i in range(len(df)) if i not in blank]
    if not positions:
        problems.append(RowProblem(None, None, "no data rows (the table has a header only)"))
    if problems:
        raise DataValidationError(problems, source)
    warnings = list(plan.warnings)
    if blank:
        warnings.append(f"skipped {len(blank)} blank row(s) (every cell empty)")
    values = _validate_rows(df, plan, require_pkd, positions)
    keep, rejected = _keep_or_raise(values.problems, positions, drop_invalid, source)
    reserved = set(OUTPUT_COLUMNS) | ({"replicate"} if replicates == "flag" else set())
    out, clash_warnings = _output_frame(df, plan, values, positions, keep, reserved)
    out, n_groups, n_rows = _apply_replicate_policy(out, replicates)
    report = _build_report(out, source, positions, keep, rejected, plan, replicates, binder_threshold)
    report.n_replicate_groups, report.n_replicate_rows = n_groups, n_rows
    report.warnings = warnings + clash_warnings + report.warnings
    return out, report


def _keep_or_raise(
    problems: list[RowProblem], positions: list[int], drop_invalid: bool, source: str
) -> tuple[list[int], list[RowProblem]]:
    """Raise with every problem, or (drop_invalid) return the kept positions and one entry per bad row."""
    if not problems:
        return positions, []
    if not drop_invalid:
        raise DataValidationError(problems, source)
    bad_rows = {p.row for p in problems}
    keep = [p for p in positions if p + 1 not in bad_rows]
    rejected = _one_problem_per_row(problems)
    if not keep:
        reason = f"no valid rows left: all {len(positions)} data row(s) are invalid"
        raise DataValidationError([RowProblem(None, None, reason)] + problems, source)
    return keep, rejected


def _build_report(
    out: pd.DataFrame,
    source: str,
    positions: list[int],
    keep: list[int],
    rejected: list[RowProblem],
    plan: _ColumnPlan,
    replicates: str,
    binder_threshold: float,
) -> LoadReport:
    pkd, censored = out["pkd"].to_numpy(), out["censored"].to_numpy()
    low, high = PKD_MODEL_RANGE
    n_outside = int(((pkd < low) | (pkd > high)).sum())  # NaN compares False: not counted
    warnings = []
    if n_outside:
        warnings.append(
            f"{n_outside} row(s) have pKd outside the model range [{low:g}, {high:g}]: they are kept, "
            f"but predictions are clamped to [{low:g}, {high:g}]"
        )
    return LoadReport(
        source=source,
        n_rows_read=len(positions),
        n_rows_kept=len(keep),
        rejected=rejected,
        n_outside_model_range=n_outside,
        n_replicate_groups=0,
        n_replicate_rows=0,
        replicates=replicates,
        n_censored=int(censored.sum()),
        column_map=plan.column_map(),
        warnings=warnings,
        binder_threshold=float(binder_threshold),
        n_binders=int(((pkd >= binder_threshold) & ~censored).sum()),
    )


def load_pairs(path: str | os.PathLike, **kwargs: Any) -> tuple[pd.DataFrame, LoadReport]:
    """`read_table(path)` then `prepare_pairs(...)`; keyword arguments go to `prepare_pairs`."""
    kwargs.setdefault("source", str(path))
    return prepare_pairs(read_table(path), **kwargs)
