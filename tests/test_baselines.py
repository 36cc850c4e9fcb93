"""Tests for abag.baselines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from abag.baselines import (
    AMINO_ACIDS,
    KmerRidgeBaseline,
    MeanBaseline,
    evaluate_baselines,
    fit_baselines,
    kmer_composition,
    pair_features,
)
from abag.metrics import format_comparison


def _col(kmer: str) -> int:
    return int(sum(AMINO_ACIDS.index(a) * 20 ** (len(kmer) - 1 - i) for i, a in enumerate(kmer)))


def _synthetic(n: int, seed: int = 0) -> pd.DataFrame:
    """pKd is a linear function of heavy-chain and antigen amino-acid composition."""
    rng = np.random.default_rng(seed)

    def seqs(length: int) -> list[str]:
        out = []
        for _ in range(n):
            p = rng.dirichlet(np.ones(20))
            out.append("".join(rng.choice(list(AMINO_ACIDS), size=length, p=p)))
        return out

    df = pd.DataFrame({"heavy": seqs(120), "light": seqs(110), "antigen": seqs(200)})
    w = np.random.default_rng(99).normal(0, 3, size=20)
    comp = kmer_composition(df["heavy"], 1) + kmer_composition(df["antigen"], 1)
    df["pkd"] = 8.0 + 10 * comp @ w + rng.normal(0, 0.1, size=n)
    return df


# --------------------------------------------------------------------------- features
def test_kmer_composition_aac() -> None:
    x = kmer_composition(["AAC"], 2)
    assert x.shape == (1, 400)
    assert x[0, _col("AA")] == 0.5 and x[0, _col("AC")] == 0.5
    assert x.sum() == pytest.approx(1.0)


def test_kmer_composition_separators_empty_nonstandard() -> None:
    x = kmer_composition(["AC|DE", "", None, "xxAXC", "ac"], 2)
    assert x[0, _col("AC")] == 0.5 and x[0, _col("DE")] == 0.5  # no C|D k-mer
    assert not x[1].any() and not x[2].any() and not x[3].any()
    assert x[4, _col("AC")] == 1.0  # case-insensitive
    one = kmer_composition(["AAC"], 1)
    assert one[0, _col("A")] == pytest.approx(2 / 3)
    sp = kmer_composition(["AAC", "CC"], 2, sparse_output=True)
    assert sp.shape == (2, 400) and sp.nnz == 3
    assert kmer_composition([], 2).shape == (0, 400)


def test_pair_features_layout() -> None:
    df = pd.DataFrame({"heavy": ["AC", "GG"], "light": ["", "KK"], "antigen": ["W|Y", "M"]})
    x = pair_features(df, ks=(1,))
    assert x.shape == (2, 3 * 20 + 1 + 3)
    assert x[0, 60] == 0.0 and x[1, 60] == 1.0  # light present flag
    assert x[0, 61:] == pytest.approx(np.log1p([2, 0, 2]))  # '|' not counted
    assert pair_features(df).shape == (2, 3 * 420 + 4)


# --------------------------------------------------------------------------- models
def test_mean_baseline_predicts_training_mean_and_ignores_censored() -> None:
    train = pd.DataFrame(
        {
            "heavy": ["A"] * 5,
            "light": ["C"] * 5,
            "antigen": ["D"] * 5,
            "pkd": [7.0, 9.0, np.nan, 5.0, 8.0],
            "censored": [False, False, False, True, False],
        }
    )
    m = MeanBaseline().fit(train)
    assert m.predict(train.iloc[:3]) == pytest.approx([8.0, 8.0, 8.0])
    with pytest.raises(NotFittedError):
        MeanBaseline().predict(train)


def test_ridge_ignores_censored_rows() -> None:
    df = _synthetic(150)
    poisoned = df.copy()
    poisoned["censored"] = False
    extra = df.iloc[:40].assign(pkd=100.0, censored=True)
    poisoned = pd.concat([poisoned, extra], ignore_index=True)
    a = KmerRidgeBaseline(ks=(1,)).fit(df).predict(df)
    b = KmerRidgeBaseline(ks=(1,)).fit(poisoned).predict(df)
    assert a == pytest.approx(b)


def test_ridge_beats_mean_on_linear_composition() -> None:
    train, test = _synthetic(300, seed=1), _synthetic(150, seed=2)
    results = evaluate_baselines(train, test, n_boot=100)
    assert set(results) == {"train_mean", "kmer_ridge"}
    ridge, mean = results["kmer_ridge"], results["train_mean"]
    assert ridge["rmse"] < 0.7 * mean["rmse"]
    assert ridge["spearman"] > 0.7
    assert mean["spearman"] is None  # constant prediction
    json.dumps(results, allow_nan=False)
    text = format_comparison(results, title="baselines")
    assert "train_mean" in text and "kmer_ridge" in text
    lo, hi = ridge["spearman_ci95"]
    assert f"[{lo:.3f}, {hi:.3f}]" in text


def test_fit_baselines_and_censored_test_rows() -> None:
    train, test = _synthetic(120, seed=3), _synthetic(60, seed=4)
    models = fit_baselines(train)
    assert 1e-2 <= models["kmer_ridge"].alpha_ <= 1e4
    test["censored"] = [True] * 10 + [False] * 50
    r = evaluate_baselines(train, test, ci=False)["kmer_ridge"]
    assert r["n"] == 50 and r["n_censored"] == 10 and r["binder"] is None
    assert "spearman_ci95" not in r
