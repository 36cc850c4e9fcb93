"""Multi-task attempt: train on saaintdb_dev plus the SKEMPI mutational set, test on the frozen saaintdb folds.

SKEMPI antigens are clustered jointly with saaintdb's (40 % identity); a SKEMPI row whose antigen cluster
holds any antigen of a saaintdb test fold is kept out of that fold's training rows (it is parked in the test
fold and not scored; rows that would leak into two folds are dropped). Only saaintdb rows are scored. The
k-mer ridge is reported both as usual (saaintdb training rows only) and fitted on the same augmented rows.

Usage: ABAG_CACHE_DIR=/tmp/abag-cache python bench/experiments/cv_multitask.py NAME key=value ... [repeats=3]
"""
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
from attempt_args import parse_attempt_args, record_attempt

from abag.data.pipeline import load_pairs
from abag.encoding.embedding_cache import default_cache_dir
from abag.evaluation.baselines import fit_baselines
from abag.evaluation.metrics import evaluate_predictions
from abag.folds.crossval import cross_validate
from abag.identity.clustering import cluster_antigens
from abag.model.config import ModelConfig
from abag.training.config import TrainConfig

name, *pairs = sys.argv[1:]
counts, model_kw, train_kw = parse_attempt_args(pairs, {"repeats": 1})
repeats = counts["repeats"]

data = Path("/work/shared/data")
saaintdb, _ = load_pairs(data / "saaintdb_dev.csv")
skempi, _ = load_pairs(data / "skempi2_ab_ag.csv")
frozen = json.loads(Path(__file__).with_name("saaintdb_folds.json").read_text())
columns = ["heavy", "light", "antigen", "pkd", "censored"]
combined = pd.concat([saaintdb[columns], skempi[columns]], ignore_index=True)
n_main = len(saaintdb)
joint = cluster_antigens(list(combined["antigen"]))

tests = [list(t) for t in frozen["tests"]]
fold_of_cluster: dict[int, set[int]] = {}
for i, test in enumerate(tests):
    for c in joint[test]:
        fold_of_cluster.setdefault(int(c), set()).add(i)
aux = np.arange(n_main, len(combined))
leak_folds = [fold_of_cluster.get(int(joint[j]), set()) for j in aux]
drop = [j for j, f in zip(aux, leak_folds) if len(f) > 1]
parked = {i: [int(j) for j, f in zip(aux, leak_folds) if f == {i}] for i in range(len(tests))}
print(f"SKEMPI rows: {len(aux)}; always in training: {sum(len(f) == 0 for f in leak_folds)}; parked per fold: "
      f"{[len(p) for p in parked.values()]}; dropped (two folds): {len(drop)}", flush=True)
keep = np.setdiff1d(np.arange(len(combined)), drop)
remap = {old: new for new, old in enumerate(keep)}
combined = combined.iloc[keep].reset_index(drop=True)
groups = [str(g) for g in frozen["groups"]] + [f"skempi:{joint[j]}" for j in keep[keep >= n_main]]
combined["cv_group"] = groups
folds = [np.array([remap[r] for r in tests[i] + parked[i]]) for i in range(len(tests))]
scored = [np.array(tests[i]) for i in range(len(tests))]  # saaintdb rows keep their indices (they come first)

model_config = ModelConfig(**model_kw)
train_config = TrainConfig(progress=False, cache_dir=str(default_cache_dir()), **train_kw)
y = saaintdb["pkd"].to_numpy(float)
# The usual k-mer ridge (saaintdb rows only, validation slice included) is deterministic: fit it once per fold.
own_kmer = [fit_baselines(saaintdb.drop(index=test))["kmer_ridge"].predict(saaintdb.iloc[test]) for test in scored]
kmer = float(np.mean([evaluate_predictions(y[test], p, None, ci=False)["spearman"]
                      for test, p in zip(scored, own_kmer)]))
means, kmer_aug = [], []
for r in range(repeats):
    config = dataclasses.replace(train_config, seed=train_config.seed + 100 * r)
    out = Path(os.environ.get("OUT", "/tmp/abag_exp")) / name / f"repeat_{r}"
    result = cross_validate(combined, model_config, config, folds=folds, group_column="cv_group",
                            out_dir=out, n_boot=200)
    pred = result.predictions.set_index("row")
    per_fold = {"model": [], "kmer_ridge_aug": []}
    for test in scored:
        for key, values in (("model", pred.loc[test, "model"]), ("kmer_ridge_aug", pred.loc[test, "kmer_ridge"])):
            m = evaluate_predictions(y[test], np.asarray(values, float), None, ci=False)
            per_fold[key].append(m["spearman"])
    print(name, f"repeat {r}:", {k: [round(v, 3) for v in vs] for k, vs in per_fold.items()}, flush=True)
    means.append(float(np.mean(per_fold["model"])))
    kmer_aug.append(float(np.mean(per_fold["kmer_ridge_aug"])))
line = {"name": name, "model": model_kw, "train": {**train_kw, "aux": "skempi2_ab_ag"}, "repeats": repeats,
        "mean_spearman": float(np.mean(means)), "repeat_means": means,
        "repeat_sd": float(np.std(means, ddof=1)) if repeats > 1 else None,
        "kmer_ridge_mean": kmer, "kmer_ridge_with_aux_mean": kmer_aug[0],
        "delta_vs_kmer": float(np.mean(means)) - kmer}
if os.environ.get("DRY"):
    print(json.dumps(line))
else:
    record_attempt(line)
