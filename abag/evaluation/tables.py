"""The printed comparison table of several `abag.evaluation.metrics.evaluate_predictions` results (model, baselines).

Formats plain dicts only: imports pandas and nothing from abag (`abag.evaluation.metrics` re-exports `format_comparison`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["format_comparison"]


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


def _comparison_row(result: dict[str, Any], columns: dict[str, bool]) -> dict[str, str]:
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
    return row


def format_comparison(results: dict[str, dict[str, Any]], title: str = "") -> str:
    """Side-by-side text table of several ``evaluate_predictions`` results (rows = models).

    Results evaluated with groups get the cluster-bootstrap interval of Spearman and the mean Spearman
    within clusters (and within antibodies) with the number of groups that counted.
    """
    columns = {"cluster": any("spearman_ci95_cluster" in r for r in results.values()),
               "group": any("spearman_within_group" in r for r in results.values()),
               "antibody": any("spearman_within_antibody" in r for r in results.values())}
    table = pd.DataFrame.from_dict(
        {name: _comparison_row(res, columns) for name, res in results.items()}, orient="index"
    )
    table.index.name = "model"
    body = table.to_string() if len(table) else "(no results)"
    return f"{title}\n{'=' * len(title)}\n{body}" if title else body
