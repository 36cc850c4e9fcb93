"""Train/validation/test splits that keep similar antigens apart, and the row groupings they use.

A random split puts near-identical complexes (the same antigen, often the
same antibody family) on both sides and flatters every metric. abag's default
split therefore clusters antigens by sequence identity (`abag.identity.clustering`) and
sends whole clusters to train, validation or test, so that test antigens are
unseen.

`row_groups` is the one place that maps a table and a grouping method
("antigen" clusters, values of a "group" column, or identical "antibody"
chains) to a group label per row; `split_pairs`, `cluster_kfold` and
`abag.folds.crossval` (through `fold_groups`) all take their groups from it.
Imports numpy, pandas and `abag.identity.clustering` only; `cluster_antigens`,
`cluster_sequences` and `DEFAULT_IDENTITY` are re-exported from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from abag.identity.clustering import (
    DEFAULT_IDENTITY,
    cluster_antigens,
    cluster_sequences,
)

__all__ = [
    "SPLIT_METHODS",
    "GROUPINGS",
    "DEFAULT_IDENTITY",
    "PARTS",
    "SplitResult",
    "Grouping",
    "TooFewGroupsError",
    "row_groups",
    "fold_groups",
    "split_pairs",
    "group_kfold",
    "cluster_kfold",
    "cluster_antigens",
    "cluster_sequences",
]

SPLIT_METHODS = ("antigen", "random", "stratified", "group")
GROUPINGS = ("antigen", "group", "antibody")
PARTS = ("train", "val", "test")


# --------------------------------------------------------------------------
# Split result
# --------------------------------------------------------------------------


@dataclass
class SplitResult:
    """Which part each row belongs to, and how that was decided."""

    method: str
    assignment: np.ndarray
    groups: np.ndarray | None
    description: str

    def indices(self, part: str) -> np.ndarray:
        """Positional row indices of `part` ("train", "val" or "test")."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; expected one of {PARTS}")
        return np.flatnonzero(self.assignment == part)

    def sizes(self) -> dict[str, int]:
        """Number of rows per part."""
        return {part: int(np.sum(self.assignment == part)) for part in PARTS}


# --------------------------------------------------------------------------
# Row groups
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Grouping:
    """A group label per row, and what the groups are."""

    method: str          # "antigen", "group" or "antibody"
    labels: np.ndarray   # integer group id per row (positional)
    description: str     # e.g. "antigen clusters at 40% identity", "groups of column 'pdb_id'"

    @property
    def n_groups(self) -> int:
        return len(np.unique(self.labels))


class TooFewGroupsError(ValueError):
    """The data hold fewer groups (antigen clusters, group values) than the folds asked for."""


def row_groups(
    df: pd.DataFrame,
    method: str = "antigen",
    *,
    group_column: str | None = None,
    identity: float = DEFAULT_IDENTITY,
) -> Grouping:
    """Group label per row: "antigen" clusters (`identity`), values of `df[group_column]` ("group"; missing
    values share one group) or identical heavy + light chains ("antibody": the rows of one antibody)."""
    if method == "antigen":
        _require_column(df, "antigen")
        labels = cluster_antigens(df["antigen"].tolist(), identity)
        return Grouping(method, labels, f"antigen clusters at {identity:.0%} identity")
    if method == "group":
        return Grouping(method, _groups_from_column(df, group_column), f"groups of column {group_column!r}")
    if method == "antibody":
        _require_column(df, "heavy")
        light = df["light"].fillna("").astype(str) if "light" in df.columns else pd.Series("", index=df.index)
        labels, _ = pd.factorize(df["heavy"].fillna("").astype(str) + "|" + light)
        return Grouping(method, labels, "antibodies (identical heavy and light chains)")
    if method in SPLIT_METHODS:
        raise ValueError(f"split method {method!r} assigns rows, not groups; groupings are {GROUPINGS}")
    raise ValueError(f"unknown grouping {method!r}; choose one of {GROUPINGS}")


def fold_groups(df: pd.DataFrame, *, group_column: str | None = None,
                identity: float = DEFAULT_IDENTITY) -> Grouping:
    """The groups cross-validation keeps whole: values of `group_column` when given, else antigen clusters."""
    method = "antigen" if group_column is None else "group"
    return row_groups(df, method, group_column=group_column, identity=identity)


# --------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(fractions, dtype=float)
    if values.shape != (3,) or np.any(values < 0) or values.sum() <= 0:
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {fractions}")
    if not np.isclose(values.sum(), 1.0, atol=1e-3):
        raise ValueError(f"fractions must sum to 1, got {fractions} (sum {values.sum():.3f})")
    return values / values.sum()


