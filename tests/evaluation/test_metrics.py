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

from abag import policy
from abag.evaluation.metrics import (
    MIN_GROUP_SIZE,
    binder_metrics,
    bootstrap_ci,
    evaluate_predictions,
    grouped_spearman,
    regression_metrics,
)
from abag.evaluation.tables import format_comparison
from abag.policy import BINDER_THRESHOLD


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
    start = time.process_time()
    bootstrap_ci(y, p, "spearman", n_boot=1000)
    # CPU time, not wall time: 0.8 s of CPU took 3.1 s of wall on a busy shared 2-core machine.
    assert time.process_time() - start < 2.0


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


def test_a_constant_baseline_shows_no_spearman_and_a_footnote_says_why() -> None:
    """Pooled over folds, train_mean is one constant per fold: its "Spearman" (here -0.45) only measures how the
    fold means differ, which a reader takes for a bug. The table says n/a and why."""
    y, p, groups = _offsets_only()
    folds_means = np.where(groups % 2 == 0, 8.0, 7.0)  # two folds, two training means
    results = {"model": evaluate_predictions(y, p, n_boot=100, groups=groups),
               "train_mean": evaluate_predictions(y, folds_means, n_boot=100, groups=groups)}
    assert results["train_mean"]["spearman"] is not None  # a number, but a meaningless one
    text = format_comparison(results, title="out of fold")
    row = next(line for line in text.splitlines() if line.startswith("train_mean"))
    assert row.count("n/a*") == 4 and f"{results['train_mean']['rmse']:.3f}" in row
    assert f"{results['train_mean']['spearman']:.3f}" not in row
    model_row = next(line for line in text.splitlines() if line.startswith("model "))
    assert "n/a" not in model_row
    assert text.splitlines()[-1].startswith("* n/a: train_mean predicts the same pKd for every row")
    assert "n/a" not in format_comparison({"model": results["model"]})  # no constant, no footnote


# --------------------------------------------------------------------------- within groups, cluster bootstrap
def test_binder_threshold_is_the_policy_one() -> None:
    assert BINDER_THRESHOLD is policy.BINDER_THRESHOLD


def _offsets_only(n_groups: int = 30, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups differ by a large offset that the prediction knows; inside a group it guesses at random."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), size)
    offset = rng.normal(0.0, 3.0, n_groups)[groups]
    return offset + rng.normal(0.0, 0.5, groups.size), offset + rng.normal(0.0, 0.5, groups.size), groups


def test_pooled_high_but_within_groups_zero_when_only_offsets_are_predicted() -> None:
    y, p, groups = _offsets_only()
    pooled, within = regression_metrics(y, p)["spearman"], grouped_spearman(y, p, groups)
    assert pooled > 0.85
    assert within.n_groups == 30 and abs(within.mean) < 0.15
    lo, hi = within.ci(n_boot=500)
    assert lo < 0 < hi  # no evidence of ranking within a group


def test_within_groups_perfect_while_pooled_is_negative() -> None:
    """Each group ranked perfectly, but the groups' levels predicted in reverse order."""
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 6)
    level = np.arange(20.0)[groups]
    inside = rng.normal(0.0, 0.1, groups.size)
    y, p = 3.0 * level + inside, -3.0 * level + inside
    assert regression_metrics(y, p)["spearman"] < -0.9
    within = grouped_spearman(y, p, groups)
    assert within.mean == pytest.approx(1.0) and within.n_groups == 20


def test_grouped_spearman_matches_scipy_per_group_with_ties_and_string_labels() -> None:
    rng = np.random.default_rng(2)
    labels = np.array(["spike", "HA", "PD-1", "IL-6"])[rng.integers(0, 4, 200)]
    y, p = np.round(rng.normal(8, 1, 200)), np.round(rng.normal(8, 1, 200), 1)  # ties on both sides
    result = grouped_spearman(y, p, labels)
    table = result.table.set_index("group")
    for label in np.unique(labels):
        inside = labels == label
        assert table.loc[label, "n"] == inside.sum()
        assert table.loc[label, "spearman"] == pytest.approx(stats.spearmanr(y[inside], p[inside]).statistic)
    assert result.mean == pytest.approx(table["spearman"].mean())


def test_groups_below_min_size_are_not_counted() -> None:
    rng = np.random.default_rng(3)
    big = rng.normal(size=20)
    y = np.r_[big, big[:4] + 5, [9.0, 9.5, 10.0, 10.5]]  # one 20-row group, two 4-row groups
    p = np.r_[big, big[:4], [3.0, 2.0, 1.0, 0.0]]         # the big group is ranked perfectly, a small one reversed
    groups = np.r_[np.zeros(20), np.ones(4), np.full(4, 2)]
    default = grouped_spearman(y, p, groups)
    assert MIN_GROUP_SIZE == 5 and default.n_groups == 1 and default.count("too_small") == 2
    assert default.mean == pytest.approx(1.0)
    relaxed = grouped_spearman(y, p, groups, min_size=4)
    assert relaxed.n_groups == 3 and relaxed.mean == pytest.approx((1.0 + 1.0 - 1.0) / 3)
    with pytest.raises(ValueError, match="min_size"):
        grouped_spearman(y, p, groups, min_size=2)


