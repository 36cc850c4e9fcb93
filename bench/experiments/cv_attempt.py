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

name, *pairs = sys.argv[1:]
n_seeds = 1
model_kw, train_kw = {}, {}
model_fields = {f.name: f.type for f in dataclasses.fields(ModelConfig)}
train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
for pair in pairs:
    key, value = pair.split("=", 1)
    value = json.loads(value) if value not in ("True", "False") else value == "True"
    if key == "seeds":
        n_seeds = int(value)
    elif key in model_fields:
        model_kw[key] = value
    elif key in train_fields:
        train_kw[key] = value
    else:
        raise SystemExit(f"unknown field {key}")
frame, _ = load_pairs("/work/shared/data/saaintdb_dev.csv")
# Frozen folds (abag.splits changed while attempts ran): same clusters and test folds for every attempt.
frozen = json.loads(Path(__file__).with_name("saaintdb_folds.json").read_text())
frame["cv_cluster"] = frozen["groups"]
model_config = ModelConfig(**model_kw)
train_config = TrainConfig(progress=False, cache_dir=str(default_cache_dir()), **train_kw)
out = Path(os.environ.get("OUT", "/tmp/abag_exp")) / name
result = cross_validate(frame, model_config, train_config, folds=frozen["tests"], group_column="cv_cluster",
                        fold_seed=0, out_dir=out, n_seeds=n_seeds,
                        n_boot=500)
print(format_cv_summary(result))
line = {"name": name, "model": model_kw, "train": train_kw, "n_seeds": n_seeds,
        "mean_spearman": result.mean["model"]["spearman"], "sd": result.mean["model"]["spearman_sd"],
        "pooled": result.pooled["model"]["spearman"], "pooled_ci": result.pooled["model"]["spearman_ci95"],
        "kmer_ridge_mean": result.mean["kmer_ridge"]["spearman"],
        "delta_vs_kmer": result.difference["mean_over_folds"],
        "per_fold": [f.metrics["model"]["spearman"] for f in result.folds],
        "best_epochs": [f.best_epochs for f in result.folds], "seconds": result.seconds}
with open(Path(__file__).with_name("attempts.jsonl"), "a") as fh:
    fh.write(json.dumps(line) + "\n")
