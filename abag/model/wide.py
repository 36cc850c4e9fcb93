"""The wide part of the model: a closed-form ridge on explicit sequence features of the pair.

    pKd = clamp[pkd_min, pkd_max]( wide(x) + deep(x) )

`wide(x)` (`ModelConfig.wide="kmer_ridge"`) is abag's k-mer ridge (`abag.model.ridge.KmerRidgeBaseline`:
standardised 1- and 2-mer composition of heavy, light and antigen, alpha by exact leave-one-out or GCV), plus a
heavy-chain 3-mer block fitted to what that ridge leaves (alpha by leaving out whole heavy chains; "no block" is a
candidate). The other kinds' "k-mer parts" are that ridge alone (`WideSpec.heavy_k` None): the block lowered their
held-out MSE but cost ranking, of one antibody's variants and within antigen clusters (bench/RESULTS.md).

`wide="ridge_choice"` is one of two candidates, whichever had the lower mean squared error of out-of-fold
predictions on the training rows with an exact pKd, over `CROSS_FIT_FOLDS` folds of the run's split groups
(`choose`; ties, and fewer than two groups, go to the k-mer parts): (0) the k-mer parts, or (1) a
ridge on the IMGT-aligned one-hot of VH and VL (`OneHotRidge`: `OneHotBlock` on the centred pKd; 21 columns per
position of a fixed grid, `abag.numbering.onehot.imgt_grid`, 7,056 in all; alpha by exact leave-one-antibody-out;
the antigen does not enter). Why: the one-hot sees where in the domain a residue sits, as composition cannot. Alone
it beat the k-mer ridge where that extrapolates badly across groups (SKEMPI per held-out complex, Phillips CR6261
to more substitutions) and lost elsewhere (CR9114, and narrowly SAAINT-DB antigen clusters). Folds of the run's
groups see the difference where the split holds out such groups (SKEMPI's complexes: the one-hot is chosen), not
where the test extrapolates along an axis the folds do not (CR6261 keeps the k-mers) (bench/RESULTS.md). Added
to the k-mer ridge (fitted to its residual) the one-hot block was never taken: both explain the same within-set
variance. `cross_fitted` keeps the candidate chosen on all the training rows (no choice per fold). A side that
cannot be numbered (or is absent) adds nothing, a residue off the grid is ignored, and both are counted
(`describe`); chains are numbered once per process (`abag.numbering.domains.SHARED_NUMBERING`).

`wide="ridge_blend"` weighs the same two candidates instead of picking one: (1 - w) x the k-mer parts + w x the
one-hot ridge, w the weight that minimises the same out-of-fold error (closed form), at most `BLEND_MAX_ONEHOT`
so the k-mer parts' antigen terms always count. Why: a pick is all or nothing on a criterion that is often within
noise (SAAINT-DB's antigen clusters), and where the one-hot ridge wins the pick it drops the antigen, so antigen
variants against a held-out antibody could no longer be ranked (AlphaSeq); the blend keeps both (bench/RESULTS.md).

`wide="grouped_blend"` is that blend fitted to each training row's deviation from its split group's mean pKd
(plus the overall mean ȳ), plus a level: the pair k-mer ridge fitted to each row's group mean, minus ȳ
(`_between_within`, `GroupLevel`); and the model's wide + deep passes a soft bound (`SoftBound`, applied in the
head before the clamp: `abag.model.wide.soft_bound`): inside the training pKd range it is unchanged, beyond it
by d it becomes the edge + m x d / (m + d), m the wide part's own held-out RMSE. Why the split: the groups
(antigen clusters, complexes) differ in level for reasons the antibody's residues do not carry (assay, antigen),
and one ridge over both questions lets a residue frequent in strong groups take the credit for their level;
fitted apart, the candidates learn what tells rows of one group apart and the level what tells groups apart, each
with its own penalty. Groups of one row on average (a random split's row ids) get no level, and neither does a
run without two groups. With a level, the blend's deviations are scaled by s_d^2 / (s_d^2 + s_o^2)
(`_within_scale`: on a group it has not seen the blend adds an offset of its own, s_o^2 its mean square over
held-out groups). With or without one comes a local term (`abag.model.local_kernel`): a kernel ridge, over the
IMGT-aligned one-hot of VH and VL and the antigen's 1-2-mer composition, fitted to what the (scaled) blend leaves out
of fold (`_fit_local`; "no term" a candidate, chosen over the same folds: the groups', random ones without), which
is 0 far from every training row and near them carries what additive parts cannot express: how this antibody's pKd
across antigens departs from the average antibody's (an antibody-by-antigen interaction), and how substitutions
combine in one antibody's variants (epistasis). Why the bound: linear effects add up without limit where a test set
holds more substitutions than the training rows (Phillips CR6261 trained on up to 4: predictions well past the
assay's top); the bound is strictly increasing, so no ranking changes, and it acts on the sum, so where the wide part
would be squeezed the deep part's noise does not take over the order (which bounding the wide part alone let
happen: bench/RESULTS.md).

`wide="grouped_kmer"` is `grouped_blend` without what needs numbering: the k-mer parts alone within groups (no
one-hot ridge), the same level, scale and bound, no local term; for tables too large to number (opt-in: it lost two
benchmarks to the familiar-antigen correction, bench/RESULTS.md, "A wide part without numbering").

The wide part is fitted on the member's own training rows before the network trains, so `deep(x)`, the head over
the language-model vectors (averaged over its head copies), learns the residual; the deep part's last layer
starts at zero, so an untrained model predicts clamp(wide(x)). While the network trains, its training rows carry
cross-fitted wide predictions (`cross_fitted`: each from a part fitted without that row's fold, folds of the run's
split groups where it has them): with more features than rows the ridge nearly interpolates its own rows, and
in-sample offsets would leave the deep part no residual to learn; validation and prediction use the full part.
After training the deep part is centred on the exact training rows (`abag.model.apply.centre_deep`): the level
is the wide part's; then scaled by its slope on the validation rows (`abag.model.apply.scale_deep`). The sum is
clamped before the loss (the v2.7 contract). A fold ensemble predicts the mean over its members of
clamp(wide_k(x) + deep_k(x)), each member with the wide part of its own training folds. `wide="none"` is the
network alone (wide = 0).

The fitted part lives in the head's state dict (`WideSlot`: buffers `head.wide.*`, float64 but for
`INTEGER_STATE`, shapes fixed by the kind; "ridge_choice" keeps both candidates, its choice and both errors), so
every checkpoint that holds a head holds its wide part and a resumed run reads it back instead of refitting.
Imports numpy, pandas, scipy, torch and abag's `model.ridge`, `encoding.kmers` and `numbering` (whose library is
imported when a one-hot block first numbers a chain).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy import linalg
from torch import nn

from abag.encoding.kmers import _clean, kmer_composition
from abag.model.config import BLEND_MAX_ONEHOT
from abag.model.local_kernel import (
    LOCAL_MAX_ROWS,
    LocalFit,
    LocalKernel,
    LocalRows,
    fit_local,
    local_out_of_fold,
)
from abag.model.ridge import (
    CHAINS,
    KmerRidgeBaseline,
    _one_blas_thread,
    _targets,
    feature_width,
    ridge_from_state,
    ridge_to_state,
    training_rows,
)
from abag.numbering.batch import number_chains
from abag.numbering.chains import NumberedChain
from abag.numbering.domains import SHARED_NUMBERING
from abag.numbering.onehot import ALPHABET, AlignedOneHotEncoder

__all__ = ["WIDE_SPECS", "WideSpec", "GroupLevel", "SoftBound", "soft_bound", "HeavyKmerBlock", "OneHotBlock",
           "local_rows",
           "OneHotTerm", "OneHotRidge", "WidePart", "WideSlot", "Choice", "fit_wide", "choose", "cross_fitted",
           "CROSS_FIT_FOLDS", "CANDIDATES", "INTEGER_STATE", "ONEHOT_ENCODER", "ONEHOT_WIDTH", "BLEND_MAX_ONEHOT"]


@dataclass(frozen=True)
class WideSpec:
    """What a wide kind fits: the k-mer sizes of the pair ridge and of the heavy-chain block (None: no block), and
    whether the one-hot ridge is a second candidate, chosen instead of the k-mer parts when it predicts held-out
    groups better (`choose`)."""

    ks: tuple[int, ...] = (1, 2)
    heavy_k: int | None = 3
    onehot: bool = False
    blend: bool = False  # with onehot: blend the two candidates (`choose`'s weight) instead of picking one
    # Fit the above to each row's deviation from its split group's mean pKd, and the pair k-mer ridge (the level) to
    # the group means (`_between_within`); without two groups, the above alone. Kinds with it also carry a soft bound.
    between: bool = False

    @property
    def cross_validated(self) -> bool:
        """Whether fitting predicts the training rows out of fold (`choose`): to pick or weigh the candidates, or
        for the level's within scale and the bound's margin."""
        return self.onehot or self.between


# The heavy block only in "kmer_ridge": in the one-hot kinds it lowered held-out MSE but cost ranking, of one
# antibody's variants and, in the level of "grouped_blend", within antigen clusters, where it let a heavy chain
# take the credit for its cluster's mean (bench/RESULTS.md, "The heavy 3-mer block against few variants").
WIDE_SPECS = {"kmer_ridge": WideSpec(), "ridge_choice": WideSpec(heavy_k=None, onehot=True),
              "ridge_blend": WideSpec(heavy_k=None, onehot=True, blend=True),
              "grouped_blend": WideSpec(heavy_k=None, onehot=True, blend=True, between=True),
              "grouped_kmer": WideSpec(heavy_k=None, between=True)}
"""The fitted kinds of `ModelConfig.wide` (besides "none")."""

HEAVY_BLOCK_MAX_CHAINS = 3000
"""The heavy 3-mer block is solved over distinct heavy chains (an eigendecomposition of their kernel, cubic in
their number); above this many it is fitted on a seeded sample of them (drawn over the chains in sorted order, so
the row order does not matter), which still gives every 3-mer of those chains a weight."""

HEAVY_BLOCK_ALPHAS = (np.inf, *np.logspace(-3, 3, 13))
"""Penalties of the heavy block relative to its kernel's mean diagonal; np.inf (no block) first, so it wins ties."""


