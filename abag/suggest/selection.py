"""Choose the variant model by cross-validation on the user's own measured variants.

Each candidate model is fitted once on all measured variants (this chooses its hyperparameters: the ridge
alpha, the GP kernel), then scored by repeated K-fold cross-validation with those hyperparameters kept
(`refit`), the same folds for every model. Two scores per held-out fold:

- `top_lift`, the selection score: the mean measured pKd of the fold's top `top_fraction` by prediction
  (at least one variant), minus the fold's mean. A batch is taken from the top of the ranking, and a
  model can rank the bulk well (high Spearman) while ordering the best variants poorly.
- `spearman`: reported beside it (a constant prediction scores 0).

The choice follows the one-standard-error rule: the simplest model (the order of `config.MODEL_NAMES`)
whose mean `top_lift` is within one standard error of the best mean. Ties in predictions are broken by a
seeded random order, so a model that predicts a constant cannot profit from the order of the file.
Imports numpy, scipy and sklearn only (models are passed in: anything with `fit`, `refit` and `predict`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy.stats import spearmanr
from sklearn.model_selection import RepeatedKFold

__all__ = ["ModelScore", "ModelChoice", "MIN_CV_ROWS", "top_lift", "choose_model"]

MIN_CV_ROWS = 10
"""Fewer measured variants than this: no cross-validation (too few per fold to rank)."""


@dataclass(frozen=True)
class ModelScore:
    """One model's cross-validated scores: mean and standard error over the held-out folds."""

    name: str
    top_lift: float
    top_lift_se: float
    spearman: float
    spearman_se: float
    n_folds: int


@dataclass(frozen=True)
class ModelChoice:
    """Which model was chosen, how, and every candidate's scores (empty without cross-validation)."""

    chosen: str
    rule: str
    scores: tuple[ModelScore, ...]
    n_measured: int

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "rule": self.rule, "n_measured": self.n_measured,
                "scores": [asdict(s) for s in self.scores]}

    def summary(self) -> str:
        lines = [f"variant model: {self.chosen} ({self.rule})"]
        for s in self.scores:
            mark = "*" if s.name == self.chosen else " "
            lines.append(f" {mark} {s.name:<16} top-lift {s.top_lift:+.3f} ± {s.top_lift_se:.3f}   "
                         f"Spearman {s.spearman:+.3f} ± {s.spearman_se:.3f}   ({s.n_folds} folds)")
        return "\n".join(lines)


def top_lift(y: np.ndarray, pred: np.ndarray, fraction: float, tie_break: np.ndarray) -> float:
    """Mean of `y` over the top `fraction` of rows by `pred` (ties in seeded random order), minus mean(y)."""
    k = max(1, int(math.ceil(fraction * len(y))))
    order = np.lexsort((tie_break, -np.asarray(pred, dtype=np.float64)))
    return float(np.mean(y[order[:k]]) - np.mean(y))


def _spearman(y: np.ndarray, pred: np.ndarray) -> float:
    if np.ptp(pred) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(spearmanr(y, pred)[0])


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), se


def _cross_validate(name: str, model, X: np.ndarray, y: np.ndarray, splits, fraction: float,
                    rng_seed: int) -> ModelScore:
    lifts, rhos = [], []
    tie_rng = np.random.default_rng(rng_seed)
    for train, test in splits:
        pred = model.refit(X[train], y[train]).predict(X[test]).mean
        lifts.append(top_lift(y[test], pred, fraction, tie_rng.random(len(test))))
        rhos.append(_spearman(y[test], pred))
    lift, lift_se = _mean_se(lifts)
    rho, rho_se = _mean_se(rhos)
    return ModelScore(name, lift, lift_se, rho, rho_se, len(lifts))


def choose_model(models: Sequence[tuple[str, object, np.ndarray]], y: np.ndarray, *, folds: int, repeats: int,
                 fraction: float, seed: int):
    """(ModelChoice, fitted model) among `models` = [(name, unfitted model, features of the measured rows)],
    simplest first. Below `MIN_CV_ROWS` measured variants the simplest model is taken without scoring."""
    y = np.asarray(y, dtype=np.float64)
    if len(models) == 1 or len(y) < MIN_CV_ROWS:
        name, model, X = models[0]
        why = "the only model available" if len(models) == 1 else \
            f"fewer than {MIN_CV_ROWS} measured variants: no cross-validation, simplest model"
        return ModelChoice(name, why, (), len(y)), model.fit(X, y)
    k = min(folds, len(y) // 2)
    splits = list(RepeatedKFold(n_splits=k, n_repeats=repeats, random_state=seed).split(np.zeros(len(y))))
    fitted, scores = {}, []
    for name, model, X in models:
        fitted[name] = model.fit(X, y)
        scores.append(_cross_validate(name, fitted[name], X, y, splits, fraction, seed))
    best = max(scores, key=lambda s: s.top_lift)
    chosen = next(s for s in scores if s.top_lift >= best.top_lift - best.top_lift_se)
    rule = (f"{k}-fold x {repeats} cross-validation on the measured variants; simplest model within one "
            f"standard error of the best top-{fraction:.0%} lift")
    return ModelChoice(chosen.name, rule, tuple(scores), len(y)), fitted[chosen.name]
