"""FASTA input: records named `>ID|role` (heavy, light, antigen) grouped by ID into one row per antibody.

The convention (docs/data-format.md has examples):

- A header is `>NAME [key=value …]`. NAME ends with the chain's role after a separator (`|`, `_`, `-`, `.`,
  `:`, `/`): `>ab1|heavy`, `>ab1_H`, `>ab1|light`, `>ab1|antigen`. Role words (any case): heavy, heavy_chain,
  h, vh, vhh, hc, igh; light, light_chain, l, vl, vk, lc, kappa, lambda, igk, igl; antigen, ag, target. A NAME
  that is only a role (`>H`, `>L`, as IgFold writes them) is an antibody without ID: one per file.
- Records with the same ID form one antibody: one heavy chain, at most one light chain (none: single-domain),
  and antigen records, several of which are the antigen's chains in file order (joined with `|`).
- An ID that has antigen records only is a shared antigen: every antibody without antigen records of its own
  gets it. At most one shared antigen per file (several would leave open which one a label belongs to).
- `key=value` words in a header (after NAME, or as further `|` parts of NAME) are columns of the antibody's
  row: `pkd=8.2`, `kd_nM=3.1`, `kd=3.1 kd_unit=nM`, `censored=true`, or any other key (kept as a column).
  Values have no spaces; words without `=` are a description and are not read. A key given twice in one
  antibody (on its heavy and its light record) must have the same value.
- Lines starting with `;` are comments; blank lines are skipped; a sequence may span lines; one `*` at its end
  (a stop) is removed. Residues are validated like any table cell (`abag.data.cells`).

The row table has the columns id, heavy, light, antigen (when the file has antigens) and the header fields.
A malformed file (a record without role, two heavy chains for one ID, …) is a `DataValidationError` naming
each record (number, header, line) and the reason. May import: abag.data.report, abag.data.columns,
abag.data.input_table, pandas, the standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from abag.data.columns import column_role
from abag.data.input_table import InputTable
from abag.data.report import DataValidationError, RowProblem

__all__ = ["ROLE_WORDS", "looks_like_fasta", "read_fasta_records", "fasta_table"]

ROLE_WORDS = {
    "heavy": ("heavy", "heavy_chain", "heavychain", "h", "vh", "vhh", "hc", "igh"),
    "light": ("light", "light_chain", "lightchain", "l", "vl", "vk", "lc", "kappa", "lambda", "igk", "igl"),
    "antigen": ("antigen", "antigen_chain", "ag", "target"),
}
_ROLE_OF_WORD = {word: role for role, words in ROLE_WORDS.items() for word in words}
_WORDS = "|".join(sorted(map(re.escape, _ROLE_OF_WORD), key=len, reverse=True))
_NAME = re.compile(rf"(?:(?P<id>.+?)[|_\-.:/])?(?P<role>{_WORDS})", re.IGNORECASE)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_WHITESPACE = re.compile(r"\s+")
_SHOWN_HEADER_CHARS = 40


@dataclass
class FastaRecord:
    """One `>header` and its sequence, where it is in the file, and (once parsed) its ID, role and fields."""

    number: int  # 1-based record number
    line: int  # line of the header
    header: str  # without the '>'
    chunks: list[str] = field(default_factory=list)
    id: str = ""
    role: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def sequence(self) -> str:
        sequence = _WHITESPACE.sub("", "".join(self.chunks))
        return sequence.removesuffix("*")

    def where(self) -> str:
        header = self.header if len(self.header) <= _SHOWN_HEADER_CHARS else self.header[: _SHOWN_HEADER_CHARS - 1] + "…"
        return f"record {self.number} '>{header}' (line {self.line})"


def looks_like_fasta(text: str) -> bool:
    """True when the first line that is not blank starts with '>'."""
    return text.lstrip().startswith(">")


def read_fasta_records(text: str, source: str) -> list[FastaRecord]:
    """Split FASTA text into records; text before the first header and empty records are problems."""
    records, problems = _split_records(text)
    if problems:
        raise DataValidationError(problems, source)
    return records


def _split_records(text: str) -> tuple[list[FastaRecord], list[RowProblem]]:
    records: list[FastaRecord] = []
    problems: list[RowProblem] = []
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        stripped = line.strip()
        if stripped.startswith(">"):
            records.append(FastaRecord(len(records) + 1, number, stripped[1:].strip()))
        elif not stripped or stripped.startswith(";"):
            continue
        elif not records:
            if not problems:
                problems.append(_problem(f"line {number}: sequence text before the first '>' header (a FASTA "
                                         "record starts with a line such as '>ab1|heavy')"))
        else:
            records[-1].chunks.append(stripped)
    for record in records:
        if not record.header:
            problems.append(_problem(f"{record.where()}: empty header (name it, e.g. '>ab1|heavy')"))
        if not record.sequence:
            problems.append(_problem(f"{record.where()}: no sequence"))
    if not records and not problems:
        problems.append(_problem("no FASTA records (no line starts with '>')"))
    return records, problems


def _problem(reason: str) -> RowProblem:
    return RowProblem(None, None, reason)


def _parse_header(record: FastaRecord) -> list[str]:
    """Set the record's ID, role and fields from its header; returns the reasons it cannot be read."""
    name, *rest = record.header.split(None, 1)
    description = rest[0] if rest else ""
    parts = name.split("|")
    words = [part for part in parts if "=" in part] + [w for w in description.split() if "=" in w]
    match = _NAME.fullmatch("|".join(part for part in parts if "=" not in part))
    reasons = []
    if match is None:
        reasons.append("no chain role at the end of the name: write '>ID|heavy', '>ID|light' or '>ID|antigen' "
                       "(or '_H', '_L' …)")
    else:
        record.id, record.role = match["id"] or "", _ROLE_OF_WORD[match["role"].lower()]
    for word in words:
        key, _, value = word.partition("=")
        if not key.strip():
            reasons.append(f"field {word!r} has no name before '='")
        elif key.strip().lower() == "id" or column_role(key) in ("heavy", "light", "antigen"):
            reasons.append(f"field {key!r}: sequences and IDs belong in the record, not in a header field")
        elif key.strip().lower() in {k.lower() for k in record.fields}:
            reasons.append(f"field {key!r} given twice")
        else:
            record.fields[key.strip()] = value
    return reasons


