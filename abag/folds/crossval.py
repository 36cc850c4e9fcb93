"""Cross-validation over antigen clusters (or any groups): the model beside the baselines, fold by fold.

`cross_validate(frame, model_config, train_config, folds=5)` clusters the antigens (40 % identity by
default, see `abag.identity.clustering`), deals whole clusters to `k` test folds (`folds="logo"`: one fold per group,
e.g. leave-one-complex-out with `group_column="skempi_complex"`), and for every fold

1. takes a validation slice of *whole groups* from the training folds (for early stopping and the
   learning-rate scheduler; never from the test fold),
2. trains the model with `abag.train(..., split=SplitResult)` (so the v2.7 recipe, checkpoints and
   metrics.json of every fold are the usual ones),
3. fits the baselines (training mean, k-mer ridge) on exactly the same training rows, and
4. scores model and baselines on the test fold: Spearman with a bootstrap 95 % interval, Pearson, RMSE, …,
   and the mean Spearman *within* groups (clusters with >= 5 scored rows) and within antibodies, with
   cluster-bootstrap intervals (whole groups resampled; see `abag.evaluation.metrics.grouped_spearman`).

The result holds per-fold metrics, their mean and SD over folds, metrics of the pooled out-of-fold
predictions (every row is predicted exactly once, by the fold that held it out) and a paired bootstrap
interval for "model minus k-mer ridge" on the pooled predictions. Censored rows are never scored as
exact values (see `abag.evaluation.metrics.evaluate_predictions`).

Embeddings are encoded once for all folds: frozen encoders go through the on-disk embedding cache
(`TrainConfig.cache_dir`; when it is None, `abag.encoding.embedding_cache.default_cache_dir()` is used), so the
second fold onwards only reads the cache. Encoders are loaded once and shared by all folds.

`cross_validate` is three steps: plan the folds (`FoldPlan`), run each fold (`_run_fold`: train the
members, fit the baselines, score; predictions collect in `OutOfFold`), then summarise (pooled, mean over
folds, model minus reference). The tables are in `abag.folds.crossval_tables`. Imports `abag.data.splits` (groups),
`abag.evaluation.metrics`, `abag.evaluation.baselines`, `abag.model` at import time, and `abag.train`, `abag.inference`,
`abag.encoding.loader`, `abag.encoding.embedding_cache` and `abag.outputs` when it runs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from abag.data.folds import fold_split, make_folds
from abag.data.splits import SplitResult, fold_groups, row_groups
from abag.encoding.embedding_cache import default_cache_dir
from abag.encoding.loader import load_encoders
from abag.evaluation.baselines import fit_baselines
from abag.evaluation.metrics import evaluate_predictions
from abag.folds.crossval_tables import (
    format_cv_markdown,
    format_cv_summary,
    format_value,
    save_summary,
)
from abag.identity.clustering import DEFAULT_IDENTITY
from abag.inference import member_outputs
from abag.model.config import ModelConfig
from abag.model.network import encoder_names
from abag.outputs import write_json_atomic
from abag.training.config import TrainConfig
from abag.training.run import train

__all__ = [
    "FoldResult",
    "CVResult",
    "make_folds",
    "fold_split",
    "cross_validate",
    "paired_spearman_difference",
    "format_cv_summary",
    "format_cv_markdown",
    "save_summary",
]

MODEL = "model"
NETWORK_ONLY = "network_only"
"""The model without its familiar-antigen correction (`abag.posthoc.familiar_correction`), when it has one."""
SUMMARY_METRICS = ("spearman", "pearson", "rmse", "mae", "r2", "spearman_within_group")


# ----------------------------------------------------------------------------------------------- folds





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

@dataclass(frozen=True)
class FoldPlan:
    """The test rows of every fold, the group of every row, and the protocol in words."""

    groups: np.ndarray
    tests: list[np.ndarray]
    protocol: str

    @property
    def covered(self) -> np.ndarray:
        """Every test row, fold after fold (the order of `CVResult.predictions`)."""
        return np.concatenate(self.tests) if self.tests else np.zeros(0, np.int64)


@dataclass(frozen=True)
class CVSetup:
    """What every fold needs: the table and its labels, the configs, the shared encoders and the options."""

    frame: pd.DataFrame
    y: np.ndarray
    censored: np.ndarray
    groups: np.ndarray                   # the folds' groups (antigen clusters or `group_column` values)
    antibodies: np.ndarray               # identical heavy + light chains, for the within-antibody Spearman
    model_config: ModelConfig
    train_config: Any                    # abag.training.TrainConfig
    out_dir: Path
    encoders: dict
    baselines: Callable[[pd.DataFrame], dict[str, Any]] | None
    n_seeds: int
    val_fraction: float
    fold_seed: int
    n_boot: int
    train_log: Callable[[str], None]


@dataclass(frozen=True)
class MemberPredictions:
    """What training the `n_seeds` models of one fold gives: their averaged test-fold predictions."""

    pkd: np.ndarray
    binder_prob: np.ndarray
    best_epochs: list[int]
    val_metrics: dict | None             # the model's validation metrics (best epoch; one seed only)
    network_pkd: np.ndarray | None = None  # the same models without their familiar-antigen correction


@dataclass
class OutOfFold:
    """Out-of-fold predictions, filled fold by fold: one full-length column per predictor."""

    columns: dict[str, np.ndarray]
    binder_prob: np.ndarray


def _load_encoders(model_config: ModelConfig, encoders: dict | None) -> dict:

    return load_encoders(encoder_names(model_config), encoders)  # an unused antigen encoder is not loaded


def _labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    y = pd.to_numeric(frame["pkd"], errors="coerce").to_numpy(dtype=float)
    censored = frame["censored"].to_numpy(dtype=bool) if "censored" in frame else np.zeros(len(frame), bool)
    return y, censored


def _silent(_: str) -> None:
    return None


def _plan(frame: pd.DataFrame, folds: int | str | Sequence[np.ndarray], group_column: str | None,
          identity: float, fold_seed: int) -> FoldPlan:
    """Folds from `make_folds`, or the given test-row arrays (groups still computed, for validation)."""
    if isinstance(folds, (int, str)):
        plan = FoldPlan(*make_folds(frame, folds, group_column=group_column, identity=identity, seed=fold_seed))
    else:
        tests = [np.asarray(t, dtype=np.int64) for t in folds]
        groups = fold_groups(frame, group_column=group_column, identity=identity).labels
        plan = FoldPlan(groups, tests, f"{len(tests)} given folds")
    covered = plan.covered
    if len(np.unique(covered)) != len(covered):
        raise ValueError("test folds overlap: a row is in more than one test fold")
    return plan


def _train_members(setup: CVSetup, split: SplitResult, fold: int) -> MemberPredictions:
    """Train `setup.n_seeds` models on the fold's split (seeds `train_config.seed + s`); average them."""

    test_rows = split.indices("test")
    pkd, prob, network, best_epochs, val_metrics = [], [], [], [], None
    for s in range(setup.n_seeds):
        config = dataclasses.replace(setup.train_config, seed=setup.train_config.seed + s, progress=False)
        run_dir = setup.out_dir / f"fold_{fold}"
        if setup.n_seeds > 1:
            run_dir = run_dir / f"seed_{config.seed}"
        result = train(setup.frame, run_dir, setup.model_config, config, encoders=setup.encoders, split=split,
                       log=setup.train_log)
        outputs = member_outputs(result.model, setup.frame.iloc[test_rows], cache_dir=config.cache_dir)
        pkd.append(outputs.pkd.mean(axis=0).astype(float))
        prob.append(outputs.binder_prob.mean(axis=0).astype(float))
        # What the correction changed on these folds: the same models' network alone.
        network.append(outputs.network_pkd.mean(axis=0).astype(float) if outputs.corrected else None)
        best_epochs.append(int(result.metrics["training"]["best_epoch"]))
        val_metrics = result.metrics.get("val") if setup.n_seeds == 1 else None
    network_pkd = None if any(p is None for p in network) else np.mean(network, axis=0)
    return MemberPredictions(np.mean(pkd, axis=0), np.mean(prob, axis=0), best_epochs, val_metrics, network_pkd)


