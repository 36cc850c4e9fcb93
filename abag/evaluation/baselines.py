"""Simple sequence baselines (training mean, k-mer composition ridge) for pKd, at any number of rows.

Fit on the same training split as the model so every evaluation can report model vs baselines. Rows used
for fitting: finite ``pkd`` and not ``censored``. The k-mer ridge itself, and its features, live in
`abag.model.ridge` (the model's wide part is one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError

from abag.evaluation.metrics import evaluate_predictions
from abag.model.ridge import KmerRidgeBaseline, RidgeDesign, _targets, training_rows

__all__ = ["MeanBaseline", "KmerRidgeBaseline", "fit_baselines", "evaluate_baselines"]


# --------------------------------------------------------------------------- models
class MeanBaseline:
    """Predicts the training-set mean pKd for every row."""

    name = "train_mean"

    def __init__(self) -> None:
        self.mean_: float | None = None
        self.rows_ = 0

    @property
    def method(self) -> str:
        """How the prediction was obtained, for reports."""
        return f"mean pKd of {self.rows_:,} training rows"

    def fit(self, df: pd.DataFrame) -> MeanBaseline:
        y = _targets(training_rows(df))
        self.mean_, self.rows_ = float(np.mean(y)), int(y.size)
        return self

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        if self.mean_ is None:
            raise NotFittedError("MeanBaseline is not fitted")
        return np.full(len(df), self.mean_)


# --------------------------------------------------------------------------- helpers
def fit_baselines(train_df: pd.DataFrame, design: RidgeDesign | None = None) -> dict[str, Any]:
    """All baselines fitted on ``train_df``, keyed by their ``name`` (``design``: the k-mer ridge design of
    ``train_df``'s rows, when the caller has one)."""
    fitted = (MeanBaseline().fit(train_df), KmerRidgeBaseline().fit(train_df, design))
    return {m.name: m for m in fitted}


def evaluate_baselines(
    train_df: pd.DataFrame, test_df: pd.DataFrame, *, design: RidgeDesign | None = None, **evaluate_kwargs: Any
) -> dict[str, dict[str, Any]]:
    """Fit baselines on ``train_df``; ``name -> evaluate_predictions`` result on ``test_df``, plus the
    baseline's ``method`` string.

    ``censored`` defaults to ``test_df['censored']`` when present; no binder head.
    """
    evaluate_kwargs.setdefault("censored", test_df["censored"] if "censored" in test_df else None)
    results = {}
    for name, model in fit_baselines(train_df, design).items():
        results[name] = evaluate_predictions(test_df["pkd"], model.predict(test_df), None, **evaluate_kwargs)
        results[name]["method"] = model.method
    return results
