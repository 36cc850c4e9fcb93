"""Compare attempts run by cv_attempt.py on the same frozen folds, seed by seed, from their saved predictions.

Usage: python bench/experiments/compare_heads.py REFERENCE OTHER [OTHER ...] [--out /tmp/abag_exp] [--record]

Reads OUT/NAME/repeat_<r>/cv_predictions.csv (every repeat found so far, so partial runs count) and prints,
per attempt: pooled Spearman, mean Spearman over folds, the within-cluster Spearman (mean over antigen
clusters with >= 5 scored rows, `abag.metrics.grouped_spearman`) and their spread over training seeds; the
k-mer ridge on the same folds; and OTHER minus REFERENCE, paired on the same rows and seeds: the pooled
Spearman difference (row bootstrap, `paired_spearman_difference`) and the within-cluster difference (per
cluster, averaged over the shared seeds, with a cluster-bootstrap interval from scipy). `--record` appends
one line per OTHER to attempts.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from attempt_args import record_attempt
from scipy import stats

from abag.evaluation.metrics import grouped_spearman
from abag.folds.crossval import paired_spearman_difference


def load_repeats(root: Path, name: str) -> list[pd.DataFrame]:
    """The out-of-fold predictions of every finished repeat of attempt `name`, in seed order."""
    tables = []
    for r in range(100):
        path = root / name / f"repeat_{r}" / "cv_predictions.csv"
        if not path.exists():
            break
        tables.append(pd.read_csv(path))
    if not tables:
        raise SystemExit(f"no finished repeat of {name} under {root}")
    return tables


def scored(table: pd.DataFrame) -> pd.DataFrame:
    """Rows that count as exact values (censored rows are never scored as exact)."""
    return table[~table["censored"].astype(bool) & np.isfinite(table["pkd"])]


def per_cluster(table: pd.DataFrame, column: str) -> pd.Series:
    """Spearman within each cluster that counts (>= 5 scored rows; constant predictions score 0)."""
    rows = scored(table)
    result = grouped_spearman(rows["pkd"], rows[column], rows["group"].astype(str))
    counted = result.table[result.table["status"].isin(("scored", "constant_prediction"))]
    return counted.set_index("group")["spearman"]


def summary(tables: list[pd.DataFrame], column: str = "model") -> dict:
    """Pooled, mean over folds and within-cluster Spearman per repeat, their mean and SD over repeats."""
    pooled, over_folds, within = [], [], []
    for table in tables:
        rows = scored(table)
        pooled.append(float(stats.spearmanr(rows["pkd"], rows[column]).statistic))
        over_folds.append(float(np.mean([stats.spearmanr(g["pkd"], g[column]).statistic
                                         for _, g in rows.groupby("fold")])))
        within.append(float(per_cluster(table, column).mean()))
    sd = (lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else None)
    return {"repeats": len(tables), "pooled": float(np.mean(pooled)), "pooled_per_seed": pooled,
            "pooled_sd": sd(pooled), "mean_over_folds": float(np.mean(over_folds)),
            "mean_over_folds_per_seed": over_folds, "mean_over_folds_sd": sd(over_folds),
            "within_cluster": float(np.mean(within)), "within_cluster_per_seed": within,
            "within_cluster_sd": sd(within), "n_clusters_within": int(len(per_cluster(tables[0], column)))}


def paired(reference: list[pd.DataFrame], other: list[pd.DataFrame], n_boot: int = 2000) -> dict:
    """OTHER − REFERENCE on the seeds both have: pooled (row bootstrap per seed) and within-cluster
    (per-cluster Spearman averaged over seeds, then a cluster bootstrap of the mean difference)."""
    n = min(len(reference), len(other))
    pooled = []
    for a, b in zip(reference[:n], other[:n]):
        if not np.array_equal(a["row"], b["row"]):
            raise SystemExit("the attempts did not use the same folds (rows differ)")
        pooled.append(paired_spearman_difference(a["pkd"], b["model"], a["model"], censored=a["censored"],
                                                 n_boot=n_boot))
    ref = pd.concat([per_cluster(t, "model") for t in reference[:n]], axis=1).mean(axis=1)
    oth = pd.concat([per_cluster(t, "model") for t in other[:n]], axis=1).mean(axis=1)
    delta = (oth - ref).dropna().to_numpy()
    ci = stats.bootstrap((delta,), np.mean, n_resamples=n_boot, method="percentile", random_state=0).confidence_interval
    return {"seeds": n, "pooled_difference_per_seed": [p["difference"] for p in pooled],
            "pooled_difference_ci95_per_seed": [p["ci95"] for p in pooled],
            "within_cluster_difference": float(delta.mean()), "within_cluster_difference_ci95":
            [float(ci.low), float(ci.high)], "clusters": int(len(delta)),
            "clusters_other_better": int((delta > 0).sum()), "clusters_tied": int((delta == 0).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference")
    parser.add_argument("others", nargs="+")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/abag_exp")))
    parser.add_argument("--record", action="store_true", help="append the comparisons to attempts.jsonl")
    args = parser.parse_args()
    reference = load_repeats(args.out, args.reference)
    report = {args.reference: summary(reference)}
    if "kmer_ridge" in reference[0]:  # cv_attempt.py tables have it; cv_folds_default.py ones do not
        report["kmer_ridge"] = summary(reference[:1], "kmer_ridge")
    for name in args.others:
        other = load_repeats(args.out, name)
        report[name] = summary(other)
        report[f"{name} - {args.reference}"] = paired(reference, other)
        if args.record:
            record_attempt({"name": f"compare_{name}_vs_{args.reference}", "reference": report[args.reference],
                            "other": report[name], "kmer_ridge": report.get("kmer_ridge"),
                            "paired": report[f"{name} - {args.reference}"]})
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
