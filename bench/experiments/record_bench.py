"""Append the headline numbers of a bench_real_data.py run (its summary.json) to attempts.jsonl.

Usage: python bench/experiments/record_bench.py NAME OUT/summary.json

One line per set in the summary: SKEMPI / saaintdb give the mean and pooled Spearman, the within-group
Spearman and the test rows' antigen familiarity per predictor; phillips_extrapolation gives, per antibody
and predictor, the Spearman, the within-level Spearman and their intervals (model: per training seed).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from attempt_args import record_attempt

KEYS = ("spearman", "spearman_ci95", "spearman_ci95_cluster", "spearman_within_group",
        "spearman_within_group_ci95", "n_groups_within", "rmse", "censored_violation_rate", "per_seed")


def cv_line(part: dict) -> dict:
    """Mean over folds, pooled and within-group Spearman of every predictor of a cross-validated set."""
    return {"protocol": part["protocol"], "familiarity": part.get("familiarity"),
            "by_familiarity": part.get("by_familiarity"),
            "predictors": {name: {"mean_spearman": part["mean"][name].get("spearman"),
                                  "n_folds": part["mean"][name].get("n_folds"),
                                  **{k: pooled.get(k) for k in KEYS if k in pooled}}
                           for name, pooled in part["pooled"].items()},
            "difference": {k: part["difference"].get(k) for k in ("reference", "mean_over_folds",
                                                                   "folds_model_better")}}


def extrapolation_line(part: dict) -> dict:
    return {"protocol": part["protocol"], "antibodies": {
        antibody: {"max_train_mutations": entry["max_train_mutations"], "counts": entry["counts"],
                   "predictors": {name: {k: m.get(k) for k in KEYS if k in m} for name, m in entry["metrics"].items()},
                   "model_minus": {ref: [{"difference": d["difference"], "ci95": d["ci95"]} for d in diffs]
                                   for ref, diffs in entry["model_minus"].items()}}
        for antibody, entry in part["antibodies"].items()}}


def main() -> None:
    name, path = sys.argv[1], Path(sys.argv[2])
    summary = json.loads(path.read_text())
    fusion = summary["model_config"]["fusion"]
    for set_name, part in summary["sets"].items():
        line = extrapolation_line(part) if set_name == "phillips_extrapolation" else cv_line(part)
        record_attempt({"name": f"{name}_{set_name}", "set": set_name, "fusion": fusion,
                        "seconds": part.get("seconds"), **line})


if __name__ == "__main__":
    main()
