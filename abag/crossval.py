"""Cross-validation over antigen clusters (or any groups): the model beside the baselines, fold by fold.

`cross_validate(frame, model_config, train_config, folds=5)` clusters the antigens (40 % identity by
default, see `abag.splits`), deals whole clusters to `k` test folds (`folds="logo"`: one fold per group,
e.g. leave-one-complex-out with `group_column="skempi_complex"`), and for every fold

1. takes a validation slice of *whole groups* from the training folds (for early stopping and the
   learning-rate scheduler; never from the test fold),
2. trains the model with `abag.train(..., split=SplitResult)` (so the v2.7 recipe, checkpoints and
   metrics.json of every fold are the usual ones),
3. fits the baselines (training mean, k-mer ridge) on exactly the same training rows, and
4. scores model and baselines on the test fold: Spearman with a bootstrap 95 % interval, Pearson, RMSE, …

The result holds per-fold metrics, their mean and SD over folds, metrics of the pooled out-of-fold
predictions (every row is predicted exactly once, by the fold that held it out) and a paired bootstrap
interval for "model minus k-mer ridge" on the pooled predictions. Censored rows are never scored as
exact values (see `abag.metrics.evaluate_predictions`).

Embeddings are encoded once for all folds: frozen encoders go through the on-disk embedding cache
(`TrainConfig.cache_dir`; when it is None, `abag.embedding_cache.default_cache_dir()` is used), so the
second fold onwards only reads the cache. Encoders are loaded once and shared by all folds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .baselines import fit_baselines
from .metrics import evaluate_predictions
from .model import ModelConfig
from .splits import DEFAULT_IDENTITY, SplitResult, cluster_antigens, group_kfold

__all__ = [
    "FoldResult",
    "CVResult",
    "make_folds",
    "fold_split",
    "cross_validate",
    "paired_spearman_difference",
    "format_cv_summary",
    "format_cv_markdown",
]

MODEL = "model"
SUMMARY_METRICS = ("spearman", "pearson", "rmse", "mae", "r2")


# ----------------------------------------------------------------------------------------------- folds

def _groups(frame: pd.DataFrame, group_column: str | None, identity: float) -> tuple[np.ndarray, str]:
    """Group id per row and a phrase saying what the groups are."""
    if group_column is not None:
        if group_column not in frame.columns:
            raise ValueError(f"group column {group_column!r} not in table; available: {list(frame.columns)}")
        codes, _ = pd.factorize(frame[group_column], use_na_sentinel=True)
        return codes, f"groups of column {group_column!r}"
    return cluster_antigens(frame["antigen"].tolist(), identity), f"antigen clusters at {identity:.0%} identity"


def make_folds(frame: pd.DataFrame, folds: int | str = 5, *, group_column: str | None = None,
               identity: float = DEFAULT_IDENTITY, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], str]:
    """(group per row, test row indices per fold, description).

    `folds` is a number k (whole groups dealt to k folds, largest first, balancing rows; see
    `abag.splits.group_kfold`) or "logo" (leave one group out: one fold per group, in order of first
    appearance). Every row is in exactly one test fold; no group is split across folds.
    """
    groups, what = _groups(frame, group_column, identity)
    if isinstance(folds, str):
        if folds.lower() not in ("logo", "loo", "leave-one-group-out"):
            raise ValueError(f"folds must be an integer or 'logo', got {folds!r}")
        labels = list(dict.fromkeys(groups.tolist()))
        if len(labels) < 2:
            raise ValueError("leave-one-group-out needs at least 2 groups")
        tests = [np.flatnonzero(groups == g) for g in labels]
        return groups, tests, f"leave-one-group-out over {len(labels)} {what}"
    tests = [test for _, test in group_kfold(groups, int(folds), seed)]
    n_groups = len(np.unique(groups))
    return groups, tests, f"{int(folds)}-fold CV over {n_groups} {what} (fold seed {seed})"


def fold_split(groups: np.ndarray, test_rows: np.ndarray, *, val_fraction: float = 0.1, seed: int = 0,
               min_val_rows: int = 3, description: str = "") -> SplitResult:
    """Train/val/test assignment for one fold: test = `test_rows`; val = whole groups of the rest.

    Validation groups are drawn in a seeded random order and added while the slice stays within
    `val_fraction` of the non-test rows (at least `min_val_rows` rows, at least one group, and at least
    one group left for training). Raises ValueError when fewer than 2 groups remain outside the test fold.
    """
    groups = np.asarray(groups)
    assignment = np.full(len(groups), "train", dtype="<U5")
    assignment[test_rows] = "test"
    rest = assignment == "train"
    labels, sizes = np.unique(groups[rest], return_counts=True)
    if len(labels) < 2:
        raise ValueError(f"only {len(labels)} group(s) outside the test fold: cannot carve a validation slice")
    target = max(float(min_val_rows), val_fraction * rest.sum())
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen: list[int] = []
    filled = 0
    for g in order:
        if len(chosen) == len(labels) - 1:
            break
        if filled + sizes[g] <= target or (filled < min_val_rows and sizes[g] <= 2 * target):
            chosen.append(int(g))
            filled += int(sizes[g])
        if filled >= target:
            break
    if not chosen:  # every group is larger than the target: take the smallest one
        chosen = [int(np.argmin(sizes))]
    assignment[rest & np.isin(groups, labels[chosen])] = "val"
    counts = [int(np.sum(assignment == p)) for p in ("train", "val", "test")]
    n_groups = [len(np.unique(groups[assignment == p])) for p in ("train", "val", "test")]
    text = (f"{description + '; ' if description else ''}{'/'.join(map(str, counts))} rows, "
            f"{'/'.join(map(str, n_groups))} groups train/val/test (val = whole groups from the training folds)")
    return SplitResult("cv_fold", assignment, groups, text)


# ----------------------------------------------------------------------------------------------- results

@dataclass
class FoldResult:
    """One fold: sizes, the held-out groups, and `evaluate_predictions` results per predictor."""

    fold: int
    n_train: int
    n_val: int
    n_test: int
    test_groups: list
    metrics: dict[str, dict]           # predictor name ("model", "train_mean", "kmer_ridge", ...) -> metrics
    model_val: dict | None = None      # the model's validation metrics (best epoch)
    best_epochs: list[int] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class CVResult:
    """Per-fold and summary metrics of a cross-validation run; `predictions` holds every out-of-fold row."""

    protocol: str
    folds: list[FoldResult]
    predictions: pd.DataFrame          # row, fold, group, pkd, censored, one column per predictor
    pooled: dict[str, dict]            # predictor -> evaluate_predictions on the pooled out-of-fold rows
    mean: dict[str, dict]              # predictor -> {metric: mean over folds, metric_sd, n_folds}
    difference: dict[str, Any]         # model minus reference: per fold, mean, pooled paired bootstrap CI
    model_config: dict
    train_config: dict
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def predictors(self) -> list[str]:
        return list(self.pooled)

    def to_dict(self) -> dict:
        """JSON-ready document (what `cv_metrics.json` holds)."""
        return {
            "protocol": self.protocol,
            "mean": self.mean,
            "pooled": self.pooled,
            "difference": self.difference,
            "folds": [dataclasses.asdict(f) for f in self.folds],
            "model_config": self.model_config,
            "train_config": self.train_config,
            "seconds": self.seconds,
            **({"extra": self.extra} if self.extra else {}),
        }

    def summary(self) -> str:
        return format_cv_summary(self)


# ----------------------------------------------------------------------------------------------- statistics

def _spearman(y: np.ndarray, p: np.ndarray) -> float | None:
    if len(y) < 3 or np.all(y == y[0]) or np.all(p == p[0]):
        return None
    return float(stats.spearmanr(y, p).statistic)


def paired_spearman_difference(y_true: Any, pred_a: Any, pred_b: Any, *, censored: Any = None,
                               n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Spearman(a) − Spearman(b) on the same rows, with a paired percentile-bootstrap interval.

    Rows are resampled together for both predictors, so the interval reflects the difference itself
    (much narrower than comparing two separate intervals). Censored rows are left out.
    """
    y = np.asarray(y_true, dtype=float)
    a, b = np.asarray(pred_a, dtype=float), np.asarray(pred_b, dtype=float)
    keep = np.isfinite(y)
    if censored is not None:
        keep &= ~np.asarray(censored, dtype=bool)
    y, a, b = y[keep], a[keep], b[keep]
    sa, sb = _spearman(y, a), _spearman(y, b)
    out: dict[str, Any] = {"n": int(len(y)), "difference": None, "ci95": [None, None],
                           "p_a_not_better": None}
    if sa is None or sb is None:
        return out
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        da, db = _spearman(y[idx], a[idx]), _spearman(y[idx], b[idx])
        if da is not None and db is not None:
            values.append(da - db)
    values = np.asarray(values)
    out["difference"] = sa - sb
    if len(values):
        lo, hi = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        out["ci95"] = [float(lo), float(hi)]
        out["p_a_not_better"] = float(np.mean(values <= 0))  # one-sided bootstrap p-value
    return out


