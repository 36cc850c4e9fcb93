"""The loading pipeline: `prepare_pairs` (a DataFrame in memory), `load_pairs` (a file) and `write_rejected`.

Stages, in order: check the arguments → resolve the columns (`columns`) → skip blank rows and validate every
row (`rows`, `cells`) → check the labels (impossible pKd values: `pkd_range`; when labels are not required, a
label column with problems is ignored instead) → raise with every problem, or drop the invalid rows → assemble
the canonical columns plus the user's other columns → apply the replicate policy (`replicates`) → count what
the report says (`report`). `load_pairs` reads any supported file first (`formats`) and hands `prepare_pairs`
the `InputTable` it read, so problems name rows as the file numbers them (a FASTA record, a sheet row, an AIRR row). May import:
every other abag.data module, abag.outputs (lazily, to write files), numpy, pandas.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np
import pandas as pd

from abag.data.cells import SHORT_CHAIN_RESIDUES
from abag.data.chain_checks import UNNUMBERED, ChainCheck, check_chain_columns
from abag.data.columns import (
    OUTPUT_COLUMNS,
    ColumnPlan,
    free_column_name,
    resolve_columns,
)
from abag.data.formats import read_input
from abag.data.input_table import InputTable
from abag.data.pkd_range import pkd_range_problems
from abag.data.reading import gc_paused
from abag.data.replicates import REPLICATE_POLICIES, apply_replicate_policy
from abag.data.report import (
    PKD_MODEL_RANGE,
    DataValidationError,
    LoadReport,
    RowProblem,
)
from abag.data.rows import RowValues, blank_rows, column_texts, validate_rows
from abag.numbering.domains import NUMBERING_MAX_CHAINS, distinct_chains
from abag.outputs import write_csv_atomic

__all__ = ["prepare_pairs", "load_pairs", "write_rejected"]


def write_rejected(report: LoadReport, path: str | os.PathLike) -> None:
    """Write the rejected rows and their reasons as a UTF-8 CSV (row, column, reason, value)."""

    write_csv_atomic(path, report.rejected_frame())


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
    df: pd.DataFrame, plan: ColumnPlan, values: RowValues, positions: list[int], keep: list[int], reserved: set[str]
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
            new_name = free_column_name(f"{column}_input", df.columns)
            renamed[column] = new_name
            warnings.append(f"input column {str(column)!r} clashes with an output column; renamed to {new_name!r}")
    extra_frame = extra_frame.rename(columns=renamed)
    return pd.concat([out, extra_frame], axis=1), warnings




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
    df: pd.DataFrame | InputTable,
    *,
    source: str = "<DataFrame>",
    require_pkd: bool = True,
    drop_invalid: bool = False,
    replicates: str = "keep",
    binder_threshold: float = 9.0,
    check_chains: bool | ChainCheck = False,
) -> tuple[pd.DataFrame, LoadReport]:
    """Validate and canonicalise a table of antibody–antigen pairs (the rules: see `abag.data`).

    Raises `DataValidationError` listing every problem, unless `drop_invalid=True`, in which case
    invalid rows are dropped and listed in the report. `replicates`: "keep", "mean" or "flag".
    `check_chains`: number every antibody chain (IMGT) and reject rows whose columns do not hold the chain they
    claim (a light chain in `heavy`, swapped chains, an scFv in one cell); chains that cannot be numbered are
    kept and named in a warning. True or False, or a `ChainCheck` ("auto": only up to `NUMBERING_MAX_CHAINS`
    distinct chains, with a warning above; a disk cache for the numbering). `df` may also be the `InputTable` a
    file was read into (`load_pairs`): rows are then renumbered and problems located as in the file.
    """
    if isinstance(df, InputTable):
        return _prepare_table(df, source, require_pkd, drop_invalid, replicates, binder_threshold, check_chains)
    _check_arguments(df, replicates, binder_threshold)
    with gc_paused():
        return _prepare_pairs(df, source, require_pkd, drop_invalid, replicates, binder_threshold,
                              check_chains=check_chains)


def _prepare_pairs(
    df: pd.DataFrame, source: str, require_pkd: bool, drop_invalid: bool, replicates: str, binder_threshold: float,
    input_rows: list[int] | None = None, check_chains: bool | ChainCheck = False,
) -> tuple[pd.DataFrame, LoadReport]:
    """`prepare_pairs`; `input_rows[i]`, when given, is how messages that quote row numbers show row i + 1."""
    problems = _duplicate_column_problems(df)
    if problems:
        raise DataValidationError(problems, source)
    plan, problems = resolve_columns(list(df.columns), require_pkd)
    blank = set(blank_rows(df))
    positions = [i for i in range(len(df)) if i not in blank]
    if not positions:
        problems.append(RowProblem(None, None, "no data rows (the table has a header only)"))
    if problems:
        raise DataValidationError(problems, source)
    warnings = list(plan.warnings)
    if blank:
        warnings.append(f"skipped {len(blank)} blank row(s) (every cell empty or a missing-value marker)")
    values = validate_rows(df, plan, require_pkd, positions)
    warnings += _check_labels(df, plan, values, positions, require_pkd, source, input_rows)
    warnings += [f"column {column!r} ignored (no labels are needed here; it is passed through unchanged): {reason}"
                 for column, reason in plan.ignored.items()]
    warnings += _check_chain_columns(plan, values, ChainCheck.of(check_chains))
    keep, rejected = _keep_or_raise(values.problems, positions, drop_invalid, source)
    reserved = set(OUTPUT_COLUMNS) | ({"replicate"} if replicates == "flag" else set())
    out, clash_warnings = _output_frame(df, plan, values, positions, keep, reserved)
    out, n_groups, n_rows = apply_replicate_policy(out, replicates)
    report = _build_report(out, source, positions, keep, rejected, plan, replicates, binder_threshold)
    report.n_replicate_groups, report.n_replicate_rows = n_groups, n_rows
    report.ignored_columns = dict(plan.ignored)
    report.warnings = warnings + clash_warnings + report.warnings
    return out, report


def _check_chain_columns(plan: ColumnPlan, values: RowValues, check: ChainCheck) -> list[str]:
    """Add chain-column problems (IMGT numbering) to the row problems; warn about chains it cannot number, and
    about a table too large for the default check."""
    if check.when == "never":
        return []
    n_chains = distinct_chains(values.heavy, values.light)
    if not check.applies(n_chains):
        return [f"antibody columns not checked for misplaced chains: {n_chains:,} distinct chains, above the "
                f"{NUMBERING_MAX_CHAINS:,} numbered by default (about 60 chains per core-second); --check-chains "
                f"numbers them anyway"]
    found = check_chain_columns(values.heavy, values.light, heavy_column=str(plan.heavy),
                                light_column=str(plan.light if plan.light is not None else "light"),
                                rows=[position + 1 for position in range(len(values.heavy))],
                                disk_cache=check.disk_cache)
    unnumbered = [p for p in found if p.reason.startswith(UNNUMBERED)]
    values.problems = sorted(values.problems + [p for p in found if not p.reason.startswith(UNNUMBERED)],
                             key=lambda p: p.row)
    if not unnumbered:
        return []
    rows = ", ".join(str(p.row) for p in unnumbered[:5])
    return [f"{len(unnumbered)} antibody chain cell(s) could not be numbered as variable domains and are used as "
            f"given (rows {rows}{', …' if len(unnumbered) > 5 else ''}): check that they are antibody chains"]


def _check_labels(
    df: pd.DataFrame, plan: ColumnPlan, values: RowValues, positions: list[int], require_pkd: bool, source: str,
    input_rows: list[int] | None,
) -> list[str]:
    """Add impossible pKd values to the row problems (a column of Kd-like values stops the load at once).

    Without required labels, any problem in a label column makes the label columns ignored instead
    (`ColumnPlan.drop_labels`): their values are not read. Returns warnings.
    """
    column_problem, row_problems, warning = None, [], None
    if plan.affinity is not None and not plan.affinity_is_kd:
        texts = column_texts(df, plan.affinity)
        column_problem, row_problems, warning = pkd_range_problems(
            values.pkd, [p + 1 for p in positions], [texts[p] for p in positions], plan.affinity, list(df.columns),
            shown_rows=[input_rows[p] for p in positions] if input_rows is not None else None)
    labels = {str(c) for c in (plan.affinity, plan.kd_unit_column, plan.censored) if c is not None}
    label_problems = [p for p in values.problems if p.column in labels] + row_problems
    if not require_pkd and (label_problems or column_problem):
        problems = ([column_problem] if column_problem else []) + label_problems
        plan.drop_labels(_label_reasons(problems, input_rows))
        values.problems = [p for p in values.problems if p.column not in labels]
        values.pkd, values.censored = [math.nan] * len(positions), [False] * len(positions)
        return []
    if column_problem is not None:
        raise DataValidationError([column_problem], source)
    if row_problems:
        values.problems = sorted(values.problems + row_problems, key=lambda p: p.row)
    return [warning] if warning else []


def _label_reasons(problems: list[RowProblem], input_rows: list[int] | None) -> dict[str, str]:
    """One reason per label column: its first problem, and how many rows have one."""
    by_column: dict[str, list[RowProblem]] = {}
    for problem in problems:
        by_column.setdefault(str(problem.column), []).append(problem)
    reasons = {}
    for column, found in by_column.items():
        first = found[0]
        row = input_rows[first.row - 1] if input_rows is not None and first.row is not None else first.row
        where = f"row {row}: " if row is not None else ""
        count = f"{len(found)} row(s) with a problem, the first " if len(found) > 1 else ""
        reasons[column] = f"{count}{where}{first.reason}"
    return reasons


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
    plan: ColumnPlan,
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
    short = _short_chain_counts(out)
    warnings += [_short_chain_warning(role, n) for role, n in short.items() if n]
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
        n_single_domain=int((out["light"] == "").sum()),
        n_short_chains=short,
    )


def _short_chain_counts(out: pd.DataFrame) -> dict[str, int]:
    """Rows per role whose (shortest antigen) chain is present but under `SHORT_CHAIN_RESIDUES` residues."""
    counts = {}
    for role, minimum in SHORT_CHAIN_RESIDUES.items():
        codes, distinct = pd.factorize(out[role])  # chains repeat: measure each distinct one once
        shortest = np.fromiter((min(map(len, s.split("|"))) for s in distinct), dtype=np.int64, count=len(distinct))
        counts[role] = int(((shortest > 0) & (shortest < minimum))[codes].sum())
    return counts


def _short_chain_warning(role: str, n_rows: int) -> str:
    minimum = SHORT_CHAIN_RESIDUES[role]
    if role == "antigen":
        what, why = "an antigen chain", "shorter than a linear epitope"
    else:
        what, why = f"a {role} chain", "an antibody variable domain has about 105-130"
    return (
        f"{n_rows} row(s) have {what} shorter than {minimum} residues ({why}): kept, but check for truncated "
        "or mis-pasted sequences"
    )


def load_pairs(
    path: str | os.PathLike, *, antigen: str | None = None, sheet: str | None = None, **kwargs: Any
) -> tuple[pd.DataFrame, LoadReport]:
    """Read a CSV/TSV, Excel, FASTA or AIRR file (`abag.data.formats`), then `prepare_pairs(...)` it.

    `antigen`: the antigen of every antibody, for files without one (a sequence or a FASTA file). `sheet`: the
    workbook sheet to read. Other keyword arguments go to `prepare_pairs`; problems name the input's own rows.
    """
    kwargs.setdefault("source", str(path))
    table = read_input(path, antigen=antigen, sheet=sheet)
    return prepare_pairs(table, **kwargs)


def _prepare_table(table: InputTable, source: str, require_pkd: bool, drop_invalid: bool, replicates: str,
                   binder_threshold: float, check_chains: bool | ChainCheck) -> tuple[pd.DataFrame, LoadReport]:
    """`prepare_pairs` on a table read from a file: rows renumbered and problems located as in the file."""
    _check_arguments(table.frame, replicates, binder_threshold)
    if table.problems and (not drop_invalid or table.frame.empty):
        extra = [RowProblem(None, None, "no valid rows left: no antibody could be formed")] if drop_invalid else []
        raise DataValidationError(extra + table.problems, source)
    try:
        with gc_paused():
            out, report = _prepare_pairs(table.frame, source, require_pkd, drop_invalid, replicates,
                                         binder_threshold, table.source_rows, check_chains=check_chains)
    except DataValidationError as exc:
        where = f"{source} (read as {table.note})" if table.note else source
        raise DataValidationError(table.locate(exc.problems) + table.problems, where) from None
    if table.source_rows is not None:
        out["source_row"] = np.array([table.input_row(r) for r in out["source_row"]], dtype=np.int64)
    rejected = table.locate(report.rejected) + table.problems
    report.rejected = sorted(rejected, key=lambda p: (p.row is None, p.row or 0))
    report.n_rows_read += len(table.problems)
    report.input_note = table.note
    return out, report