def fasta_table(text: str, source: str, antigen: str | None = None, antigen_note: str = "") -> InputTable:
    """The row table of a FASTA text (one row per antibody); `antigen` is the antigen of every antibody."""
    records, problems = _split_records(text)
    problems += [_problem(f"{r.where()}: {reason}") for r in records if r.header for reason in _parse_header(r)]
    if problems:
        raise DataValidationError(problems, source)
    groups: dict[str, list[FastaRecord]] = {}
    for record in records:
        groups.setdefault(record.id, []).append(record)
    antibodies = {i: g for i, g in groups.items() if any(r.role != "antigen" for r in g)}
    shared = [g for i, g in groups.items() if i not in antibodies]
    problems = [_problem(reason) for g in antibodies.values() for reason in _group_problems(g)]
    problems += _antigen_problems(records, antibodies, shared, antigen)
    if problems:
        raise DataValidationError(problems, source)
    shared_records = shared[0] if shared else []
    table = _rows(list(antibodies.values()), shared_records, antigen, source)
    table.note = _note(records, antibodies, shared_records, antigen_note)
    return table


def _group_problems(group: list[FastaRecord]) -> list[str]:
    antibody = f"antibody {group[0].id!r}" if group[0].id else "the antibody without ID"
    reasons = []
    for role in ("heavy", "light"):
        found = [r for r in group if r.role == role]
        if len(found) > 1:
            hint = "" if group[0].id else "; give each antibody an ID, e.g. '>ab1|heavy' and '>ab1|light'"
            reasons.append(f"{antibody} has {len(found)} {role} chains: {', '.join(r.where() for r in found)}{hint}")
    if not any(r.role == "heavy" for r in group):
        light = next(r for r in group if r.role == "light")
        reasons.append(f"{antibody} has a light chain ({light.where()}) but no heavy chain record")
    return reasons