def _mean_over_folds(folds: list[FoldResult], name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in SUMMARY_METRICS:
        values = [f.metrics[name].get(metric) for f in folds if f.metrics.get(name)]
        values = [v for v in values if v is not None]
        out[metric] = float(np.mean(values)) if values else None
        out[f"{metric}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        if metric == "spearman":
            out["n_folds"] = len(values)
    return out


# ----------------------------------------------------------------------------------------------- main

def _load_encoders(model_config: ModelConfig, encoders: dict | None) -> dict:
    from .encoders import load_encoder

    encoders = dict(encoders or {})
    for name in (model_config.antibody_encoder, model_config.antigen_encoder):
        if name not in encoders:
            encoders[name] = load_encoder(name)
    return encoders


def _labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    y = pd.to_numeric(frame["pkd"], errors="coerce").to_numpy(dtype=float)
    censored = frame["censored"].to_numpy(dtype=bool) if "censored" in frame else np.zeros(len(frame), bool)
    return y, censored


def cross_validate(
    frame: pd.DataFrame,
    model_config: ModelConfig | None = None,
    train_config=None,
    *,
    folds: int | str | Sequence[np.ndarray] = 5,
    group_column: str | None = None,
    identity: float = DEFAULT_IDENTITY,
    fold_seed: int = 0,
    val_fraction: float = 0.1,
    n_seeds: int = 1,
    out_dir: str | Path,
    encoders: dict | None = None,
    baselines: Callable[[pd.DataFrame], dict[str, Any]] | None = fit_baselines,
    reference: str = "kmer_ridge",
    n_boot: int = 1000,
    log: Callable[[str], None] = print,
    train_log: Callable[[str], None] | None = None,
) -> CVResult:
    """Cross-validate the model and the baselines over antigen clusters (or `group_column` groups).

    folds: k (int), "logo" (leave one group out), or a list of test-row index arrays (then `groups` are
    still computed, for the validation slices). `n_seeds` > 1 trains that many models per fold (seeds
    `train_config.seed + i`) and averages their predictions. `baselines` maps training rows to fitted
    predictors with `.predict(frame)` (default: training mean and k-mer ridge; None: no baselines).
    Writes `out_dir/fold_<i>/` (the usual run folder per fold), `cv_metrics.json` and
    `cv_predictions.csv`. Deterministic for fixed seeds.
    """
    from .embedding_cache import default_cache_dir
    from .inference import predict_frame
    from .train import TrainConfig, train

    started = time.perf_counter()
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig(progress=False)
    if train_config.embedding_cache and train_config.cache_dir is None:
        train_config = dataclasses.replace(train_config, cache_dir=str(default_cache_dir()))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = frame.reset_index(drop=True)
    y, censored = _labels(frame)

    if isinstance(folds, (int, str)):
        groups, tests, protocol = make_folds(frame, folds, group_column=group_column, identity=identity,
                                             seed=fold_seed)
    else:
        groups, _ = _groups(frame, group_column, identity)
        tests = [np.asarray(t, dtype=np.int64) for t in folds]
        protocol = f"{len(tests)} given folds"
    covered = np.concatenate(tests) if tests else np.zeros(0, np.int64)
    if len(np.unique(covered)) != len(covered):
        raise ValueError("test folds overlap: a row is in more than one test fold")
    log(f"cross-validation: {protocol}; {len(frame)} rows; validation = whole groups "
        f"(~{val_fraction:.0%} of the training rows); model trained {n_seeds}x per fold")
    encoders = _load_encoders(model_config, encoders)

    names = [MODEL]
    predictions = pd.DataFrame({"row": covered, "fold": np.concatenate(
        [np.full(len(t), i) for i, t in enumerate(tests)]) if tests else np.zeros(0, int)})
    pred_columns: dict[str, np.ndarray] = {MODEL: np.full(len(frame), np.nan)}
    prob_column = np.full(len(frame), np.nan)
    fold_results: list[FoldResult] = []
    for i, test_rows in enumerate(tests):
        fold_started = time.perf_counter()
        split = fold_split(groups, test_rows, val_fraction=val_fraction, seed=fold_seed * 1000 + i,
                           description=f"{protocol}, fold {i + 1}/{len(tests)}")
        train_rows, test_rows = split.indices("train"), split.indices("test")
        seed_preds, seed_probs, best_epochs, val_metrics = [], [], [], None
        for s in range(n_seeds):
            config = dataclasses.replace(train_config, seed=train_config.seed + s, progress=False)
            run_dir = out_dir / f"fold_{i}" if n_seeds == 1 else out_dir / f"fold_{i}" / f"seed_{config.seed}"
            result = train(frame, run_dir, model_config, config, encoders=encoders, split=split,
                           log=train_log or (lambda line: None))
            predicted = predict_frame(result.model, frame.iloc[test_rows], cache_dir=config.cache_dir)
            seed_preds.append(predicted["pkd_pred"].to_numpy(dtype=float))
            seed_probs.append(predicted["binder_prob"].to_numpy(dtype=float))
            best_epochs.append(int(result.metrics["training"]["best_epoch"]))
            val_metrics = result.metrics.get("val") if n_seeds == 1 else None
        pred_columns[MODEL][test_rows] = np.mean(seed_preds, axis=0)
        prob_column[test_rows] = np.mean(seed_probs, axis=0)

        metrics = {MODEL: evaluate_predictions(y[test_rows], pred_columns[MODEL][test_rows],
                                               prob_column[test_rows], censored=censored[test_rows],
                                               threshold=train_config.binder_threshold, n_boot=n_boot,
                                               seed=train_config.seed)}
        if baselines is not None:
            for name, predictor in baselines(frame.iloc[train_rows]).items():
                if name not in pred_columns:
                    pred_columns[name] = np.full(len(frame), np.nan)
                    names.append(name)
                pred_columns[name][test_rows] = predictor.predict(frame.iloc[test_rows])
                metrics[name] = evaluate_predictions(y[test_rows], pred_columns[name][test_rows], None,
                                                     censored=censored[test_rows], n_boot=n_boot,
                                                     seed=train_config.seed)
        sizes = split.sizes()
        fold = FoldResult(i, sizes["train"], sizes["val"], sizes["test"],
                          sorted(np.unique(groups[test_rows]).tolist()), metrics, val_metrics, best_epochs,
                          time.perf_counter() - fold_started)
        fold_results.append(fold)
        log(f"fold {i + 1}/{len(tests)}: " + ", ".join(
            f"{n} {_fmt(m.get('spearman'))}" for n, m in metrics.items()) +
            f" (Spearman; {sizes['train']}/{sizes['val']}/{sizes['test']} rows; {fold.seconds:.0f}s)")

    predictions["group"] = groups[predictions["row"]]
    predictions["pkd"] = y[predictions["row"]]
    predictions["censored"] = censored[predictions["row"]]
    for name in names:
        predictions[name] = pred_columns[name][predictions["row"]]
    predictions["binder_prob"] = prob_column[predictions["row"]]
    pooled, mean = {}, {}
    for name in names:
        pooled[name] = evaluate_predictions(predictions["pkd"], predictions[name],
                                            predictions["binder_prob"] if name == MODEL else None,
                                            censored=predictions["censored"], n_boot=n_boot,
                                            seed=train_config.seed)
        mean[name] = _mean_over_folds(fold_results, name)
    difference: dict[str, Any] = {}
    if reference in names:
        per_fold = [(f.metrics[MODEL].get("spearman"), f.metrics[reference].get("spearman")) for f in fold_results]
        deltas = [a - b for a, b in per_fold if a is not None and b is not None]
        difference = {
            "reference": reference,
            "per_fold": [None if a is None or b is None else a - b for a, b in per_fold],
            "mean_over_folds": float(np.mean(deltas)) if deltas else None,
            "folds_model_better": int(sum(d > 0 for d in deltas)),
            "pooled": paired_spearman_difference(predictions["pkd"], predictions[MODEL], predictions[reference],
                                                  censored=predictions["censored"], n_boot=n_boot,
                                                  seed=train_config.seed),
        }
    result = CVResult(protocol, fold_results, predictions, pooled, mean, difference,
                      dataclasses.asdict(model_config), dataclasses.asdict(train_config),
                      time.perf_counter() - started, {"n_seeds": n_seeds, "val_fraction": val_fraction})
    from .outputs import write_json_atomic

    write_json_atomic(out_dir / "cv_metrics.json", result.to_dict())
    predictions.to_csv(out_dir / "cv_predictions.csv", index=False)
    return result


# ----------------------------------------------------------------------------------------------- reporting

def _fmt(x: Any, digits: int = 3) -> str:
    return "NA" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _with_ci(m: dict | None) -> str:
    if not m:
        return "NA"
    ci = m.get("spearman_ci95") or [None, None]
    text = _fmt(m.get("spearman"))
    if ci[0] is not None:
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def _mean_cell(m: dict) -> str:
    sd = m.get("spearman_sd")
    return _fmt(m.get("spearman")) + (f" ± {sd:.3f}" if sd is not None else "")


def format_cv_summary(result: CVResult, *, max_folds: int = 40) -> str:
    """Plain-text table: Spearman [95% CI] per fold and predictor, the mean ± SD over folds, the pooled
    out-of-fold Spearman with its interval, and the model − reference difference."""
    names = result.predictors
    rows = []
    for f in result.folds[:max_folds]:
        rows.append({"fold": str(f.fold + 1), "n_test": str(f.n_test),
                     **{n: _with_ci(f.metrics.get(n)) for n in names}})
    if len(result.folds) > max_folds:
        rows.append({"fold": f"… ({len(result.folds) - max_folds} more)", "n_test": "", **{n: "" for n in names}})
    rows.append({"fold": "mean ± SD", "n_test": "", **{n: _mean_cell(result.mean[n]) for n in names}})
    n_pooled = next(iter(result.pooled.values()))["n"] if result.pooled else 0
    rows.append({"fold": "pooled", "n_test": str(n_pooled), **{n: _with_ci(result.pooled[n]) for n in names}})
    table = pd.DataFrame(rows).to_string(index=False)
    lines = [f"Cross-validation: {result.protocol} — Spearman [bootstrap 95% CI]", table]
    d = result.difference
    if d:
        pooled = d["pooled"]
        ci = pooled.get("ci95") or [None, None]
        ci_text = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci[0] is not None else ""
        lines.append(f"model − {d['reference']}: mean over folds {_signed(d['mean_over_folds'])} "
                     f"(model better in {d['folds_model_better']}/{len(d['per_fold'])} folds); "
                     f"pooled {_signed(pooled.get('difference'))}{ci_text} (paired bootstrap)")
    lines.append(f"wall time {result.seconds:.0f}s")
    return "\n".join(lines)


def _signed(x: float | None) -> str:
    return "NA" if x is None else f"{x:+.3f}"


def format_cv_markdown(result: CVResult) -> str:
    """Markdown table (one row per predictor: mean ± SD over folds, pooled Spearman [CI], RMSE)."""
    lines = ["| predictor | mean Spearman ± SD over folds | pooled Spearman [95% CI] | mean Pearson | mean RMSE |",
             "|---|---|---|---|---|"]
    for name in result.predictors:
        m = result.mean[name]
        lines.append(f"| {name} | {_mean_cell(m)} | {_with_ci(result.pooled[name])} | {_fmt(m.get('pearson'))} "
                     f"| {_fmt(m.get('rmse'))} |")
    d = result.difference
    if d:
        ci = d["pooled"].get("ci95") or [None, None]
        ci_text = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci[0] is not None else ""
        lines.append(f"\nmodel − {d['reference']}: {_signed(d['mean_over_folds'])} mean over folds "
                     f"(better in {d['folds_model_better']}/{len(d['per_fold'])}); pooled "
                     f"{_signed(d['pooled'].get('difference'))}{ci_text}")
    return "\n".join(lines)


def save_summary(result: CVResult, path: str | Path) -> None:
    """Write the text summary and the JSON document next to each other."""
    path = Path(path)
    path.write_text(result.summary() + "\n")
    path.with_suffix(".json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
