"""Tests for abag.metrics."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from abag.metrics import (
    BINDER_THRESHOLD,
    binder_metrics,
    bootstrap_ci,
    evaluate_predictions,
    format_comparison,
    regression_metrics,
)


def _correlated(n: int, seed: int = 0, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(8.0, 1.5, size=n)
    return y, y + rng.normal(0.0, noise, size=n)


# --------------------------------------------------------------------------- regression
def test_regression_matches_scipy_sklearn() -> None:
    y, p = _correlated(200)
    m = regression_metrics(y, p)
    assert m["n"] == 200
    assert m["spearman"] == pytest.approx(stats.spearmanr(y, p).statistic)
    assert m["pearson"] == pytest.approx(stats.pearsonr(y, p).statistic)
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert m["r2"] == pytest.approx(skm.r2_score(y, p))


def test_perfect_prediction() -> None:
    y, _ = _correlated(50)
    m = regression_metrics(y, y)
    assert m["spearman"] == pytest.approx(1.0)
    assert m["pearson"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(0.0)
    assert m["mae"] == pytest.approx(0.0)
    assert m["r2"] == pytest.approx(1.0)


def test_constant_prediction_gives_none_without_warning() -> None:
    y, _ = _correlated(50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = regression_metrics(y, np.full(50, 7.0))
        ci = bootstrap_ci(y, np.full(50, 7.0), n_boot=50)
    assert m["spearman"] is None and m["pearson"] is None
    assert m["rmse"] is not None and m["r2"] is not None
    assert ci == (None, None)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_points(n: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = regression_metrics(np.arange(n, dtype=float), np.arange(n, dtype=float))
    assert m["n"] == n and m["spearman"] is None and m["pearson"] is None
    assert (m["r2"] is None) == (n < 2)
    assert (m["rmse"] is None) == (n == 0)


def test_non_finite_and_mismatched_inputs_rejected() -> None:
    with pytest.raises(ValueError):
        regression_metrics([1.0, 2.0, np.nan], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        regression_metrics([1.0, 2.0], [1.0, 2.0, 3.0])


# --------------------------------------------------------------------------- binder
def test_binder_metrics_use_probability_not_regression() -> None:
    y = np.array([10.0, 9.5, 6.0, 5.0])
    pkd_pred = np.array([6.0, 6.0, 10.0, 10.0])  # thresholding this would be all wrong
    prob = np.array([0.9, 0.8, 0.1, 0.2])  # the classifier head is perfect
    m = binder_metrics(y, prob)
    assert m["recall"] == 1.0 and m["precision"] == 1.0 and m["f1"] == 1.0
    assert m["auroc"] == 1.0
    assert m["n"] == 4 and m["n_positive"] == 2 and m["threshold"] == BINDER_THRESHOLD
    wrong = evaluate_predictions(y, pkd_pred, prob, ci=False)
    assert wrong["binder"]["auroc"] == 1.0  # evaluate_predictions passes prob, not pkd_pred


def test_binder_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.uniform(5, 12, size=300)
    prob = rng.uniform(size=300)
    m = binder_metrics(y, prob, decision=0.3)
    labels, hat = y >= 9.0, prob >= 0.3
    assert m["recall"] == pytest.approx(skm.recall_score(labels, hat))
    assert m["precision"] == pytest.approx(skm.precision_score(labels, hat))
    assert m["f1"] == pytest.approx(skm.f1_score(labels, hat))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(labels, prob))


def test_auroc_none_with_one_class() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = binder_metrics([5.0, 6.0, 7.0], [0.1, 0.6, 0.2])
    assert m["auroc"] is None and m["n_positive"] == 0
    assert m["precision"] == 0.0  # zero_division=0


def test_binder_rejects_non_probabilities() -> None:
    with pytest.raises(ValueError):
        binder_metrics([5.0, 10.0], [0.1, 8.0])


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_contains_estimate_and_narrows() -> None:
    widths = []
    for n in (50, 2000):
        y, p = _correlated(n, seed=n)
        lo, hi = bootstrap_ci(y, p, n_boot=300)
        est = regression_metrics(y, p)["spearman"]
        assert lo < est < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3


@pytest.mark.parametrize("metric", ["spearman", "pearson", "rmse", "mae", "r2"])
def test_bootstrap_all_metrics_contain_estimate(metric: str) -> None:
    y, p = _correlated(300, seed=3)
    lo, hi = bootstrap_ci(y, p, metric, n_boot=300, seed=1)
    assert lo <= regression_metrics(y, p)[metric] <= hi
    assert bootstrap_ci(y, p, metric, n_boot=300, seed=1) == (lo, hi)  # seeded


def test_bootstrap_spearman_matches_naive_resampling() -> None:
    y, p = _correlated(80, seed=4)
    y = np.round(y)  # ties
    rng = np.random.default_rng(7)
    naive = []
    for _ in range(200):
        i = rng.integers(0, 80, size=80)
        naive.append(stats.spearmanr(y[i], p[i]).statistic)
    expected = np.nanpercentile(naive, [2.5, 97.5])
    assert bootstrap_ci(y, p, n_boot=200, seed=7) == pytest.approx(tuple(expected))


def test_bootstrap_fast_on_10k_rows() -> None:
    y, p = _correlated(10_000)
    start = time.perf_counter()
    bootstrap_ci(y, p, "spearman", n_boot=1000)
    assert time.perf_counter() - start < 2.0


def test_bootstrap_bad_metric() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], "auc")


# --------------------------------------------------------------------------- evaluate
def test_censored_rows_excluded_and_counted() -> None:
    y, p = _correlated(40)
    y_c = np.concatenate([y, [6.0, 6.0, 6.0, 6.0]])
    p_c = np.concatenate([p, [5.0, 6.4, 7.0, 30.0]])  # last two exceed bound + 0.5
    cens = np.r_[np.zeros(40, bool), np.ones(4, bool)]
    r = evaluate_predictions(y_c, p_c, censored=cens, ci=False)
    assert r["n"] == 40 and r["n_censored"] == 4
    assert r["spearman"] == pytest.approx(regression_metrics(y, p)["spearman"])
    assert r["censored_violation_rate"] == pytest.approx(0.5)
    assert r["pred_max"] == 30.0
    assert evaluate_predictions(y, p, ci=False)["censored_violation_rate"] is None


def test_unlabeled_rows_dropped_and_binder_censoring() -> None:
    y = np.array([10.0, 5.0, np.nan, 6.0, 9.5, 8.0, 7.0])
    cens = pd.Series([False, False, False, True, True, None, False])
    prob = np.array([0.9, 0.1, 0.5, 0.2, 0.9, 0.3, 0.4])
    r = evaluate_predictions(y, y, prob, censored=cens, ci=False)
    assert r["n_total"] == 7 and r["n_labeled"] == 6 and r["n"] == 4
    # censored 6.0 is a known non-binder; censored 9.5 (>= threshold) has unknown class
    assert r["binder"]["n"] == 5 and r["binder"]["n_positive"] == 1


def test_evaluate_is_json_serialisable() -> None:
    y, p = _correlated(100)
    y[:3] = np.nan
    prob = np.clip((p - 5) / 7, 0, 1)
    cens = np.zeros(100, bool)
    cens[3:8] = True
    r = evaluate_predictions(pd.Series(y), pd.Series(p), prob, censored=cens, n_boot=100)
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text)["spearman_ci95"] == r["spearman_ci95"]
    assert isinstance(r["spearman_ci95"], list) and len(r["spearman_ci95"]) == 2
    const = evaluate_predictions(y, np.full(100, 8.0), n_boot=50)
    json.dumps(const, allow_nan=False)
    assert const["spearman"] is None and const["spearman_ci95"] == [None, None]


def test_format_comparison() -> None:
    y, p = _correlated(100)
    results = {
        "model": evaluate_predictions(y, p, np.clip((p - 5) / 7, 0, 1), n_boot=100),
        "train_mean": evaluate_predictions(y, np.full(100, 8.0), n_boot=100),
    }
    text = format_comparison(results, title="test split")
    lo, hi = results["model"]["spearman_ci95"]
    assert text.startswith("test split")
    assert "model" in text and "train_mean" in text
    assert f"[{lo:.3f}, {hi:.3f}]" in text
    for col in ("spearman [95% CI]", "pearson", "rmse", "mae", "r2", "auroc"):
        assert col in text
