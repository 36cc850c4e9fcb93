"""The local term of the wide part: a kernel ridge on what the linear parts leave.

    local(x) = sum_j a_j exp(-d_ab(x, x_j) / (l_ab m_ab) - d_ag(x, x_j) / (l_ag m_ag))

over training rows x_j. d_ab is the squared distance of the IMGT-aligned one-hot rows of VH and VL (2 per position
whose residue differs), d_ag that of the antigens' 1- and 2-mer compositions, m_ab and m_ag each one's median over
the training rows. The a_j are a kernel ridge fitted to each training row's out-of-fold residual of the linear
part (in sample, a linear part with more features than rows nearly interpolates and leaves nothing to learn).
l_ab, l_ag and the penalty are chosen by the out-of-fold squared error over folds of the run's groups (random folds
without them); "no term" is a candidate and wins ties (`fit_local`).

Why: the term falls to 0 away from every training row, so on a group unlike any it was fitted on it adds no offset
(which a linear term on the same features does), and near training rows it carries what additive parts cannot:
how this antibody's pKd across antigens departs from the average antibody's (an antibody-by-antigen interaction),
and how substitutions combine among one antibody's variants (epistasis) (bench/RESULTS.md, "A local term on what
the linear part leaves" and "The local term without groups").

Features come in as `LocalRows` (residue codes per grid position, distinct antigen compositions), which is also how
a fitted term stores its training rows. Imports numpy, scipy, sklearn and the one-hot alphabet; `abag.model.wide`
numbers the chains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.metrics.pairwise import euclidean_distances

from abag.numbering.onehot import ALPHABET

__all__ = ["LocalRows", "LocalKernel", "LocalFit", "fit_local", "local_out_of_fold", "median_positive",
           "LOCAL_MAX_ROWS", "LOCAL_LENGTHS", "LOCAL_PENALTIES", "NO_RESIDUE"]

LOCAL_MAX_ROWS = 2000
"""The term is fitted on at most this many training rows (a seeded sample above: `_sample`); its choice solves
(lengths x penalties x folds) systems of that size, and every prediction computes one kernel row per training row."""

LOCAL_LENGTHS = (0.05, 0.1, 0.2, 0.4, 0.8)
"""Length scales l of each block, as fractions of its median squared distance over the training rows."""

LOCAL_PENALTIES = (0.1, 1.0, 10.0)
"""Kernel ridge penalties (the kernel's diagonal is 1)."""

NO_RESIDUE = 255
"""`LocalRows.codes` at a grid position with no column set (an unnumbered side, an X residue)."""

_WIDTH = len(ALPHABET)  # one-hot columns per grid position
_BLOCK = 4096  # rows whose kernel against the training rows is computed at a time when predicting


@dataclass(frozen=True)
class LocalRows:
    """What the kernel reads of each row: the code (0-20, the one-hot column within its position) at every grid
    position of VH then VL, and an index into distinct antigen compositions."""

    codes: np.ndarray          # (rows, positions) uint8
    antigens: np.ndarray       # (distinct antigens, composition width) float64
    antigen_index: np.ndarray  # (rows,) int64 into `antigens`

    def __len__(self) -> int:
        return len(self.codes)

    @classmethod
    def of(cls, onehot: sp.spmatrix, antigens: np.ndarray, antigen_index: np.ndarray) -> "LocalRows":
        """From aligned one-hot rows (`abag.numbering.onehot`: 21 columns per position, at most one set) and
        antigen compositions."""
        onehot = sp.csr_matrix(onehot)
        codes = np.full((onehot.shape[0], onehot.shape[1] // _WIDTH), NO_RESIDUE, dtype=np.uint8)
        rows = np.repeat(np.arange(onehot.shape[0]), np.diff(onehot.indptr))
        codes[rows, onehot.indices // _WIDTH] = onehot.indices % _WIDTH
        return cls(codes, np.asarray(antigens, np.float64), np.asarray(antigen_index, np.int64))

    def onehot(self) -> sp.csr_matrix:
        """The one-hot rows back (float64 ones)."""
        rows, positions = np.nonzero(self.codes != NO_RESIDUE)
        columns = positions * _WIDTH + self.codes[rows, positions].astype(np.int64)
        return sp.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(self), self.codes.shape[1] * _WIDTH))

    def take(self, keep: np.ndarray) -> "LocalRows":
        """The rows at `keep` (indices or mask), antigens re-indexed to those they use."""
        index = self.antigen_index[keep]
        used, remapped = np.unique(index, return_inverse=True)
        return LocalRows(self.codes[keep], self.antigens[used], remapped.astype(np.int64))


def squared_distances(a: LocalRows, b: LocalRows) -> tuple[np.ndarray, np.ndarray]:
    """(d_ab, d_ag) between every row of `a` and of `b`."""
    xa, xb = a.onehot(), b.onehot()
    set_a, set_b = np.asarray(xa.sum(axis=1)).ravel(), np.asarray(xb.sum(axis=1)).ravel()
    antibody = set_a[:, None] + set_b[None, :] - 2.0 * (xa @ xb.T).toarray()
    antigen = euclidean_distances(a.antigens, b.antigens, squared=True)[np.ix_(a.antigen_index, b.antigen_index)]
    return antibody, antigen


def median_positive(distances: np.ndarray) -> float:
    """The median of the positive entries of `distances` (1 when there are none): a length scale's unit."""
    positive = distances[distances > 0]
    return float(np.median(positive)) if positive.size else 1.0


def _kernel(distances: tuple[np.ndarray, np.ndarray], medians: tuple[float, float],
            lengths: tuple[float, float]) -> np.ndarray:
    return np.exp(-distances[0] / (lengths[0] * medians[0]) - distances[1] / (lengths[1] * medians[1]))


@dataclass(frozen=True)
class LocalKernel:
    """A fitted local term: its training rows, their dual weights and the kernel's settings."""

    rows: LocalRows
    weights: np.ndarray             # (rows,) dual coefficients a_j
    medians: tuple[float, float]    # m_ab, m_ag
    lengths: tuple[float, float]    # l_ab, l_ag
    penalty: float
    error_ratio: float              # its out-of-fold squared error over that of no term (< 1)
    candidates: int                 # training rows it could be fitted on (more than `len(rows)`: sampled)

    def predict(self, rows: LocalRows) -> np.ndarray:
        """local(x) per row, in blocks of rows."""
        out = np.empty(len(rows))
        for start in range(0, len(rows), _BLOCK):
            block = rows.take(np.arange(start, min(start + _BLOCK, len(rows))))
            out[start:start + len(block)] = _kernel(squared_distances(block, self.rows), self.medians,
                                                    self.lengths) @ self.weights
        return out


@dataclass(frozen=True)
class LocalFit:
    """`fit_local`'s result: the term (None: no term predicted held-out rows better) and its out-of-fold
    predictions of every row (0 in a fold it could not be fitted without, and everywhere without a term)."""

    kernel: LocalKernel | None
    out_of_fold: np.ndarray


def _sample(n: int, max_rows: int) -> np.ndarray:
    """The rows the term is fitted on: all, or a seeded sample of `max_rows` (sorted)."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).permutation(n)[:max_rows])


def _fold_weights(gram: np.ndarray, target: np.ndarray, fitted_fold: np.ndarray, folds: np.ndarray,
                  penalty: float) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per fold k of `folds`: the fitted rows outside it (indices into `gram`, the kernel among the fitted rows, whose
    folds are `fitted_fold`) and the kernel ridge's weights on them; a fold with no fitted row outside is left out
    (no term there)."""
    weights = {}
    for k in folds:
        outside = np.flatnonzero(fitted_fold != k)
        if len(outside):
            system = gram[np.ix_(outside, outside)] + penalty * np.eye(len(outside))
            weights[int(k)] = outside, np.linalg.solve(system, target[outside])
    return weights


def fit_local(rows: LocalRows, target: np.ndarray, fold: np.ndarray, max_rows: int = LOCAL_MAX_ROWS) -> LocalFit:
    """The local term of `target` (NaN: not fitted, still predicted out of fold) over `rows`, its lengths and
    penalty (`LOCAL_LENGTHS`, `LOCAL_PENALTIES`) by the out-of-fold squared error over `fold` on the rows it is
    fitted on; no term when none beats predicting 0, or with fewer than two folds. The choice reads only the fitted
    rows (at most `max_rows`); the other rows are predicted out of fold once, with the chosen settings' fold weights."""
    target = np.asarray(target, np.float64)
    usable = np.flatnonzero(np.isfinite(target))
    none = LocalFit(None, np.zeros(len(target)))
    if len(usable) < 3 or len(np.unique(fold[usable])) < 2:
        return none
    fitted = usable[_sample(len(usable), max_rows)]
    sample, y, fitted_fold = rows.take(fitted), target[fitted], fold[fitted]
    inner = squared_distances(sample, sample)
    medians = (median_positive(inner[0]), median_positive(inner[1]))
    best_error, best = float(np.sum(y ** 2)), None
    for lengths in [(a, b) for a in LOCAL_LENGTHS for b in LOCAL_LENGTHS]:
        gram = _kernel(inner, medians, lengths)
        for penalty in LOCAL_PENALTIES:
            weights = _fold_weights(gram, y, fitted_fold, np.unique(fold), penalty)
            predicted = np.zeros(len(fitted))
            for k, (outside, fold_weights) in weights.items():
                inside = np.flatnonzero(fitted_fold == k)
                predicted[inside] = gram[np.ix_(inside, outside)] @ fold_weights
            error = float(np.sum((predicted - y) ** 2))
            if error < best_error:
                best_error, best = error, (lengths, penalty, gram, weights)
    if best is None:
        return none
    lengths, penalty, gram, fold_weights = best
    weights = np.linalg.solve(gram + penalty * np.eye(len(fitted)), y)
    kernel = LocalKernel(sample, weights, medians, lengths, penalty, best_error / float(np.sum(y ** 2)), len(usable))
    return LocalFit(kernel, _out_of_fold(rows, fold, kernel, fold_weights))


def local_out_of_fold(rows: LocalRows, target: np.ndarray, fold: np.ndarray, kernel: LocalKernel | None,
                      max_rows: int = LOCAL_MAX_ROWS) -> np.ndarray:
    """`fit_local`'s out-of-fold predictions again, for the settings `kernel` was chosen with (zeros for no term):
    what a resumed run computes instead of choosing again."""
    target = np.asarray(target, np.float64)
    if kernel is None:
        return np.zeros(len(target))
    usable = np.flatnonzero(np.isfinite(target))
    fitted = usable[_sample(len(usable), max_rows)]
    gram = _kernel(squared_distances(kernel.rows, kernel.rows), kernel.medians, kernel.lengths)
    return _out_of_fold(rows, fold, kernel, _fold_weights(gram, target[fitted], fold[fitted], np.unique(fold),
                                                          kernel.penalty))


def _out_of_fold(rows: LocalRows, fold: np.ndarray, kernel: LocalKernel,
                 weights: dict[int, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Every row's prediction by the term fitted on the fitted rows (`kernel.rows`) outside its fold (`weights`:
    `_fold_weights`; 0 where a fold has none), in blocks of rows, so memory stays (block x fitted rows)."""
    out = np.zeros(len(rows))
    for start in range(0, len(rows), _BLOCK):
        block = np.arange(start, min(start + _BLOCK, len(rows)))
        against = _kernel(squared_distances(rows.take(block), kernel.rows), kernel.medians, kernel.lengths)
        for k, (outside, fold_weights) in weights.items():
            inside = np.flatnonzero(fold[block] == k)
            out[block[inside]] = against[np.ix_(inside, outside)] @ fold_weights
    return out
