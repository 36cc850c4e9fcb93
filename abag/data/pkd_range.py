"""Values in a pKd column that cannot be pKd: usually a Kd typed into the `pkd` column.

pKd is −log10(Kd / M): about 4 to 14 for antibodies, and never below 0 (Kd above 1 M) or above 20 (Kd below
10^-20 M). A value outside `PKD_POSSIBLE_RANGE` is a row problem. A column that looks like Kd as a whole (its
median outside [1, 20], or values outside the possible range with at least half of all values outside the model
range) is one column problem that names the rows and suggests the likely unit (`kd_nM`, `kd_M`, …, or the
table's own unit column). May import: abag.data.report, abag.data.columns, the standard library.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from abag.data.columns import KD_UNIT_EXPONENTS, column_role
from abag.data.report import PKD_MODEL_RANGE, RowProblem

__all__ = ["PKD_POSSIBLE_RANGE", "pkd_range_problems"]

PKD_POSSIBLE_RANGE = (0.0, 20.0)  # Kd from 1 M down to 10^-20 M: anything outside is not a pKd
_LOWEST_PLAUSIBLE_MEDIAN = 1.0  # a pKd column whose median is under 1 (Kd ~ 0.1 M) holds Kd values in M
_UNIT_PREFERENCE = ("M", "nM", "pM", "uM", "fM", "mM")  # the first unit that turns the median into a pKd wins
_ROWS_SHOWN = 8


def pkd_range_problems(
    pkd: list[float], rows: list[int], texts: list[str], column: Any, all_columns: list[Any],
    shown_rows: list[int] | None = None,
) -> tuple[RowProblem | None, list[RowProblem], str | None]:
    """(a column problem when the column looks like Kd, else None; a problem per impossible value; a warning).

    `pkd[i]` is the parsed value of 1-based row `rows[i]` (NaN when missing or invalid), `texts[i]` its cell;
    the column problem's text quotes `shown_rows[i]` instead when given (the input file's own row numbers).
    The warning (or None) is for a column of possible values most of which lie outside the model range.
    """
    low, high = PKD_POSSIBLE_RANGE
    if shown_rows is not None:
        rows_in_text = dict(zip(rows, shown_rows))
    known = [(value, row, text) for value, row, text in zip(pkd, rows, texts) if not math.isnan(value)]
    if not known:
        return None, [], None
    impossible = [(value, row, text) for value, row, text in known if not low <= value <= high]
    median = statistics.median(value for value, _, _ in known)
    model_low, model_high = PKD_MODEL_RANGE
    mostly_outside = 2 * sum(not model_low <= value <= model_high for value, _, _ in known) >= len(known)
    if not _LOWEST_PLAUSIBLE_MEDIAN <= median <= high or (impossible and mostly_outside):
        if shown_rows is not None:
            impossible = [(value, rows_in_text[row], text) for value, row, text in impossible]
        return _column_problem(known, impossible, median, column, all_columns), [], None
    warning = None
    if mostly_outside and len(known) > 1:
        warning = (f"most values of {str(column)!r} lie outside the model range [{model_low:g}, {model_high:g}] "
                   f"(median {median:g}). Are they Kd values? {_unit_advice(median, column, all_columns)}")
    return None, [_row_problem(row, text, column) for _, row, text in impossible], warning


def _unit_advice(median: float, column: Any, all_columns: list[Any]) -> str:
    """Where Kd values belong: the table's unit column if it has one, else the unit that fits the median."""
    unit_columns = [c for c in all_columns if column_role(c) == "kd_unit"]
    if median < 0:
        return "If they are log10(Kd / M), pKd is their negative: write 9 for log10(Kd) = -9."
    if unit_columns:
        return (f"The table has a unit column {str(unit_columns[0])!r}: if they are Kd values, rename "
                f"{str(column)!r} to 'kd' and abag converts each Kd with its unit.")
    fitting = [u for u in _UNIT_PREFERENCE if median > 0 and _fits(median, KD_UNIT_EXPONENTS[u])]
    if not fitting:
        return ("Put Kd values in a column named with their unit ('kd_nM', 'kd_M', …) or in 'kd' with a "
                "'kd_unit' column.")
    unit = fitting[0]
    pkd = -(math.log10(median) + KD_UNIT_EXPONENTS[unit])
    others = ", ".join(f"'kd_{u}'" for u in _UNIT_PREFERENCE if u != unit)
    return (f"If they are Kd in {unit}, rename the column 'kd_{unit}' (the median, {median:g} {unit}, is pKd "
            f"{pkd:.1f}); for another unit use {others}, or 'kd' with a 'kd_unit' column.")


def _fits(median: float, exponent: int) -> bool:
    low, high = PKD_MODEL_RANGE
    return low <= -(math.log10(median) + exponent) <= high


def _column_problem(known: list, impossible: list, median: float, column: Any, all_columns: list[Any]) -> RowProblem:
    low, high = PKD_POSSIBLE_RANGE
    shown = ", ".join(str(row) for _, row, _ in impossible[:_ROWS_SHOWN])
    more = ", …" if len(impossible) > _ROWS_SHOWN else ""
    where = f" (rows {shown}{more}; e.g. {impossible[0][2].strip()!r})" if impossible else ""
    reason = (
        f"these values cannot be pKd (−log10 of Kd in M: about 4 to 14 for antibodies, always within "
        f"[{low:g}, {high:g}]): median {median:g}, {len(impossible)} of {len(known)} value(s) outside "
        f"[{low:g}, {high:g}]{where}. {_unit_advice(median, column, all_columns)}"
    )
    return RowProblem(None, str(column), reason)


def _row_problem(row: int, text: str, column: Any) -> RowProblem:
    low, high = PKD_POSSIBLE_RANGE
    reason = (
        f"pKd {text.strip()!r} cannot be a pKd (−log10 of Kd in M is within [{low:g}, {high:g}], about 4 to 14 for "
        "antibodies): if it is a Kd, put Kd values in a column named with their unit, e.g. 'kd_nM', or in 'kd' "
        "with a 'kd_unit' column"
    )
    return RowProblem(row, str(column), reason, text)