def _assign_groups(groups: np.ndarray, fractions: np.ndarray, seed: int) -> np.ndarray:
    """Whole groups to parts, approximately at the requested row fractions.

    Groups are placed largest first (seeded order among equal sizes), each to
    a random part among those with room for it (probability proportional to
    the room left), else to the part with the most room. Largest-first keeps a
    dominant cluster (e.g. SARS-CoV-2 spike, half of SAAINT-DB) out of the
    small parts; the random choice makes the seed matter for all other groups.
    """
    labels, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.ravel()
    sizes = np.bincount(inverse, minlength=len(labels))
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(labels))
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    room = np.where(fractions > 0, fractions * len(groups), -np.inf)
    part_of_group = np.empty(len(labels), dtype=int)
    for g in order:
        fits = np.flatnonzero(room >= sizes[g])
        if len(fits):
            part = int(rng.choice(fits, p=room[fits] / room[fits].sum()))
        else:
            part = int(np.argmax(room))
        part_of_group[g] = part
        room[part] -= sizes[g]
    _ensure_parts_nonempty(part_of_group, sizes, fractions)
    return np.array(PARTS)[part_of_group[inverse]]


def _ensure_parts_nonempty(part_of_group: np.ndarray, sizes: np.ndarray, fractions: np.ndarray) -> None:
    """Move the smallest group of the richest part into each empty wanted part."""
    for part in np.flatnonzero(fractions > 0):
        if np.any(part_of_group == part):
            continue
        groups_per_part = np.bincount(part_of_group, minlength=3)
        donor = int(np.argmax(groups_per_part))
        if groups_per_part[donor] < 2:
            return  # too few groups; the caller checked this already
        candidates = np.flatnonzero(part_of_group == donor)
        part_of_group[candidates[np.argmin(sizes[candidates])]] = part


def _fill_counts(n: int, fractions: np.ndarray) -> np.ndarray:
    """Rows per part: largest remainder, at least one per wanted part if possible."""
    raw = fractions * n
    counts = np.floor(raw).astype(int)
    for part in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[part] += 1
    wanted = fractions > 0
    if n >= wanted.sum():
        for part in np.flatnonzero(wanted & (counts == 0)):
            counts[np.argmax(counts)] -= 1
            counts[part] += 1
    return counts


def _assign_rows(rows: np.ndarray, fractions: np.ndarray, rng: np.random.Generator, assignment: np.ndarray) -> None:
    shuffled = rng.permutation(rows)
    bounds = np.cumsum(_fill_counts(len(rows), fractions))[:-1]
    for part, chunk in zip(PARTS, np.split(shuffled, bounds)):
        assignment[chunk] = part


