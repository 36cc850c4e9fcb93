"""Probe: average (z-scored within each test fold) the model's CV predictions with ridge probes on the same
training rows: ridge on trimmed [heavy, light] AntiBERTy embeddings, and the k-mer ridge.

Usage: ABAG_CACHE_DIR=/tmp/abag-cache [FOLD_SEED=1] NAMES="R15_default_wd1e-2" python bench/experiments/blend_probe.py
Reads OUT/<name>[_foldseed1]/repeat_<r>/cv_predictions.csv written by cv_attempt.py (OUT default /tmp/abag_exp).
"""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from abag.data import load_pairs
from abag.data.folds import fold_split
from abag.encoding.embedding_cache import EmbeddingCache, default_cache_dir
from abag.encoding.features import trim_antibody_chains
from abag.encoding.loader import load_antiberty_encoder
from abag.model.ridge import RIDGE_ALPHAS, pair_features

frame, _ = load_pairs("/work/shared/data/saaintdb_dev.csv")
fz = json.loads(Path(__file__).with_name("saaintdb_folds.json").read_text())
groups, tests = np.array(fz["groups"]), [np.array(t) for t in fz["tests"]]
FS = int(os.environ.get("FOLD_SEED", "0"))
SUFFIX = f"_foldseed{FS}" if FS else ""
if FS:
    from abag.data.splits import group_kfold
    tests = [t for _, t in group_kfold(groups, 5, FS)]
cache = EmbeddingCache(load_antiberty_encoder(), default_cache_dir(), progress=False)
th, tl = trim_antibody_chains(frame.heavy, frame.light)
ab = list(dict.fromkeys(list(th) + [c for c in tl if c])); t = cache.embed(ab); pos = {c: i for i, c in enumerate(ab)}
H = t[[pos[c] for c in th]]; L = np.where(np.array([bool(c) for c in tl])[:, None], t[[pos[c] if c else 0 for c in tl]], 0)
flag = np.array([bool(c) for c in tl], float)[:, None]
y = frame.pkd.to_numpy(float)
def ridge(X):
    p = np.full(len(y), np.nan)
    for i, test in enumerate(tests):
        tr = fold_split(groups, test, seed=FS * 1000 + i).indices("train")
        p[test] = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(X[tr], y[tr]).predict(X[test])
    return p
r_emb = ridge(np.hstack([H, L, flag]))
r_kmer = ridge(pair_features(frame))
for name in [n + SUFFIX for n in os.environ.get("NAMES", "R15_default_wd1e-2 R14_default_comp2").split()]:
    reps = [pd.read_csv(f"{os.environ.get('OUT', '/tmp/abag_exp')}/{name}/repeat_{r}/cv_predictions.csv").set_index("row").sort_index() for r in range(3)]
    nn = [rp["model"].to_numpy() for rp in reps]
    def z(v, test): return (v[test] - v[test].mean()) / v[test].std()
    def fold_mean(pred_fn):
        return np.mean([stats.spearmanr(y[t], pred_fn(t)).statistic for t in tests])
    print(name)
    print("  nn per repeat", [round(fold_mean(lambda t, v=v: v[t]), 3) for v in nn])
    print("  ridge emb", round(fold_mean(lambda t: r_emb[t]), 3), "kmer", round(fold_mean(lambda t: r_kmer[t]), 3))
    print("  blend nn+ridge_emb per repeat", [round(fold_mean(lambda t, v=v: z(v, t) + z(r_emb, t)), 3) for v in nn])
    print("  blend nn+ridge_emb+kmer per repeat", [round(fold_mean(lambda t, v=v: z(v, t) + z(r_emb, t) + z(r_kmer, t)), 3) for v in nn])