def test_constant_truth_is_skipped_and_constant_prediction_scores_zero() -> None:
    y = np.r_[np.full(6, 7.0), np.arange(6.0), np.arange(6.0)]
    p = np.r_[np.arange(6.0), np.full(6, 8.0), np.arange(6.0)]
    result = grouped_spearman(y, p, np.repeat(["flat_truth", "flat_prediction", "good"], 6))
    assert result.count("constant_truth") == 1 and result.count("constant_prediction") == 1
    assert result.n_groups == 2 and result.mean == pytest.approx(0.5)  # (0 + 1) / 2
    assert np.isnan(result.table.set_index("group").loc["flat_truth", "spearman"])


def _duplicated_clusters(n_clusters: int = 25, copies: int = 8, seed: int = 4):
    """Each cluster contributes one (y, p) point, repeated: the rows of a cluster are not independent."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n_clusters)
    p = 0.5 * y + rng.normal(size=n_clusters)
    groups = np.repeat(np.arange(n_clusters), copies)
    return np.repeat(y, copies), np.repeat(p, copies), groups


def test_cluster_bootstrap_is_wider_than_row_bootstrap_for_duplicated_rows() -> None:
    y, p, groups = _duplicated_clusters()
    rows = bootstrap_ci(y, p, n_boot=500, seed=0)
    clusters = bootstrap_ci(y, p, n_boot=500, seed=0, groups=groups)
    estimate = regression_metrics(y, p)["spearman"]
    assert clusters[0] < estimate < clusters[1]
    assert clusters[1] - clusters[0] > 2 * (rows[1] - rows[0])
    # One cluster per row is the row bootstrap again (up to resampling noise).
    single = bootstrap_ci(y[::8], p[::8], n_boot=2000, seed=1, groups=np.arange(25))
    plain = bootstrap_ci(y[::8], p[::8], n_boot=2000, seed=1)
    assert single[1] - single[0] == pytest.approx(plain[1] - plain[0], rel=0.2)


@pytest.mark.parametrize("metric", ["spearman", "pearson", "rmse", "r2"])
def test_cluster_bootstrap_matches_naive_concatenation(metric: str) -> None:
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 9, 12)
    groups = np.repeat(np.arange(12), sizes)  # labels in order of first appearance
    y = np.round(rng.normal(8, 1, groups.size))  # ties
    p = y + rng.normal(0, 1, groups.size)
    draws = np.random.default_rng(9).integers(0, 12, size=(300, 12))
    naive = []
    for picked in draws:
        rows = np.concatenate([np.flatnonzero(groups == g) for g in picked])
        value = regression_metrics(y[rows], p[rows])[metric]
        naive.append(np.nan if value is None else value)
    expected = np.nanpercentile(naive, [2.5, 97.5])
    assert bootstrap_ci(y, p, metric, n_boot=300, seed=9, groups=groups) == pytest.approx(tuple(expected))


def test_cluster_bootstrap_needs_two_groups_and_one_label_per_row() -> None:
    y, p = _correlated(50)
    assert bootstrap_ci(y, p, groups=np.zeros(50)) == (None, None)
    with pytest.raises(ValueError, match="one entry per row"):
        bootstrap_ci(y, p, groups=np.zeros(49))


def test_evaluate_with_groups_adds_keys_and_keeps_the_old_ones() -> None:
    y, p, groups = _offsets_only()
    censored = np.zeros(y.size, bool)
    censored[:6] = True  # group 0 keeps 2 scored rows: too small
    plain = evaluate_predictions(y, p, censored=censored, n_boot=200)
    grouped = evaluate_predictions(y, p, censored=censored, n_boot=200, groups=groups,
                                   antibody_groups=np.arange(y.size) % 3)
    assert {k: grouped[k] for k in plain} == plain  # every existing key, same value
    assert grouped["n_groups"] == 30 and grouped["n_groups_within"] == 29 and grouped["n_groups_too_small"] == 1
    scored = ~censored
    expected = grouped_spearman(y[scored], p[scored], groups[scored])
    assert grouped["spearman_within_group"] == pytest.approx(expected.mean)
    lo, hi = grouped["spearman_ci95_cluster"]
    assert lo < grouped["spearman"] < hi and hi - lo > plain["spearman_ci95"][1] - plain["spearman_ci95"][0]
    assert grouped["n_antibodies_within"] == 3 and grouped["spearman_within_antibody"] is not None
    json.dumps(grouped, allow_nan=False)
    no_ci = evaluate_predictions(y, p, ci=False, groups=groups)
    assert "spearman_within_group_ci95" not in no_ci and "spearman_ci95_cluster" not in no_ci
    with pytest.raises(ValueError, match="one entry per row"):
        evaluate_predictions(y, p, groups=groups[:-1])


def test_format_comparison_gets_a_within_cluster_column_with_groups() -> None:
    y, p, groups = _offsets_only()
    plain = format_comparison({"model": evaluate_predictions(y, p, n_boot=100)})
    assert "within-cluster" not in plain and "cluster CI" not in plain
    result = evaluate_predictions(y, p, n_boot=100, groups=groups)
    text = format_comparison({"model": result, "train_mean": evaluate_predictions(y, np.full(y.size, 8.0),
                                                                                   n_boot=100, groups=groups)})
    assert "within-cluster (clusters)" in text and "cluster CI" in text
    assert f"{result['spearman_within_group']:.3f}" in text and "(30)" in text
