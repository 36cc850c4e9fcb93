"""Tests for abag.baselines."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import abag.model.ridge as ridge_module
from abag.encoding.kmers import kmer_composition
from abag.evaluation.baselines import (
    KmerRidgeBaseline,
    MeanBaseline,
    evaluate_baselines,
    fit_baselines,
)
from abag.evaluation.tables import format_comparison
from abag.model.ridge import (
    CHAINS,
    LOO_MAX_ROWS,
    RIDGE_ALPHAS,
    RidgeDesign,
    pair_features,
    training_rows,
)
from abag.policy import AMINO_ACIDS


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


def _shared_chains(n: int, heavy: int, light: int, antigens: int, noise: float, seed: int = 0) -> pd.DataFrame:
    """`n` pairs drawn from a few distinct chains (as in real tables); pKd follows heavy composition,
    an antigen effect and noise, so that leave-one-out picks an alpha inside the grid."""
    rng = np.random.default_rng(seed)

    def chains(count: int, length: int) -> np.ndarray:
        out = []
        for _ in range(count):
            p = rng.dirichlet(np.ones(20))
            size = length + int(rng.integers(-5, 6))
            out.append("".join(rng.choice(list(AMINO_ACIDS), size=size, p=p)))
        return np.array(out, dtype=object)

    h, lc, a = chains(heavy, 120), chains(light, 110), chains(antigens, 200)
    w = np.random.default_rng(99).normal(0, 3, size=20)
    hi, li, ai = rng.integers(0, heavy, n), rng.integers(0, light, n), rng.integers(0, antigens, n)
    df = pd.DataFrame({"heavy": h[hi], "light": lc[li], "antigen": a[ai]})
    signal = 5 * (kmer_composition(list(h), 1) @ w)[hi] + 0.3 * rng.normal(size=antigens)[ai]
    df["pkd"] = 8 + signal + rng.normal(0, noise, n)
    return df


def _messy(df: pd.DataFrame) -> pd.DataFrame:
    """The same table with what real inputs have: lower-case copies of chains, missing and empty light
    chains, a non-standard residue, a two-chain antigen."""
    df = df.copy()
    df.loc[df.index[::7], "heavy"] = df["heavy"].iloc[::7].str.lower()
    df.loc[df.index[1::9], "light"] = None
    df.loc[df.index[2::9], "light"] = ""
    df.loc[df.index[3::11], "antigen"] = df["antigen"].iloc[3::11].str.slice(0, 90) + "|X" + \
        df["antigen"].iloc[3::11].str.slice(90)
    return df


def _direct_ridgecv(train: pd.DataFrame, ks=(1, 2)):
    """The earlier implementation: StandardScaler + sklearn RidgeCV on the dense pair features."""
    rows = training_rows(train)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS, **{_STORE_CV: True}))
    return model.fit(pair_features(rows, ks), rows["pkd"].to_numpy(dtype=float))


# scikit-learn 1.5 renamed store_cv_values / cv_values_ to store_cv_results / cv_results_ (the old names are gone
# in 1.7); the declared floor is 1.3.
_STORE_CV = "store_cv_results" if "store_cv_results" in inspect.signature(RidgeCV).parameters else "store_cv_values"


def _cv_squared_errors(ridge: RidgeCV) -> np.ndarray:
    """RidgeCV's leave-one-out squared errors, (rows, alphas)."""
    return ridge.cv_results_ if _STORE_CV == "store_cv_results" else ridge.cv_values_


def _ridge_rtol(x: np.ndarray, alphas) -> np.ndarray:
    """Relative tolerance, one per alpha, for a quantity computed two ways from the ridge system of ``x``
    (rows x features, already standardised): twice the first-order forward-error bound of one way.

    Both ways decompose the symmetric system S = XcᵀXc or its rows x rows twin Xc Xcᵀ (Xc: ``x`` centred),
    formed by inner products of length m = max(rows, features) and shifted by alpha. Rounding perturbs S by
    about m·u·‖S‖ (u: the unit roundoff), and (S + alpha I)⁻¹, which the leave-one-out residuals, leverages
    and GCV terms are made of, then moves by a relative m·u·κ(alpha), κ(alpha) = (λmax + alpha) / (λmin +
    alpha) the condition number of S + alpha I: alpha = 0.01 is 10⁶ times worse conditioned than alpha = 10⁴
    here. Squaring the residuals doubles the relative error and two independent implementations double it
    again: rtol = 4 m u κ(alpha). BLAS builds and thread counts change the order of the sums, so which
    rounding errors occur, but not this bound."""
    xc = x - x.mean(axis=0)
    system = xc @ xc.T if xc.shape[0] <= xc.shape[1] else xc.T @ xc
    eigenvalues = np.clip(np.linalg.eigvalsh(system), 0.0, None)
    alphas = np.asarray(alphas, dtype=float)
    condition = (eigenvalues.max() + alphas) / (eigenvalues.min() + alphas)
    unit_roundoff = np.finfo(float).eps / 2
    return 4 * max(xc.shape) * unit_roundoff * condition


