"""The k-mer composition ridge: abag's closed-form linear model on explicit sequence features, at any number of rows.

Used as a baseline beside every model (`abag.evaluation.baselines` re-exports it), as the model's wide part
(`abag.model.wide`) and by the familiar-antigen correction (`abag.posthoc.familiar_correction`); it lives here,
below all three, so each can import it. Rows used for fitting: finite ``pkd`` and not ``censored``.

The k-mer ridge is the StandardScaler + RidgeCV of :func:`pair_features`, computed without the rows x
features matrix: each distinct chain's features are computed once, and the centred, standardised XᵀX and
Xᵀy are assembled from per-chain blocks and the chain co-occurrence counts. Time is O(rows) plus
O(distinct chains x features²); memory is O(distinct chains x features) plus O(rows). Alpha comes from the
eigendecomposition of XᵀX: exact leave-one-out (what RidgeCV computes) up to ``loo_max_rows`` training rows,
generalised cross-validation (GCV) above, where the two agree because rows far outnumber features.
`ridge_to_state` / `ridge_from_state` turn a fitted ridge into plain data for a checkpoint and back.
``KmerRidgeBaseline(chains=...)`` fits a subset of the three chains (the heavy 1–3-mer ridge of
`abag.evaluation.variant_baselines`); with fewer training rows than features the spectrum comes from the rows x
rows kernel, and for wide feature sets (that ridge's 8,421) the features x features Gram is then never formed.

Imports from abag: ``encoding.kmers`` (k-mer counting) and ``policy`` (residue alphabet).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, sparse
from sklearn.exceptions import NotFittedError
from threadpoolctl import ThreadpoolController

from abag.data.cells import bool_mask
from abag.encoding.kmers import _clean, _encode, _kmer_frequencies
from abag.policy import AMINO_ACIDS

__all__ = [
    "AMINO_ACIDS",
    "CHAINS",
    "RIDGE_ALPHAS",
    "LOO_MAX_ROWS",
    "pair_features",
    "feature_width",
    "training_rows",
    "ChainTable",
    "chain_table",
    "RidgeFit",
    "RidgeDesign",
    "KmerRidgeBaseline",
    "ridge_to_state",
    "ridge_from_state",
]

CHAINS = ("heavy", "light", "antigen")
RIDGE_ALPHAS = np.logspace(-2, 4, 13)
LOO_MAX_ROWS = 20_000
"""Up to this many training rows alpha is chosen by exact leave-one-out; above, by GCV."""

_BLOCK = 4096  # chains or rows per block: every temporary stays at a few tens of MB
_GRAM_MAX_FEATURES = 2048
"""Up to this many features the d x d Gram is always formed (cheap); above it only when rows >= features (the
heavy 1–3-mer ridge's 8,421 features would need 570 MB for a Gram the kernel path never reads)."""


@dataclass(frozen=True)
class ChainTable:
    """The distinct (cleaned) chains of one column of a pair table and, per row, the index of its chain."""

    name: str                 # "heavy", "light" or "antigen"
    index: np.ndarray         # (rows,) int64 position of each row's chain in `sequences`
    sequences: list[str]      # distinct cleaned chains; '' = absent chain

    @property
    def counts(self) -> np.ndarray:
        """How many rows use each distinct chain."""
        return np.bincount(self.index, minlength=len(self.sequences))


def chain_table(df: pd.DataFrame, name: str) -> ChainTable:
    """Distinct chains of column ``name`` (a missing column or a missing value is an empty chain)."""
    if name not in df:
        return ChainTable(name, np.zeros(len(df), dtype=np.int64), [""])
    raw_index, raw = pd.factorize(df[name], use_na_sentinel=True)
    cleaned = np.array([_clean(s) for s in raw] + [""], dtype=object)  # last entry: missing values
    merged, sequences = pd.factorize(cleaned)  # 'ac' and 'AC' are one chain
    return ChainTable(name, merged[np.where(raw_index < 0, len(raw), raw_index)].astype(np.int64),
                      list(sequences))


def _residue_counts(sequences: Sequence[str]) -> np.ndarray:
    return np.array([len(s) - s.count("|") for s in sequences], dtype=float)


def _chain_width(name: str, ks: Sequence[int]) -> int:
    return sum(20**k for k in ks) + (2 if name == "light" else 1)


def _chain_features(sequences: Sequence[str], name: str, ks: Sequence[int]) -> np.ndarray:
    """Per chain: its k-mer composition for each k in ``ks``, then (light chains only) a present flag,
    then log1p(residue count); computed in blocks of chains."""
    out = np.empty((len(sequences), _chain_width(name, ks)))
    for start in range(0, len(sequences), _BLOCK):
        chunk = [_clean(s) for s in sequences[start:start + _BLOCK]]
        codes, owner = _encode(chunk)  # once for every k
        residues = _residue_counts(chunk)
        extras = [residues > 0] if name == "light" else []
        blocks = [_kmer_frequencies(codes, owner, len(chunk), k, False) for k in ks]
        out[start:start + len(chunk)] = np.hstack(blocks + [np.column_stack(extras + [np.log1p(residues)])])
    return out


def _chain_widths(ks: Sequence[int], chains: Sequence[str] = CHAINS) -> list[int]:
    return [_chain_width(name, ks) for name in chains]


def feature_width(ks: Sequence[int] = (1, 2)) -> int:
    """How many columns :func:`pair_features` has for the k-mer sizes ``ks``."""
    return sum(_chain_widths(ks))


def _pair_order(ks: Sequence[int]) -> np.ndarray:
    """Positions, in the per-chain block layout [heavy | light | antigen], of pair_features' columns."""
    comp = sum(20**k for k in ks)
    heavy, light, antigen = np.cumsum([0] + _chain_widths(ks))[:3]
    compositions = [np.arange(start, start + comp) for start in (heavy, light, antigen)]
    extras = [light + comp, heavy + comp, light + comp + 1, antigen + comp]  # flag, then the 3 lengths
    return np.concatenate(compositions + [np.array(extras)])


def pair_features(df: pd.DataFrame, ks: Sequence[int] = (1, 2)) -> np.ndarray:
    """[heavy | light | antigen] k-mer compositions for each k in ``ks``, then a light-present flag and
    log1p(residue count) of each chain. Dense (rows x features): for small frames; the ridge never builds it."""
    blocks = []
    for name in CHAINS:
        table = chain_table(df, name)
        blocks.append(_chain_features(table.sequences, name, ks)[table.index])
    return np.hstack(blocks)[:, _pair_order(ks)]


def training_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows usable for fitting: finite ``pkd`` and not ``censored``."""
    if "pkd" not in df:
        raise ValueError(f"baselines need a 'pkd' column; the table has {list(df.columns)}")
    pkd = pd.to_numeric(df["pkd"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    keep = np.isfinite(pkd)
    if "censored" in df:
        keep &= ~bool_mask(df["censored"], len(df))
    rows = df.loc[keep]
    if rows.empty:
        raise ValueError("no training rows with finite, uncensored pkd")
    return rows




def _targets(df: pd.DataFrame) -> np.ndarray:
    return pd.to_numeric(df["pkd"], errors="coerce").to_numpy(dtype=float)


# --------------------------------------------------------------------------- sufficient statistics
@dataclass(frozen=True)
class _CentredChains:
    """One chain column of the training rows: each distinct chain's features minus the row-weighted mean."""

    index: np.ndarray         # (rows,) chain of each row
    counts: np.ndarray        # (chains,) rows per chain
    values: np.ndarray        # (chains, width) centred features
    mean: np.ndarray          # (width,) row-weighted feature mean


def _centred_chains(df: pd.DataFrame, name: str, ks: Sequence[int]) -> _CentredChains:
    return _centred_table(chain_table(df, name), ks)


def _centred_table(table: ChainTable, ks: Sequence[int]) -> _CentredChains:
    values = _chain_features(table.sequences, table.name, ks)
    counts = table.counts
    mean = counts @ values / len(table.index)
    values -= mean
    return _CentredChains(table.index, counts, values, mean)


@dataclass(frozen=True)
class _RidgeStatistics:
    """Everything a ridge fit on standardised features needs, in the per-chain block layout."""

    rows: int
    mean: np.ndarray          # (d,) feature means over the rows
    scale: np.ndarray         # (d,) feature standard deviations (1 where constant), as StandardScaler
    gram: np.ndarray | None   # (d, d) sum of x xᵀ over the centred, standardised rows (None: not formed)
    xty: np.ndarray           # (d,) sum of x (y - ȳ)
    y_mean: float
    yty: float                # sum of (y - ȳ)²


def _row_blocks(n: int, size: int = _BLOCK) -> Iterator[slice]:
    return (slice(start, min(start + size, n)) for start in range(0, n, size))


def _weighted_gram(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """valuesᵀ diag(counts) values, by blocks of chains."""
    out = np.zeros((values.shape[1], values.shape[1]))
    for block in _row_blocks(len(values)):
        weighted = values[block] * np.sqrt(counts[block, None])
        out += weighted.T @ weighted  # NumPy computes aᵀa as a symmetric rank-k update: half the work
    return out


def _cross_gram(a: _CentredChains, b: _CentredChains) -> np.ndarray:
    """Sum over rows of a-features x b-featuresᵀ = aᵀ M b with M the (a chain, b chain) co-occurrence counts;
    the dense product runs over the side with fewer distinct chains."""
    pairs = sparse.csr_matrix((np.ones(a.index.size), (a.index, b.index)),
                              shape=(len(a.values), len(b.values)))
    if len(a.values) > len(b.values):
        return _cross_gram(b, a).T
    out = np.zeros((a.values.shape[1], b.values.shape[1]))
    for block in _row_blocks(len(a.values)):
        out += a.values[block].T @ (pairs[block] @ b.values)
    return out


def _constant(variance: np.ndarray, mean: np.ndarray, n: int) -> np.ndarray:
    """Features StandardScaler treats as constant (variance within rounding error of zero)."""
    eps = np.finfo(float).eps
    return variance <= n * eps * variance + (n * np.abs(mean) * eps) ** 2


def _spans(chains: Sequence[_CentredChains]) -> list[slice]:
    """Each chain's columns in the block layout."""
    edges = np.cumsum([0] + [c.values.shape[1] for c in chains])
    return [slice(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]


def _design_statistics(chains: Sequence[_CentredChains], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(feature means, scales, standardised XᵀX) of the ``n`` rows whose chains are ``chains``, without X. With
    fewer rows than features, and more than ``_GRAM_MAX_FEATURES`` features, the d x d XᵀX (which `_spectrum`
    then does not need) is not formed: None."""
    spans = _spans(chains)
    width = spans[-1].stop
    with_gram = n >= width or width <= _GRAM_MAX_FEATURES
    gram = np.zeros((width, width)) if with_gram else None
    squares = np.zeros(width)
    for i, a in enumerate(chains):
        if not with_gram:
            squares[spans[i]] = a.counts @ a.values**2
            continue
        gram[spans[i], spans[i]] = _weighted_gram(a.values, a.counts)
        for j in range(i + 1, len(chains)):
            gram[spans[i], spans[j]] = _cross_gram(a, chains[j])
            gram[spans[j], spans[i]] = gram[spans[i], spans[j]].T
    mean = np.concatenate([c.mean for c in chains])
    variance = (np.diag(gram) if with_gram else squares) / n
    scale = np.where(_constant(variance, mean, n), 1.0, np.sqrt(variance))
    if with_gram:
        gram /= np.outer(scale, scale)
    return mean, scale, gram


def _ridge_statistics(chains: Sequence[_CentredChains], y: np.ndarray,
                      design: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None) -> _RidgeStatistics:
    """The standardised XᵀX, Xᵀy of the rows whose chains are ``chains`` (block layout), without X; ``design``:
    their `_design_statistics`, when already computed (only Xᵀy depends on ``y``)."""
    n, y_mean = y.size, float(np.mean(y))
    mean, scale, gram = design if design is not None else _design_statistics(chains, n)
    centred_y = y - y_mean
    xty = np.zeros(len(mean))
    for span, a in zip(_spans(chains), chains):
        xty[span] = np.bincount(a.index, weights=centred_y, minlength=len(a.values)) @ a.values
    return _RidgeStatistics(n, mean, scale, gram, xty / scale, y_mean, float(centred_y @ centred_y))


# --------------------------------------------------------------------------- ridge solve and alpha
@dataclass(frozen=True)
class _Spectrum:
    """Eigenpairs of the standardised XᵀX (all of them, or the nonzero ones) and Xᵀ(y - ȳ) in that basis."""

    values: np.ndarray        # (r,) eigenvalues
    vectors: np.ndarray       # (d, r) eigenvectors
    projected: np.ndarray     # (r,) vectorsᵀ Xᵀ(y - ȳ)

    def shrink(self, alphas: np.ndarray) -> np.ndarray:
        """(r, alphas) matrix 1 / (eigenvalue + alpha)."""
        return 1.0 / (self.values[:, None] + alphas[None, :])


def _standardised_rows(chains: Sequence[_CentredChains], scale: np.ndarray, block: slice) -> np.ndarray:
    """The centred, standardised feature rows ``block`` of the training rows (block layout)."""
    return np.hstack([c.values[c.index[block]] for c in chains]) / scale


def _eigenpairs(chains: Sequence[_CentredChains], stats: _RidgeStatistics) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of the standardised XᵀX: of the d x d Gram, or, with fewer rows than features, of
    the rows x rows kernel X Xᵀ (same nonzero spectrum, cheaper; X is then at most d x d)."""
    if stats.rows >= len(stats.mean):
        values, vectors = linalg.eigh(stats.gram)
        return np.maximum(values, 0.0), vectors
    rows = _standardised_rows(chains, stats.scale, slice(None))
    values, left = linalg.eigh(rows @ rows.T)
    keep = values > values.max(initial=0.0) * len(values) * np.finfo(float).eps
    return values[keep], rows.T @ (left[:, keep] / np.sqrt(values[keep]))


def _spectrum(chains: Sequence[_CentredChains], stats: _RidgeStatistics,
              eigenpairs: tuple[np.ndarray, np.ndarray] | None = None) -> _Spectrum:
    """The spectrum of the standardised XᵀX (``eigenpairs`` when already computed) and Xᵀy in its basis."""
    values, vectors = eigenpairs if eigenpairs is not None else _eigenpairs(chains, stats)
    return _Spectrum(values, vectors, vectors.T @ stats.xty)


def _gcv_errors(stats: _RidgeStatistics, spectrum: _Spectrum, alphas: np.ndarray) -> np.ndarray:
    """GCV(alpha) = n RSS / (n - effective parameters)², the intercept counted as one parameter."""
    shrink, values = spectrum.shrink(alphas), spectrum.values[:, None]
    rss = stats.yty - (spectrum.projected[:, None] ** 2 * (values + 2 * alphas) * shrink**2).sum(0)
    dof = 1.0 + (values * shrink).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dof < stats.rows, stats.rows * np.maximum(rss, 0.0) / (stats.rows - dof) ** 2, np.inf)


def _loo_errors(chains: Sequence[_CentredChains], y: np.ndarray, stats: _RidgeStatistics, spectrum: _Spectrum,
                alphas: np.ndarray) -> np.ndarray:
    """Mean squared exact leave-one-out residual (y - ŷ) / (1 - h - 1/n) of each alpha, by blocks of rows."""
    shrink = spectrum.shrink(alphas)
    fitted = spectrum.projected[:, None] * shrink
    total = np.zeros(alphas.size)
    for block in _row_blocks(y.size, 2048):
        z = _standardised_rows(chains, stats.scale, block) @ spectrum.vectors
        residual = (y[block, None] - stats.y_mean) - z @ fitted
        leverage = (z**2) @ shrink + 1.0 / stats.rows
        with np.errstate(divide="ignore", invalid="ignore"):
            total += ((residual / (1.0 - leverage)) ** 2).sum(0)
    return total / y.size


@dataclass(frozen=True)
class RidgeFit:
    """A fitted ridge on standardised features (per-chain block layout) and how alpha was chosen."""

    alpha: float
    selection: str            # "leave-one-out" or "GCV"
    alphas: np.ndarray        # candidate penalties
    cv_error: np.ndarray      # mean squared cross-validation error of each candidate (LOO or GCV estimate)
    coef: np.ndarray          # (d,) coefficients of the standardised features
    mean: np.ndarray          # (d,) training feature means
    scale: np.ndarray         # (d,) training feature scales
    intercept: float          # prediction = intercept + raw features @ (coef / scale)
    rows: int                 # training rows


def _fit_ridge(chains: Sequence[_CentredChains], y: np.ndarray, alphas: np.ndarray,
              loo_max_rows: int = LOO_MAX_ROWS, design: RidgeDesign | None = None) -> RidgeFit:
    """Ridge on the standardised features of ``chains``; alpha among ``alphas`` with the lowest exact
    leave-one-out error (rows <= loo_max_rows) or GCV estimate (above); the first of equals wins. With
    ``design`` (of these rows) its XᵀX and eigenpairs are used instead of computed again."""
    if design is None:
        stats = _ridge_statistics(chains, y)
        spectrum = _spectrum(chains, stats)
    else:
        stats = _ridge_statistics(chains, y, (design.mean, design.scale, design.gram))
        spectrum = _spectrum(chains, stats, (design.values, design.vectors))
    alphas = np.asarray(alphas, dtype=float)
    if stats.rows <= loo_max_rows:
        selection, errors = "leave-one-out", _loo_errors(chains, y, stats, spectrum, alphas)
    else:
        selection, errors = "GCV", _gcv_errors(stats, spectrum, alphas)
    errors = np.where(np.isfinite(errors), errors, np.inf)
    best = int(np.argmin(errors))
    coef = spectrum.vectors @ (spectrum.projected * spectrum.shrink(alphas[best : best + 1])[:, 0])
    intercept = stats.y_mean - float(stats.mean @ (coef / stats.scale))
    return RidgeFit(float(alphas[best]), selection, alphas, errors, coef, stats.mean, stats.scale, intercept,
                    stats.rows)


# --------------------------------------------------------------------------- one design, several targets
@dataclass(frozen=True)
class RidgeDesign:
    """What a k-mer ridge computes from its training rows before it reads their target: each chain column's
    distinct chains and centred features, the feature means and scales, the standardised XᵀX and its eigenpairs.

    Ridges fitted on the same rows with the same ``ks`` and ``chains`` can share one
    (``KmerRidgeBaseline().fit(df, design=...)``): only Xᵀy depends on the target, so each fit is exactly the one
    it would be alone. `abag train` shares one between the familiar-antigen correction (on the network's
    residuals) and the k-mer baseline (on pKd), which fit the same training rows.
    """

    ks: tuple[int, ...]
    chains: tuple[str, ...]
    tables: tuple[ChainTable, ...]
    centred: tuple[_CentredChains, ...]
    mean: np.ndarray
    scale: np.ndarray
    gram: np.ndarray | None
    values: np.ndarray
    vectors: np.ndarray

    @classmethod
    def of(cls, df: pd.DataFrame, ks: Sequence[int] = (1, 2), chains: Sequence[str] = CHAINS) -> RidgeDesign:
        """The design of ``df``'s training rows (finite pKd, not censored) for a ridge with ``ks`` and ``chains``."""
        rows = training_rows(df)
        ks, chains = tuple(int(k) for k in ks), tuple(c for c in CHAINS if c in chains)
        with _one_blas_thread():
            tables = tuple(chain_table(rows, name) for name in chains)
            centred = tuple(_centred_table(table, ks) for table in tables)
            mean, scale, gram = _design_statistics(centred, len(rows))
            stand_in = _RidgeStatistics(len(rows), mean, scale, gram, np.zeros(len(mean)), 0.0, 0.0)
            values, vectors = _eigenpairs(centred, stand_in)
        return cls(ks, chains, tables, centred, mean, scale, gram, values, vectors)

    def describes(self, rows: pd.DataFrame, ks: tuple[int, ...], chains: tuple[str, ...]) -> bool:
        """Whether this is the design of ``rows`` (training rows, in this order) for ``ks`` and ``chains``."""
        if (ks, chains) != (self.ks, self.chains):
            return False
        for table in self.tables:
            other = chain_table(rows, table.name)
            if other.sequences != table.sequences or not np.array_equal(other.index, table.index):
                return False
        return True


# --------------------------------------------------------------------------- the ridge
@functools.cache
def _blas_controller() -> ThreadpoolController:
    # Built on first use, not at import; finding the loaded BLAS libraries takes ~2 ms, and a default training
    # enters ~100 of these contexts (its wide part fits a dozen ridges).
    return ThreadpoolController()


def _one_blas_thread() -> AbstractContextManager[Any]:
    """BLAS limited to one thread: the products here are thin (blocks of 4,096 x 421) and gain little from
    threads, while on shared cores two OpenBLAS threads made the 500k-row fit 4x slower (27 s vs 7 s)."""
    return _blas_controller().limit(limits=1, user_api="blas")


def _ks_label(ks: Sequence[int]) -> str:
    ks = sorted(ks)
    contiguous = ks == list(range(ks[0], ks[-1] + 1)) and len(ks) > 1
    return f"{ks[0]}-{ks[-1]}-mer" if contiguous else ",".join(map(str, ks)) + "-mer"


class KmerRidgeBaseline:
    """StandardScaler + ridge on :func:`pair_features`, from sufficient statistics of the distinct chains.

    Alpha (among ``alphas``) by exact efficient leave-one-out CV on the training rows, as sklearn's RidgeCV,
    when there are at most ``loo_max_rows`` of them, else by generalised cross-validation.

    ``chains``: the chain columns whose features enter (default heavy, light and antigen: :func:`pair_features`);
    a subset keeps each chain's block (its compositions, the light-present flag for light, its log1p length).
    """

    name = "kmer_ridge"

    def __init__(self, ks: Sequence[int] = (1, 2), alphas: Sequence[float] = tuple(RIDGE_ALPHAS),
                 loo_max_rows: int = LOO_MAX_ROWS, chains: Sequence[str] = CHAINS) -> None:
        if not ks or any(int(k) < 1 for k in ks):
            raise ValueError(f"ks must be a non-empty list of k-mer sizes >= 1, got {ks!r}")
        if not len(alphas) or any(a <= 0 for a in alphas):
            raise ValueError(f"alphas must be positive, got {alphas!r}")
        chains = tuple(chains)
        if not chains or len(set(chains)) != len(chains) or any(c not in CHAINS for c in chains):
            raise ValueError(f"chains must be distinct names among {CHAINS}, got {chains!r}")
        self.chains = tuple(c for c in CHAINS if c in chains)  # the block layout's order
        self.ks = tuple(int(k) for k in ks)
        self.alphas = np.asarray(alphas, dtype=float)
        self.loo_max_rows = int(loo_max_rows)
        self.fit_: RidgeFit | None = None
        self.distinct_chains_: dict[str, int] = {}

    def _fitted(self) -> RidgeFit:
        if self.fit_ is None:
            raise NotFittedError("KmerRidgeBaseline is not fitted")
        return self.fit_

    def fit(self, df: pd.DataFrame, design: RidgeDesign | None = None) -> KmerRidgeBaseline:
        """Fit on ``df``'s training rows. ``design`` (`RidgeDesign.of` the same rows) saves recomputing XᵀX and its
        eigenpairs; a design of other rows, ks or chains is not used (the fit is the same either way)."""
        rows = training_rows(df)
        with _one_blas_thread():
            if design is not None and not design.describes(rows, self.ks, self.chains):
                design = None
            if design is None:
                chains = [_centred_chains(rows, name, self.ks) for name in self.chains]
            else:
                chains = list(design.centred)
            self.distinct_chains_ = {name: int((c.counts > 0).sum()) for name, c in zip(self.chains, chains)}
            self.fit_ = _fit_ridge(chains, _targets(rows), self.alphas, self.loo_max_rows, design)
        return self

    @property
    def alpha_(self) -> float:
        """Ridge penalty selected by cross-validation."""
        return self._fitted().alpha

    @property
    def coef_(self) -> np.ndarray:
        """Coefficients of the standardised features, in :func:`pair_features` column order (with a chain
        subset: the per-chain blocks in ``chains`` order)."""
        coef = self._fitted().coef
        return coef[_pair_order(self.ks)] if self.chains == CHAINS else coef

    @property
    def method(self) -> str:
        """What was fitted and how alpha was chosen, for reports."""
        fit = self._fitted()
        chains = sum(self.distinct_chains_.values())
        which = "" if self.chains == CHAINS else f" of the {' + '.join(self.chains)} chain{'s' * (len(self.chains) > 1)}"
        return (f"ridge on standardised {_ks_label(self.ks)} composition{which} ({fit.coef.size:,} features), "
                f"sufficient statistics of {fit.rows:,} rows ({chains:,} distinct chains), "
                f"alpha {fit.alpha:g} by {'exact leave-one-out' if fit.selection == 'leave-one-out' else 'GCV'}")

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Predicted pKd per row: each distinct chain's contribution is computed once."""
        return self._fitted().intercept + sum(self.chain_contributions(df).values())

    def chain_contributions(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per chain of ``chains``, its term of each row's prediction (predict = intercept + sum)."""
        fit, edges, out = self._fitted(), np.cumsum([0] + _chain_widths(self.ks, self.chains)), {}
        weights = fit.coef / fit.scale
        for name, lo, hi in zip(self.chains, edges[:-1], edges[1:]):
            table = chain_table(df, name)
            with _one_blas_thread():
                out[name] = np.concatenate([_chain_features(table.sequences[block], name, self.ks) @ weights[lo:hi]
                                            for block in _row_blocks(len(table.sequences))])[table.index]
        return out


# --------------------------------------------------------------------------- checkpoint state
def ridge_to_state(ridge: KmerRidgeBaseline) -> dict[str, Any]:
    """A fitted k-mer ridge as plain data (lists and floats) for a checkpoint; `ridge_from_state` inverts it."""
    fit = ridge.fit_
    if fit is None:
        raise ValueError("the k-mer ridge is not fitted")
    return {"ks": list(ridge.ks), "alpha": fit.alpha, "selection": fit.selection, "rows": fit.rows,
            "coef": fit.coef.tolist(), "mean": fit.mean.tolist(), "scale": fit.scale.tolist(),
            "intercept": fit.intercept, "distinct_chains": dict(ridge.distinct_chains_),
            **({} if ridge.chains == CHAINS else {"chains": list(ridge.chains)})}  # a subset only: old states load


def ridge_from_state(state: Any) -> KmerRidgeBaseline:
    """A fitted k-mer ridge from `ridge_to_state` data; a malformed entry raises ValueError saying what is wrong."""
    try:
        ridge = KmerRidgeBaseline(ks=[int(k) for k in state["ks"]], chains=tuple(state.get("chains", CHAINS)))
        coef, mean, scale = (np.asarray(state[key], dtype=float) for key in ("coef", "mean", "scale"))
        alpha, intercept, rows = float(state["alpha"]), float(state["intercept"]), int(state["rows"])
        selection = str(state["selection"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"k-mer ridge state is unusable ({exc!r})") from None
    width = sum(_chain_widths(ridge.ks, ridge.chains))
    if not coef.shape == mean.shape == scale.shape == (width,):
        raise ValueError(f"k-mer ridge state has {coef.shape} coefficients for {width} features")
    ridge.fit_ = RidgeFit(alpha, selection, np.array([alpha]), np.array([np.nan]), coef, mean, scale, intercept, rows)
    ridge.distinct_chains_ = {str(k): int(v) for k, v in dict(state.get("distinct_chains", {})).items()}
    return ridge
