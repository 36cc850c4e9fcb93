"""Text and Markdown tables of a cross-validation result (a `abag.folds.crossval.CVResult`, read by its fields:
this module does not import it, so the two do not import each other).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from abag.evaluation.metrics import MIN_GROUP_SIZE

__all__ = ["format_cv_summary", "format_cv_markdown", "save_summary", "format_value"]


def format_value(x: Any, digits: int = 3) -> str:
    """`x` with `digits` decimals; "NA" for None or NaN."""
    return "NA" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _with_ci(m: dict | None, value: str = "spearman", interval: str = "spearman_ci95", count: str = "") -> str:
    """`m[value] [m[interval]]`, and `(m[count])` when a count key is named."""
    if not m:
        return "NA"
    ci = m.get(interval) or [None, None]
    text = format_value(m.get(value))
    if ci[0] is not None:
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text + (f" ({m.get(count, 0)})" if count else "")


def _pooled_cluster(m: dict | None) -> str:
    return _with_ci(m, interval="spearman_ci95_cluster")


def _within_group(m: dict | None) -> str:
    return _with_ci(m, "spearman_within_group", "spearman_within_group_ci95", "n_groups_within")


def _mean_cell(m: dict) -> str:
    sd = m.get("spearman_sd")
    return format_value(m.get("spearman")) + (f" ± {sd:.3f}" if sd is not None else "")


def format_cv_summary(result: Any, *, max_folds: int = 40) -> str:
    """Plain-text table: Spearman [95% CI] per fold and predictor, the mean ± SD over folds, the pooled
    out-of-fold Spearman with its interval, and the model − reference difference."""
    names = result.predictors
    rows = []
    for f in result.folds[:max_folds]:
        rows.append({"fold": str(f.fold + 1), "n_test": str(f.n_test),
                     **{n: _with_ci(f.metrics.get(n)) for n in names}})
    if len(result.folds) > max_folds:
        rows.append({"fold": f"… ({len(result.folds) - max_folds} more)", "n_test": "", **{n: "" for n in names}})
    rows.append({"fold": "mean ± SD", "n_test": "", **{n: _mean_cell(result.mean[n]) for n in names}})
    n_pooled = next(iter(result.pooled.values()))["n"] if result.pooled else 0
    rows.append({"fold": "pooled", "n_test": str(n_pooled), **{n: _with_ci(result.pooled[n]) for n in names}})
    rows.append({"fold": "pooled, cluster CI", "n_test": "", **{n: _pooled_cluster(result.pooled[n]) for n in names}})
    rows.append({"fold": "within-group (groups)", "n_test": "",
                 **{n: _within_group(result.pooled[n]) for n in names}})
    table = pd.DataFrame(rows).to_string(index=False)
    lines = [f"Cross-validation: {result.protocol} — Spearman [bootstrap 95% CI]", table,
             "cluster CI: whole groups resampled; within-group: mean Spearman over the groups with "
             f">= {MIN_GROUP_SIZE} scored rows (how many), cluster-bootstrap CI"]
    d = result.difference
    if d:
        pooled = d["pooled"]
        ci = pooled.get("ci95") or [None, None]
        ci_text = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci[0] is not None else ""
        lines.append(f"model − {d['reference']}: mean over folds {_signed(d['mean_over_folds'])} "
                     f"(model better in {d['folds_model_better']}/{len(d['per_fold'])} folds); "
                     f"pooled {_signed(pooled.get('difference'))}{ci_text} (paired bootstrap)")
    lines.append(f"wall time {result.seconds:.0f}s")
    return "\n".join(lines)


def _signed(x: float | None) -> str:
    return "NA" if x is None else f"{x:+.3f}"


def format_cv_markdown(result: Any) -> str:
    """Markdown table (one row per predictor: mean ± SD over folds, pooled Spearman [row CI] [cluster CI],
    within-group Spearman [cluster CI] (groups), mean Pearson and RMSE)."""
    lines = ["| predictor | mean Spearman ± SD over folds | pooled Spearman [95% CI] | pooled, cluster CI "
             "| within-group Spearman [95% CI] (groups) | mean Pearson | mean RMSE |",
             "|---|---|---|---|---|---|---|"]
    for name in result.predictors:
        m, pooled = result.mean[name], result.pooled[name]
        lines.append(f"| {name} | {_mean_cell(m)} | {_with_ci(pooled)} | {_pooled_cluster(pooled)} "
                     f"| {_within_group(pooled)} | {format_value(m.get('pearson'))} | {format_value(m.get('rmse'))} |")
    d = result.difference
    if d:
        ci = d["pooled"].get("ci95") or [None, None]
        ci_text = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci[0] is not None else ""
        lines.append(f"\nmodel − {d['reference']}: {_signed(d['mean_over_folds'])} mean over folds "
                     f"(better in {d['folds_model_better']}/{len(d['per_fold'])}); pooled "
                     f"{_signed(d['pooled'].get('difference'))}{ci_text}")
    return "\n".join(lines)


def save_summary(result: Any, path: str | Path) -> None:
    """Write the text summary and the JSON document next to each other."""
    path = Path(path)
    path.write_text(result.summary() + "\n")
    path.with_suffix(".json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