def _assert_close(actual, expected, rtol: np.ndarray) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    error = np.abs(actual - expected) / np.abs(expected)
    assert np.all(error <= rtol), f"relative error {error} exceeds {rtol}"


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


def test_pair_features_equal_the_row_by_row_definition_on_messy_shared_chains() -> None:
    # Features are computed once per distinct chain; they must equal the per-row definition, with 'ac' and
    # 'AC' one chain and a missing light chain the same as an empty one.
    df = _messy(_shared_chains(60, heavy=6, light=4, antigens=3, noise=1.0))
    assert df["light"].isna().sum() == 7
    lights = ["" if pd.isna(s) else s for s in df["light"]]
    residues = {c: np.array([0 if pd.isna(s) else len(s.replace("|", "")) for s in df[c]])
                for c in ("heavy", "light", "antigen")}
    expected = np.hstack(
        [kmer_composition(list(df["heavy"]), k) for k in (1, 2)]
        + [kmer_composition(lights, k) for k in (1, 2)]
        + [kmer_composition(list(df["antigen"]), k) for k in (1, 2)]
        + [(residues["light"] > 0)[:, None]]
        + [np.log1p(residues[c])[:, None] for c in ("heavy", "light", "antigen")]
    )
    assert np.array_equal(pair_features(df), expected)
    assert pair_features(df.drop(columns="light")) == pytest.approx(
        pair_features(df.assign(light="")), abs=0)


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


# --------------------------------------------------------------------------- agreement with sklearn
@pytest.mark.parametrize(
    ("rows", "heavy", "light", "antigens", "noise"),
    [(150, 60, 20, 8, 1.0),      # fewer rows than the 1,264 features: alpha from the rows x rows kernel
     (1300, 600, 100, 30, 1.5)],  # more rows than features: from the features x features Gram
)
def test_ridge_matches_sklearn_ridgecv(rows, heavy, light, antigens, noise) -> None:
    """Tolerances: the mean leave-one-out error of every alpha within the forward-error bound of the
    conditioning of its system (:func:`_ridge_rtol`: from 1e-12 at alpha = 10⁴ to 7e-7 at alpha = 0.01 in the
    first case), so alpha identical, the best error ahead of the next by more than that bound; coefficients
    within 1e-6 of the largest; predictions within 1e-6 pKd."""
    train = _messy(_shared_chains(rows, heavy, light, antigens, noise, seed=1))
    test = _messy(_shared_chains(200, heavy, light, antigens, noise, seed=2))
    with threadpool_limits(1):  # sklearn's RidgeCV runs 4x slower with 2 BLAS threads on busy shared cores
        direct = _direct_ridgecv(train)
        rtol = _ridge_rtol(direct[0].transform(pair_features(training_rows(train))), RIDGE_ALPHAS)
    ours = KmerRidgeBaseline().fit(train)
    ridge = direct[-1]
    expected = _cv_squared_errors(ridge).mean(axis=0)
    assert RIDGE_ALPHAS[0] < ours.alpha_ < RIDGE_ALPHAS[-1]  # the comparison is not decided at a grid edge
    _assert_close(ours.fit_.cv_error, expected, rtol)
    best, runner_up = np.sort(expected)[:2]
    assert runner_up - best > 2 * rtol.max() * best  # alpha is decided by the data, not by rounding
    assert ours.alpha_ == ridge.alpha_
    assert np.abs(ours.coef_ - ridge.coef_).max() < 1e-6 * np.abs(ridge.coef_).max()
    assert np.abs(ours.predict(test) - direct.predict(pair_features(test))).max() < 1e-6
    assert "exact leave-one-out" in ours.method and f"{len(training_rows(train)):,} rows" in ours.method


