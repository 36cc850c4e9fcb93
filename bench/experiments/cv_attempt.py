"""Run one model attempt under the fixed saaintdb_dev protocol (5-fold antigen-cluster CV, fold seed 0)
and append its summary to bench/experiments/attempts.jsonl.

Usage: ABAG_CACHE_DIR=/tmp/abag-cache python bench/experiments/cv_attempt.py NAME key=value ... [--seeds N]
Keys are ModelConfig or TrainConfig fields (e.g. hidden_dim=64 composition_k=2 weight_decay=1e-2).
"""
import dataclasses, json, os, sys, time
from pathlib import Path

import torch

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
from abag import ModelConfig, TrainConfig, load_pairs
from abag.crossval import cross_validate, format_cv_summary
from abag.embedding_cache import default_cache_dir
from attempt_args import parse_attempt_args, record_attempt

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
    from abag.splits import group_kfold
    frozen["tests"] = [t.tolist() for _, t in group_kfold(np.array(frozen["groups"]), 5, FOLD_SEED)]
    name = f"{name}_foldseed{FOLD_SEED}"
model_config = ModelConfig(**model_kw)
train_config = TrainConfig(progress=False, cache_dir=str(default_cache_dir()), **train_kw)
means, pooled, per_fold = [], [], []
for r in range(repeats):
    config = dataclasses.replace(train_config, seed=train_config.seed + 100 * r)
    out = Path(os.environ.get("OUT", "/tmp/abag_exp")) / name / f"repeat_{r}"
    result = cross_validate(frame, model_config, config, folds=frozen["tests"], group_column="cv_cluster",
                            fold_seed=FOLD_SEED, out_dir=out, n_seeds=n_seeds, n_boot=500)
    print(format_cv_summary(result), flush=True)
    means.append(result.mean["model"]["spearman"])
    pooled.append(result.pooled["model"]["spearman"])
    per_fold.append([f.metrics["model"]["spearman"] for f in result.folds])
import numpy as np
line = {"name": name, "model": model_kw, "train": train_kw, "n_seeds": n_seeds, "repeats": repeats,
        "mean_spearman": float(np.mean(means)), "repeat_means": means,
        "repeat_sd": float(np.std(means, ddof=1)) if repeats > 1 else None,
        "pooled": float(np.mean(pooled)), "repeat_pooled": pooled,
        "kmer_ridge_mean": result.mean["kmer_ridge"]["spearman"],
        "delta_vs_kmer": float(np.mean(means)) - result.mean["kmer_ridge"]["spearman"],
        "per_fold": per_fold, "seconds": result.seconds}
record_attempt(line)
