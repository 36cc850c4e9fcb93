"""The benchmarks' other baselines: a 1–3-mer ridge on the heavy chain, and a ridge on the IMGT-aligned one-hot.

* ``HeavyKmerRidgeBaseline`` (``heavy_kmer123_ridge``): the k-mer ridge (``abag.model.ridge``) on the
  heavy chain alone, 1–3-mers (8,421 features: 20 + 400 + 8,000 compositions and the log length), standardised,
  alpha by exact leave-one-out (GCV above 20,000 rows). What a user ranking variants of one antibody fits first.
* ``OneHotRidgeBaseline`` (``onehot_ridge``): VH and VL as one-hot over the IMGT positions seen in training
  (``abag.numbering.AlignedOneHotEncoder``: insertion codes absorb CDR length differences), sklearn ``RidgeCV`` on
  the sparse matrix (exact leave-one-out over the rows x rows kernel: keep it to tens of thousands of rows).
  The antigen does not enter. Rows whose chains cannot be numbered get the training mean and are counted.

``fit_named_baselines(train_df, names)`` fits any of these and the default pair by name (``BASELINES``). Neither
is in ``abag train``'s comparison table (``fit_baselines``): at 500k rows the heavy 1–3-mer Gram (8,421²) and the
one-hot kernel (rows²) do not fit the scale budget.

Imports from abag: ``model.ridge``, ``evaluation.baselines`` and ``numbering`` (whose library is imported on
first use).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import RidgeCV

from abag.evaluation.baselines import MeanBaseline
from abag.model.ridge import (
    LOO_MAX_ROWS,
    RIDGE_ALPHAS,
    KmerRidgeBaseline,
    _one_blas_thread,
    _targets,
    training_rows,
)
from abag.numbering import AlignedOneHotEncoder, NumberingDiskCache, number_chains

__all__ = ["HeavyKmerRidgeBaseline", "OneHotRidgeBaseline", "BASELINES", "fit_named_baselines"]


class HeavyKmerRidgeBaseline(KmerRidgeBaseline):
    """The k-mer ridge on the heavy chain alone, 1–3-mers (8,421 features): what a user with variants of one
    antibody would fit first. Same fit as :class:`KmerRidgeBaseline` (standardised, alpha by leave-one-out/GCV)."""

    name = "heavy_kmer123_ridge"

    def __init__(self, ks: Sequence[int] = (1, 2, 3), alphas: Sequence[float] = tuple(RIDGE_ALPHAS),
                 loo_max_rows: int = LOO_MAX_ROWS, chains: Sequence[str] = ("heavy",)) -> None:
        super().__init__(ks, alphas, loo_max_rows, chains)


def _chain_texts(df: pd.DataFrame, name: str) -> list[str]:
    if name not in df:
        return [""] * len(df)
    return [s.strip().upper() if isinstance(s, str) else "" for s in df[name]]


class OneHotRidgeBaseline:
    """Ridge on the IMGT-aligned one-hot of VH and VL (`abag.numbering.AlignedOneHotEncoder`, positions learned on
    the training rows), sklearn ``RidgeCV`` on the sparse matrix, alpha among ``alphas`` by exact leave-one-out.

    The antigen does not enter. Rows whose chains cannot be numbered (a heavy chain with no heavy domain, or a
    light chain given with no light domain) are left out of the fit and predicted as the training mean; they are
    counted (``unnumbered_train_``, and ``unnumbered_`` for the last ``predict``). ``cache``: a dict of numbered
    chains shared between fits (each distinct chain is numbered once); ``disk_cache``: a `NumberingDiskCache`.
    Bench-sized: the leave-one-out works on the rows x rows kernel, so keep it to tens of thousands of rows.
    """

    name = "onehot_ridge"

    def __init__(self, alphas: Sequence[float] = tuple(RIDGE_ALPHAS), cache: dict | None = None,
                 disk_cache: NumberingDiskCache | None = None) -> None:
        if not len(alphas) or any(a <= 0 for a in alphas):
            raise ValueError(f"alphas must be positive, got {alphas!r}")
        self.alphas = np.asarray(alphas, dtype=float)
        self.cache = {} if cache is None else cache
        self.disk_cache = disk_cache
        self.encoder_ = None
        self.ridge_ = None
        self.mean_: float | None = None
        self.rows_ = 0
        self.unnumbered_train_ = 0
        self.unnumbered_ = 0

    def _features(self, df: pd.DataFrame, fit: bool = False):
        sides = []
        for name in ("heavy", "light"):
            texts = _chain_texts(df, name)
            numbered = number_chains(texts, cache=self.cache, disk_cache=self.disk_cache).chains
            sides.append([c if t else None for c, t in zip(numbered, texts)])  # absent chain: zeros, not a failure
        if fit:
            self.encoder_ = AlignedOneHotEncoder().fit(*sides)
        features = self.encoder_.transform(*sides, dtype=np.float64)
        return features.matrix, features.missing_heavy | features.missing_light

    def fit(self, df: pd.DataFrame) -> OneHotRidgeBaseline:
        rows = training_rows(df)
        y = _targets(rows)
        self.mean_, self.rows_ = float(np.mean(y)), int(y.size)
        matrix, unnumbered = self._features(rows, fit=True)
        self.unnumbered_train_ = int(unnumbered.sum())
        keep = ~unnumbered
        self.ridge_ = None
        if keep.sum() >= 3 and self.encoder_.n_features:
            with _one_blas_thread():
                self.ridge_ = RidgeCV(alphas=self.alphas).fit(matrix[keep], y[keep])
        return self

    @property
    def alpha_(self) -> float | None:
        """Ridge penalty selected by leave-one-out (None when too few rows could be numbered to fit)."""
        if self.mean_ is None:
            raise NotFittedError("OneHotRidgeBaseline is not fitted")
        return None if self.ridge_ is None else float(self.ridge_.alpha_)

    @property
    def method(self) -> str:
        """What was fitted and how alpha was chosen, for reports."""
        alpha = self.alpha_
        fitted = self.rows_ - self.unnumbered_train_
        if alpha is None:
            return f"training mean ({fitted} of {self.rows_:,} rows numbered: too few for the one-hot ridge)"
        return (f"ridge on the IMGT-aligned one-hot of VH and VL ({self.encoder_.n_features:,} features), "
                f"{fitted:,} of {self.rows_:,} training rows numbered, alpha {alpha:g} by exact leave-one-out")

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Predicted pKd per row; rows whose chains cannot be numbered get the training mean (``unnumbered_``)."""
        if self.mean_ is None:
            raise NotFittedError("OneHotRidgeBaseline is not fitted")
        out = np.full(len(df), self.mean_)
        if self.ridge_ is None or not len(df):
            self.unnumbered_ = int(len(df)) if self.ridge_ is None else 0
            return out
        matrix, unnumbered = self._features(df)
        self.unnumbered_ = int(unnumbered.sum())
        keep = ~unnumbered
        if keep.any():
            out[keep] = self.ridge_.predict(matrix[keep])
        return out


BASELINES: dict[str, Callable[[], Any]] = {
    MeanBaseline.name: MeanBaseline,
    KmerRidgeBaseline.name: KmerRidgeBaseline,
    HeavyKmerRidgeBaseline.name: HeavyKmerRidgeBaseline,
    OneHotRidgeBaseline.name: OneHotRidgeBaseline,
}
"""Every baseline by name (each class called with no arguments gives its default)."""


def fit_named_baselines(train_df: pd.DataFrame, names: Sequence[str] = tuple(BASELINES)) -> dict[str, Any]:
    """The baselines ``names`` (keys of ``BASELINES``) fitted on ``train_df``, keyed by their ``name``."""
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {sorted(BASELINES)}")
    return {name: BASELINES[name]().fit(train_df) for name in names}