def test_gcv_equals_its_definition_from_the_hat_matrix() -> None:
    """GCV(alpha) = n RSS / (n - trace H)² with H the hat matrix including the intercept; within the
    forward-error bound of the conditioning of each alpha's system (:func:`_ridge_rtol`)."""
    df = _shared_chains(400, 80, 30, 10, 1.0, seed=3)
    model = KmerRidgeBaseline(ks=(1,), loo_max_rows=0).fit(df)
    x = StandardScaler().fit_transform(pair_features(df, (1,)))
    y = df["pkd"].to_numpy()
    centred = x - x.mean(axis=0)
    expected = []
    for alpha in RIDGE_ALPHAS:
        hat = centred @ np.linalg.solve(centred.T @ centred + alpha * np.eye(x.shape[1]), centred.T)
        rss = np.sum((y - Ridge(alpha=alpha).fit(x, y).predict(x)) ** 2)
        expected.append(len(y) * rss / (len(y) - 1 - np.trace(hat)) ** 2)
    _assert_close(model.fit_.cv_error, expected, _ridge_rtol(x, RIDGE_ALPHAS))
    assert model.alpha_ == RIDGE_ALPHAS[int(np.argmin(expected))]
    assert model.method.endswith("by GCV")


def test_gcv_and_leave_one_out_agree_when_rows_far_outnumber_features() -> None:
    # Why GCV is used above LOO_MAX_ROWS: with 3,000 rows and 64 features both pick the same alpha.
    df, test = _shared_chains(3000, 600, 100, 30, 1.0, seed=4), _shared_chains(300, 600, 100, 30, 1.0, seed=5)
    loo = KmerRidgeBaseline(ks=(1,)).fit(df)
    gcv = KmerRidgeBaseline(ks=(1,), loo_max_rows=0).fit(df)
    assert loo.fit_.selection == "leave-one-out" and gcv.fit_.selection == "GCV"
    assert loo.alpha_ == gcv.alpha_
    assert gcv.fit_.cv_error == pytest.approx(loo.fit_.cv_error, rel=0.02)
    assert loo.predict(test) == pytest.approx(gcv.predict(test), abs=1e-9)


def _same_fit(a: KmerRidgeBaseline, b: KmerRidgeBaseline) -> bool:
    fa, fb = a.fit_, b.fit_
    return (fa.alpha, fa.selection, fa.intercept, fa.rows) == (fb.alpha, fb.selection, fb.intercept, fb.rows) and all(
        np.array_equal(getattr(fa, name), getattr(fb, name)) for name in ("cv_error", "coef", "mean", "scale"))


@pytest.mark.parametrize("ks, chains, loo_max_rows", [((1, 2), CHAINS, LOO_MAX_ROWS), ((1,), CHAINS, 0),
                                                     ((1, 2, 3), ("heavy",), LOO_MAX_ROWS)],
                         ids=["leave-one-out", "GCV", "kernel (fewer rows than features)"])
def test_a_shared_design_gives_the_fits_each_target_gets_alone(monkeypatch, ks, chains, loo_max_rows) -> None:
    """The correction (residuals) and the baseline (pKd) share one design in `abag train`: the fits are bit for bit
    those of separate fits, and the shared XᵀX and eigenpairs are not computed again."""
    df = _messy(_shared_chains(400, 60, 20, 8, 0.5, seed=6))
    residual = df.assign(pkd=df["pkd"] - np.linspace(6, 9, len(df)))
    design = RidgeDesign.of(df, ks, chains)
    for table in (df, residual):
        alone = KmerRidgeBaseline(ks=ks, chains=chains, loo_max_rows=loo_max_rows).fit(table)
        calls = []
        original = ridge_module._design_statistics
        monkeypatch.setattr(ridge_module, "_design_statistics", lambda *a: calls.append(1) or original(*a))
        shared = KmerRidgeBaseline(ks=ks, chains=chains, loo_max_rows=loo_max_rows).fit(table, design)
        monkeypatch.setattr(ridge_module, "_design_statistics", original)
        assert _same_fit(alone, shared) and calls == []
        assert np.array_equal(alone.predict(table), shared.predict(table))


def test_a_design_of_other_rows_or_settings_is_not_used() -> None:
    df = _shared_chains(300, 50, 20, 8, 0.5, seed=7)
    other_rows, other_order = RidgeDesign.of(df.iloc[:250]), RidgeDesign.of(df.iloc[::-1])
    fresh = KmerRidgeBaseline().fit(df)
    for design in (other_rows, other_order, RidgeDesign.of(df, ks=(1,)), RidgeDesign.of(df, chains=("heavy",))):
        assert not design.describes(training_rows(df), (1, 2), CHAINS)
        assert _same_fit(fresh, KmerRidgeBaseline().fit(df, design))
    assert RidgeDesign.of(df).describes(training_rows(df), (1, 2), CHAINS)


