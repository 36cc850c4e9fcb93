"""Cross-validation folds of whole groups (antigen clusters or a group column): the plan and each fold's split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from abag.data.splits import SplitResult, fold_groups, group_kfold
from abag.identity.clustering import DEFAULT_IDENTITY


def make_folds(frame: pd.DataFrame, folds: int | str = 5, *, group_column: str | None = None,
               identity: float = DEFAULT_IDENTITY, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], str]:
    """(group per row, test row indices per fold, description).

    `folds` is a number k (whole groups dealt to k folds, largest first, balancing rows; see
    `abag.data.splits.group_kfold`) or "logo" (leave one group out: one fold per group, in order of first
    appearance). Every row is in exactly one test fold; no group is split across folds.
    """
    grouping = fold_groups(frame, group_column=group_column, identity=identity)
    groups, what = grouping.labels, grouping.description
    if isinstance(folds, str):
        if folds.lower() not in ("logo", "loo", "leave-one-group-out"):
            raise ValueError(f"folds must be an integer or 'logo', got {folds!r}")
        labels = list(dict.fromkeys(groups.tolist()))
        if len(labels) < 2:
            raise ValueError("leave-one-group-out needs at least 2 groups")
        tests = [np.flatnonzero(groups == g) for g in labels]
        return groups, tests, f"leave-one-group-out over {len(labels)} {what}"
    tests = [test for _, test in group_kfold(groups, int(folds), seed)]
    n_groups = len(np.unique(groups))
    return groups, tests, f"{int(folds)}-fold CV over {n_groups} {what} (fold seed {seed})"


def fold_split(groups: np.ndarray, test_rows: np.ndarray, *, val_fraction: float = 0.1, seed: int = 0,
               min_val_rows: int = 3, description: str = "") -> SplitResult:
    """Train/val/test assignment for one fold: test = `test_rows`; val = whole groups of the rest.

    Validation groups are drawn in a seeded random order and added while the slice stays within
    `val_fraction` of the non-test rows (at least `min_val_rows` rows, at least one group, and at least
    one group left for training). Raises ValueError when fewer than 2 groups remain outside the test fold.
    """
    groups = np.asarray(groups)
    assignment = np.full(len(groups), "train", dtype="<U5")
    assignment[test_rows] = "test"
    rest = assignment == "train"
    labels, sizes = np.unique(groups[rest], return_counts=True)
    if len(labels) < 2:
        raise ValueError(f"only {len(labels)} group(s) outside the test fold: cannot carve a validation slice")
    target = max(float(min_val_rows), val_fraction * rest.sum())
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen: list[int] = []
    filled = 0
    for g in order:
        if len(chosen) == len(labels) - 1:
            break
        if filled + sizes[g] <= target or (filled < min_val_rows and sizes[g] <= 2 * target):
            chosen.append(int(g))
            filled += int(sizes[g])
        if filled >= target:
            break
    if not chosen:  # every group is larger than the target: take the smallest one
        chosen = [int(np.argmin(sizes))]
    assignment[rest & np.isin(groups, labels[chosen])] = "val"
    counts = [int(np.sum(assignment == p)) for p in ("train", "val", "test")]
    n_groups = [len(np.unique(groups[assignment == p])) for p in ("train", "val", "test")]
    text = (f"{description + '; ' if description else ''}{'/'.join(map(str, counts))} rows, "
            f"{'/'.join(map(str, n_groups))} groups train/val/test (val = whole groups from the training folds)")
    return SplitResult("cv_fold", assignment, groups, text)