def _predict_baselines(setup: CVSetup, train_rows: np.ndarray, test_rows: np.ndarray, oof: OutOfFold) -> list[str]:
    """Fit the baselines on the fold's training rows, predict its test rows; the names fitted."""
    if setup.baselines is None:
        return []
    names = []
    for name, predictor in setup.baselines(setup.frame.iloc[train_rows]).items():
        column = oof.columns.setdefault(name, np.full(len(setup.frame), np.nan))
        column[test_rows] = predictor.predict(setup.frame.iloc[test_rows])
        names.append(name)
    return names


def _score(setup: CVSetup, oof: OutOfFold, name: str, rows: np.ndarray) -> dict[str, Any]:
    """`evaluate_predictions` of one predictor on `rows` (the binder head for the model only), with the
    Spearman within groups and within antibodies, and cluster-bootstrap intervals over the groups."""
    prob = oof.binder_prob[rows] if name == MODEL else None
    return evaluate_predictions(setup.y[rows], oof.columns[name][rows], prob, censored=setup.censored[rows],
                                threshold=setup.train_config.binder_threshold, n_boot=setup.n_boot,
                                seed=setup.train_config.seed, groups=setup.groups[rows],
                                antibody_groups=setup.antibodies[rows])


def _run_fold(setup: CVSetup, plan: FoldPlan, i: int, oof: OutOfFold, log: Callable[[str], None]) -> FoldResult:
    """Train and score fold `i`: the model's members and the baselines, on the same training rows."""
    started = time.perf_counter()
    split = fold_split(plan.groups, plan.tests[i], val_fraction=setup.val_fraction, seed=setup.fold_seed * 1000 + i,
                       description=f"{plan.protocol}, fold {i + 1}/{len(plan.tests)}")
    train_rows, test_rows = split.indices("train"), split.indices("test")
    members = _train_members(setup, split, i)
    oof.columns[MODEL][test_rows] = members.pkd
    oof.binder_prob[test_rows] = members.binder_prob
    names = [MODEL]
    if members.network_pkd is not None:
        oof.columns.setdefault(NETWORK_ONLY, np.full(len(setup.frame), np.nan))[test_rows] = members.network_pkd
        names.append(NETWORK_ONLY)
    names += _predict_baselines(setup, train_rows, test_rows, oof)
    metrics = {name: _score(setup, oof, name, test_rows) for name in names}
    sizes = split.sizes()
    held_out = sorted(np.unique(plan.groups[test_rows]).tolist())
    fold = FoldResult(i, sizes["train"], sizes["val"], sizes["test"], held_out, metrics, members.val_metrics,
                      members.best_epochs, time.perf_counter() - started)
    scores = ", ".join(f"{n} {format_value(m.get('spearman'))}" for n, m in metrics.items())
    log(f"fold {i + 1}/{len(plan.tests)}: {scores} (Spearman; {sizes['train']}/{sizes['val']}/{sizes['test']} rows; "
        f"{fold.seconds:.0f}s)")
    return fold


