"""Excel workbooks (.xlsx, .xlsm): one sheet into a frame of text cells, like a CSV export of it.

Which sheet: `sheet=` when given; otherwise the first sheet whose header row names a heavy-chain column (heavy,
vh, … or the AIRR `locus`), else the first sheet. The header row is the first row that is not empty; empty rows
inside the table become blank rows (skipped with a warning, as in a CSV), trailing ones are dropped. Cells become
text as a CSV export writes them: numbers in their shortest form (8.2, 12000), TRUE/FALSE as true/false, dates
in ISO form, formulas as their last computed value (a formula never computed by a spreadsheet program reads as
empty). Needs openpyxl (`pip install "abag[xlsx]"`). May import: abag.data.report, abag.data.columns,
abag.data.input_table, openpyxl (lazily), pandas, the standard library.
"""

from __future__ import annotations

import datetime
import io
import math
import zipfile

import pandas as pd

from abag.data.columns import column_role
from abag.data.input_table import InputTable
from abag.data.report import DataValidationError, RowProblem, file_error

__all__ = ["is_workbook", "workbook_table", "INSTALL_HINT"]

INSTALL_HINT = 'pip install "abag[xlsx]"'
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # old .xls, and password-protected .xlsx


def is_workbook(raw: bytes) -> str | None:
    """'xlsx' for an Office Open XML workbook, 'xls' for an old or encrypted one, 'ods' for OpenDocument."""
    if raw.startswith(_OLE2_MAGIC):
        return "xls"
    if not raw.startswith(b"PK\x03\x04"):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = set(archive.namelist())
            if "xl/workbook.xml" in names:
                return "xlsx"
            if "mimetype" in names and b"spreadsheet" in archive.read("mimetype"):
                return "ods"
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError, EOFError):
        return None
    return None


def workbook_table(raw: bytes, kind: str, source: str, sheet: str | None = None) -> InputTable:
    """The chosen sheet of a workbook as a frame of text cells; the note says which sheet was read and why."""
    if kind == "xls":
        raise file_error(source, "an old Excel .xls (or password-protected) workbook: save it as .xlsx without a "
                                 "password, or as CSV UTF-8")
    if kind == "ods":
        raise file_error(source, "an OpenDocument spreadsheet (.ods): save it as .xlsx or as CSV UTF-8")
    try:  # lazy: openpyxl is an optional extra (abag[xlsx])
        import openpyxl
    except ImportError:
        raise file_error(source, f"reading Excel workbooks needs openpyxl: {INSTALL_HINT} (or save the sheet as "
                                 "CSV UTF-8)") from None
    try:  # read_only: the sheets are parsed while iterating, so a damaged one fails in _sheet_rows
        book = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
        try:
            sheets = {ws.title: _sheet_rows(ws) for ws in book.worksheets}
        finally:
            book.close()
    except Exception as exc:  # openpyxl raises many kinds of error for a damaged workbook
        raise file_error(source, f"could not read the workbook: {type(exc).__name__}: {str(exc)[:200]}") from None
    name, why = _choose_sheet(sheets, sheet, source)
    frame, sheet_rows = _frame(sheets[name], source, name)
    position = list(sheets).index(name) + 1
    note = f"sheet {name!r} of {source}" + (f" (sheet {position} of {len(sheets)}: {why})" if len(sheets) > 1 else "")
    locations = {(row, None): f"sheet {name!r} row {sheet_row}" for row, sheet_row in enumerate(sheet_rows, start=1)}
    return InputTable(frame, note=note, locations=locations)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 1e16 else (repr(value) if math.isfinite(value)
                                                                                 else str(value))
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def _sheet_rows(ws) -> list[list[str]]:
    """Every row of a sheet as text, trailing empty cells removed."""
    rows = []
    for values in ws.iter_rows(values_only=True):
        row = [_cell_text(v) for v in values]
        while row and not row[-1].strip():
            row.pop()
        rows.append(row)
    return rows


def _header_index(rows: list[list[str]]) -> int | None:
    return next((i for i, row in enumerate(rows) if row), None)


def _choose_sheet(sheets: dict[str, list[list[str]]], sheet: str | None, source: str) -> tuple[str, str]:
    if sheet is not None:
        if sheet not in sheets:
            names = ", ".join(repr(s) for s in sheets)
            raise file_error(source, f"no sheet named {sheet!r} (sheets: {names})")
        return sheet, "chosen with sheet="
    for name, rows in sheets.items():
        header = _header_index(rows)
        if header is not None and any(column_role(c) == "heavy" or c.strip() == "locus" for c in rows[header]):
            return name, "the first sheet with a heavy-chain column"
    if not sheets:
        raise file_error(source, "the workbook has no sheets")
    return next(iter(sheets)), "no sheet has a heavy-chain column, so the first one"


def _frame(rows: list[list[str]], source: str, name: str) -> tuple[pd.DataFrame, list[int]]:
    """The sheet's table and, for each of its rows, the sheet row number (1-based, as the spreadsheet shows)."""
    header = _header_index(rows)
    if header is None:
        raise file_error(source, f"sheet {name!r} is empty")
    end = len(rows)
    while end > header + 1 and not rows[end - 1]:
        end -= 1
    width = max(len(row) for row in rows[header:end])
    names = [c if c.strip() else f"Unnamed: {i}" for i, c in enumerate(rows[header] + [""] * (width - len(rows[header])))]
    duplicates = [c for i, c in enumerate(names) if c in names[:i]]
    if duplicates:
        problems = [RowProblem(None, c, f"duplicate column name in sheet {name!r}", c) for c in dict.fromkeys(duplicates)]
        raise DataValidationError(problems, source)
    data = [row + [""] * (width - len(row)) for row in rows[header + 1:end]]
    frame = pd.DataFrame(data, columns=range(width), dtype=str) if data else pd.DataFrame(columns=range(width))
    frame.columns = names
    return frame, list(range(header + 2, end + 1))
