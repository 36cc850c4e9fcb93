"""Validating every row of a table against a `ColumnPlan`: the canonical heavy, light, antigen, pKd and
censored values of each row, and every problem with its row and column.

May import: abag.data.report, abag.data.columns, abag.data.cells, numpy, pandas, the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from abag.data.cells import (
    Affinity,
    is_missing,
    missing_marker,
    normalize_sequence,
    parse_censored_flag,
    parse_kd_cell,
    parse_pkd_cell,
)
from abag.data.columns import ColumnPlan
from abag.data.report import RowProblem

__all__ = ["RowValues", "validate_rows", "blank_rows", "column_texts"]


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


def column_texts(df: pd.DataFrame, column: Any) -> list[str]:
    """The cells of one column as text ('' for missing values)."""
    # to_numpy(object): Series.tolist() on a string column costs one indexing call per cell.
    return [_cell_text(v) for v in df[column].to_numpy(dtype=object)]


@dataclass
class RowValues:
    """The canonical values of all rows, plus the problems found, keyed by 0-based position."""

    heavy: list[str]
    light: list[str]
    antigen: list[str]
    pkd: list[float]
    censored: list[bool]
    problems: list[RowProblem]


def _distinct(texts: list[str], rows: list[int]) -> tuple[np.ndarray, list[str]]:
    """Code per row of `rows` into the distinct texts at those rows (first-appearance order)."""
    codes, uniques = pd.factorize(np.asarray([texts[i] for i in rows], dtype=object), use_na_sentinel=False)
    return codes, list(uniques)


class _SequenceColumn:
    """Validates one sequence column, each distinct raw text once (500k rows often share a few antigens)."""

    def __init__(self, df: pd.DataFrame, column: Any, *, required: bool, multi_chain: bool):
        self.column = column
        self.texts = column_texts(df, column) if column is not None else [""] * len(df)
        self.required, self.multi_chain = required, multi_chain

    def check(self, rows: list[int], problems: dict[int, list[RowProblem]]) -> list[str]:
        """The normalised sequence of each row in `rows`; each row's problems are added under its position."""
        codes, uniques = _distinct(self.texts, rows)
        checked = [normalize_sequence(raw, required=self.required, multi_chain=self.multi_chain) for raw in uniques]
        for i in np.flatnonzero(np.isin(codes, [c for c, (_, reasons) in enumerate(checked) if reasons])):
            raw, position = uniques[codes[i]], rows[i]
            problems.setdefault(position, []).extend(
                RowProblem(position + 1, str(self.column), reason, raw) for reason in checked[codes[i]][1])
        normalized = [text for text, _ in checked]
        return [normalized[c] for c in codes]


def validate_rows(df: pd.DataFrame, plan: ColumnPlan, require_pkd: bool, rows: list[int]) -> RowValues:
    """Parse the rows at 0-based positions `rows`; problems name the 1-based row and the input column.

    Each distinct cell (each distinct affinity, unit and flag combination) is parsed once, and a row's problems
    are listed in column order: heavy, light, antigen, then the affinity's."""
    problems: dict[int, list[RowProblem]] = {}
    columns = [_SequenceColumn(df, plan.heavy, required=True, multi_chain=False),
               _SequenceColumn(df, plan.light, required=False, multi_chain=False),
               _SequenceColumn(df, plan.antigen, required=True, multi_chain=True)]
    heavy, light, antigen = (column.check(rows, problems) for column in columns)
    affinity, units, flags = (column_texts(df, column) if column is not None else None
                              for column in (plan.affinity, plan.kd_unit_column, plan.censored))
    # One code per distinct (affinity, unit, flag) triple: parse each once, then give its problems their rows.
    empty = [""] * len(df)
    parts = [_distinct(texts if texts is not None else empty, rows) for texts in (affinity, units, flags)]
    combined = parts[0][0].astype(np.int64)
    for codes, uniques in parts[1:]:  # factorised again each time: the codes stay below the row count
        combined = pd.factorize(combined * len(uniques) + codes)[0].astype(np.int64)
    distinct, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    pkd = np.empty(len(distinct))
    censored = np.zeros(len(distinct), bool)
    found: list[list[RowProblem]] = []
    for k, i in enumerate(first):
        position = rows[i]
        triple: list[RowProblem] = []
        pkd[k], censored[k] = _check_affinity(position, plan, require_pkd, affinity, units, flags, triple)
        found.append(triple)
    for i in np.flatnonzero(np.isin(inverse, [k for k, triple in enumerate(found) if triple])):
        position = rows[i]
        problems.setdefault(position, []).extend(replace(p, row=position + 1) for p in found[inverse[i]])
    inverse = inverse.ravel()
    return RowValues(heavy, light, antigen, pkd[inverse].tolist(), censored[inverse].tolist(),
                     [p for position in sorted(problems) for p in problems[position]])


def _check_affinity(
    position: int,
    plan: ColumnPlan,
    require_pkd: bool,
    affinity: list[str] | None,
    units: list[str] | None,
    flags: list[str] | None,
    problems: list[RowProblem],
) -> tuple[float, bool]:
    """Parse the pKd (or Kd) cell and the censored flag of one row; append problems."""
    row = position + 1
    result = Affinity()
    raw = affinity[position] if affinity is not None else ""
    if not is_missing(raw):
        if plan.affinity_is_kd:
            unit_text = units[position] if units is not None else ""
            result = parse_kd_cell(raw.strip(), plan.kd_exponent, unit_text, plan.kd_unit_column)
        else:
            result = parse_pkd_cell(raw.strip())
    elif require_pkd:
        name = "Kd" if plan.affinity_is_kd else "pKd"
        marker = missing_marker(raw)
        result.reason = f"missing {name} value (required)" if marker is None else (
            f"missing value {marker!r} (a {name} value is required)")
    if result.reason:
        if result.reason_column is not None:  # the unit cell is at fault, not the Kd cell
            problems.append(RowProblem(row, str(result.reason_column), result.reason, units[position]))
        else:
            problems.append(RowProblem(row, str(plan.affinity), result.reason, raw))
    if flags is None:  # no censored column: only a qualifier ('<6', '>10000') censors
        return result.pkd, result.censored_by_qualifier
    return result.pkd, _check_censored_flag(row, plan, flags[position], result, raw, problems)


def _check_censored_flag(
    row: int, plan: ColumnPlan, flag_text: str, result: Affinity, raw_affinity: str, problems: list[RowProblem]
) -> bool:
    flag = parse_censored_flag(flag_text)
    column = str(plan.censored)
    if flag is None:
        reason = f"censored flag must be true/false, 1/0, yes/no or empty, got {flag_text.strip()!r}"
        problems.append(RowProblem(row, column, reason, flag_text))
        return False
    explicit_false = flag is False and not is_missing(flag_text)
    if explicit_false and result.censored_by_qualifier:
        reason = f"says not censored, but the affinity {raw_affinity.strip()!r} has a censoring qualifier"
        problems.append(RowProblem(row, column, reason, flag_text))
    censored = flag or result.censored_by_qualifier
    if censored and math.isnan(result.pkd) and not result.reason:
        problems.append(RowProblem(row, column, "censored, but the row has no affinity value", flag_text))
    return censored


def blank_rows(df: pd.DataFrame) -> list[int]:
    """Positions of rows whose every cell is missing (blank lines, trailing Excel rows, all `NA`)."""
    if df.shape[1] == 0:
        return []
    candidates = range(len(df))
    for column in df.columns:
        texts = column_texts(df, column)
        candidates = [i for i in candidates if is_missing(texts[i])]
        if not candidates:
            break
    return list(candidates)