def _predictions_table(setup: CVSetup, plan: FoldPlan, oof: OutOfFold) -> pd.DataFrame:
    """One row per out-of-fold prediction: row, fold, group, pkd, censored, a column per predictor."""
    rows = plan.covered
    table = pd.DataFrame({"row": rows, "fold": np.concatenate(
        [np.full(len(t), i) for i, t in enumerate(plan.tests)]) if plan.tests else np.zeros(0, int)})
    table["group"] = plan.groups[rows]
    table["pkd"] = setup.y[rows]
    table["censored"] = setup.censored[rows]
    for name, column in oof.columns.items():
        table[name] = column[rows]
    table["binder_prob"] = oof.binder_prob[rows]
    return table


def _difference(setup: CVSetup, folds: list[FoldResult], predictions: pd.DataFrame, reference: str) -> dict:
    """Model minus `reference`: per fold, mean over folds, and the pooled paired bootstrap."""
    if reference not in predictions.columns or reference == MODEL:
        return {}
    per_fold = [(f.metrics[MODEL].get("spearman"), f.metrics[reference].get("spearman")) for f in folds]
    deltas = [a - b for a, b in per_fold if a is not None and b is not None]
    return {
        "reference": reference,
        "per_fold": [None if a is None or b is None else a - b for a, b in per_fold],
        "mean_over_folds": float(np.mean(deltas)) if deltas else None,
        "folds_model_better": int(sum(d > 0 for d in deltas)),
        "pooled": paired_spearman_difference(predictions["pkd"], predictions[MODEL], predictions[reference],
                                              censored=predictions["censored"], n_boot=setup.n_boot,
                                              seed=setup.train_config.seed),
    }


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

    started = time.perf_counter()
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig(progress=False)
    if train_config.embedding_cache and train_config.cache_dir is None:
        train_config = dataclasses.replace(train_config, cache_dir=str(default_cache_dir()))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = frame.reset_index(drop=True)
    y, censored = _labels(frame)
    plan = _plan(frame, folds, group_column, identity, fold_seed)
    log(f"cross-validation: {plan.protocol}; {len(frame)} rows; validation = whole groups "
        f"(~{val_fraction:.0%} of the training rows); model trained {n_seeds}x per fold")
    setup = CVSetup(frame, y, censored, plan.groups, row_groups(frame, "antibody").labels, model_config,
                    train_config, out_dir, _load_encoders(model_config, encoders), baselines, n_seeds, val_fraction,
                    fold_seed, n_boot, train_log or _silent)
    oof = OutOfFold({MODEL: np.full(len(frame), np.nan)}, np.full(len(frame), np.nan))
    fold_results = [_run_fold(setup, plan, i, oof, log) for i in range(len(plan.tests))]

    predictions = _predictions_table(setup, plan, oof)
    pooled = {name: _score(setup, oof, name, plan.covered) for name in oof.columns}
    mean = {name: _mean_over_folds(fold_results, name) for name in oof.columns}
    result = CVResult(plan.protocol, fold_results, predictions, pooled, mean,
                      _difference(setup, fold_results, predictions, reference),
                      dataclasses.asdict(model_config), dataclasses.asdict(train_config),
                      time.perf_counter() - started, {"n_seeds": n_seeds, "val_fraction": val_fraction})
    write_json_atomic(out_dir / "cv_metrics.json", result.to_dict())
    predictions.to_csv(out_dir / "cv_predictions.csv", index=False)
    return result