def test_identical_chains_predict_the_training_mean() -> None:
    # Every feature constant: nothing to fit, as with StandardScaler + RidgeCV.
    df = pd.DataFrame({"heavy": ["ACDE"] * 6, "light": [""] * 6, "antigen": ["WY"] * 6,
                       "pkd": [6.0, 7.0, 8.0, 9.0, 7.5, 8.5]})
    model = KmerRidgeBaseline().fit(df)
    assert model.predict(df) == pytest.approx(np.full(6, 7.666666666666667))
    assert model.predict(df.assign(heavy="KKKK")) == pytest.approx(np.full(6, 7.666666666666667))
    assert np.allclose(model.coef_, 0.0)


def test_ridge_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="ks"):
        KmerRidgeBaseline(ks=())
    with pytest.raises(ValueError, match="alphas"):
        KmerRidgeBaseline(alphas=[1.0, -1.0])
    with pytest.raises(NotFittedError):
        KmerRidgeBaseline().predict(_synthetic(5))
    with pytest.raises(ValueError, match="'pkd' column"):
        KmerRidgeBaseline().fit(_synthetic(5).drop(columns="pkd"))


def test_evaluate_baselines_reports_each_method() -> None:
    train, test = _synthetic(120, seed=5), _synthetic(40, seed=6)
    results = evaluate_baselines(train, test, ci=False)
    assert results["train_mean"]["method"] == "mean pKd of 120 training rows"
    method = results["kmer_ridge"]["method"]
    assert "1-2-mer composition (1,264 features)" in method and "120 rows" in method
    assert "exact leave-one-out" in method
    json.dumps(results, allow_nan=False)


# --------------------------------------------------------------------------- scale
def _many_pairs(n: int, heavy: int, light: int, antigens: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    letters = np.array(list(AMINO_ACIDS))

    def chains(count: int, low: int, high: int) -> np.ndarray:
        return np.array(["".join(letters[rng.integers(0, 20, int(rng.integers(low, high)))]) for _ in range(count)],
                        dtype=object)

    h, lc, a = chains(heavy, 110, 130), chains(light, 100, 115), chains(antigens, 150, 400)
    hi, li, ai = rng.integers(0, heavy, n), rng.integers(0, light, n), rng.integers(0, antigens, n)
    pkd = 8 + rng.normal(0, 1, antigens)[ai] + rng.normal(0, 1, heavy)[hi] + rng.normal(0, 0.3, n)
    return pd.DataFrame({"heavy": h[hi], "light": lc[li], "antigen": a[ai], "pkd": pkd})


def test_fitting_200k_rows_stays_far_below_a_rows_x_features_matrix() -> None:
    """Measured: about 60 MB traced at the peak of fit and of predict (a dense 200,000 x 1,264 float64
    matrix alone is 2 GB, one chain's 200,000 x 420 block 670 MB); bound 150 MB."""
    df = _many_pairs(200_000, heavy=2000, light=1000, antigens=200)
    started = time.perf_counter()
    tracemalloc.start()
    try:
        model = KmerRidgeBaseline().fit(df)
        fit_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        predictions = model.predict(df)
        predict_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fit_peak < 150 * 2**20 and predict_peak < 150 * 2**20, (fit_peak / 2**20, predict_peak / 2**20)
    assert model.fit_.selection == "GCV" and "200,000 rows (3,200 distinct chains)" in model.method
    assert np.isfinite(predictions).all() and np.corrcoef(predictions, df["pkd"])[0, 1] > 0.5
    assert time.perf_counter() - started < 60  # about 5 s on 2 shared cores; guards against O(rows x d²)


def test_scale_benchmark_runs_and_agrees_with_the_direct_ridgecv(tmp_path) -> None:
    script = Path(__file__).resolve().parents[2] / "bench" / "bench_baselines_scale.py"
    out = tmp_path / "scale.json"
    done = subprocess.run([sys.executable, str(script), "--rows", "1500", "--compare-direct", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert "exact leave-one-out" in result["method"] and result["direct"]["alpha"] == result["alpha"]
    assert result["direct"]["max_abs_gap"] < 1e-6 and result["traced_peak_mb"] > 0
    assert "fit " in done.stdout and "peak RSS" in done.stdout


def test_a_design_needs_a_usable_training_row() -> None:
    df = _shared_chains(20, 5, 3, 2, 0.5, seed=8).assign(censored=True)
    with pytest.raises(ValueError, match="no training rows"):
        RidgeDesign.of(df)


def test_ridge_fits_hold_blas_to_one_thread_and_give_the_threads_back():
    from threadpoolctl import threadpool_info

    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert blas  # numpy and scipy ship a BLAS
    with threadpool_limits(2, user_api="blas"):
        before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        for _ in range(2):  # the second context reuses the first's library lookup
            with ridge_module._one_blas_thread():
                assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")
            assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before
