"""Evaluation metrics for pKd regression and strong-binder classification.

Every public function returns plain Python types (float/int/None/list/dict)
so results can go straight to JSON. Undefined metrics are ``None``, never NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm

__all__ = [
    "BINDER_THRESHOLD",
    "REGRESSION_METRICS",
    "regression_metrics",
    "binder_metrics",
    "bootstrap_ci",
    "evaluate_predictions",
    "format_comparison",
]

BINDER_THRESHOLD = 9.0  # "strong binder": pKd >= 9
CENSOR_TOLERANCE = 0.5  # a censored prediction may exceed its bound by this much
REGRESSION_METRICS = ("spearman", "pearson", "rmse", "mae", "r2")
_MIN_N = {"spearman": 3, "pearson": 3, "rmse": 1, "mae": 1, "r2": 2}
_CORRELATIONS = ("spearman", "pearson")
_BOOT_CHUNK_ELEMENTS = 2_000_000  # bounds bootstrap memory to a few x 16 MB

try:  # scikit-learn >= 1.4
    from sklearn.metrics import root_mean_squared_error as _rmse
except ImportError:  # pragma: no cover - older scikit-learn

    def _rmse(y_true: Any, y_pred: Any, **kw: Any) -> Any:
        return np.sqrt(skm.mean_squared_error(y_true, y_pred, **kw))


# --------------------------------------------------------------------------- helpers
def _to_float(x: Any) -> np.ndarray:
    """1-D float array; pandas missing values (NA/None) become NaN."""
    if hasattr(x, "to_numpy"):
        return np.ravel(x.to_numpy(dtype=float, na_value=np.nan))
    return np.ravel(np.asarray(x, dtype=float))


def _to_bool(x: Any, n: int) -> np.ndarray:
    """1-D bool mask of length ``n``; ``None`` -> all False, missing -> False."""
    if x is None:
        return np.zeros(n, dtype=bool)
    values = np.ravel(np.asarray(x, dtype=object))
    present = pd.notna(values)
    mask = np.zeros(values.size, dtype=bool)
    mask[present] = values[present].astype(bool)
    return mask


def _finite_or_none(x: Any) -> float | None:
    """Python float, or None when NaN/inf/None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if y_true.shape != y_pred.shape:
        raise ValueError(f"length mismatch: {y_true.size} targets vs {y_pred.size} predictions")
    if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        raise ValueError("regression metrics need finite y_true and y_pred")


def _is_constant(x: np.ndarray) -> bool:
    return x.size == 0 or bool(np.all(x == x[0]))