# --------------------------------------------------------------------------- the heavy-chain block
@dataclass(frozen=True)
class HeavyKmerBlock:
    """A ridge on the heavy chain's k-mer frequencies, fitted to the residual of the pair ridge."""

    k: int
    coef: np.ndarray          # (20**k,) weight of each k-mer frequency
    shift: float              # training mean of the term (subtracted, so the block is centred on its rows)
    alpha: float              # relative penalty chosen (np.inf: no block)
    chains: int               # distinct heavy chains it was fitted on

    def predict(self, heavy: Sequence[str]) -> np.ndarray:
        """The block's term per row (each distinct chain computed once)."""
        codes, chains = pd.factorize(pd.Series([_clean(h) for h in heavy], dtype=object), use_na_sentinel=False)
        if not np.any(self.coef):
            return np.zeros(len(codes))
        values = kmer_composition(list(chains), self.k, sparse_output=True) @ self.coef - self.shift
        return np.asarray(values, dtype=float)[codes]

    @classmethod
    def fit(cls, heavy: Sequence[str], residual: np.ndarray, k: int = 3,
            max_chains: int = HEAVY_BLOCK_MAX_CHAINS) -> "HeavyKmerBlock":
        """Weighted ridge over distinct heavy chains (rows sharing a chain count by their number), solved in its
        kernel form; alpha by leave-one-chain-out error (exact, from the eigendecomposition)."""
        codes, chains = pd.factorize(pd.Series([_clean(h) for h in heavy], dtype=object), use_na_sentinel=False)
        counts = np.bincount(codes, minlength=len(chains)).astype(float)
        means = np.bincount(codes, weights=np.asarray(residual, float), minlength=len(chains)) / counts
        chains = np.asarray(chains, dtype=object)
        if len(chains) > max_chains:  # cubic in chains: a fixed, order-independent sample
            order = np.argsort(chains.astype(str), kind="stable")
            keep = np.sort(order[np.random.default_rng(0).permutation(len(chains))[:max_chains]])
            chains, counts, means = chains[keep], counts[keep], means[keep]
        width = 20**k
        if len(chains) < 3:
            return cls(k, np.zeros(width), 0.0, np.inf, len(chains))
        features = kmer_composition(list(chains), k, sparse_output=True)
        mean = np.asarray(counts @ features).ravel() / counts.sum()
        projected = np.asarray(features @ mean).ravel()
        kernel = (features @ features.T).toarray() - projected[:, None] - projected[None, :] + mean @ mean
        root = np.sqrt(counts)
        kernel *= np.outer(root, root)
        target = root * means
        with _one_blas_thread():
            values, vectors = linalg.eigh(kernel)
        values = np.maximum(values, 0.0)
        projected_target = vectors.T @ target
        scale = max(float(np.trace(kernel)) / len(chains), np.finfo(float).tiny)
        errors = []
        for alpha in HEAVY_BLOCK_ALPHAS:
            if np.isinf(alpha):
                errors.append(float(target @ target))
                continue
            gain = values / (values + alpha * scale)
            fitted = vectors @ (gain * projected_target)
            leverage = (vectors**2) @ gain
            with np.errstate(divide="ignore", invalid="ignore"):
                loo = (target - fitted) / (1.0 - leverage)
            errors.append(float(loo @ loo) if np.all(np.isfinite(loo)) else np.inf)
        alpha = float(HEAVY_BLOCK_ALPHAS[int(np.argmin(errors))])
        if np.isinf(alpha):
            return cls(k, np.zeros(width), 0.0, np.inf, len(chains))
        dual = root * (vectors @ (projected_target / (values + alpha * scale)))
        coef = np.asarray(features.T @ dual).ravel() - mean * dual.sum()
        return cls(k, coef, float(mean @ coef), alpha, len(chains))


# --------------------------------------------------------------------------- the aligned one-hot block
ONEHOT_ENCODER = AlignedOneHotEncoder.on_grid()
"""The one-hot block's columns: 21 per position of `abag.numbering.onehot.imgt_grid()`, heavy then light."""

ONEHOT_WIDTH = ONEHOT_ENCODER.n_features
"""Columns of the one-hot block (2 sides x 168 grid positions x 21 = 7,056)."""

ONEHOT_BLOCK_MAX_ANTIBODIES = HEAVY_BLOCK_MAX_CHAINS
"""The one-hot block is solved in the smaller of two exact forms: over distinct antibodies (their kernel) or over
the columns that vary among them (their Gram). When both exceed this many (or the column form's dense rows exceed
`ONEHOT_PRIMAL_MAX_CELLS`), it is fitted on a seeded sample of this many antibodies, as the heavy block is."""

ONEHOT_PRIMAL_MAX_CELLS = 20_000_000
"""Antibodies x varying columns up to which the column form holds its rows densely (float64: 160 MB)."""

ONEHOT_BLOCK_ALPHAS = HEAVY_BLOCK_ALPHAS
"""Penalties of the one-hot block relative to its kernel's mean diagonal; np.inf (no block) first, so it wins ties."""

_PREDICT_BLOCK = 16_384  # distinct chains encoded at a time when predicting

NUMBERING_WORKERS: int | None = None
"""Threads of the numbering library for new chains (None: `number_chains`' default, every core from 64 chains)."""


def _numbered(sequences: Sequence[str]) -> list[NumberedChain | None]:
    """Each (upper-case) sequence numbered, from `SHARED_NUMBERING` where it can be; "" (no chain) gives None."""
    wanted = [s for s in sequences if s]
    chains = number_chains(wanted, cache=SHARED_NUMBERING, workers=NUMBERING_WORKERS).chains
    found = dict(zip(wanted, chains))
    return [found[s] if s else None for s in sequences]


@dataclass(frozen=True)
class _SideRows:
    """The one-hot rows of one side's distinct chains."""

    matrix: sp.csr_matrix     # (chains, ONEHOT_WIDTH), float64 zeros and ones (a zero row where `numbered` is False)
    numbered: np.ndarray      # bool per chain: it has a domain of this side
    unnumbered: np.ndarray    # bool per chain: a chain was given but has no domain of this side
    off_grid: np.ndarray      # residues per chain at IMGT positions off the grid (ignored)


def _side_rows(chains: Sequence[str], side: str) -> _SideRows:
    numbered = _numbered(chains)
    absent: list[NumberedChain | None] = [None] * len(numbered)
    pair = (numbered, absent) if side == "heavy" else (absent, numbered)
    features = ONEHOT_ENCODER.transform(*pair, dtype=np.float64)
    missing = np.asarray(features.missing_heavy if side == "heavy" else features.missing_light, bool)
    given = np.array([chain is not None for chain in numbered], dtype=bool)
    return _SideRows(features.matrix, given & ~missing, missing, np.asarray(features.unseen, np.int64))


