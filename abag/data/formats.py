"""Which kind of file an input is, and its row table: CSV/TSV, Excel workbook, FASTA, AIRR rearrangements.

The content decides, not the name: a zip holding `xl/workbook.xml` is a workbook, text whose first line starts
with '>' is FASTA (so is any text named .fasta/.fa/.faa/.fas), a table with `locus` and `sequence_aa` or
`sequence_alignment_aa` is AIRR; anything else is a CSV/TSV. `antigen=` (the CLI's `--antigen`) gives one antigen
to files that hold only antibodies: a sequence (chains joined with '|') or a FASTA file whose records are the
antigen's chains. May import: every abag.data reading module (reading, xlsx, fasta, airr, input_table), cells,
columns, report, pandas, the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from abag.data.airr import airr_table, is_airr
from abag.data.cells import normalize_sequence
from abag.data.columns import column_role
from abag.data.fasta import fasta_table, looks_like_fasta, read_fasta_records
from abag.data.input_table import InputTable
from abag.data.reading import decode_bytes, read_bytes, table_from_text
from abag.data.report import file_error
from abag.data.xlsx import is_workbook, workbook_table

__all__ = ["read_input", "read_table", "FASTA_SUFFIXES"]

FASTA_SUFFIXES = (".fasta", ".fa", ".faa", ".fas")
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zip")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """The table of text cells `load_pairs` validates: a CSV/TSV as it is, a workbook's sheet, a FASTA or AIRR
    file regrouped into one row per antibody. Any failure is a `DataValidationError`."""
    return read_input(path).frame


def read_input(path: str | os.PathLike, *, antigen: str | None = None, sheet: str | None = None) -> InputTable:
    """Read any supported file into an `InputTable` (its rows, where they came from, how it was read)."""
    source = str(path)
    raw = read_bytes(path)
    antigen_sequence, antigen_note = _antigen_option(antigen, source)
    workbook = is_workbook(raw)
    if workbook:
        table = workbook_table(raw, workbook, source, sheet)
    else:
        if sheet is not None:
            raise file_error(source, f"sheet={sheet!r} only applies to Excel workbooks")
        text = decode_bytes(raw, source)
        del raw
        if looks_like_fasta(text) or _name_without_compression(source).endswith(FASTA_SUFFIXES):
            return fasta_table(text, source, antigen_sequence, antigen_note)
        table = InputTable(table_from_text(text, source))
    if is_airr(list(table.frame.columns)):
        table = _airr(table, source)
        if antigen_sequence is None and not any(column_role(c) == "antigen" for c in table.frame.columns):
            raise file_error(source, "an AIRR file without an antigen column: add an 'antigen' column, or give the "
                                     "antigen of every antibody with --antigen SEQUENCE_OR_FASTA (antigen= in Python)")
    if antigen_sequence is not None:
        _add_antigen(table, antigen_sequence, antigen_note, source)
    return table


def _name_without_compression(source: str) -> str:
    name = source.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def _airr(table: InputTable, source: str) -> InputTable:
    paired = airr_table(table.frame, source)
    if table.note:  # an AIRR table in a workbook: keep which sheet
        paired.note = f"{table.note}; {paired.note}"
    return paired


def _add_antigen(table: InputTable, antigen: str, note: str, source: str) -> None:
    own = [c for c in table.frame.columns if column_role(c) == "antigen"]
    if own:
        raise file_error(source, f"the file has its own antigen column {str(own[0])!r}, and an antigen was also "
                                 "given (--antigen / antigen=): use one or the other")
    table.frame["antigen"] = antigen
    table.note = f"{table.note}; {note}" if table.note else note


def _antigen_option(antigen: str | None, source: str) -> tuple[str | None, str]:
    """The antigen given with `antigen=` as one validated sequence (chains joined by '|'), and a note."""
    if antigen is None:
        return None, ""
    if not isinstance(antigen, str) or not antigen.strip():
        raise file_error(source, f"antigen= must be a sequence or a FASTA file, got {antigen!r}")
    path = Path(antigen.strip())
    looks_like_path = any(ch in antigen for ch in "/\\.") or path.suffix.lower() in FASTA_SUFFIXES
    if path.is_file():
        text = decode_bytes(read_bytes(path), str(path))
        chains = [record.sequence for record in read_fasta_records(text, str(path))]
        sequence, note = "|".join(chains), f"antigen from {path} ({len(chains)} chain(s))"
    elif looks_like_path:
        raise file_error(source, f"antigen file not found: {antigen}")
    else:
        sequence, note = antigen, "antigen given as a sequence"
    normalized, reasons = normalize_sequence(sequence, required=True, multi_chain=True)
    if reasons:
        raise file_error(source, f"the antigen given with --antigen / antigen=: {'; '.join(reasons)}")
    return normalized, note