def _pkd_strata(pkd: np.ndarray, n_bins: int) -> tuple[np.ndarray, int]:
    """Quantile bin per row (NaN pKd gets its own stratum), and bins used."""
    labeled = ~np.isnan(pkd)
    strata = np.full(len(pkd), -1)
    # Each bin needs a row for train, val and test; shrink bins for tiny data.
    bins = int(max(1, min(n_bins, labeled.sum() // 3)))
    if labeled.any():
        ranks = pd.Series(pkd[labeled]).rank(method="first").to_numpy()
        strata[labeled] = pd.qcut(ranks, bins, labels=False, duplicates="drop")
    return strata, bins


def _row_summary(assignment: np.ndarray) -> str:
    counts = [int(np.sum(assignment == p)) for p in PARTS]
    shares = "/".join(f"{100 * c / max(sum(counts), 1):.0f}" for c in counts)
    return f"{'/'.join(map(str, counts))} rows = {shares}%"


def _group_summary(assignment: np.ndarray, groups: np.ndarray, noun: str) -> str:
    per_part = [len(np.unique(groups[assignment == p])) for p in PARTS]
    per_part_text = "/".join(map(str, per_part))
    return f"train/val/test = {per_part_text} of {len(np.unique(groups))} {noun}, {_row_summary(assignment)}"


def _require_column(df: pd.DataFrame, column: str, role: str = "column") -> None:
    if column not in df.columns:
        raise ValueError(f"{role} {column!r} not in table; available columns: {list(df.columns)}")


def _groups_from_column(df: pd.DataFrame, group_column: str | None) -> np.ndarray:
    if group_column is None:
        raise ValueError("method 'group' needs group_column (e.g. group_column='pdb_id')")
    _require_column(df, group_column, "group column")
    codes, _ = pd.factorize(df[group_column], use_na_sentinel=True)
    return codes  # missing values share group -1


def _require_groups(groups: np.ndarray, needed: int, what: str) -> None:
    n_groups = len(np.unique(groups))
    if n_groups < needed:
        raise ValueError(
            f"{what} gives only {n_groups} group(s) but {needed} are needed to keep every part separate; "
            "use --split random (leaky: similar antigens on both sides) or --split group with a finer column"
        )


def split_pairs(
    df: pd.DataFrame,
    method: str = "antigen",
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    group_column: str | None = None,
    identity: float = DEFAULT_IDENTITY,
    n_bins: int = 5,
) -> SplitResult:
    """Assign every row (also rows with NaN pKd) to train, val or test.

    method: "antigen" (default; whole antigen clusters per part, unseen test
    antigens), "random" (rows; leaky), "stratified" (rows, random within pKd
    quantile bins; leaky), "group" (whole values of `df[group_column]`;
    missing values form one group). `group_column` is used by "group" only.
    Indices are positional. Deterministic for a given seed.
    """
    if method not in SPLIT_METHODS:
        raise ValueError(f"unknown split method {method!r}; choose one of {SPLIT_METHODS}")
    parts = _check_fractions(fractions)
    if method == "antigen":
        return _antigen_split(df, parts, seed, identity)
    if method == "group":
        return _group_split(df, parts, seed, group_column)
    if method == "random":
        return _random_split(df, parts, seed)
    return _stratified_split(df, parts, seed, n_bins)


def _antigen_split(df, parts, seed, identity) -> SplitResult:
    groups = row_groups(df, "antigen", identity=identity).labels
    _require_groups(groups, int(np.sum(parts > 0)), f"antigen clustering at {identity:.0%} identity")
    assignment = _assign_groups(groups, parts, seed)
    summary = _group_summary(assignment, groups, "clusters")
    description = f"antigen-cluster split ({identity:.0%} identity; {summary}; seed {seed})"
    return SplitResult("antigen", assignment, groups, description)


def _group_split(df, parts, seed, group_column) -> SplitResult:
    groups = row_groups(df, "group", group_column=group_column).labels
    _require_groups(groups, int(np.sum(parts > 0)), f"column {group_column!r}")
    assignment = _assign_groups(groups, parts, seed)
    summary = _group_summary(assignment, groups, "groups")
    description = f"group split by column {group_column!r} ({summary}; seed {seed})"
    return SplitResult("group", assignment, groups, description)


def _random_split(df, parts, seed) -> SplitResult:
    assignment = np.empty(len(df), dtype="<U5")
    _assign_rows(np.arange(len(df)), parts, np.random.default_rng(seed), assignment)
    description = (
        f"random row split (train/val/test = {_row_summary(assignment)}; seed {seed}; similar antigens on both sides)"
    )
    return SplitResult("random", assignment, None, description)


def _stratified_split(df, parts, seed, n_bins) -> SplitResult:
    _require_column(df, "pkd")
    strata, bins = _pkd_strata(df["pkd"].to_numpy(dtype=float), n_bins)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(df), dtype="<U5")
    for stratum in np.unique(strata):
        _assign_rows(np.flatnonzero(strata == stratum), parts, rng, assignment)
    description = (
        f"stratified random row split ({bins} pKd quantile bins; train/val/test = {_row_summary(assignment)}; "
        f"seed {seed}; similar antigens on both sides)"
    )
    return SplitResult("stratified", assignment, None, description)


# --------------------------------------------------------------------------
# Cross-validation
# --------------------------------------------------------------------------


def group_kfold(groups: Sequence, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) per fold; every group sits whole in one test fold.

    Groups go largest first (seeded order among equal sizes) to the fold with
    the fewest rows, which balances folds even with one dominant group.
    """
    groups = np.asarray(groups)
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    labels, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.ravel()
    if len(labels) < k:
        raise TooFewGroupsError(f"only {len(labels)} group(s) for {k} folds; lower k or use a finer grouping")
    sizes = np.bincount(inverse, minlength=len(labels))
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    fold_of_group = np.empty(len(labels), dtype=int)
    fold_rows = np.zeros(k)
    for g in order:
        fold = int(np.argmin(fold_rows))
        fold_of_group[g] = fold
        fold_rows[fold] += sizes[g]
    fold_of_row = fold_of_group[inverse]
    all_rows = np.arange(len(groups))
    return [(all_rows[fold_of_row != f], all_rows[fold_of_row == f]) for f in range(k)]


def cluster_kfold(
    df: pd.DataFrame,
    k: int = 5,
    *,
    seed: int = 0,
    identity: float = DEFAULT_IDENTITY,
    group_column: str | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) per fold, whole antigen clusters (or column groups) per fold."""
    return group_kfold(fold_groups(df, group_column=group_column, identity=identity).labels, k, seed)