def _distinct(chains: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
    codes, distinct = pd.factorize(pd.Series([_clean(c) for c in chains], dtype=object), use_na_sentinel=False)
    return np.asarray(codes, np.int64), list(distinct)


LOCAL_ANTIGEN_KS = (1, 2)
"""k-mer sizes of the antigen composition the local term's kernel compares (`abag.model.local_kernel`)."""


def local_rows(frame: pd.DataFrame) -> LocalRows:
    """What the local term reads of `frame`'s rows: the IMGT-aligned one-hot of VH and VL on the fixed grid (each
    distinct chain numbered once) and the 1- and 2-mer composition of each distinct antigen (rounded to float32, as
    a fitted term stores its training rows' compositions)."""
    heavy = [_clean(c) for c in frame["heavy"]]
    light = [_clean(c) for c in _light(frame)]
    onehot = ONEHOT_ENCODER.transform(_numbered(heavy), _numbered(light), dtype=np.float64).matrix
    index, antigens = pd.factorize(frame["antigen"].astype(str), use_na_sentinel=False)
    compositions = np.hstack([kmer_composition(list(antigens), k) for k in LOCAL_ANTIGEN_KS]).astype(np.float32)
    return LocalRows.of(onehot, compositions, np.asarray(index, np.int64))


@dataclass(frozen=True)
class OneHotTerm:
    """The one-hot block's term per row, and what its rows could not show."""

    values: np.ndarray        # (rows,)
    unnumbered_heavy: int     # rows whose heavy chain has no heavy domain (that side contributes nothing)
    unnumbered_light: int     # rows with a light chain that has no light domain
    off_grid: int             # residues of the rows' chains at positions off the grid (summed over rows)


@dataclass(frozen=True)
class _Side:
    """One side's rows of the distinct antibodies, on its varying columns, and which rows have that side."""

    matrix: sp.csr_matrix     # (antibodies, columns) zeros and ones
    present: np.ndarray       # (antibodies,) 1.0 where the side was numbered, else 0.0 (its centred row is zero)
    columns: np.ndarray       # its columns among the block's ONEHOT_WIDTH


def _varying_columns(matrix: sp.csr_matrix, present: np.ndarray) -> np.ndarray:
    """Columns of a 0/1 matrix that are not the same in every present row."""
    sums = np.asarray(matrix[present > 0].sum(axis=0)).ravel()
    return np.flatnonzero((sums > 0) & (sums < int((present > 0).sum())))


def _loo_errors(target: np.ndarray, fitted_for: Callable[[float], np.ndarray],
                leverage_for: Callable[[float], np.ndarray], alphas: Sequence[float],
                mean_leverage: np.ndarray) -> list[float]:
    """Sum of squared exact leave-one-out residuals per alpha (np.inf: no block, the mean alone).

    The target is centred on its (weighted) mean, which leaving a row out moves too: each row's leverage is the
    block's plus the mean's (`mean_leverage`, its weight over the total; the block's columns are centred on the
    same mean, so the two add exactly). Without it, a block that nearly interpolates its rows (more columns than
    antibodies, a small penalty) looked better than no block on pure noise."""
    errors = []
    for alpha in alphas:
        fitted, leverage = (0.0, 0.0) if np.isinf(alpha) else (fitted_for(alpha), leverage_for(alpha))
        with np.errstate(divide="ignore", invalid="ignore"):
            loo = (target - fitted) / (1.0 - mean_leverage - leverage)
        errors.append(float(loo @ loo) if np.all(np.isfinite(loo)) else np.inf)
    return errors


@dataclass(frozen=True)
class _Solve:
    """One exact form of the weighted ridge: for a penalty, the fitted targets, the leverages and each side's
    coefficients; `scale`: the centred kernel's mean diagonal (penalties are relative to it)."""

    fitted: Callable[[float], np.ndarray]
    leverage: Callable[[float], np.ndarray]
    coefs: Callable[[float], list[np.ndarray]]
    scale: float


def _dual_solve(sides: Sequence[_Side], centres: list[np.ndarray], root: np.ndarray, target: np.ndarray) -> _Solve:
    """Over the antibodies: eigendecomposition of their n x n kernel (integer, exact in float32; centred in
    float64), coefficients back through the rows."""
    n = len(root)
    kernel = np.zeros((n, n))
    for side, centre in zip(sides, centres):
        dense = side.matrix.toarray().astype(np.float32)
        part = (dense @ dense.T).astype(np.float64)
        del dense
        projected = np.asarray(side.matrix @ centre).ravel()
        part += centre @ centre - projected[:, None] - projected[None, :]
        part *= np.outer(side.present, side.present)
        kernel += part
    kernel *= np.outer(root, root)
    values, vectors = linalg.eigh(kernel)
    values = np.maximum(values, 0.0)
    projected_target, squares = vectors.T @ target, vectors**2

    def coefs(penalty: float) -> list[np.ndarray]:
        dual = root * (vectors @ (projected_target / (values + penalty)))
        return [np.asarray(side.matrix.T @ (dual * side.present)).ravel() - centre * (dual * side.present).sum()
                for side, centre in zip(sides, centres)]

    return _Solve(lambda penalty: vectors @ (values / (values + penalty) * projected_target),
                  lambda penalty: squares @ (values / (values + penalty)), coefs,
                  max(float(np.trace(kernel)) / n, np.finfo(float).tiny))


def _primal_solve(sides: Sequence[_Side], centres: list[np.ndarray], root: np.ndarray, target: np.ndarray) -> _Solve:
    """Over the columns: eigendecomposition of the p x p Gram of the centred, weighted rows (held densely)."""
    rows = np.hstack([(side.matrix.toarray() - centre) * side.present[:, None] for side, centre in zip(sides, centres)])
    rows *= root[:, None]
    gram = rows.T @ rows
    values, vectors = linalg.eigh(gram)
    values = np.maximum(values, 0.0)
    rotated = rows @ vectors
    del rows
    projected_target, squares = rotated.T @ target, rotated**2
    edges = np.cumsum([0] + [len(s.columns) for s in sides])

    def coefs(penalty: float) -> list[np.ndarray]:
        coef = vectors @ (projected_target / (values + penalty))
        return [coef[lo:hi] for lo, hi in zip(edges[:-1], edges[1:])]

    return _Solve(lambda penalty: rotated @ (projected_target / (values + penalty)),
                  lambda penalty: squares @ (1.0 / (values + penalty)), coefs,
                  max(float(np.trace(gram)) / len(root), np.finfo(float).tiny))


def _weighted_ridge(sides: Sequence[_Side], counts: np.ndarray, means: np.ndarray, form: str | None = None,
                    alphas: Sequence[float] = ONEHOT_BLOCK_ALPHAS) -> tuple[list[np.ndarray], list[float], float]:
    """A ridge of `means` on the antibodies' rows (each weighing `counts`), each side's columns centred on the
    weighted mean of the antibodies that have that side (an antibody without it: a zero centred row there), alpha
    relative to the centred kernel's mean diagonal by exact leave-one-antibody-out error.

    Solved over the antibodies (`form="dual"`: their n x n kernel) or over the columns ("primal": the p x p
    Gram), whichever is smaller unless `form` says; both give the same fit. Returns each side's coefficients, each
    side's centring (its weighted mean term) and alpha (coefficients zero for inf)."""
    n, p = len(counts), sum(len(s.columns) for s in sides)
    root = np.sqrt(counts)
    target = root * means
    centres = []
    for side in sides:
        weights = counts * side.present
        centres.append(np.asarray(weights @ side.matrix).ravel() / max(weights.sum(), np.finfo(float).tiny))
    with _one_blas_thread():
        solve = (_dual_solve if (form or ("dual" if n <= p else "primal")) == "dual" else _primal_solve)(
            sides, centres, root, target)
        errors = _loo_errors(target, lambda a: solve.fitted(a * solve.scale),
                             lambda a: solve.leverage(a * solve.scale), alphas, counts / counts.sum())
        alpha = float(alphas[int(np.argmin(errors))])
        if np.isinf(alpha):
            return [np.zeros(len(s.columns)) for s in sides], [0.0] * len(sides), alpha
        coefs = solve.coefs(alpha * solve.scale)
    return coefs, [float(c @ w) for c, w in zip(centres, coefs)], alpha


@dataclass(frozen=True)
class OneHotBlock:
    """A ridge on the IMGT-aligned one-hot of VH and VL (fixed grid), fitted to a centred target.

    Its term is the sum over the two sides of (the side's one-hot row @ coef - the side's `shift`); a side with no
    numbered domain (a chain that cannot be numbered, or no light chain) contributes nothing, so an antibody
    with neither side numbered gets no term at all."""

    coef: np.ndarray          # (ONEHOT_WIDTH,) weight of each grid position's residue (or gap), heavy then light
    shift: tuple[float, float]  # heavy's and light's training mean term (subtracted: each side is centred)
    alpha: float              # relative penalty chosen (np.inf: no block)
    antibodies: int           # distinct heavy+light pairs it was fitted on
    unnumbered: tuple[int, int] = (0, 0)  # distinct training heavy / light chains with no domain of their side
    off_grid: int = 0         # residues of the distinct training chains at positions off the grid (ignored)

    def _side_terms(self, chains: Sequence[str], side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(term, unnumbered, residues off the grid) per distinct chain of one side, by blocks of chains (the
        sparse rows of a block at a time: a few tens of MB)."""
        shift = self.shift[0 if side == "heavy" else 1]
        terms, unnumbered, off_grid = np.zeros(len(chains)), np.zeros(len(chains), bool), np.zeros(len(chains), int)
        for start in range(0, len(chains), _PREDICT_BLOCK):
            block = slice(start, start + _PREDICT_BLOCK)
            rows = _side_rows(chains[block], side)
            terms[block] = np.where(rows.numbered, np.asarray(rows.matrix @ self.coef) - shift, 0.0)
            unnumbered[block], off_grid[block] = rows.unnumbered, rows.off_grid
        return terms, unnumbered, off_grid

    def evaluate(self, heavy: Sequence[Any], light: Sequence[Any]) -> OneHotTerm:
        """The block's term per row and its counts (each distinct chain numbered and encoded once; sparse rows
        times the coefficients, never a dense row matrix)."""
        if len(heavy) != len(light):
            raise ValueError(f"{len(heavy)} heavy chains but {len(light)} light chains")
        heavy_codes, heavy_chains = _distinct(heavy)
        light_codes, light_chains = _distinct(light)
        heavy_terms, heavy_unnumbered, heavy_off = self._side_terms(heavy_chains, "heavy")
        light_terms, light_unnumbered, light_off = self._side_terms(light_chains, "light")
        return OneHotTerm(heavy_terms[heavy_codes] + light_terms[light_codes],
                          int(heavy_unnumbered[heavy_codes].sum()), int(light_unnumbered[light_codes].sum()),
                          int(heavy_off[heavy_codes].sum() + light_off[light_codes].sum()))

    def predict(self, heavy: Sequence[Any], light: Sequence[Any]) -> np.ndarray:
        """The block's term per row (zeros, without numbering, when there is no block)."""
        if len(heavy) != len(light):
            raise ValueError(f"{len(heavy)} heavy chains but {len(light)} light chains")
        if not np.any(self.coef):
            return np.zeros(len(heavy))
        return self.evaluate(heavy, light).values

    @classmethod
    def fit(cls, heavy: Sequence[Any], light: Sequence[Any], residual: np.ndarray,
            max_antibodies: int = ONEHOT_BLOCK_MAX_ANTIBODIES, form: str | None = None) -> "OneHotBlock":
        """Weighted ridge over distinct antibodies (rows sharing VH and VL count by their number); alpha by exact
        leave-one-antibody-out error. `form` ("dual" or "primal") forces one solve (tests: they agree)."""
        if not len(heavy) == len(light) == len(residual):
            raise ValueError(f"{len(heavy)} heavy chains, {len(light)} light chains, {len(residual)} residuals")
        if not len(heavy):
            return cls(np.zeros(ONEHOT_WIDTH), (0.0, 0.0), np.inf, 0)
        heavy_codes, heavy_chains = _distinct(heavy)
        light_codes, light_chains = _distinct(light)
        pair_codes, pairs = pd.factorize(heavy_codes * len(light_chains) + light_codes)
        pairs = np.asarray(pairs, np.int64)
        counts = np.bincount(pair_codes, minlength=len(pairs)).astype(float)
        means = np.bincount(pair_codes, weights=np.asarray(residual, float), minlength=len(pairs)) / counts
        vh, vl = _side_rows(heavy_chains, "heavy"), _side_rows(light_chains, "light")
        unnumbered = (int(vh.unnumbered.sum()), int(vl.unnumbered.sum()))
        off_grid = int(vh.off_grid.sum() + vl.off_grid.sum())
        on_heavy, on_light = pairs // len(light_chains), pairs % len(light_chains)
        rows = [(vh.matrix[on_heavy], vh.numbered[on_heavy].astype(float)),
                (vl.matrix[on_light], vl.numbered[on_light].astype(float))]
        n = len(pairs)

        def sides(keep: np.ndarray | slice = slice(None)) -> list[_Side]:
            out = []
            for matrix, present in rows:  # each side's rows hold only its own columns of the block
                matrix, present = matrix[keep], present[keep]
                varying = _varying_columns(matrix, present)
                out.append(_Side(matrix[:, varying].tocsr(), present, varying))
            return out

        chosen = sides()
        p = sum(len(s.columns) for s in chosen)
        if n > max_antibodies and (p > max_antibodies or (n > p and n * p > ONEHOT_PRIMAL_MAX_CELLS)):
            names = np.array([f"{heavy_chains[a]}/{light_chains[b]}" for a, b in zip(on_heavy, on_light)], dtype=str)
            order = np.argsort(names, kind="stable")  # a fixed sample, in name order: the row order does not matter
            keep = order[np.sort(np.random.default_rng(0).permutation(n)[:max_antibodies])]
            chosen, counts, means, n = sides(keep), counts[keep], means[keep], len(keep)
        empty = cls(np.zeros(ONEHOT_WIDTH), (0.0, 0.0), np.inf, n, unnumbered, off_grid)
        if n < 3 or not any(len(s.columns) for s in chosen):
            return empty
        coefs, shifts, alpha = _weighted_ridge(chosen, counts, means, form)
        if np.isinf(alpha):
            return empty
        full = np.zeros(ONEHOT_WIDTH)
        for side, coef in zip(chosen, coefs):
            full[side.columns] = coef
        return cls(full, (shifts[0], shifts[1]), alpha, n, unnumbered, off_grid)


# --------------------------------------------------------------------------- the wide part
CANDIDATES = ("k-mer ridge", "one-hot ridge")
"""The candidates of "ridge_choice", by `WidePart.choice`: 0, the k-mer parts ("kmer_ridge"'s); 1, `OneHotRidge`."""

INTEGER_STATE = ("choice", "cv_folds", "level_groups", "local_antigen_index")
"""`to_state` tensors held as int64 (the others are float64 but for `STATE_DTYPES`)."""

STATE_DTYPES = {**{name: torch.int64 for name in INTEGER_STATE}, "local_codes": torch.uint8,
                "local_antigens": torch.float32}
"""The dtype of every `to_state` tensor that is not float64."""


CROSS_FIT_FOLDS = 5
"""Folds of the training rows for the cross-fitted wide predictions the network trains against, and for the
choice of a "ridge_choice" part."""


def cross_fit_folds(n: int, groups: np.ndarray | None, folds: int = CROSS_FIT_FOLDS, seed: int = 0) -> np.ndarray:
    """Fold (0..K-1) of each of `n` rows: whole groups dealt to folds when `groups` are given (and there are at
    least two), else single rows; seeded, so a resumed run deals the same folds."""
    rng = np.random.default_rng(seed)
    if groups is not None:
        codes, distinct = pd.factorize(pd.Series(np.asarray(groups).astype(str)))
        if len(distinct) >= 2:
            order = rng.permutation(len(distinct))
            fold_of_group = np.empty(len(distinct), dtype=np.int64)
            fold_of_group[order] = np.arange(len(distinct)) % min(folds, len(distinct))
            return fold_of_group[codes]
    fold = np.empty(n, dtype=np.int64)
    fold[rng.permutation(n)] = np.arange(n) % max(1, min(folds, n))
    return fold


def _kmer_parts(rows: pd.DataFrame, spec: WideSpec) -> tuple[KmerRidgeBaseline, HeavyKmerBlock | None]:
    """The pair k-mer ridge and the heavy block on its in-sample residual, fitted on `rows` (usable rows only)."""
    ridge = KmerRidgeBaseline(ks=spec.ks).fit(rows)
    heavy = None
    if spec.heavy_k is not None:
        residual = _targets(rows) - ridge.predict(rows)
        heavy = HeavyKmerBlock.fit(rows["heavy"].tolist(), residual, spec.heavy_k)
    return ridge, heavy


def _kmer_predict(ridge: KmerRidgeBaseline, heavy: HeavyKmerBlock | None, frame: pd.DataFrame) -> np.ndarray:
    out = ridge.predict(frame)
    if heavy is not None:
        out = out + heavy.predict(frame["heavy"].tolist())
    return out


@dataclass(frozen=True)
class OneHotRidge:
    """Candidate 1 of "ridge_choice": the training rows' mean pKd plus the one-hot block fitted to the pKd minus
    that mean (the antigen does not enter)."""

    mean: float
    block: OneHotBlock

    @classmethod
    def fit(cls, rows: pd.DataFrame) -> "OneHotRidge":
        """Fit on `rows` (usable rows only)."""
        target = _targets(rows)
        mean = float(target.mean())
        return cls(mean, OneHotBlock.fit(rows["heavy"].tolist(), _light(rows), target - mean))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.mean + self.block.predict(frame["heavy"].tolist(), _light(frame))


def _candidate(rows: pd.DataFrame, spec: WideSpec, weight: float) -> Callable[[pd.DataFrame], np.ndarray]:
    """The candidates fitted on `rows` (usable rows only) and combined with the one-hot ridge's `weight` (0: the
    k-mer parts alone, 1: the one-hot ridge alone; "ridge_choice" is 0 or 1), as a predict function."""
    if weight == 0:
        ridge, heavy = _kmer_parts(rows, spec)
        return lambda frame: _kmer_predict(ridge, heavy, frame)
    if weight == 1:
        return OneHotRidge.fit(rows).predict
    kmer, onehot = _candidate(rows, spec, 0.0), _candidate(rows, spec, 1.0)
    return lambda frame: _blend(kmer(frame), onehot(frame), weight)


def _blend(kmer: np.ndarray, onehot: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) x the k-mer parts + weight x the one-hot ridge."""
    return kmer + weight * (onehot - kmer)


@dataclass(frozen=True)
class Choice:
    """Which candidate predicted held-out rows better (`choose`)."""

    choice: int                       # index into CANDIDATES ("ridge_blend": 1 when the one-hot has any weight)
    rmse: tuple[float, float]         # each candidate's held-out RMSE (nan: not cross-validated)
    folds: int                        # folds scored (0: fewer than two groups or folds, the k-mer parts kept)
    # The chosen candidate's (or blend's) out-of-fold prediction for every row of a scored fold (NaN elsewhere;
    # None when not cross-validated): `cross_fitted` would compute the same, so `prepare_wide` passes them on.
    out_of_fold: np.ndarray | None = field(default=None, compare=False, repr=False)
    weight: float = 0.0               # the one-hot ridge's weight in the prediction ("ridge_choice": the choice)
    blend_rmse: float = np.nan        # "ridge_blend": the blend's held-out RMSE at that weight


def choose(frame: pd.DataFrame, kind: str, groups: np.ndarray | None = None,
           folds: int = CROSS_FIT_FOLDS) -> Choice:
    """The candidate of `kind` ("ridge_choice") with the lower mean squared error of out-of-fold predictions on
    `frame`'s rows with an exact pKd, over `cross_fit_folds(len(frame), groups, folds)` (the folds `cross_fitted`
    deals); each candidate is fitted on a fold's complement (its usable rows), a fold whose complement has none is
    not scored. The k-mer parts (0) win ties, and are kept without cross-validation when `groups` has fewer than
    two distinct values or no fold can be scored.

    For "ridge_blend", the one-hot ridge's weight w in (1 - w) x k-mer parts + w x one-hot ridge that minimises
    the same error (in closed form: it is quadratic in w), within [0, `BLEND_MAX_ONEHOT`]. For "grouped_kmer"
    (no one-hot ridge) the k-mer parts' out-of-fold predictions alone, which its scale and bound read."""
    spec = _spec(kind)
    frame = frame.reset_index(drop=True)
    if groups is not None and len(groups) != len(frame):
        raise ValueError(f"{len(frame)} rows but {len(groups)} groups")
    kept = Choice(0, (np.nan, np.nan), 0)
    if not spec.cross_validated or (groups is not None and len(pd.unique(np.asarray(groups).astype(str))) < 2):
        return kept
    usable = np.zeros(len(frame), bool)
    usable[training_rows(frame).index] = True
    target = _targets(frame)
    fold = cross_fit_folds(len(frame), groups, folds)
    errors: list[list[np.ndarray]] = [[], []]
    predicted = np.full((2, len(frame)), np.nan)
    for k in np.unique(fold[usable]):
        held_out = fold == k
        if not usable[~held_out].any():
            continue
        rows, scored = frame.loc[~held_out & usable], usable[held_out]
        # Every held-out row is predicted (censored ones too), only exact ones scored; without a one-hot ridge
        # ("grouped_kmer") the k-mer parts alone, for the within scale and the bound's margin.
        for choice in (0, 1) if spec.onehot else (0,):
            predicted[choice, held_out] = _candidate(rows, spec, float(choice))(frame.loc[held_out])
            errors[choice].append(predicted[choice, held_out][scored] - target[held_out][scored])
    if not errors[0]:
        return kept
    rmse = tuple(float(np.sqrt(np.mean(np.concatenate(e) ** 2))) if e else np.nan for e in errors)
    if not spec.blend:
        choice = int(rmse[1] < rmse[0])
        return Choice(choice, (rmse[0], rmse[1]), len(errors[0]), predicted[choice], float(choice))
    kmer_error, onehot_error = np.concatenate(errors[0]), np.concatenate(errors[1])
    step = onehot_error - kmer_error  # the error moves by w x step as the one-hot's weight goes from 0 to w
    weight = float(np.clip(-(kmer_error @ step) / (step @ step), 0.0, BLEND_MAX_ONEHOT)) if step @ step > 0 else 0.0
    blend_rmse = float(np.sqrt(np.mean((kmer_error + weight * step) ** 2)))
    return Choice(int(weight > 0), (rmse[0], rmse[1]), len(errors[0]), _blend(predicted[0], predicted[1], weight),
                  weight, blend_rmse)


