"""A table built from an input file, and where each of its rows came from.

CSV and spreadsheet rows map one to one onto table rows, but a FASTA file or an AIRR rearrangement file is
regrouped first (one row per antibody). `InputTable` keeps what is needed to report a problem in the user's
terms: the input row number of each table row (`source_rows`), a location per row and column ("record 3
'>ab1|heavy' (line 5)"), problems found while regrouping (`problems`) and one line saying how the file was
read (`note`). May import: abag.data.report, pandas, the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from abag.data.report import RowProblem

__all__ = ["InputTable"]


@dataclass
class InputTable:
    """The frame of text cells `prepare_pairs` validates, plus how to point back into the input file."""

    frame: pd.DataFrame
    note: str = ""  # how the file was read, e.g. "sheet 'Data' (2 of 3)"; empty for a plain CSV
    source_rows: list[int] | None = None  # input row number of each frame row (None: row i is input row i)
    # (1-based frame row, column) -> where it is in the input; (row, None) is the fallback for the whole row
    locations: dict[tuple[int, str | None], str] = field(default_factory=dict)
    problems: list[RowProblem] = field(default_factory=list)  # groups that could not become rows (input rows)

    def input_row(self, row: int) -> int:
        """The input row number of 1-based frame row `row`."""
        return self.source_rows[row - 1] if self.source_rows is not None else row

    def locate(self, problems: list[RowProblem]) -> list[RowProblem]:
        """Problems in frame rows, renumbered to input rows, each reason prefixed with its place in the file."""
        located = []
        for problem in problems:
            if problem.row is None or problem.row > len(self.frame):
                located.append(problem)
                continue
            where = self.locations.get((problem.row, problem.column)) or self.locations.get((problem.row, None))
            reason = f"{where}: {problem.reason}" if where else problem.reason
            located.append(RowProblem(self.input_row(problem.row), problem.column, reason, problem.value))
        return located
