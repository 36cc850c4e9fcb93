"""AIRR rearrangement tables (the AIRR Community TSV: one row per chain) paired into one row per antibody.

A table is read as AIRR when it has a `locus` column and `sequence_alignment_aa` or `sequence_aa`, and no
heavy-chain column. Rules (docs/data-format.md):

- The chain: `sequence_alignment_aa` (alignment gaps `.` and `-` removed) where it is filled, else `sequence_aa`.
  `locus` IGH is the heavy chain, IGK and IGL the light chain; any other locus (TRA, TRB, …) is a problem.
- Rows whose `productive` is false (F, FALSE, 0) are skipped and counted in the load summary.
- Chains are paired by `cell_id` (single-cell data), or by `clone_id` when there is no `cell_id` column. Each
  cell needs one heavy chain and at most one light chain (none: a single-domain antibody); a cell with two heavy
  or two light chains, or a light chain only, is a problem (dropped and listed with `drop_invalid=True`). Without
  either column, every IGH row is a single-domain antibody, and light-chain rows are a problem.
- The antigen and the labels come from the table's own columns, named as in any table (`antigen`, `pkd`,
  `kd_nM`, `kd` + `kd_unit`, `censored`, …), filled on any chain of the cell (and equal where filled on both);
  or the antigen from `--antigen` / `antigen=` for all antibodies.
- The row table has cell_id (or clone_id), heavy, light, heavy_sequence_id, light_sequence_id, light_locus, the
  v_call and j_call of each chain (when the file has them), the antigen and the label columns. `source_row` is
  the data row of the cell's heavy chain in the AIRR file, and problems name that row.

May import: abag.data.report, abag.data.columns, abag.data.input_table, abag.data.cells, abag.data.rows, pandas, the standard
library.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from abag.data.cells import is_missing
from abag.data.columns import column_role
from abag.data.input_table import InputTable
from abag.data.report import RowProblem, file_error
from abag.data.rows import column_texts

__all__ = ["is_airr", "airr_table"]

_SEQUENCE_COLUMNS = ("sequence_alignment_aa", "sequence_aa")
_PAIR_COLUMNS = ("cell_id", "clone_id")
_LOCUS_ROLE = {"IGH": "heavy", "IGK": "light", "IGL": "light"}
_NOT_PRODUCTIVE = frozenset({"f", "false", "0", "no"})
_CARRIED_CALLS = ("v_call", "j_call")
_GAPS = str.maketrans("", "", ".-")


def is_airr(columns: list[Any]) -> bool:
    """A `locus` column with an amino-acid sequence column, and no heavy-chain column."""
    names = {str(c).strip() for c in columns}
    return ("locus" in names and any(c in names for c in _SEQUENCE_COLUMNS)
            and not any(column_role(c) == "heavy" for c in columns))


class _Cells:
    """The table's columns as stripped text by stripped name ('' for missing values), read once."""

    def __init__(self, frame: pd.DataFrame):
        self.n_rows = len(frame)
        self.columns: dict[str, list[str]] = {}
        for column in frame.columns:
            texts = [t.strip() for t in column_texts(frame, column)]
            self.columns.setdefault(str(column).strip(), ["" if is_missing(t) else t for t in texts])

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def text(self, name: str | None, row: int) -> str:
        return self.columns[name][row] if name in self.columns else ""

    def chain(self, row: int) -> str:
        aligned = self.text("sequence_alignment_aa", row)
        return aligned.translate(_GAPS) if aligned else self.text("sequence_aa", row)


def airr_table(frame: pd.DataFrame, source: str) -> InputTable:
    """Pair the chains of an AIRR rearrangement table (text cells) into one row per antibody."""
    cells = _Cells(frame)
    pair_column = next((c for c in _PAIR_COLUMNS if c in cells), None)
    carried = [c for c in cells.columns if column_role(c) in ("antigen", "pkd", "kd", "kd_unit", "censored")]
    groups, problems, n_skipped = _group_rows(cells, pair_column)
    built = []
    for key, members in groups.items():
        pair = _pair(cells, key, members, pair_column, carried)
        if isinstance(pair, RowProblem):
            problems.append(pair)
        else:
            built.append(pair)
    built.sort(key=lambda pair: pair[1])  # antibodies in the order of their heavy chains in the file
    rows, source_rows, locations = [], [], {}
    for row, heavy_row, where in built:
        rows.append(row)
        source_rows.append(heavy_row + 1)
        locations.update({(len(rows), column): text for column, text in where.items()})
    if not rows and not problems:
        raise file_error(source, "no antibody chains (no productive IGH, IGK or IGL rows)")
    table = pd.DataFrame(rows, dtype=object).fillna("").astype(str) if rows else pd.DataFrame()
    note = (f"AIRR rearrangements, {cells.n_rows} row(s) paired by {pair_column or 'nothing (no cell_id or clone_id)'} "
            f"into {len(rows)} antibody(ies)")
    if n_skipped:
        note += f"; {n_skipped} non-productive row(s) skipped"
    n_heavy_only = sum(1 for row in rows if not row["light"])
    if n_heavy_only:
        note += f"; {n_heavy_only} with a heavy chain only, read as single-domain"
    if problems:
        note += f"; {len(problems)} problem(s) listed with the rejected rows"
    return InputTable(table, note=note, source_rows=source_rows, locations=locations,
                      problems=sorted(problems, key=lambda p: p.row or 0))


