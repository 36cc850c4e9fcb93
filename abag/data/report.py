"""What a load tells its caller: one problem (`RowProblem`), all problems at once (`DataValidationError`),
and the summary of a successful load (`LoadReport`).

May import: abag.errors, abag.policy, pandas. Nothing else from abag.data imports into this module, so every
other stage can report problems through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from abag.errors import AbagError
from abag.policy import PKD_RANGE

__all__ = ["PKD_MODEL_RANGE", "MAX_PROBLEMS_SHOWN", "RowProblem", "DataValidationError", "LoadReport", "file_error"]

PKD_MODEL_RANGE = PKD_RANGE  # what the model can predict (kept under its old name)
MAX_PROBLEMS_SHOWN = 20

_VALUE_PREVIEW_CHARS = 40


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
    lines = [header] + [f"  {p}" for p in problems[:MAX_PROBLEMS_SHOWN]]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"  … and {len(problems) - MAX_PROBLEMS_SHOWN} more")
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


def file_error(source: str, reason: str, value: str = "") -> DataValidationError:
    """A `DataValidationError` about the whole file (no row, no column)."""
    return DataValidationError([RowProblem(None, None, reason, value)], source)


@dataclass
class LoadReport:
    """What happened while loading: counts, rejected rows, replicates, censoring, warnings.

    `n_rows_read` counts data rows (blank rows excluded); `n_rows_kept + len(rejected) ==
    n_rows_read`. With `replicates="mean"` the kept rows are then merged, one per triplet, and
    `n_censored`, `n_outside_model_range`, `n_binders`, `n_single_domain` and `n_short_chains` describe the
    returned (merged) table.
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
    n_single_domain: int = 0  # output rows without a light chain (empty or missing-value marker)
    n_short_chains: dict[str, int] = field(default_factory=dict)  # role -> rows with an implausibly short chain
    ignored_columns: dict[str, str] = field(default_factory=dict)  # label column -> why it was not read
    input_note: str = ""  # how the file was read (the sheet of a workbook, FASTA or AIRR regrouping); "" for CSV

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
        lines += [f"  rejected {p}" for p in self.rejected[:MAX_PROBLEMS_SHOWN]]
        if len(self.rejected) > MAX_PROBLEMS_SHOWN:
            lines.append(f"  … and {len(self.rejected) - MAX_PROBLEMS_SHOWN} more (see write_rejected)")
        if self.input_note:
            lines.append(f"Read as: {self.input_note}.")
        lines.append(
            f"pKd outside the model range [{low:g}, {high:g}]: {self.n_outside_model_range} row(s) "
            f"(kept; predictions are clamped to [{low:g}, {high:g}])."
        )
        lines.append(self._replicates_line())
        lines.append(f"Censored (true pKd at most the reported value): {self.n_censored} row(s).")
        lines.append(f"Binders (exact pKd >= {self.binder_threshold:g}): {self.n_binders} row(s).")
        lines.append(f"Single-domain (no light chain): {self.n_single_domain} row(s).")
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