@dataclass(frozen=True)
class BetweenWithin:
    """A training table split for `WideSpec.between`: `within` carries each row's pKd minus its group's mean plus
    the overall mean (what the candidates fit), `level` each row's group mean (what the level ridge fits)."""

    within: pd.DataFrame
    level: pd.DataFrame
    mean: float       # the overall mean pKd of the rows with an exact one
    groups: int       # distinct groups


def _between_within(frame: pd.DataFrame, groups: np.ndarray | None) -> BetweenWithin | None:
    """`frame` (index reset) split into within-group deviations and group means over its rows with an exact pKd
    (a group with none takes the overall mean; censored rows move with their group's level, and are fitted by
    neither); None without at least two groups, without an exact pKd, or with fewer than two exact rows per group
    on average (rows as their own groups, as a random split's row ids: a one-row group's mean is its pKd, and the
    within part would have nothing to learn)."""
    if groups is None:
        return None
    frame = frame.reset_index(drop=True)
    if len(groups) != len(frame):
        raise ValueError(f"{len(frame)} rows but {len(groups)} groups")
    labels = pd.Series(np.asarray(groups).astype(str))
    if labels.nunique() < 2:
        return None
    try:
        exact = training_rows(frame).index
    except ValueError:
        return None
    if len(exact) < 2 * labels[exact].nunique():
        return None
    pkd = pd.Series(_targets(frame))
    mean = float(pkd[exact].mean())
    group_mean = labels.map(pkd[exact].groupby(labels[exact]).mean()).fillna(mean).to_numpy()
    within, level = frame.copy(), frame.copy()
    within["pkd"] = pkd.to_numpy() - group_mean + mean
    level["pkd"] = group_mean
    return BetweenWithin(within, level, mean, int(labels.nunique()))