# --------------------------------------------------------------------------- regression
def _single_metric(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """One metric on finite arrays; None when undefined (too few rows, constant input)."""
    if y_true.size < _MIN_N[name]:
        return None
    if name in _CORRELATIONS and (_is_constant(y_true) or _is_constant(y_pred)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "spearman":
            value = stats.spearmanr(y_true, y_pred).statistic
        elif name == "pearson":
            value = stats.pearsonr(y_true, y_pred).statistic
        elif name == "rmse":
            value = _rmse(y_true, y_pred)
        elif name == "mae":
            value = skm.mean_absolute_error(y_true, y_pred)
        else:
            value = skm.r2_score(y_true, y_pred)
    return _finite_or_none(value)


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float | int | None]:
    """n, spearman, pearson, rmse, mae, r2 (scipy/sklearn); undefined metrics are None.

    Correlations need >= 3 points and non-constant inputs; r2 needs >= 2 points.
    Inputs must be finite (filter unlabeled rows first). Never warns.
    """
    t, p = _to_float(y_true), _to_float(y_pred)
    _check_pair(t, p)
    out: dict[str, float | int | None] = {"n": int(t.size)}
    for name in REGRESSION_METRICS:
        out[name] = _single_metric(name, t, p)
    return out


# --------------------------------------------------------------------------- classification
def binder_metrics(
    y_true_pkd: Any,
    binder_prob: Any,
    threshold: float = BINDER_THRESHOLD,
    decision: float = 0.5,
) -> dict[str, Any]:
    """Strong-binder metrics from the classification head's probability.

    True class: pKd >= ``threshold``. Predicted class: prob >= ``decision``.
    auroc is None when only one true class is present; all metric values None when n == 0.
    """
    t, prob = _to_float(y_true_pkd), _to_float(binder_prob)
    _check_pair(t, prob)
    if np.any((prob < 0) | (prob > 1)):
        raise ValueError("binder_prob must be probabilities in [0, 1]")
    y = t >= threshold
    out: dict[str, Any] = {"n": int(t.size), "n_positive": int(y.sum())}
    if t.size == 0:
        out.update(recall=None, precision=None, f1=None, auroc=None)
    else:
        hat = prob >= decision
        out["recall"] = float(skm.recall_score(y, hat, zero_division=0))
        out["precision"] = float(skm.precision_score(y, hat, zero_division=0))
        out["f1"] = float(skm.f1_score(y, hat, zero_division=0))
        two_classes = 0 < out["n_positive"] < t.size
        out["auroc"] = float(skm.roc_auc_score(y, prob)) if two_classes else None
    out["threshold"] = float(threshold)
    out["decision"] = float(decision)
    return out


# --------------------------------------------------------------------------- bootstrap
def _resampled_ranks(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``rankdata(values[idx], axis=1)`` (average ties) without re-sorting each resample.

    Values are dense-ranked once; per resample, the average rank of a value group is
    (#resampled items in lower groups) + (group count + 1) / 2. Identical result, ~10x faster.
    """
    groups = stats.rankdata(values, method="dense").astype(np.intp) - 1
    n_groups = int(groups.max()) + 1
    g = groups[idx]
    offsets = (np.arange(idx.shape[0]) * n_groups)[:, None]
    counts = np.bincount((g + offsets).ravel(), minlength=idx.shape[0] * n_groups)
    counts = counts.reshape(idx.shape[0], n_groups)
    average_rank = np.cumsum(counts, axis=1) - counts + (counts + 1) / 2.0
    return np.take_along_axis(average_rank, g, axis=1)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair (scipy); NaN for constant rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.asarray(stats.pearsonr(a, b, axis=1).statistic, dtype=float)
        except TypeError:  # pragma: no cover - scipy < 1.13 has no axis argument
            return np.array([_single_metric("pearson", x, y) or np.nan for x, y in zip(a, b)])


def _boot_statistics(metric: str, t: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Metric value for each resample (row of ``idx``)."""
    if metric == "spearman":
        return _rowwise_pearson(_resampled_ranks(t, idx), _resampled_ranks(p, idx))
    if metric == "pearson":
        return _rowwise_pearson(t[idx], p[idx])
    # sklearn multioutput: each column is one resample
    fn: Callable[..., Any] = {
        "rmse": _rmse,
        "mae": skm.mean_absolute_error,
        "r2": skm.r2_score,
    }[metric]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(fn(t[idx].T, p[idx].T, multioutput="raw_values"), dtype=float)


def _index_chunks(rng: np.random.Generator, n: int, n_boot: int) -> Iterator[np.ndarray]:
    """Bootstrap row-index arrays, ``(chunk, n)`` at a time."""
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - start), n))


