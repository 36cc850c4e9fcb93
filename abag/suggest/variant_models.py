"""The regressors `abag suggest` fits on a user's measured variants, each with an uncertainty.

- `RidgeModel`: RidgeCV (alpha chosen by leave-one-out over a fixed grid) on one-hot features (the
  "onehot_ridge" model, EVOLVEpro-like but linear) or on standardised embeddings ("embedding_ridge").
  Its std is the spread of a seeded bootstrap ensemble of ridges with the same alpha; the members are
  also its posterior draws for Thompson sampling.
- `GPModel`: a Gaussian process (sklearn) with a scaled RBF kernel plus a white-noise kernel on the
  features ([one-hot | embeddings] when a checkpoint gives embeddings, each block scaled to unit variance),
  hyperparameters by maximum marginal likelihood (on a seeded subsample of at most
  `MAX_HYPERPARAMETER_ROWS` variants); std is the posterior std of the latent function.
- `PriorModel`: the checkpoint's own predictions (and pkd_std when it reports one); nothing is fitted.

Every model has `fit` (choose hyperparameters and fit), `refit` (fit again with the hyperparameters of the
last `fit`, used inside cross-validation) and `predict`. Imports numpy and sklearn only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.preprocessing import StandardScaler

__all__ = ["Prediction", "RidgeModel", "GPModel", "PriorModel", "ALPHAS", "MAX_HYPERPARAMETER_ROWS", "scale_blocks"]

ALPHAS = np.logspace(-3, 3, 13)
"""Ridge penalties RidgeCV chooses from (leave-one-out), fixed, not tuned."""
_CHUNK = 8192  # candidate rows per GP prediction block (bounds memory at 65k candidates)
MAX_HYPERPARAMETER_ROWS = 256
"""The GP's kernel hyperparameters are fitted on at most this many measured variants (a seeded subsample);
the GP itself is then conditioned on all of them."""


@dataclass(frozen=True)
class Prediction:
    """Predicted pKd of some rows: the mean, its std, and posterior draws where the model has them."""

    mean: np.ndarray
    std: np.ndarray | None = None         # None when not asked for
    draws: np.ndarray | None = None       # (members, rows) posterior draws (bootstrap ridges), else None


def _design(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X if X.shape[1] else np.zeros((len(X), 1))  # no varying position: a constant model


def scale_blocks(*blocks: np.ndarray) -> np.ndarray:
    """Columns of each block centred, the block divided by the root of its total variance, side by side:
    each block then contributes equally, on average, to squared distances (the GP's joint kernel input)."""
    scaled = []
    for block in blocks:
        block = np.asarray(block, dtype=np.float64)
        centred = block - block.mean(axis=0)
        total = float(np.sqrt((centred ** 2).mean(axis=0).sum()))
        scaled.append(centred / total if total > 0 else centred)
    return np.hstack(scaled)


class RidgeModel:
    """Ridge regression with a bootstrap-ensemble std (see the module docstring)."""

    def __init__(self, name: str, *, standardise: bool, bootstrap: int = 32, seed: int = 0):
        self.name, self.standardise, self.bootstrap, self.seed = name, standardise, bootstrap, seed
        self.alpha: float | None = None

    def _inputs(self, X: np.ndarray, fit: bool) -> np.ndarray:
        X = _design(X)
        if not self.standardise:
            return X
        if fit:
            self._scaler = StandardScaler().fit(X)
        return self._scaler.transform(X)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "RidgeModel":
        Z = self._inputs(X, fit=True)
        y = np.asarray(y, dtype=np.float64)
        self.alpha = float(RidgeCV(alphas=ALPHAS).fit(Z, y).alpha_) if len(y) > 2 else float(ALPHAS[len(ALPHAS) // 2])
        self._fit_fixed(Z, y)
        return self

    def refit(self, X: np.ndarray, y: np.ndarray) -> "RidgeModel":
        clone = RidgeModel(self.name, standardise=self.standardise, bootstrap=self.bootstrap, seed=self.seed)
        clone.alpha = self.alpha
        clone._fit_fixed(clone._inputs(X, fit=True), np.asarray(y, dtype=np.float64), members=False)
        return clone

    def _fit_fixed(self, Z: np.ndarray, y: np.ndarray, members: bool = True) -> None:
        self._ridge = Ridge(alpha=self.alpha).fit(Z, y)
        self._members = []
        if members:
            rng = np.random.default_rng(self.seed)
            for _ in range(self.bootstrap):
                rows = rng.integers(0, len(y), size=len(y))
                self._members.append(Ridge(alpha=self.alpha).fit(Z[rows], y[rows]))

    def predict(self, X: np.ndarray, with_std: bool = False) -> Prediction:
        Z = self._inputs(X, fit=False)
        mean = self._ridge.predict(Z)
        if not with_std or not self._members:
            return Prediction(mean)
        draws = np.stack([member.predict(Z) for member in self._members])
        return Prediction(mean, draws.std(axis=0, ddof=1), draws)


class GPModel:
    """Gaussian-process regression, RBF + white noise (see the module docstring)."""

    name = "gp"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.kernel_ = None

    def _kernel(self, X: np.ndarray):
        spread = float(np.sqrt(((X - X.mean(axis=0)) ** 2).sum(axis=1).mean() * 2)) or 1.0
        return ConstantKernel(1.0, (1e-3, 1e3)) * RBF(spread, (1e-3 * spread, 1e3 * spread)) + \
            WhiteKernel(0.1, (1e-6, 1e1))

    def fit(self, X: np.ndarray, y: np.ndarray) -> "GPModel":
        X, y = _design(X), np.asarray(y, dtype=np.float64)
        rows = np.arange(len(y))
        if len(y) > MAX_HYPERPARAMETER_ROWS:  # the marginal likelihood's gradient costs O(n^3) per step
            rows = np.sort(np.random.default_rng(self.seed).choice(len(y), MAX_HYPERPARAMETER_ROWS, replace=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp = GaussianProcessRegressor(self._kernel(X), normalize_y=True, random_state=self.seed)
            self.kernel_ = gp.fit(X[rows], y[rows]).kernel_
        self._condition(X, y)
        return self

    def _condition(self, X: np.ndarray, y: np.ndarray) -> None:
        """The GP with the current kernel, conditioned on (X, y); remembers the scale normalize_y divides by."""
        self._gp = GaussianProcessRegressor(self.kernel_, normalize_y=True, optimizer=None).fit(X, y)
        scale = float(np.std(y))
        self._y_scale = scale if scale > 10 * np.finfo(float).eps else 1.0  # as sklearn's normalize_y does

    def refit(self, X: np.ndarray, y: np.ndarray) -> "GPModel":
        clone = GPModel(self.seed)
        clone.kernel_ = self.kernel_
        clone._condition(_design(X), np.asarray(y, dtype=np.float64))
        return clone

    def predict(self, X: np.ndarray, with_std: bool = False) -> Prediction:
        X = _design(X)
        means, stds = [], []
        for start in range(0, len(X), _CHUNK):
            part = X[start:start + _CHUNK]
            if with_std:
                mean, std = self._gp.predict(part, return_std=True)
                stds.append(self._latent_std(std))
            else:
                mean = self._gp.predict(part)
            means.append(mean)
        mean = np.concatenate(means) if means else np.zeros(0)
        return Prediction(mean, np.concatenate(stds) if with_std and stds else (np.zeros(0) if with_std else None))

    def _latent_std(self, std: np.ndarray) -> np.ndarray:
        """sklearn's std includes the white (measurement) noise; the batch needs the std of the true pKd."""
        noise = self.kernel_.k2.noise_level * self._y_scale ** 2
        return np.sqrt(np.maximum(std ** 2 - noise, 0.0))


class PriorModel:
    """The checkpoint's predictions as a model: column 0 of X is its pKd, column 1 its std (0 if unknown)."""

    name = "checkpoint"

    def fit(self, X: np.ndarray, y: np.ndarray) -> "PriorModel":
        return self

    def refit(self, X: np.ndarray, y: np.ndarray) -> "PriorModel":
        return self

    def predict(self, X: np.ndarray, with_std: bool = False) -> Prediction:
        X = np.asarray(X, dtype=np.float64)
        return Prediction(X[:, 0].copy(), X[:, 1].copy() if with_std else None)
