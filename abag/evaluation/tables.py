"""The printed comparison table of several `abag.evaluation.metrics.evaluate_predictions` results (model, baselines).

A predictor that gives every row the same value (`train_mean`, or any result marked `"constant": True`) ranks
nothing: its Spearman and Pearson are undefined (or, pooled over folds with one constant each, measure only
how the fold means differ), so the table shows "n/a*" there and a footnote says why.
Formats plain dicts only: imports pandas and nothing from abag (`abag.evaluation.metrics` re-exports
`format_comparison`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["format_comparison", "CONSTANT_PREDICTORS", "is_constant"]

CONSTANT_PREDICTORS = frozenset({"train_mean"})
"""Baselines that predict one value for every row (per training set)."""

_NOT_RANKED = "n/a*"
_FOOTNOTE = ("* n/a: {names} predicts the same pKd for every row, so it ranks nothing and has no Spearman or "
             "Pearson; compare it on rmse, mae and r2.")


def is_constant(name: str, result: dict[str, Any]) -> bool:
    """Whether the predictor behind `result` gives every row the same value (its rank metrics mean nothing)."""
    return bool(result.get("constant")) or name in CONSTANT_PREDICTORS


def _fmt(x: Any, digits: int = 3) -> str:
    return "NA" if x is None else f"{x:.{digits}f}"


def _interval(ci: Any) -> str:
    ci = ci or [None, None]
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None and ci[1] is not None else ""


def _within_cell(result: dict[str, Any], kind: str, plural: str) -> str:
    """Mean within-group Spearman [cluster-bootstrap CI] (number of groups that counted)."""
    if f"spearman_within_{kind}" not in result:
        return ""
    return (_fmt(result.get(f"spearman_within_{kind}")) + _interval(result.get(f"spearman_within_{kind}_ci95"))
            + f" ({result.get(f'n_{plural}_within', 0)})")


def _comparison_row(result: dict[str, Any], columns: dict[str, bool], constant: bool = False) -> dict[str, str]:
    binder = result.get("binder") or {}
    row = {"n": str(result.get("n", "NA")),
           "spearman [95% CI]": _fmt(result.get("spearman")) + _interval(result.get("spearman_ci95"))}
    if columns["cluster"]:
        row["cluster CI"] = _interval(result.get("spearman_ci95_cluster")).strip()
    if columns["group"]:
        row["within-cluster (clusters)"] = _within_cell(result, "group", "groups")
    if columns["antibody"]:
        row["within-antibody (antibodies)"] = _within_cell(result, "antibody", "antibodies")
    for key in ("pearson", "rmse", "mae", "r2"):
        row[key] = _fmt(result.get(key))
    row["auroc"] = _fmt(binder.get("auroc"))
    if constant:  # rank metrics of a constant predictor are undefined, not a number to compare
        for key in ("spearman [95% CI]", "cluster CI", "within-cluster (clusters)", "within-antibody (antibodies)",
                    "pearson"):
            if key in row:
                row[key] = _NOT_RANKED
    return row


def format_comparison(results: dict[str, dict[str, Any]], title: str = "") -> str:
    """Side-by-side text table of several ``evaluate_predictions`` results (rows = models).

    Results evaluated with groups get the cluster-bootstrap interval of Spearman and the mean Spearman
    within clusters (and within antibodies) with the number of groups that counted. Constant predictors
    (`is_constant`) show "n/a*" for the rank metrics, with a footnote under the table.
    """
    columns = {"cluster": any("spearman_ci95_cluster" in r for r in results.values()),
               "group": any("spearman_within_group" in r for r in results.values()),
               "antibody": any("spearman_within_antibody" in r for r in results.values())}
    constant = [name for name, res in results.items() if is_constant(name, res)]
    table = pd.DataFrame.from_dict(
        {name: _comparison_row(res, columns, name in constant) for name, res in results.items()}, orient="index"
    )
    table.index.name = "model"
    body = table.to_string() if len(table) else "(no results)"
    if constant:
        body += "\n" + _FOOTNOTE.format(names=" and ".join(constant))
    return f"{title}\n{'=' * len(title)}\n{body}" if title else body
