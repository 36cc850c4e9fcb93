"""Checking a data file without using it: the text `abag check --data FILE` prints.

`check_file` loads the file as `abag train` (labels required) or `abag predict` (labels not needed) would, but
with every invalid row dropped and listed instead of stopping at them, and returns the load summary (rows read,
kept, rejected with reasons, how the file was read, which columns were used, which were ignored or passed
through) with a last line saying whether the file can be used as it is. May import: abag.data.pipeline,
abag.data.report, abag.data.columns, the standard library.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from abag.data.columns import OUTPUT_COLUMNS
from abag.data.pipeline import load_pairs
from abag.data.report import DataValidationError, LoadReport

__all__ = ["CheckResult", "check_file"]


@dataclass
class CheckResult:
    """What `check_file` found: the text to print, whether the file loads with no row rejected, the report."""

    text: str
    ok: bool
    report: LoadReport | None  # None when the file cannot be loaded at all


def check_file(
    path: str | os.PathLike,
    *,
    require_pkd: bool = True,
    replicates: str = "keep",
    antigen: str | None = None,
    sheet: str | None = None,
    check_chains: bool = True,
) -> CheckResult:
    """Load `path` as training (`require_pkd=True`) or prediction would, listing every invalid row; never raises
    `DataValidationError` (its message becomes the text)."""
    use = "training and evaluation" if require_pkd else "prediction"
    try:
        frame, report = load_pairs(path, require_pkd=require_pkd, drop_invalid=True, replicates=replicates,
                                   antigen=antigen, sheet=sheet, check_chains=check_chains)
    except DataValidationError as exc:
        return CheckResult(f"{exc}\nResult: {path} cannot be used for {use} as it is.", False, None)
    lines = [report.summary()]
    passed = [str(c) for c in frame.columns[len(OUTPUT_COLUMNS):] if c != "replicate"]
    if passed:
        lines.append("Other columns (kept unchanged in the outputs): " + ", ".join(repr(c) for c in passed))
    n_rejected = len(report.rejected)
    if n_rejected:
        skip = "--drop-invalid" if require_pkd else "--skip-invalid"
        lines.append(f"Result: {n_rejected} of {report.n_rows_read} row(s) have problems (listed above): fix them, "
                     f"or use {skip} to go on without them ({report.n_rows_kept} row(s) left for {use}).")
    else:
        lines.append(f"Result: OK, all {report.n_rows_read} row(s) can be used for {use}.")
    return CheckResult("\n".join(lines), n_rejected == 0, report)