def _antigen_problems(
    records: list[FastaRecord], antibodies: dict, shared: list[list[FastaRecord]], antigen: str | None
) -> list[RowProblem]:
    has_antigen_records = any(r.role == "antigen" for r in records)
    if antigen is not None and has_antigen_records:
        first = next(r for r in records if r.role == "antigen")
        return [_problem(f"the file has antigen records ({first.where()}, …) and an antigen was also given "
                         "(--antigen / antigen=): use one or the other")]
    if len(shared) > 1:
        names = ", ".join(f"{g[0].id!r} ({g[0].where()})" for g in shared)
        return [_problem(f"several IDs have antigen records only ({names}); at most one antigen may be shared by "
                         "all antibodies: give each antibody its own '>ID|antigen' record, or split the file")]
    if antigen is None and not has_antigen_records:
        return [_problem(f"no antigen: {len(antibodies)} antibody(ies) but no '>ID|antigen' record; add one per "
                         "antibody, or one shared by all (an ID with antigen records only), or give the antigen "
                         "with --antigen SEQUENCE_OR_FASTA (antigen= in Python)")]
    return []


def _merge_fields(records: list[FastaRecord]) -> tuple[dict[str, tuple[str, FastaRecord]], list[str]]:
    merged: dict[str, tuple[str, FastaRecord]] = {}
    reasons = []
    for record in records:
        for key, value in record.fields.items():
            seen = next((k for k in merged if k.lower() == key.lower()), None)
            if seen is None:
                merged[key] = (value, record)
            elif merged[seen][0] != value:
                reasons.append(f"field {key!r} is {merged[seen][0]!r} in {merged[seen][1].where()} but {value!r} "
                               f"in {record.where()}")
    return merged, reasons


def _rows(antibodies: list[list[FastaRecord]], shared: list[FastaRecord], antigen: str | None,
          source: str) -> InputTable:
    """One row per antibody; locations name the record behind each cell."""
    rows, locations, problems = [], {}, []
    spellings: dict[str, str] = {}  # field keys compare case-insensitively; the first spelling names the column
    for number, group in enumerate(antibodies, start=1):
        own = [r for r in group if r.role == "antigen"]
        antigen_records = own or shared
        fields, reasons = _merge_fields(group + antigen_records)
        problems += [_problem(reason) for reason in reasons]
        row = {"id": group[0].id, "heavy": "", "light": ""}
        for record in group:
            if record.role != "antigen":
                row[record.role] = record.sequence
                locations[(number, record.role)] = record.where()
        row["antigen"] = "|".join(r.sequence for r in antigen_records) if antigen_records else antigen or ""
        locations[(number, "antigen")] = _antigen_where(antigen_records, antigen, group)
        for key, (value, record) in fields.items():
            column = spellings.setdefault(key.lower(), key)
            row[column] = value
            locations[(number, column)] = record.where()
        locations[(number, None)] = f"antibody {group[0].id!r} ({group[0].where()})"
        rows.append(row)
    if problems:
        raise DataValidationError(problems, source)
    frame = pd.DataFrame(rows, dtype=object).fillna("").astype(str)
    return InputTable(frame, locations=locations)


def _antigen_where(antigen_records: list[FastaRecord], antigen: str | None, group: list[FastaRecord]) -> str:
    if antigen_records:
        more = f" and {len(antigen_records) - 1} more antigen record(s)" if len(antigen_records) > 1 else ""
        return antigen_records[0].where() + more
    if antigen is not None:
        return "the antigen given with --antigen / antigen="
    return f"antibody {group[0].id!r} ({group[0].where()}) has no antigen record"


def _note(records: list[FastaRecord], antibodies: dict, shared: list[FastaRecord], antigen_note: str) -> str:
    note = f"FASTA, {len(records)} record(s) grouped by ID into {len(antibodies)} antibody(ies)"
    if shared:
        note += f"; antigen {shared[0].id!r} ({len(shared)} chain(s)) shared by the antibodies without their own"
    if antigen_note:
        note += f"; {antigen_note}"
    return note