@dataclass(frozen=True)
class GroupLevel:
    """The level of "grouped_blend": the pair k-mer ridge (never a heavy block: in the level it let a heavy chain
    take the credit for its cluster's mean) fitted to each training row's split-group mean pKd; `predict` gives it
    minus the overall mean, around which the candidates predict, their deviations from it scaled by
    `within_scale` (`_within_scale`)."""

    ridge: KmerRidgeBaseline
    mean: float   # the overall mean pKd of the exact training rows
    groups: int   # distinct split groups it was fitted over
    within_scale: float = 1.0  # the factor on the candidates' deviation from `mean`, in (0, 1]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.ridge.predict(frame) - self.mean


def _level(split: BetweenWithin, spec: WideSpec, keep: np.ndarray | None = None,
           within_scale: float = 1.0) -> GroupLevel:
    """The level fitted to the group means of `split`'s rows (those in `keep`)."""
    rows = split.level if keep is None else split.level.loc[keep]
    return GroupLevel(KmerRidgeBaseline(ks=spec.ks).fit(training_rows(rows)), split.mean, split.groups,
                      within_scale)


def _within_scale(fits: pd.DataFrame, groups: np.ndarray, candidates: np.ndarray | None, mean: float) -> float:
    """s_d^2 / (s_d^2 + s_o^2): s_d^2 the mean squared within-group deviation of `fits`' exact rows (`fits`: the
    within table, index reset), s_o^2 the mean squared offset of the candidates' out-of-fold predictions of those
    deviations, each row's offset the mean of its group's; 1 when they were not cross-validated.

    Why: on a group none of its folds saw, the candidates' prediction is the group's deviations plus an offset of
    their own (weights learnt from small differences inside groups, met by a whole new sequence); what the
    deviations and the offsets measure over held-out groups is the signal-to-noise shrinkage of a deviation seen
    through that offset, a factor read off the training folds (bench/RESULTS.md, "A local term on what the linear
    part leaves"). Scaling keeps every order inside a group."""
    if candidates is None:
        return 1.0
    scored = np.zeros(len(fits), bool)
    scored[training_rows(fits).index.to_numpy()] = True
    scored &= np.isfinite(candidates)
    if not scored.any():
        return 1.0
    deviation = _targets(fits)[scored] - mean
    predicted = pd.Series(candidates[scored] - mean)
    offsets = predicted.groupby(np.asarray(groups).astype(str)[scored]).transform("mean").to_numpy()
    signal, offset = float(np.mean(deviation ** 2)), float(np.mean(offsets ** 2))
    return signal / (signal + offset) if signal > 0 else 1.0


def _scaled(candidates: np.ndarray, mean: float, scale: float) -> np.ndarray:
    """The candidates' deviations from `mean` times `scale` (`GroupLevel.within_scale`), around `mean`."""
    return mean + scale * (candidates - mean)


@dataclass(frozen=True)
class SoftBound:
    """A strictly increasing map that leaves values inside [low, high] alone and takes a value beyond by d to
    less than `margin` beyond: high + margin x d / (margin + d) (low likewise), slope 1 at the edge. It keeps every
    ranking (a rational curve, not tanh, which rounds to its limit in float64 about 19 margins out)."""

    low: float
    high: float
    margin: float

    def apply(self, values: np.ndarray) -> np.ndarray:
        """`soft_bound` on `values`, in float64."""
        return soft_bound(torch.as_tensor(np.asarray(values, dtype=np.float64)), self.low, self.high,
                          self.margin).numpy()


def soft_bound(x: torch.Tensor, low: float, high: float, margin: float) -> torch.Tensor:
    """`x` unchanged inside [low, high]; past high by d, high + margin·d/(margin + d) (below low likewise): strictly
    increasing, slope 1 at the edges. The one formula: the head applies it to wide + deep, `SoftBound` to arrays."""
    above, below = (x - high).clamp(min=0), (low - x).clamp(min=0)
    return x - above + margin * above / (margin + above) + below - margin * below / (margin + below)


def _held_out_rmse(frame: pd.DataFrame, out_of_fold: np.ndarray | None) -> float:
    """RMSE of `out_of_fold` over `frame`'s exact rows that have one (NaN when none, or None)."""
    if out_of_fold is None:
        return np.nan
    scored = np.zeros(len(frame), bool)
    scored[training_rows(frame).index] = True
    scored &= np.isfinite(out_of_fold)
    return float(np.sqrt(np.mean((out_of_fold - _targets(frame))[scored] ** 2))) if scored.any() else np.nan


def _soft_bound(frame: pd.DataFrame, held_out_rmse: float) -> SoftBound | None:
    """The bound of "grouped_blend": the exact training pKd's range, with the part's own held-out RMSE as the
    margin (None when it was not cross-validated)."""
    if not np.isfinite(held_out_rmse) or held_out_rmse <= 0:
        return None
    pkd = _targets(training_rows(frame))
    return SoftBound(float(pkd.min()), float(pkd.max()), float(held_out_rmse))


def _with_level(out_of_fold: np.ndarray | None, split: BetweenWithin | None, spec: WideSpec,
                groups: np.ndarray | None, folds: int = CROSS_FIT_FOLDS) -> np.ndarray | None:
    """`out_of_fold` (the candidates' out-of-fold predictions of the within-group deviations) plus the level's own
    out-of-fold predictions over the same folds, minus the overall mean; unchanged without a split."""
    if split is None or out_of_fold is None:
        return out_of_fold
    fold = cross_fit_folds(len(split.level), groups, folds)
    level = np.full(len(split.level), np.nan)
    for k in np.unique(fold):
        held_out = fold == k
        if np.isfinite(out_of_fold[held_out]).any():  # the folds `choose` scored
            level[held_out] = _level(split, spec, ~held_out).predict(split.level.loc[held_out])
    return out_of_fold + level


def _local_target(fits: pd.DataFrame, candidates: np.ndarray) -> np.ndarray:
    """What the local term is fitted to: each exact row's pKd in `fits` (index reset; with a split, its within-group
    deviation) minus the candidates' out-of-fold prediction of it; NaN for the other rows and where there is none."""
    target = np.full(len(fits), np.nan)
    exact = training_rows(fits).index.to_numpy()
    target[exact] = _targets(fits)[exact] - candidates[exact]
    return target


def _fit_local(fits: pd.DataFrame, groups: np.ndarray | None, candidates: np.ndarray | None,
               folds: int = CROSS_FIT_FOLDS) -> LocalFit | None:
    """"grouped_blend"'s local term on the candidates' out-of-fold residuals (`fit_local`, the folds `choose`
    dealt); None when the candidates were not cross-validated."""
    if candidates is None:
        return None
    return fit_local(local_rows(fits), _local_target(fits, candidates), cross_fit_folds(len(fits), groups, folds))


@dataclass(frozen=True)
class _GroupedFit:
    """What "grouped_blend" adds to `choose`'s out-of-fold candidates: the within scale, the local term (None: none)
    and the whole part's out-of-fold predictions (None when not cross-validated)."""

    scale: float
    local: LocalKernel | None
    out_of_fold: np.ndarray | None


def _grouped_fit(fits: pd.DataFrame, split: BetweenWithin | None, spec: WideSpec, groups: np.ndarray | None,
                 candidates: np.ndarray | None, folds: int = CROSS_FIT_FOLDS) -> _GroupedFit:
    """From the candidates' out-of-fold predictions: with a split, their scale (`_within_scale`) and the level; the
    local term on what the (scaled) candidates leave (`_fit_local`, over random folds without groups); and the
    out-of-fold predictions of the sum. The candidates unchanged for the kinds without a level."""
    if not spec.between:
        return _GroupedFit(1.0, None, candidates)
    scale, out_of_fold = 1.0, candidates
    if split is not None:
        scale = _within_scale(fits, groups, candidates, split.mean)
        candidates = None if candidates is None else _scaled(candidates, split.mean, scale)
        out_of_fold = _with_level(candidates, split, spec, groups, folds)
    local = _fit_local(fits, groups, candidates, folds) if spec.onehot else None  # it reads the one-hot codes
    if local is not None:
        out_of_fold = out_of_fold + local.out_of_fold
    return _GroupedFit(scale, None if local is None else local.kernel, out_of_fold)


