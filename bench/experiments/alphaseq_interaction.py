"""Can an antibody-by-antigen interaction term rank antigen variants within a held-out antibody (AlphaSeq)?

The k-mer ridge and "the antigen's mean over training antibodies" rank the 37 RBD variants inside a new antibody
at 0.55: both give every antibody the same antigen order. This script adds a kernel ridge with a product kernel
K((ab, ag), (ab', ag')) = K_ab(ab, ab') * K_ag(ag, ag') to the k-mer ridge's residuals, so a new antibody takes
the antigen profile of the training antibodies it resembles. Penalty chosen by leaving out whole training
antibodies (inner CV); "no term" is a candidate. Same folds as bench/bench_one_model.py's alphaseq_antibody.

    python bench/experiments/alphaseq_interaction.py [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_one_model import AntigenMeanBaseline, _mean_within, alphaseq_antibody  # noqa: E402

from abag.encoding.kmers import kmer_composition  # noqa: E402
from abag.model.ridge import KmerRidgeBaseline  # noqa: E402


def _onehot(chains, length=None):
    chains = list(chains)
    length = length or max(len(c) for c in chains)
    letters = {a: i for i, a in enumerate("ACDEFGHIKLMNPQRSTVWY")}
    x = np.zeros((len(chains), length * 20))
    for row, chain in enumerate(chains):
        for i, a in enumerate(chain[:length]):
            if a in letters:
                x[row, i * 20 + letters[a]] = 1.0
    return x


def _raw(chains, kind):
    if kind == "onehot":
        return _onehot(chains, 209)
    return np.hstack([kmer_composition(list(chains), k) for k in (1, 2, 3)]).astype(float)


def _features(chains, kind="kmer", reference=None):
    x = _raw(chains, kind)
    x -= (x if reference is None else _raw(reference, kind)).mean(axis=0)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _kernel(ab_a, ag_a, ab_b, ag_b, kind):
    k_ab = ab_a @ ab_b.T
    k_ag = ag_a @ ag_b.T
    if kind == "product":
        return k_ab * k_ag
    if kind == "product_exp":
        return np.exp(k_ab - 1) * np.exp(k_ag - 1)
    raise ValueError(kind)


ANTIBODY = None
AB_KIND = "kmer"
AG_KIND = "kmer"


def fit_predict(train, test, residual, kind, alphas, groups):
    """Kernel ridge on `residual` with the product kernel; alpha by leaving out whole antibodies (inf: none)."""
    ab = _features(ANTIBODY(train), AB_KIND)
    ag = _features(train.antigen, AG_KIND)
    k = _kernel(ab, ag, ab, ag, kind)
    best, best_err = np.inf, float(np.mean(residual ** 2))
    for alpha in alphas[1:]:
        err = []
        for g in np.unique(groups):
            out = groups == g
            sol = np.linalg.solve(k[np.ix_(~out, ~out)] + alpha * np.eye((~out).sum()), residual[~out])
            err.append(np.mean((k[np.ix_(out, ~out)] @ sol - residual[out]) ** 2))
        if np.mean(err) < best_err:
            best, best_err = alpha, float(np.mean(err))
    if not np.isfinite(best):
        return np.zeros(len(test)), best
    sol = np.linalg.solve(k + best * np.eye(len(k)), residual)
    k_test = _kernel(_features(ANTIBODY(test), AB_KIND, ANTIBODY(train)),
                     _features(test.antigen, AG_KIND, train.antigen), ab, ag, kind)
    return k_test @ sol, best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    parser.add_argument("--antibody", choices=("pair", "heavy"), default="pair")
    parser.add_argument("--antigen-features", choices=("kmer", "onehot"), default="kmer")
    args = parser.parse_args()
    global ANTIBODY, AG_KIND
    ANTIBODY = (lambda t: t.heavy + "|" + t.light) if args.antibody == "pair" else (lambda t: t.heavy)
    AG_KIND = args.antigen_features
    args.epochs = None
    protocol = alphaseq_antibody(args)
    part = protocol.parts[0]
    frame = part.frame
    antibody = frame["antibody_name"].astype(str).to_numpy()
    alphas = (np.inf, *np.logspace(-3, 2, 11))
    preds = {name: np.full(len(frame), np.nan) for name in ("antigen_mean", "kmer_ridge", "kmer+product",
                                                          "kmer+product_exp")}
    chosen = {"kmer+product": [], "kmer+product_exp": []}
    for test_rows in part.tests:
        train_mask = np.ones(len(frame), bool)
        train_mask[test_rows] = False
        train = frame[train_mask & ~frame["censored"].to_numpy(bool)].reset_index(drop=True)
        test = frame.iloc[test_rows].reset_index(drop=True)
        preds["antigen_mean"][test_rows] = AntigenMeanBaseline().fit(train).predict(test)
        ridge = KmerRidgeBaseline().fit(train)
        base = ridge.predict(test)
        preds["kmer_ridge"][test_rows] = base
        # Residuals the ridge leaves on antibodies it has not seen: leave-one-antibody-out inside the training set.
        groups = train["antibody_name"].astype(str).to_numpy()
        residual = np.empty(len(train))
        for g in np.unique(groups):
            out = groups == g
            residual[out] = train["pkd"].to_numpy(float)[out] - KmerRidgeBaseline().fit(train[~out]).predict(
                train[out])
        for kind in ("product", "product_exp"):
            extra, alpha = fit_predict(train, test, residual, kind, alphas, groups)
            preds[f"kmer+{kind}"][test_rows] = base + extra
            chosen[f"kmer+{kind}"].append(alpha)
    import pandas as pd
    print("| predictor | Spearman within antibody (mean) | antibodies | alphas chosen per fold |")
    print("|---|---|---|---|")
    for name, p in preds.items():
        table = pd.DataFrame({"pkd": frame["pkd"], "censored": frame["censored"], "pred": p,
                              "row": np.arange(len(frame))})
        within, n = _mean_within(table, antibody, 5)
        print(f"| {name} | {within:.3f} | {n} | {', '.join(f'{a:g}' for a in chosen.get(name, []))} |")


if __name__ == "__main__":
    main()