def bootstrap_ci(
    y_true: Any,
    y_pred: Any,
    metric: str = "spearman",
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap (resampling rows) confidence interval for one metric.

    Resamples where the metric is undefined (e.g. constant) are dropped;
    returns (None, None) when too few rows or no resample is defined.
    """
    if metric not in _MIN_N:
        raise ValueError(f"metric must be one of {REGRESSION_METRICS}, got {metric!r}")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    t, p = _to_float(y_true), _to_float(y_pred)
    _check_pair(t, p)
    if t.size < _MIN_N[metric]:
        return None, None
    rng = np.random.default_rng(seed)
    values = np.concatenate([_boot_statistics(metric, t, p, i) for i in _index_chunks(rng, t.size, n_boot)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    lo, hi = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- evaluation
def _censored_violation_rate(t: np.ndarray, p: np.ndarray) -> float | None:
    """Fraction of censored rows (true pKd <= t) predicted above t + tolerance."""
    return float(np.mean(p > t + CENSOR_TOLERANCE)) if t.size else None


def evaluate_predictions(
    y_true: Any,
    pkd_pred: Any,
    binder_prob: Any = None,
    *,
    censored: Any = None,
    threshold: float = BINDER_THRESHOLD,
    ci: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Full JSON-serialisable evaluation of one model's predictions.

    Regression metrics use labeled (finite y_true), uncensored rows. Censored rows
    (true pKd <= y_true) are counted in ``n_censored`` and checked for violations.
    Binder metrics (``binder``; None without ``binder_prob``) use all labeled rows except
    censored rows whose bound >= threshold (class unknown).
    ``pred_min``/``pred_max`` span the finite predictions of all given rows.
    """
    t, p = _to_float(y_true), _to_float(pkd_pred)
    if t.shape != p.shape:
        raise ValueError(f"length mismatch: {t.size} targets vs {p.size} predictions")
    cens = _to_bool(censored, t.size)
    if cens.size != t.size:
        raise ValueError("censored must have one entry per row")
    labeled = np.isfinite(t)
    reg = labeled & ~cens
    out: dict[str, Any] = {"n_total": int(t.size), "n_labeled": int(labeled.sum())}
    out.update(regression_metrics(t[reg], p[reg]))
    if ci:
        out["spearman_ci95"] = list(bootstrap_ci(t[reg], p[reg], "spearman", n_boot=n_boot, seed=seed))
    out["n_censored"] = int((labeled & cens).sum())
    out["censored_violation_rate"] = _censored_violation_rate(t[labeled & cens], p[labeled & cens])
    out["binder"] = None
    if binder_prob is not None:
        prob = _to_float(binder_prob)
        if prob.shape != t.shape:
            raise ValueError("binder_prob must have one entry per row")
        known = labeled & ~(cens & (t >= threshold))
        out["binder"] = binder_metrics(t[known], prob[known], threshold=threshold)
    finite_pred = p[np.isfinite(p)]
    out["pred_min"] = float(finite_pred.min()) if finite_pred.size else None
    out["pred_max"] = float(finite_pred.max()) if finite_pred.size else None
    return out


# --------------------------------------------------------------------------- reporting
def _fmt(x: Any, digits: int = 3) -> str:
    return "NA" if x is None else f"{x:.{digits}f}"


def _spearman_cell(result: dict[str, Any]) -> str:
    ci = result.get("spearman_ci95") or [None, None]
    cell = _fmt(result.get("spearman"))
    if ci[0] is not None and ci[1] is not None:
        cell += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return cell


def _comparison_row(result: dict[str, Any]) -> dict[str, str]:
    binder = result.get("binder") or {}
    row = {"n": str(result.get("n", "NA")), "spearman [95% CI]": _spearman_cell(result)}
    for key in ("pearson", "rmse", "mae", "r2"):
        row[key] = _fmt(result.get(key))
    row["auroc"] = _fmt(binder.get("auroc"))
    return row


def format_comparison(results: dict[str, dict[str, Any]], title: str = "") -> str:
    """Side-by-side text table of several ``evaluate_predictions`` results (rows = models)."""
    table = pd.DataFrame.from_dict(
        {name: _comparison_row(res) for name, res in results.items()}, orient="index"
    )
    table.index.name = "model"
    body = table.to_string() if len(table) else "(no results)"
    return f"{title}\n{'=' * len(title)}\n{body}" if title else body
