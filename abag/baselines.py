"""Simple sequence baselines (training mean, k-mer composition ridge) for pKd.

Fit on the same training split as the model so every evaluation can report
model vs baselines. Rows used for fitting: finite ``pkd`` and not ``censored``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler, normalize

from abag.metrics import _to_bool, evaluate_predictions
from abag.policy import AMINO_ACIDS, RESIDUE_CODE, UNKNOWN_RESIDUE

__all__ = [
    "AMINO_ACIDS",
    "CHAINS",
    "kmer_composition",
    "pair_features",
    "training_rows",
    "MeanBaseline",
    "KmerRidgeBaseline",
    "fit_baselines",
    "evaluate_baselines",
]

CHAINS = ("heavy", "light", "antigen")
RIDGE_ALPHAS = np.logspace(-2, 4, 13)
_INVALID = UNKNOWN_RESIDUE
_CODE = RESIDUE_CODE


# --------------------------------------------------------------------------- features
def _clean(seq: Any) -> str:
    """Upper-case string; None/NaN -> ''."""
    return "" if seq is None or (isinstance(seq, float) and np.isnan(seq)) else str(seq).upper()


def _encode(sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Residue codes (0-19, 255 = not a standard residue) of all sequences joined by '|',
    and the sequence index of each position."""
    seqs = [_clean(s) for s in sequences]
    joined = "|".join(seqs).encode("ascii", errors="replace")
    codes = _CODE[np.frombuffer(joined, dtype=np.uint8)]
    owner = np.repeat(np.arange(len(seqs)), [len(s) + 1 for s in seqs])[: codes.size]
    return codes, owner


def kmer_composition(sequences: Sequence[str], k: int, *, sparse_output: bool = False) -> Any:
    """Normalised k-mer frequencies over the 20 standard amino acids (20**k columns).

    k-mers spanning a '|' chain separator or a non-standard residue are skipped;
    each row sums to 1, or is all zeros when a sequence has no valid k-mer ('' / None).
    Returns a dense ndarray, or a CSR matrix when ``sparse_output``.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    n = len(sequences)
    codes, owner = _encode(sequences)
    if codes.size >= k:
        windows = np.lib.stride_tricks.sliding_window_view(codes, k)
        valid = np.all(windows != _INVALID, axis=1)
        columns = windows[valid].astype(np.int64) @ (20 ** np.arange(k - 1, -1, -1))
        rows = owner[: windows.shape[0]][valid]
    else:
        columns = rows = np.zeros(0, dtype=np.int64)
    counts = sparse.csr_matrix((np.ones(rows.size), (rows, columns)), shape=(n, 20**k))
    freqs = normalize(counts, norm="l1") if n else counts
    return freqs if sparse_output else freqs.toarray()


def _chain(df: pd.DataFrame, name: str) -> list[str]:
    """Cleaned chain sequences; a missing column counts as empty chains."""
    return [_clean(s) for s in df[name]] if name in df else [""] * len(df)


def _residue_count(seq: str) -> int:
    return len(seq.replace("|", ""))


def pair_features(df: pd.DataFrame, ks: Sequence[int] = (1, 2)) -> np.ndarray:
    """[heavy | light | antigen] k-mer compositions for each k in ``ks``, then a
    light-present flag and log1p(residue count) of each chain."""
    blocks: list[np.ndarray] = []
    chains = {name: _chain(df, name) for name in CHAINS}
    for name in CHAINS:
        blocks.extend(kmer_composition(chains[name], k) for k in ks)
    light_present = np.array([[_residue_count(s) > 0] for s in chains["light"]], dtype=float)
    log_len = np.log1p([[_residue_count(s) for s in chains[c]] for c in CHAINS]).T
    blocks += [light_present.reshape(len(df), 1), log_len.reshape(len(df), len(CHAINS))]
    return np.hstack(blocks)


def training_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows usable for fitting: finite ``pkd`` and not ``censored``."""
    pkd = pd.to_numeric(df["pkd"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    keep = np.isfinite(pkd)
    if "censored" in df:
        keep &= ~_to_bool(df["censored"], len(df))
    rows = df.loc[keep]
    if rows.empty:
        raise ValueError("no training rows with finite, uncensored pkd")
    return rows


def _targets(df: pd.DataFrame) -> np.ndarray:
    return df["pkd"].to_numpy(dtype=float)


# --------------------------------------------------------------------------- models
class MeanBaseline:
    """Predicts the training-set mean pKd for every row."""

    name = "train_mean"

    def __init__(self) -> None:
        self.mean_: float | None = None

    def fit(self, df: pd.DataFrame) -> MeanBaseline:
        self.mean_ = float(np.mean(_targets(training_rows(df))))
        return self

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        if self.mean_ is None:
            raise NotFittedError("MeanBaseline is not fitted")
        return np.full(len(df), self.mean_)


class KmerRidgeBaseline:
    """StandardScaler + RidgeCV on :func:`pair_features`; alpha chosen by efficient
    leave-one-out CV on the training rows only."""

    name = "kmer_ridge"

    def __init__(self, ks: Sequence[int] = (1, 2)) -> None:
        self.ks = tuple(ks)
        self.model_: Pipeline | None = None

    def fit(self, df: pd.DataFrame) -> KmerRidgeBaseline:
        rows = training_rows(df)
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
        self.model_ = model.fit(pair_features(rows, self.ks), _targets(rows))
        return self

    @property
    def alpha_(self) -> float:
        """Ridge penalty selected by cross-validation."""
        if self.model_ is None:
            raise NotFittedError("KmerRidgeBaseline is not fitted")
        return float(self.model_[-1].alpha_)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        if self.model_ is None:
            raise NotFittedError("KmerRidgeBaseline is not fitted")
        return self.model_.predict(pair_features(df, self.ks))


# --------------------------------------------------------------------------- helpers
def fit_baselines(train_df: pd.DataFrame) -> dict[str, Any]:
    """All baselines fitted on ``train_df``, keyed by their ``name``."""
    models = (MeanBaseline(), KmerRidgeBaseline())
    return {m.name: m.fit(train_df) for m in models}


def evaluate_baselines(
    train_df: pd.DataFrame, test_df: pd.DataFrame, **evaluate_kwargs: Any
) -> dict[str, dict[str, Any]]:
    """Fit baselines on ``train_df``; ``name -> evaluate_predictions`` result on ``test_df``.

    ``censored`` defaults to ``test_df['censored']`` when present; no binder head.
    """
    evaluate_kwargs.setdefault("censored", test_df["censored"] if "censored" in test_df else None)
    return {
        name: evaluate_predictions(test_df["pkd"], model.predict(test_df), None, **evaluate_kwargs)
        for name, model in fit_baselines(train_df).items()
    }
