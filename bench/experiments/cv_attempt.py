"""Run one model attempt under the fixed saaintdb_dev protocol (5-fold antigen-cluster CV, fold seed 0)
and append its summary to bench/experiments/attempts.jsonl.

Usage: ABAG_CACHE_DIR=/tmp/abag-cache python bench/experiments/cv_attempt.py NAME key=value ... [--seeds N]
Keys are ModelConfig or TrainConfig fields (e.g. hidden_dim=64 weight_decay=1e-2,
fusion='"interaction"'); repeats=3 runs training seeds 0/100/200. Besides the Spearman over folds and pooled,
each line records the within-cluster Spearman of the pooled predictions (clusters with >= 5 rows), the
k-mer ridge on the same folds, and the antigen familiarity (novelty weight w) of the test rows.
"""
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
from attempt_args import parse_attempt_args, record_attempt

from abag.data.pipeline import load_pairs
from abag.encoding.embedding_cache import default_cache_dir
from abag.folds.crossval import cross_validate
from abag.folds.crossval_tables import format_cv_summary
from abag.model.config import ModelConfig
from abag.training.config import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_real_data as bench  # antigen_familiarity: the novelty weight w of every test row

name, *pairs = sys.argv[1:]
# seeds: models per fold, averaged; repeats: independent CV runs with training seeds 0, 100, ... (seed noise)
counts, model_kw, train_kw = parse_attempt_args(pairs, {"seeds": 1, "repeats": 1})
n_seeds, repeats = counts["seeds"], counts["repeats"]
frame, _ = load_pairs("/work/shared/data/saaintdb_dev.csv")
# Frozen folds (abag.splits changed while attempts ran): same clusters and test folds for every attempt.
frozen = json.loads(Path(__file__).with_name("saaintdb_folds.json").read_text())
frame["cv_cluster"] = frozen["groups"]
FOLD_SEED = int(os.environ.get("FOLD_SEED", "0"))
if FOLD_SEED:  # confirmation on another deal of the same clusters into folds
    import numpy as np

    from abag.data.splits import group_kfold
    frozen["tests"] = [t.tolist() for _, t in group_kfold(np.array(frozen["groups"]), 5, FOLD_SEED)]
    name = f"{name}_foldseed{FOLD_SEED}"
weight, familiarity = bench.antigen_familiarity(frame, bench.np.asarray(frozen["groups"]), frozen["tests"], FOLD_SEED)
print(f"test-row antigen familiarity (novelty weight w): {familiarity}", flush=True)
started = time.perf_counter()
model_config = ModelConfig(**model_kw)
train_config = TrainConfig(progress=False, cache_dir=str(default_cache_dir()), **train_kw)
means, pooled, per_fold, within, within_ci, kmer = [], [], [], [], [], {}
for r in range(repeats):
    config = dataclasses.replace(train_config, seed=train_config.seed + 100 * r)
    out = Path(os.environ.get("OUT", "/tmp/abag_exp")) / name / f"repeat_{r}"
    result = cross_validate(frame, model_config, config, folds=frozen["tests"], group_column="cv_cluster",
                            fold_seed=FOLD_SEED, out_dir=out, n_seeds=n_seeds, n_boot=500)
    print(format_cv_summary(result), flush=True)
    means.append(result.mean["model"]["spearman"])
    pooled.append(result.pooled["model"]["spearman"])
    per_fold.append([f.metrics["model"]["spearman"] for f in result.folds])
    within.append(result.pooled["model"]["spearman_within_group"])  # clusters with >= 5 scored rows
    within_ci.append(result.pooled["model"]["spearman_within_group_ci95"])
    kmer = result.pooled["kmer_ridge"]  # deterministic: the same in every repeat
import numpy as np

line = {"name": name, "model": model_kw, "train": train_kw, "n_seeds": n_seeds, "repeats": repeats,
        "mean_spearman": float(np.mean(means)), "repeat_means": means,
        "repeat_sd": float(np.std(means, ddof=1)) if repeats > 1 else None,
        "pooled": float(np.mean(pooled)), "repeat_pooled": pooled,
        "kmer_ridge_mean": result.mean["kmer_ridge"]["spearman"],
        "delta_vs_kmer": float(np.mean(means)) - result.mean["kmer_ridge"]["spearman"],
        "per_fold": per_fold, "seconds": result.seconds, "total_seconds": time.perf_counter() - started,
        "pooled_sd": float(np.std(pooled, ddof=1)) if repeats > 1 else None,
        "within_cluster": float(np.mean(within)), "repeat_within_cluster": within,
        "repeat_within_cluster_ci95": within_ci,
        "within_cluster_sd": float(np.std(within, ddof=1)) if repeats > 1 else None,
        "n_clusters_within": result.pooled["model"]["n_groups_within"],
        "kmer_ridge_pooled": kmer["spearman"], "kmer_ridge_within_cluster": kmer["spearman_within_group"],
        "kmer_ridge_within_cluster_ci95": kmer["spearman_within_group_ci95"],
        "test_antigen_familiarity": familiarity}
record_attempt(line)
