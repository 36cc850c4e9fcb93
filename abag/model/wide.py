"""The wide part of the model: a closed-form ridge on explicit sequence features of the pair.

    pKd = clamp[pkd_min, pkd_max]( wide(x) + deep(x) )

`wide(x)` (`ModelConfig.wide="kmer_ridge"`) is abag's k-mer ridge (`abag.model.ridge.KmerRidgeBaseline`:
standardised 1- and 2-mer composition of heavy, light and antigen, alpha by exact leave-one-out or GCV), plus a
heavy-chain 3-mer block fitted to what that ridge leaves (alpha by leaving out whole heavy chains; "no block" is a
candidate). It is fitted on the member's own training rows before the network trains, so `deep(x)`, the head over
the language-model vectors (averaged over its head copies), learns the residual; the deep part's last layer
starts at zero, so an untrained model predicts clamp(wide(x)). While the network trains, its training rows carry
cross-fitted wide predictions (`cross_fitted`: each from a part fitted without that row's fold, folds of the run's
split groups where it has them): with more features than rows the ridge nearly interpolates its own rows, and
in-sample offsets would leave the deep part no residual to learn; validation and prediction use the full part.
After training the deep part is centred on the exact training rows (`abag.model.apply.centre_deep`): the level
is the wide part's. The sum is clamped before the loss (the v2.7
contract). A fold ensemble predicts the mean over its members of clamp(wide_k(x) + deep_k(x)), each member with
the wide part of its own training folds. `wide="none"` is the network alone (wide = 0).

The fitted part lives in the head's state dict (`WideSlot`: float64 buffers `head.wide.*`, shapes fixed by
the kind), so every checkpoint that holds a head holds its wide part and a resumed run reads it back instead of
refitting. Imports numpy, pandas, torch and abag's `model.ridge` and `encoding.kmers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import linalg
from torch import nn

from abag.encoding.kmers import _clean, kmer_composition
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

__all__ = ["WIDE_SPECS", "WideSpec", "HeavyKmerBlock", "WidePart", "WideSlot", "fit_wide", "cross_fitted",
           "CROSS_FIT_FOLDS"]


@dataclass(frozen=True)
class WideSpec:
    """What a wide kind fits: the k-mer sizes of the pair ridge and of the heavy-chain block (None: no block)."""

    ks: tuple[int, ...] = (1, 2)
    heavy_k: int | None = 3


WIDE_SPECS = {"kmer_ridge": WideSpec()}
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


# --------------------------------------------------------------------------- the wide part
@dataclass
class WidePart:
    """A fitted wide part: the pair k-mer ridge and (optionally) the heavy-chain block on its residual."""

    kind: str
    ridge: KmerRidgeBaseline
    heavy: HeavyKmerBlock | None = None

    @classmethod
    def fit(cls, frame: pd.DataFrame, kind: str = "kmer_ridge") -> "WidePart":
        """Fit on `frame`'s rows with a finite, uncensored pKd; ValueError when there are none."""
        spec = _spec(kind)
        rows = training_rows(frame)
        ridge = KmerRidgeBaseline(ks=spec.ks).fit(rows)
        heavy = None
        if spec.heavy_k is not None:
            residual = _targets(rows) - ridge.predict(rows)
            heavy = HeavyKmerBlock.fit(rows["heavy"].tolist(), residual, spec.heavy_k)
        return cls(kind, ridge, heavy)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """wide(x) per row of `frame` (float64, not clamped)."""
        if len(frame) == 0:
            return np.zeros(0)
        out = self.ridge.predict(frame)
        if self.heavy is not None:
            out = out + self.heavy.predict(frame["heavy"].tolist())
        return out

    def describe(self) -> dict[str, Any]:
        """metrics.json's `wide` entry."""
        heavy = None if self.heavy is None else {
            "k": self.heavy.k, "fitted_chains": self.heavy.chains,
            "alpha": None if np.isinf(self.heavy.alpha) else self.heavy.alpha,
            "selection": "leave-one-heavy-chain-out; none = no block (it did not predict held-out chains better)"}
        return {"kind": self.kind, "ridge": self.ridge.method, "heavy_block": heavy}

    def to_state(self) -> dict[str, torch.Tensor]:
        """Plain float64 tensors (the `WideSlot` buffers); `from_state` inverts it."""
        ridge = ridge_to_state(self.ridge)
        state = {"fitted": torch.tensor(1.0, dtype=torch.float64),
                 **{f"ridge_{key}": torch.tensor(ridge[key], dtype=torch.float64)
                    for key in ("coef", "mean", "scale", "intercept", "alpha", "rows")},
                 "ridge_distinct_chains": torch.tensor([ridge["distinct_chains"].get(c, 0) for c in CHAINS],
                                                       dtype=torch.float64)}
        if self.heavy is not None:
            alpha = -1.0 if np.isinf(self.heavy.alpha) else self.heavy.alpha  # -1: no block
            state.update({"heavy_coef": torch.from_numpy(np.asarray(self.heavy.coef, np.float64).copy()),
                          "heavy_shift": torch.tensor(self.heavy.shift, dtype=torch.float64),
                          "heavy_alpha": torch.tensor(alpha, dtype=torch.float64),
                          "heavy_chains": torch.tensor(float(self.heavy.chains), dtype=torch.float64)})
        return state

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], kind: str = "kmer_ridge") -> "WidePart":
        """The part `to_state` stored; ValueError naming what is wrong for an unfitted or malformed state."""
        spec = _spec(kind)
        try:
            if float(state["fitted"]) != 1.0:
                raise ValueError("it was never fitted")
            values = {key: state[f"ridge_{key}"].detach().cpu().numpy() for key in
                      ("coef", "mean", "scale", "intercept", "alpha", "rows")}
            rows = int(values["rows"])
            distinct = dict(zip(CHAINS, state["ridge_distinct_chains"].detach().cpu().numpy().astype(int).tolist()))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"the wide part ({kind}) is unusable: {exc}") from None
        ridge = ridge_from_state({"ks": list(spec.ks), "alpha": float(values["alpha"]), "rows": rows,
                                  "selection": "leave-one-out" if rows <= KmerRidgeBaseline().loo_max_rows else "GCV",
                                  "coef": values["coef"], "mean": values["mean"], "scale": values["scale"],
                                  "intercept": float(values["intercept"]), "distinct_chains": distinct})
        heavy = None
        if spec.heavy_k is not None:
            try:
                alpha = float(state["heavy_alpha"])
                heavy = HeavyKmerBlock(spec.heavy_k, state["heavy_coef"].detach().cpu().numpy().astype(float),
                                       float(state["heavy_shift"]), np.inf if alpha < 0 else alpha,
                                       int(state["heavy_chains"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"the wide part's heavy block is unusable: {exc}") from None
        return cls(kind, ridge, heavy)


def state_shapes(kind: str) -> dict[str, tuple[int, ...]]:
    """Shape of every `WidePart.to_state` tensor of `kind` (fixed by the kind, so a head can hold them)."""
    spec = _spec(kind)
    width = feature_width(spec.ks)
    shapes = {"fitted": (), "ridge_coef": (width,), "ridge_mean": (width,), "ridge_scale": (width,),
              "ridge_intercept": (), "ridge_alpha": (), "ridge_rows": (), "ridge_distinct_chains": (len(CHAINS),)}
    if spec.heavy_k is not None:
        shapes.update({"heavy_coef": (20**spec.heavy_k,), "heavy_shift": (), "heavy_alpha": (), "heavy_chains": ()})
    return shapes


def _spec(kind: str) -> WideSpec:
    if kind not in WIDE_SPECS:
        raise ValueError(f"unknown wide part {kind!r}; choose one of {(*WIDE_SPECS, 'none')}")
    return WIDE_SPECS[kind]


def fit_wide(frame: pd.DataFrame, kind: str) -> WidePart:
    """`WidePart.fit` with a message that says what to do when no training row has a usable pKd."""
    try:
        return WidePart.fit(frame, kind)
    except ValueError as exc:
        if "no training rows" in str(exc):
            raise ValueError(f"the wide part ({kind}) needs training rows with a measured, uncensored pKd, and "
                             f"there are none; train with --wide none") from None
        raise


CROSS_FIT_FOLDS = 5
"""Folds of the training rows for the cross-fitted wide predictions the network trains against."""


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


def cross_fitted(frame: pd.DataFrame, kind: str, groups: np.ndarray | None = None,
                 folds: int = CROSS_FIT_FOLDS) -> np.ndarray:
    """wide(x) for every row of `frame` from a part fitted on the other folds' rows (`cross_fit_folds`); a fold
    whose complement has no usable row gets the part fitted on all rows."""
    frame = frame.reset_index(drop=True)
    fold = cross_fit_folds(len(frame), groups, folds)
    out = np.empty(len(frame))
    full = None
    for k in np.unique(fold):
        held_out = fold == k
        try:
            part = WidePart.fit(frame.loc[~held_out], kind)
        except ValueError:  # no uncensored row outside this fold
            if full is None:
                full = fit_wide(frame, kind)
            part = full
        out[held_out] = part.predict(frame.loc[held_out])
    return out


class WideSlot(nn.Module):
    """Where a head keeps its fitted wide part: float64 buffers (`WidePart.to_state`), zero until `store`.

    Buffers, not a separate checkpoint entry: whatever saves, copies or loads a head's weights (best.pt,
    last.pt and resume, the fold ensemble's per-member heads) carries its wide part with them.
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        for name, shape in state_shapes(kind).items():
            self.register_buffer(name, torch.zeros(shape, dtype=torch.float64))
        self._cached: WidePart | None = None

    @property
    def is_fitted(self) -> bool:
        return bool(self.get_buffer("fitted").item() == 1.0)

    def store(self, part: WidePart) -> None:
        """Copy `part` into the buffers (the kinds must agree)."""
        if part.kind != self.kind:
            raise ValueError(f"a {part.kind!r} wide part does not fit a {self.kind!r} slot")
        with torch.no_grad():
            for name, value in part.to_state().items():
                self.get_buffer(name).copy_(value)
        self._cached = None

    def part(self) -> WidePart:
        """The stored part (rebuilt from the buffers once, again after `store` or a state-dict load)."""
        if self._cached is None:
            self._cached = WidePart.from_state({name: self.get_buffer(name) for name in state_shapes(self.kind)},
                                               self.kind)
        return self._cached

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # new buffer values: rebuild the part on next use
        self._cached = None
        super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, fitted={self.is_fitted}"