@dataclass
class WidePart:
    """A fitted wide part: the pair k-mer ridge and (optionally) the heavy-chain block on its residual; for
    "ridge_choice" also the one-hot ridge, and which of the two predicts (`choice`, `CANDIDATES`); for
    "ridge_blend" both, weighted (`weight`: the one-hot ridge's); for "grouped_blend" the same fitted to
    within-group deviations, plus `level`, `bound` and `local`; for "grouped_kmer" the pair k-mer ridge fitted to
    within-group deviations, plus `level` and `bound` (no one-hot ridge, no local term)."""

    kind: str
    ridge: KmerRidgeBaseline
    heavy: HeavyKmerBlock | None = None
    onehot: OneHotRidge | None = None
    choice: int = 0
    cv_rmse: tuple[float, float] = (np.nan, np.nan)  # each candidate's held-out RMSE (`choose`)
    cv_folds: int = 0                                 # folds that scored them (0: not cross-validated)
    # `Choice.out_of_fold` of the fit (not saved: None for a part read from a checkpoint).
    out_of_fold: np.ndarray | None = field(default=None, compare=False, repr=False)
    weight: float = 0.0                               # "ridge_blend": the one-hot ridge's weight (`choose`)
    blend_rmse: float = np.nan                        # "ridge_blend": the blend's held-out RMSE
    # "grouped_blend": the level on the group means (None without two groups: `_between_within`), the soft
    # bound on the sum (None when not cross-validated), and the local term (None: not fitted, or no gain).
    level: GroupLevel | None = None
    bound: SoftBound | None = None
    local: LocalKernel | None = None

    @property
    def onehot_weight(self) -> float:
        """The one-hot ridge's weight in `predict` (0 or 1 for "ridge_choice", 0 without a one-hot ridge)."""
        if self.onehot is None:
            return 0.0
        return self.weight if _spec(self.kind).blend else float(self.choice)

    @classmethod
    def fit(cls, frame: pd.DataFrame, kind: str = "kmer_ridge", groups: np.ndarray | None = None) -> "WidePart":
        """Fit on `frame`'s rows with a finite, uncensored pKd; ValueError when there are none. `groups` (one per
        row of `frame`; None: random folds): the run's split groups, whose folds choose the candidate."""
        spec = _spec(kind)
        original = frame.reset_index(drop=True)
        split = _between_within(original, groups) if spec.between else None
        frame = original if split is None else split.within
        rows = training_rows(frame)
        ridge, heavy = _kmer_parts(rows, spec)
        if not spec.cross_validated:
            return cls(kind, ridge, heavy)
        chosen = choose(frame, kind, groups)
        fitted = _grouped_fit(frame, split, spec, groups, chosen.out_of_fold)
        grouped = {}
        if spec.between:
            grouped = {"level": None if split is None else _level(split, spec, within_scale=fitted.scale),
                       "bound": _soft_bound(original, _held_out_rmse(original, fitted.out_of_fold)),
                       "local": fitted.local}
        onehot = OneHotRidge.fit(rows) if spec.onehot else None
        return cls(kind, ridge, heavy, onehot, chosen.choice, chosen.rmse, chosen.folds,
                   fitted.out_of_fold, chosen.weight, chosen.blend_rmse, **grouped)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """wide(x) per row of `frame` (float64, not clamped)."""
        if len(frame) == 0:
            return np.zeros(0)
        weight = self.onehot_weight
        if weight == 1:
            out = self.onehot.predict(frame)
        else:
            kmer = _kmer_predict(self.ridge, self.heavy, frame)
            out = kmer if weight == 0 else _blend(kmer, self.onehot.predict(frame), weight)
        # "grouped_blend": the candidates predict deviations around the group level (with groups), the local term
        # what they miss.
        if self.level is not None:
            out = _scaled(out, self.level.mean, self.level.within_scale) + self.level.predict(frame)
        return out if self.local is None else out + self.local.predict(local_rows(frame))

    def bounded(self, values: np.ndarray) -> np.ndarray:
        """`values` through the part's soft bound ("grouped_blend"; unchanged without one): what the head does to
        wide + deep (`AffinityHead.parts`), here for a prediction without the network."""
        return values if self.bound is None else self.bound.apply(values)

    def describe(self) -> dict[str, Any]:
        """metrics.json's `wide` entry."""
        heavy = None if self.heavy is None else {
            "k": self.heavy.k, "fitted_chains": self.heavy.chains,
            "alpha": None if np.isinf(self.heavy.alpha) else self.heavy.alpha,
            "selection": "leave-one-heavy-chain-out; none = no block (it did not predict held-out chains better)"}
        described = {"kind": self.kind, "ridge": self.ridge.method, "heavy_block": heavy}
        if self.onehot is not None:
            block = self.onehot.block
            described["onehot_block"] = {
                "columns": ONEHOT_WIDTH, "mean": self.onehot.mean, "fitted_antibodies": block.antibodies,
                "alpha": None if np.isinf(block.alpha) else block.alpha,
                "unnumbered_heavy_chains": block.unnumbered[0], "unnumbered_light_chains": block.unnumbered[1],
                "residues_off_grid": block.off_grid,
                "selection": "leave-one-antibody-out (distinct VH+VL); none = no block (the training mean)"}
            if _spec(self.kind).blend:
                described["blend"] = {
                    "weights": {CANDIDATES[0]: 1.0 - self.weight, CANDIDATES[1]: self.weight}, "folds": self.cv_folds,
                    "held_out_rmse": {name: None if np.isnan(e) else e for name, e in
                                      zip((*CANDIDATES, "blend"), (*self.cv_rmse, self.blend_rmse))},
                    "selection": f"the one-hot ridge's weight (at most {BLEND_MAX_ONEHOT}) minimising the mean squared "
                                 f"error of out-of-fold predictions over up to {CROSS_FIT_FOLDS} folds of the run's "
                                 "split groups (random folds without them); the k-mer parts alone with fewer than "
                                 "two groups"}
            else:
                described["choice"] = {
                    "chosen": CANDIDATES[self.choice], "folds": self.cv_folds,
                    "held_out_rmse": {name: None if np.isnan(e) else e for name, e in zip(CANDIDATES, self.cv_rmse)},
                    "selection": f"mean squared error of out-of-fold predictions over up to {CROSS_FIT_FOLDS} folds "
                                 "of the run's split groups (random folds without them); the k-mer ridge wins ties "
                                 "and when there are fewer than two groups"}
        if _spec(self.kind).between:
            described.update(self._grouped_description())
        return described

    def _grouped_description(self) -> dict[str, Any]:
        """`describe`'s level, bound and local term ("grouped_blend", "grouped_kmer")."""
        level, local = self.level, self.local
        fitted = "the blend" if self.onehot is not None else "the k-mer ridge"
        return {
            "level": None if level is None else {
                "ridge": level.ridge.method, "groups": level.groups, "overall_mean": level.mean,
                "within_scale": level.within_scale,
                "selection": f"the pair k-mer ridge fitted to each training row's split-group mean pKd; {fitted} is "
                             "fitted to each row's deviation from it (none: fewer than two groups), its deviations "
                             "scaled by s_d^2 / (s_d^2 + s_o^2): s_d^2 the deviations' mean square, s_o^2 that of "
                             "its out-of-fold offsets per held-out group"},
            "bound": None if self.bound is None else {
                "low": self.bound.low, "high": self.bound.high, "margin": self.bound.margin,
                "rule": "past the training pKd range by d, wide + deep becomes the edge + margin x d / "
                        "(margin + d), in the head before the clamp; the margin is the wide part's held-out "
                        "RMSE (none: not cross-validated)"},
            "local": None if local is None else {
                "fitted_rows": len(local.rows), "candidate_rows": local.candidates,
                "length_scales": {"antibody": local.lengths[0], "antigen": local.lengths[1]},
                "penalty": local.penalty, "held_out_error_ratio": local.error_ratio,
                "selection": f"a kernel ridge on the blend's out-of-fold residuals (at most {LOCAL_MAX_ROWS} "
                             "rows, a seeded sample above), its length scales and penalty by the out-of-fold "
                             "squared error over the same folds; none: no setting beat no term"}}

    def to_state(self) -> dict[str, torch.Tensor]:
        """Plain float64 tensors, int64 for `INTEGER_STATE` (the `WideSlot` buffers); `from_state` inverts it."""
        state = {"fitted": torch.tensor(1.0, dtype=torch.float64), **_ridge_tensors(self.ridge, "ridge")}
        if self.heavy is not None:
            state.update(_heavy_tensors(self.heavy, "heavy"))
        if self.onehot is not None:
            block = self.onehot.block
            state.update({"onehot_coef": torch.from_numpy(np.asarray(block.coef, np.float64).copy()),
                          "onehot_shift": torch.tensor(list(block.shift), dtype=torch.float64),
                          "onehot_mean": torch.tensor(self.onehot.mean, dtype=torch.float64),
                          "onehot_alpha": torch.tensor(-1.0 if np.isinf(block.alpha) else block.alpha,
                                                       dtype=torch.float64),
                          "onehot_antibodies": torch.tensor(float(block.antibodies), dtype=torch.float64),
                          "onehot_unnumbered": torch.tensor([float(c) for c in block.unnumbered],
                                                            dtype=torch.float64),
                          "onehot_off_grid": torch.tensor(float(block.off_grid), dtype=torch.float64),
                          "choice": torch.tensor(self.choice, dtype=torch.int64),
                          "cv_rmse": torch.tensor(list(self.cv_rmse), dtype=torch.float64),
                          "cv_folds": torch.tensor(self.cv_folds, dtype=torch.int64)})
            if _spec(self.kind).blend:
                state.update({"weight": torch.tensor(self.weight, dtype=torch.float64),
                              "blend_rmse": torch.tensor(self.blend_rmse, dtype=torch.float64)})
        spec = _spec(self.kind)
        if spec.between:  # zeros (level_groups 0, bound margin 0) for a part without them
            level, bound = self.level, self.bound
            state.update({name: torch.zeros(shape, dtype=torch.float64)
                          for name, shape in _level_shapes(spec).items()})
            if level is not None:
                state.update({**_ridge_tensors(level.ridge, "level"),
                              "level_overall": torch.tensor(level.mean, dtype=torch.float64),
                              "level_within_scale": torch.tensor(level.within_scale, dtype=torch.float64)})
            state["level_groups"] = torch.tensor(0 if level is None else level.groups, dtype=torch.int64)
            if bound is not None:
                state["bound"] = torch.tensor([bound.low, bound.high, bound.margin], dtype=torch.float64)
            state.update(_local_tensors(self.local))
        return state

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], kind: str = "kmer_ridge") -> "WidePart":
        """The part `to_state` stored; ValueError naming what is wrong for an unfitted or malformed state."""
        spec = _spec(kind)
        try:
            if float(state["fitted"]) != 1.0:
                raise ValueError("it was never fitted")
            ridge = _ridge_from_tensors(state, "ridge", spec)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"the wide part ({kind}) is unusable: {exc}") from None
        heavy = None
        if spec.heavy_k is not None:
            try:
                heavy = _heavy_from_tensors(state, "heavy", spec.heavy_k)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"the wide part's heavy block is unusable: {exc}") from None
        if not spec.cross_validated:
            return cls(kind, ridge, heavy)
        onehot, choice, rmse, folds, weight, blend_rmse = None, 0, [np.nan, np.nan], 0, 0.0, np.nan
        if spec.onehot:
            try:
                alpha = float(state["onehot_alpha"])
                coef = state["onehot_coef"].detach().cpu().numpy().astype(float)
                if coef.shape != (ONEHOT_WIDTH,):
                    raise ValueError(f"{coef.shape[0] if coef.ndim else 0} coefficients, not {ONEHOT_WIDTH}")
                unnumbered = state["onehot_unnumbered"].detach().cpu().numpy().astype(int).tolist()
                shift = state["onehot_shift"].detach().cpu().numpy().astype(float).tolist()
                block = OneHotBlock(coef, (shift[0], shift[1]), np.inf if alpha < 0 else alpha,
                                    int(state["onehot_antibodies"]), (unnumbered[0], unnumbered[1]),
                                    int(state["onehot_off_grid"]))
                onehot = OneHotRidge(float(state["onehot_mean"]), block)
                choice, rmse = int(state["choice"]), state["cv_rmse"].detach().cpu().numpy().astype(float).tolist()
                folds = int(state["cv_folds"])
                if choice not in (0, 1):
                    raise ValueError(f"choice {choice} is not a candidate (0 or 1)")
                if spec.blend:
                    weight, blend_rmse = float(state["weight"]), float(state["blend_rmse"])
                    if not 0.0 <= weight <= BLEND_MAX_ONEHOT:
                        raise ValueError(f"the one-hot ridge's weight {weight} is outside [0, {BLEND_MAX_ONEHOT}]")
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise ValueError(f"the wide part's one-hot ridge or choice is unusable: {exc}") from None
        grouped = {}
        if spec.between:
            try:
                groups = int(state["level_groups"])
                if groups == 1 or groups < 0:
                    raise ValueError(f"{groups} groups (a level needs two or more; 0: none fitted)")
                scale = float(state["level_within_scale"])
                if groups and not 0 < scale <= 1:
                    raise ValueError(f"within-group scale {scale} is outside (0, 1]")
                level = None if not groups else GroupLevel(
                    _ridge_from_tensors(state, "level", spec), float(state["level_overall"]), groups, scale)
                low, high, margin = state["bound"].detach().cpu().numpy().astype(float).tolist()
                if margin < 0 or (margin > 0 and not low <= high):
                    raise ValueError(f"bound [{low}, {high}] with margin {margin}")
                grouped = {"level": level, "bound": SoftBound(low, high, margin) if margin > 0 else None}
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"the wide part's level or bound is unusable: {exc}") from None
            try:
                grouped["local"] = _local_from_tensors(state)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise ValueError(f"the wide part's local term is unusable: {exc}") from None
        return cls(kind, ridge, heavy, onehot, choice, (rmse[0], rmse[1]), folds, None,
                   weight, blend_rmse, **grouped)


