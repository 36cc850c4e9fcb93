"""Quick ridge probes on cached AntiBERTy embeddings, same folds as the CV (saaintdb_dev, 5-fold antigen clusters).

Usage: ABAG_CACHE_DIR=/tmp/abag-cache python bench/experiments/probe_ridge.py
Not a benchmark: a scratch check of which inputs carry signal across antigen clusters.
"""
import os
import sys
import time

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
from abag.data import load_pairs
from abag.data.folds import fold_split, make_folds
from abag.encoding.embedding_cache import EmbeddingCache, default_cache_dir
from abag.encoding.features import composition_features, trim_antibody_chains
from abag.encoding.loader import load_antiberty_encoder
from abag.evaluation.baselines import RIDGE_ALPHAS, pair_features

frame, _ = load_pairs("/work/shared/data/saaintdb_dev.csv")
import json
from pathlib import Path

frozen = json.loads(Path(__file__).with_name("saaintdb_folds.json").read_text())
groups, tests, protocol = np.array(frozen["groups"]), [np.array(t) for t in frozen["tests"]], frozen["protocol"]
print(protocol)
enc = load_antiberty_encoder()
cache = EmbeddingCache(enc, default_cache_dir(), progress=False)

def emb_table(heavy, light, antigen):
    ab = list(dict.fromkeys(list(heavy) + [c for c in light if c]))
    t = cache.embed(ab); pos = {c: i for i, c in enumerate(ab)}
    H = t[[pos[c] for c in heavy]]
    L = np.where(np.array([bool(c) for c in light])[:, None], t[[pos[c] if c else 0 for c in light]], 0)
    chains = list(dict.fromkeys(c for a in antigen for c in a.split("|")))
    ct = cache.embed(chains); cp = {c: i for i, c in enumerate(chains)}
    A = np.stack([np.average(ct[[cp[c] for c in a.split("|")]], axis=0, weights=[len(c) for c in a.split("|")]) for a in antigen])
    return H, L, A

t0 = time.time()
H, L, A = emb_table(frame.heavy, frame.light, frame.antigen)
th, tl = trim_antibody_chains(frame.heavy, frame.light)
Ht, Lt, _ = emb_table(th, tl, frame.antigen)
print(f"embeddings ready in {time.time()-t0:.0f}s")
y = frame.pkd.to_numpy(float)
flag = (frame.light.str.len() > 0).to_numpy(float)[:, None]
kmer = pair_features(frame)
comp = composition_features(list(frame.heavy), list(frame.light), list(frame.antigen))
compt = composition_features(th, tl, list(frame.antigen))
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold


def group_ridge(X, tr):
    """Ridge with alpha chosen by 5-fold GroupKFold over the training clusters (not LOO)."""
    best = None
    for alpha in RIDGE_ALPHAS:
        ys, ps = [], []
        for a, b in GroupKFold(5).split(X[tr], y[tr], groups[tr]):
            m = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(X[tr][a], y[tr][a])
            ps.append(m.predict(X[tr][b])); ys.append(y[tr][b])
        score = np.mean([stats.spearmanr(u, v).statistic for u, v in zip(ys, ps)])
        if best is None or score > best[0]:
            best = (score, alpha)
    return make_pipeline(StandardScaler(), Ridge(alpha=best[1])).fit(X[tr], y[tr]), best[1]

def cv(X, grouped=False):
    out, pooled, alphas = [], np.full(len(y), np.nan), []
    for i, test in enumerate(tests):
        sp = fold_split(groups, test, seed=i)
        tr = sp.indices("train")
        if grouped:
            m, a = group_ridge(X, tr); alphas.append(a)
        else:
            m = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(X[tr], y[tr])
            alphas.append(m[-1].alpha_)
        p = m.predict(X[test]); pooled[test] = p
        out.append(stats.spearmanr(y[test], p).statistic)
    return np.array(out), pooled, alphas

sets = {
    "kmer_ridge(pair_features)": kmer,
    "comp(scaled)": comp,
    "comp_trimmed": compt,
    "emb_full": np.hstack([H, L, flag, A]),
    "emb_trim": np.hstack([Ht, Lt, flag, A]),
    "emb_full_ab_only": np.hstack([H, L, flag]),
    "emb_trim_ab_only": np.hstack([Ht, Lt, flag]),
    "emb_trim_heavy_only": np.hstack([Ht, flag]),
    "emb_antigen_only": A,
    "emb_trim+kmer": np.hstack([Ht, Lt, flag, A, kmer]),
    "emb_trim_ab+kmer": np.hstack([Ht, Lt, flag, kmer]),
    "emb_trim_ab+comp_ab": np.hstack([Ht, Lt, flag, compt[:, :840], compt[:, -4:]]),
}
results = {}
for grouped in (False, True):
    for name, X in sets.items():
        s, p, alphas = cv(X, grouped); results[(name, grouped)] = p
        print(f"{'group-alpha' if grouped else 'loo-alpha':11s} {name:28s} mean {s.mean():.3f} ± {s.std(ddof=1):.3f} "
              f"folds {np.round(s, 3)} pooled {stats.spearmanr(y, p).statistic:.3f} alphas {alphas}", flush=True)
