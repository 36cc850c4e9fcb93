"""The wide-and-deep measurement of bench/RESULTS.md ("Wide and deep: one model"): one cross-validation per call.

    python bench/experiments/wide_and_deep.py DATASET VARIANT EPOCHS [CACHE_DIR] [OUT_DIR]

DATASET: `cr9114` (2,000 CR9114 rows of phillips2021_cr9114_cr6261.csv.gz, half exact and half censored as
bench_real_data.phillips_subsample draws them; 5 random folds over variants) or `saaint` (saaintdb_dev.csv,
5-fold antigen-cluster CV). VARIANT: `default` (wide="none", today's correction; its `network_only` column is
the same networks without the correction), `wide` (wide="kmer_ridge", correction none), `wide_corr`
(wide="kmer_ridge", today's correction) or `wide_insample` (the lost attempt: the network trains against the
wide part's in-sample predictions). AntiBERTy, 1 seed (0), fold seed 0. Writes OUT_DIR/DATASET_VARIANT.json
with pooled and per-fold metrics and, for the wide variants, the wide and deep parts scored alone.
"""
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
import numpy as np
import torch

torch.set_num_threads(1)
from bench_real_data import phillips_subsample

from abag.data.pipeline import load_pairs
from abag.encoding.loader import load_encoder
from abag.evaluation.metrics import evaluate_predictions
from abag.folds.crossval import cross_validate
from abag.inference import load_trained_model, member_outputs
from abag.model.config import ModelConfig
from abag.training.config import TrainConfig

dataset, variant, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
cache = sys.argv[4] if len(sys.argv) > 4 else "/tmp/wide-cache"
out_dir = Path(sys.argv[5] if len(sys.argv) > 5 else "/tmp/wide-bench")
data = ROOT.parent / "shared" / "data"
if variant == "wide_insample":  # the attempt without cross-fitting: the network trains against in-sample offsets
    from abag.model import apply
    from abag.model.wide import fit_wide
    apply.cross_fitted = lambda frame, kind, groups=None, folds=5: fit_wide(frame, kind).predict(frame)
config = {"default": {"wide": "none"}, "wide": {"familiar_correction": "none"},
          "wide_insample": {"familiar_correction": "none"}, "wide_corr": {}}[variant]
model_config = ModelConfig(antibody_encoder="antiberty", antigen_encoder="antiberty", **config)
train_config = TrainConfig(epochs=epochs, progress=False, cache_dir=cache, seed=0)
if dataset == "cr9114":
    full, _ = load_pairs(data / "phillips2021_cr9114_cr6261.csv.gz")
    frame = phillips_subsample(full[full["antibody"] == "CR9114"].reset_index(drop=True), 2000, seed=0)
    frame["variant"] = frame["antibody"] + ":" + frame["genotype"].astype(str)
    kw = {"group_column": "variant"}
else:
    frame, _ = load_pairs(data / "saaintdb_dev.csv")
    frame = frame.reset_index(drop=True)
    kw = {}
encoders = {"antiberty": load_encoder("antiberty")}
out = out_dir / "runs" / f"{dataset}_{variant}"
started = time.time()
result = cross_validate(frame, model_config, train_config, folds=5, fold_seed=0, out_dir=out, encoders=encoders,
                        n_boot=200, **kw)
pred = result.predictions
extra = {}
if variant.startswith("wide"):  # the parts out of fold, from each fold's best.pt
    wide, deep = np.full(len(frame), np.nan), np.full(len(frame), np.nan)
    for f in result.folds:
        rows = pred.loc[pred.fold == f.fold, "row"].to_numpy()
        model, _ = load_trained_model(out / f"fold_{f.fold}" / "checkpoints" / "best.pt", encoders=encoders)
        o = member_outputs(model, frame.iloc[rows], cache_dir=cache)
        wide[rows], deep[rows] = o.wide.mean(0), o.deep.mean(0)
    rows = pred["row"].to_numpy()
    groups = pred["group"].to_numpy()
    for name, col in (("wide_part_alone", wide), ("deep_part_alone", deep)):
        m = evaluate_predictions(pred["pkd"], col[rows], None, censored=pred["censored"], groups=groups, ci=False)
        extra[name] = {"spearman": m["spearman"], "spearman_within_group": m.get("spearman_within_group"),
                       "rmse": m["rmse"]}
summary = {"dataset": dataset, "variant": variant, "epochs": epochs, "protocol": result.protocol,
           "seconds": time.time() - started, "best_epochs": [f.best_epochs for f in result.folds],
           "pooled": {n: {k: m.get(k) for k in ("spearman", "spearman_within_group", "rmse", "n")}
                      for n, m in result.pooled.items()},
           "mean_over_folds": {n: {k: m.get(k) for k in ("spearman", "spearman_sd", "spearman_within_group")}
                               for n, m in result.mean.items()},
           "parts": extra}
print(json.dumps(summary, indent=1))
(out_dir / f"{dataset}_{variant}.json").write_text(json.dumps(summary, indent=1))