def state_shapes(kind: str) -> dict[str, tuple[int, ...]]:
    """Shape of every `WidePart.to_state` tensor of `kind` (fixed by the kind, so a head can hold them)."""
    spec = _spec(kind)
    width = feature_width(spec.ks)
    shapes = {"fitted": (), **_ridge_shapes("ridge", width)}
    if spec.heavy_k is not None:
        shapes.update(_heavy_shapes("heavy", spec.heavy_k))
    if spec.onehot:
        shapes.update({"onehot_coef": (ONEHOT_WIDTH,), "onehot_shift": (2,), "onehot_mean": (), "onehot_alpha": (),
                       "onehot_antibodies": (), "onehot_unnumbered": (2,), "onehot_off_grid": (), "choice": (),
                       "cv_rmse": (2,), "cv_folds": ()})
    if spec.blend:
        shapes.update({"weight": (), "blend_rmse": ()})
    if spec.between:
        shapes.update({**_level_shapes(spec), "level_groups": (), **LOCAL_EMPTY_SHAPES})
    return shapes


LOCAL_EMPTY_SHAPES = {"local_codes": (0, ONEHOT_WIDTH // len(ALPHABET)),
                      "local_antigens": (0, sum(20**k for k in LOCAL_ANTIGEN_KS)),
                      "local_antigen_index": (0,), "local_weights": (0,), "local_settings": (7,)}
"""Shapes of "grouped_blend"'s local-term tensors without a term. The first four grow with the rows it was fitted on
(`VARIABLE_STATE`); `local_settings` holds m_ab, m_ag, l_ab, l_ag, the penalty, the error ratio and the candidate
rows (all 0: no term)."""

VARIABLE_STATE = ("local_codes", "local_antigens", "local_antigen_index", "local_weights")
"""`to_state` tensors whose first dimension is the local term's training rows (`WideSlot` resizes them on load)."""


def _local_tensors(local: LocalKernel | None) -> dict[str, torch.Tensor]:
    """The local term as tensors (`LOCAL_EMPTY_SHAPES` zeros for none); `_local_from_tensors` inverts it."""
    if local is None:
        return {name: torch.zeros(shape, dtype=STATE_DTYPES.get(name, torch.float64))
                for name, shape in LOCAL_EMPTY_SHAPES.items()}
    rows = local.rows
    settings = [*local.medians, *local.lengths, local.penalty, local.error_ratio, float(local.candidates)]
    return {"local_codes": torch.from_numpy(rows.codes.copy()),
            "local_antigens": torch.from_numpy(rows.antigens.astype(np.float32)),
            "local_antigen_index": torch.from_numpy(rows.antigen_index.copy()),
            "local_weights": torch.from_numpy(np.asarray(local.weights, np.float64).copy()),
            "local_settings": torch.tensor(settings, dtype=torch.float64)}


def _local_from_tensors(state: dict[str, torch.Tensor]) -> LocalKernel | None:
    """The local term `_local_tensors` stored (None: none); ValueError when its tensors disagree."""
    weights = state["local_weights"].detach().cpu().numpy().astype(np.float64)
    if not len(weights):
        return None
    codes = state["local_codes"].detach().cpu().numpy().astype(np.uint8)
    antigens = state["local_antigens"].detach().cpu().numpy().astype(np.float64)
    index = state["local_antigen_index"].detach().cpu().numpy().astype(np.int64)
    m_ab, m_ag, l_ab, l_ag, penalty, ratio, candidates = state["local_settings"].detach().cpu().numpy().tolist()
    if not len(codes) == len(index) == len(weights) or (len(index) and index.max() >= len(antigens)):
        raise ValueError(f"{len(codes)} rows of codes, {len(index)} antigen indices into {len(antigens)} antigens "
                         f"and {len(weights)} weights")
    if min(m_ab, m_ag, l_ab, l_ag, penalty) <= 0:
        raise ValueError("its kernel settings are not positive")
    return LocalKernel(LocalRows(codes, antigens, index), weights, (m_ab, m_ag), (l_ab, l_ag), penalty, ratio,
                       int(candidates))


def _level_shapes(spec: WideSpec) -> dict[str, tuple[int, ...]]:
    """Shapes of the float64 tensors of "grouped_blend"'s level and bound (`WidePart.to_state`)."""
    return {**_ridge_shapes("level", feature_width(spec.ks)), "level_overall": (), "level_within_scale": (),
            "bound": (3,)}


def _heavy_shapes(prefix: str, k: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}_coef": (20**k,), f"{prefix}_shift": (), f"{prefix}_alpha": (), f"{prefix}_chains": ()}


def _heavy_tensors(heavy: HeavyKmerBlock, prefix: str) -> dict[str, torch.Tensor]:
    """A heavy block as float64 tensors named `prefix`_… (alpha -1: no block); `_heavy_from_tensors` inverts it."""
    return {f"{prefix}_coef": torch.from_numpy(np.asarray(heavy.coef, np.float64).copy()),
            f"{prefix}_shift": torch.tensor(heavy.shift, dtype=torch.float64),
            f"{prefix}_alpha": torch.tensor(-1.0 if np.isinf(heavy.alpha) else heavy.alpha, dtype=torch.float64),
            f"{prefix}_chains": torch.tensor(float(heavy.chains), dtype=torch.float64)}


def _heavy_from_tensors(state: dict[str, torch.Tensor], prefix: str, k: int) -> HeavyKmerBlock:
    alpha = float(state[f"{prefix}_alpha"])
    return HeavyKmerBlock(k, state[f"{prefix}_coef"].detach().cpu().numpy().astype(float),
                          float(state[f"{prefix}_shift"]), np.inf if alpha < 0 else alpha,
                          int(state[f"{prefix}_chains"]))


def _ridge_shapes(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    """Shapes of `_ridge_tensors(ridge, prefix)` for a k-mer ridge of `width` features."""
    return {f"{prefix}_coef": (width,), f"{prefix}_mean": (width,), f"{prefix}_scale": (width,),
            f"{prefix}_intercept": (), f"{prefix}_alpha": (), f"{prefix}_rows": (),
            f"{prefix}_distinct_chains": (len(CHAINS),)}


def _ridge_tensors(ridge: KmerRidgeBaseline, prefix: str) -> dict[str, torch.Tensor]:
    """A fitted k-mer ridge as float64 tensors named `prefix`_…; `_ridge_from_tensors` inverts it."""
    values = ridge_to_state(ridge)
    return {**{f"{prefix}_{key}": torch.tensor(values[key], dtype=torch.float64)
               for key in ("coef", "mean", "scale", "intercept", "alpha", "rows")},
            f"{prefix}_distinct_chains": torch.tensor([values["distinct_chains"].get(c, 0) for c in CHAINS],
                                                      dtype=torch.float64)}


def _ridge_from_tensors(state: dict[str, torch.Tensor], prefix: str, spec: WideSpec) -> KmerRidgeBaseline:
    """The k-mer ridge `_ridge_tensors` stored under `prefix` (KeyError, ValueError when malformed)."""
    values = {key: state[f"{prefix}_{key}"].detach().cpu().numpy() for key in
              ("coef", "mean", "scale", "intercept", "alpha", "rows")}
    rows = int(values["rows"])
    distinct = dict(zip(CHAINS, state[f"{prefix}_distinct_chains"].detach().cpu().numpy().astype(int).tolist()))
    return ridge_from_state({"ks": list(spec.ks), "alpha": float(values["alpha"]), "rows": rows,
                             "selection": "leave-one-out" if rows <= KmerRidgeBaseline().loo_max_rows else "GCV",
                             "coef": values["coef"], "mean": values["mean"], "scale": values["scale"],
                             "intercept": float(values["intercept"]), "distinct_chains": distinct})


def _light(frame: pd.DataFrame) -> list[Any]:
    """The light column as a list ("" for every row of a table without one)."""
    return frame["light"].tolist() if "light" in frame else [""] * len(frame)


def _spec(kind: str) -> WideSpec:
    if kind not in WIDE_SPECS:
        raise ValueError(f"unknown wide part {kind!r}; choose one of {(*WIDE_SPECS, 'none')}")
    return WIDE_SPECS[kind]


def _usable_rows(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """`training_rows` with a message that says what to do when no row has a usable pKd."""
    try:
        return training_rows(frame)
    except ValueError as exc:
        if "no training rows" in str(exc):
            raise ValueError(f"the wide part ({kind}) needs training rows with a measured, uncensored pKd, and "
                             f"there are none; train with --wide none") from None
        raise


def fit_wide(frame: pd.DataFrame, kind: str, groups: np.ndarray | None = None) -> WidePart:
    """`WidePart.fit` with a message that says what to do when no training row has a usable pKd."""
    _usable_rows(frame, kind)
    return WidePart.fit(frame, kind, groups)


def cross_fitted(frame: pd.DataFrame, kind: str, groups: np.ndarray | None = None,
                 folds: int = CROSS_FIT_FOLDS, *, weight: float | None = None,
                 known: np.ndarray | None = None, local: LocalKernel | None = None,
                 within_scale: float = 1.0) -> np.ndarray:
    """wide(x) for every row of `frame` from a part fitted on the other folds' rows (`cross_fit_folds`); a fold
    whose complement has no usable row gets the part fitted on all rows. For "ridge_choice" and "ridge_blend"
    each fold combines the candidates with the one-hot ridge's `weight` (`WidePart.onehot_weight` of the part
    fitted on all of `frame`; None: `choose` it once here), never choosing again inside a fold. `known`:
    `WidePart.out_of_fold` of that part; a fold whose rows it holds is taken from it instead of fitted again.
    "grouped_blend" fits each fold's candidates to the within-group deviations and its level ridge to the group
    means (`_between_within`; with a split), as `WidePart.fit` does, scales the candidates' deviations (with
    `weight` given, by `within_scale`: `GroupLevel.within_scale`) and adds the local term's out-of-fold predictions
    (with or without a split): with `weight` given, those of `local`'s settings (`WidePart.local`; None: no term) on
    the (scaled) candidates' out-of-fold residuals (each fold's kernel is fitted on residuals that other folds'
    candidates predicted with this fold's rows among their training rows, as in `WidePart.fit`)."""
    spec = _spec(kind)
    frame = frame.reset_index(drop=True)
    split = _between_within(frame, groups) if spec.between else None
    fits = frame if split is None else split.within  # what the candidates are fitted to
    if weight is None and spec.cross_validated:
        chosen = choose(fits, kind, groups, folds)
        grouped = _grouped_fit(fits, split, spec, groups, chosen.out_of_fold, folds)
        weight, known, within_scale, local = chosen.weight, grouped.out_of_fold, grouped.scale, grouped.local
    if not spec.onehot:
        weight = 0.0
    if known is not None and len(known) != len(frame):
        raise ValueError(f"{len(frame)} rows but {len(known)} known predictions")
    fold = cross_fit_folds(len(frame), groups, folds)
    out = np.empty(len(frame))
    full = None

    local = local if spec.between else None
    if local is not None and known is not None and not np.isfinite(known).all():
        known = None  # the local term's folds read every fold's candidate residuals: all are fitted again
    candidates = np.full(len(frame), np.nan)  # each fold's out-of-fold candidate predictions (the local term's)

    def fitted(keep: np.ndarray | None) -> tuple[Callable[[pd.DataFrame], np.ndarray], Callable | None]:
        rows = _usable_rows(fits, kind) if keep is None else training_rows(fits.loc[keep])
        return _candidate(rows, spec, weight), None if split is None else _level(split, spec, keep).predict

    for k in np.unique(fold):
        held_out = fold == k
        if known is not None and np.isfinite(known[held_out]).all():  # `choose` predicted this fold already
            out[held_out] = known[held_out]
            continue
        try:
            candidate, level = fitted(~held_out)
            out_of_fold = True
        except ValueError:  # no uncensored row outside this fold: the candidate fitted on all rows
            if full is None:
                full = fitted(None)
            (candidate, level), out_of_fold = full, False
        predicted = candidate(frame.loc[held_out])
        if split is not None:
            predicted = _scaled(predicted, split.mean, within_scale)
        if out_of_fold:
            candidates[held_out] = predicted
        out[held_out] = predicted if level is None else predicted + level(frame.loc[held_out])
    if local is not None and known is None:
        out += local_out_of_fold(local_rows(fits), _local_target(fits, candidates), fold, local)
    return out


class WideSlot(nn.Module):
    """Where a head keeps its fitted wide part: buffers (`WidePart.to_state`; float64, int64 for
    `INTEGER_STATE`), zero until `store`.

    Buffers, not a separate checkpoint entry: whatever saves, copies or loads a head's weights (best.pt,
    last.pt and resume, the fold ensemble's per-member heads) carries its wide part with them.
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        for name, shape in state_shapes(kind).items():
            self.register_buffer(name, torch.zeros(shape, dtype=STATE_DTYPES.get(name, torch.float64)))
        self._cached: WidePart | None = None
        self._bounded_kind = _spec(kind).between

    @property
    def is_fitted(self) -> bool:
        return bool(self.get_buffer("fitted").item() == 1.0)

    def store(self, part: WidePart) -> None:
        """Copy `part` into the buffers (the kinds must agree)."""
        if part.kind != self.kind:
            raise ValueError(f"a {part.kind!r} wide part does not fit a {self.kind!r} slot")
        with torch.no_grad():
            for name, value in part.to_state().items():
                if name in VARIABLE_STATE:  # as many rows as the local term has
                    self._buffers[name] = value.to(self.get_buffer(name).device).clone()
                else:
                    self.get_buffer(name).copy_(value)
        self._cached = None

    def part(self) -> WidePart:
        """The stored part (rebuilt from the buffers once, again after `store` or a state-dict load)."""
        if self._cached is None:
            self._cached = WidePart.from_state({name: self.get_buffer(name) for name in state_shapes(self.kind)},
                                               self.kind)
        return self._cached

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        self._cached = None  # new buffer values: rebuild the part on next use
        if self._bounded_kind:
            if prefix + "level_within_scale" not in state_dict:  # written before the scale: 1
                state_dict[prefix + "level_within_scale"] = torch.tensor(1.0, dtype=torch.float64)
            for name, shape in LOCAL_EMPTY_SHAPES.items():
                key = prefix + name
                if key not in state_dict:  # written before the local term: none
                    state_dict[key] = torch.zeros(shape, dtype=STATE_DTYPES.get(name, torch.float64))
                if name in VARIABLE_STATE:  # take the stored term's number of rows (the dtype stays the slot's)
                    buffer = self.get_buffer(name)
                    self._buffers[name] = torch.zeros(tuple(state_dict[key].shape), dtype=buffer.dtype,
                                                      device=buffer.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def sum_bound(self) -> SoftBound | None:
        """The soft bound the head puts on wide + deep ("grouped_blend" with one), else None; read from the part
        rebuilt once per store or load, so a forward pass does not wait on the device."""
        return self.part().bound if self._bounded_kind else None

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, fitted={self.is_fitted}"