def _group_rows(cells: _Cells, pair_column: str | None) -> tuple[dict[str, list[int]], list[RowProblem], int]:
    """Productive chains by pair key (each IGH row is its own group without a pair column); problems; skipped."""
    groups: dict[str, list[int]] = {}
    problems, n_skipped = [], 0
    for row in range(cells.n_rows):
        if not any(texts[row] for texts in cells.columns.values()):
            continue  # a blank line
        if cells.text("productive", row).lower() in _NOT_PRODUCTIVE:
            n_skipped += 1
            continue
        locus = cells.text("locus", row).upper()
        if locus not in _LOCUS_ROLE:
            shown = f"locus {locus!r} is not an antibody chain" if locus else "no locus"
            problems.append(RowProblem(row + 1, "locus", f"{shown} (abag reads IGH, IGK and IGL)", locus))
            continue
        key = cells.text(pair_column, row) if pair_column else f"row {row + 1}"
        if not key:
            problems.append(RowProblem(row + 1, pair_column, f"no {pair_column}: the chain cannot be paired"))
            continue
        if pair_column is None and _LOCUS_ROLE[locus] == "light":
            problems.append(RowProblem(row + 1, "locus", f"a {locus} light chain, but the file has no cell_id or "
                                       "clone_id column to pair it with its heavy chain", locus))
            continue
        groups.setdefault(key, []).append(row)
    return groups, problems, n_skipped


def _pair(cells: _Cells, key: str, members: list[int], pair_column: str | None,
          carried: list[str]) -> tuple[dict, int, dict] | RowProblem:
    """One antibody row from a cell's chains, its heavy chain's frame row and the location of each cell."""
    by_role = {"heavy": [], "light": []}
    for row in members:
        by_role[_LOCUS_ROLE[cells.text("locus", row).upper()]].append(row)
    heavy, light = by_role["heavy"], by_role["light"]
    cell = f"{pair_column} {key!r}" if pair_column else "this row"
    if len(heavy) != 1 or len(light) > 1:
        reason = (f"{cell} has {len(heavy)} heavy (IGH) and {len(light)} light (IGK/IGL) chain(s) in row(s) "
                  f"{', '.join(str(r + 1) for r in members)}; abag needs one heavy and at most one light chain")
        return RowProblem(members[0] + 1, pair_column or "locus", reason, key)
    row: dict[str, str] = {pair_column: key} if pair_column else {}
    row["heavy"], row["light"] = cells.chain(heavy[0]), cells.chain(light[0]) if light else ""
    where = {"heavy": f"{cell}, heavy chain (row {heavy[0] + 1})", None: f"{cell} (heavy chain row {heavy[0] + 1})"}
    if light:
        where["light"] = f"{cell}, light chain (row {light[0] + 1})"
    for role, chain in (("heavy", heavy), ("light", light)):
        row[f"{role}_sequence_id"] = cells.text("sequence_id", chain[0]) if chain else ""
        for call in _CARRIED_CALLS:
            if call in cells:
                row[f"{role}_{call}"] = cells.text(call, chain[0]) if chain else ""
    row["light_locus"] = cells.text("locus", light[0]).upper() if light else ""
    for column in carried:
        values = {r + 1: cells.text(column, r) for r in members if cells.text(column, r)}
        if len(set(values.values())) > 1:
            shown = ", ".join(f"{v!r} (row {r})" for r, v in values.items())
            return RowProblem(members[0] + 1, column, f"{cell}: its chains disagree on {column!r}: {shown}", key)
        row[column] = next(iter(values.values()), "")
        if values:
            where[column] = f"{cell} (row {next(iter(values))})"
    return row, heavy[0], where
