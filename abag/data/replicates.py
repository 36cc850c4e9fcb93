"""Replicate measurements: rows with the same (heavy, light, antigen) after normalisation are kept, flagged in
a bool column `replicate`, or averaged into one row.

Averaging: exact values are averaged and censored ones ignored; if all are censored, the row stays censored with
the smallest bound (the true pKd is below every bound). May import: abag.data.columns, numpy, pandas.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from abag.data.columns import OUTPUT_COLUMNS

__all__ = ["REPLICATE_POLICIES", "apply_replicate_policy"]

REPLICATE_POLICIES = ("keep", "mean", "flag")


def apply_replicate_policy(out: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, int, int]:
    """Count (heavy, light, antigen) replicates and apply the policy. Returns (frame, groups, rows)."""
    triplet = _triplet_codes(out)
    sizes = np.bincount(triplet)
    replicated = sizes > 1
    n_groups, n_rows = int(replicated.sum()), int(sizes[replicated].sum())
    if policy == "flag":
        out.insert(OUTPUT_COLUMNS.index("source_row") + 1, "replicate", replicated[triplet])
    elif policy == "mean":
        members = np.argsort(triplet, kind="stable")  # rows of each triplet together, in row order
        out = _average_replicates(out, np.split(members, np.cumsum(sizes)[:-1]) if len(out) else [])
    return out, n_groups, n_rows


def _triplet_codes(out: pd.DataFrame) -> np.ndarray:
    """One code per row for its (heavy, light, antigen), numbered in order of first appearance."""
    code = np.zeros(len(out), dtype=np.int64)
    for column in ("heavy", "light", "antigen"):
        values, distinct = pd.factorize(out[column], use_na_sentinel=False)
        code = pd.factorize(code * len(distinct) + values)[0].astype(np.int64)  # stays below the row count
    return code


def _merge_replicate_affinities(pkd: np.ndarray, censored: np.ndarray) -> tuple[float, bool]:
    """Exact values win over censored ones; censored bounds combine to the tightest (minimum)."""
    known = ~np.isnan(pkd)
    exact = pkd[known & ~censored]
    if exact.size:
        return float(exact.mean()), False
    bounds = pkd[known & censored]
    if bounds.size:
        return float(bounds.min()), True  # true pKd <= every bound, so <= the smallest
    return math.nan, False


def _average_replicates(out: pd.DataFrame, groups: list[np.ndarray]) -> pd.DataFrame:
    pkd = out["pkd"].to_numpy()
    censored = out["censored"].to_numpy()
    merged = [_merge_replicate_affinities(pkd[m], censored[m]) for m in groups]
    averaged = out.iloc[[members[0] for members in groups]].reset_index(drop=True)
    averaged["pkd"] = np.array([value for value, _ in merged], dtype=np.float64)
    averaged["censored"] = np.array([flag for _, flag in merged], dtype=bool)
    return averaged

