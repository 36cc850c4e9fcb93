"""What an antigen entry says about a measured pKd beyond its family: two global descriptors, learned within families.

The familiar-antigen correction (`abag.familiar_correction`) trusts an antigen's k-mers only where the antigen
is familiar, so on an antigen from a cluster the model never saw it adds nothing. Two properties of an antigen
entry are not family-specific:

* the number of chains of the entry (chains are joined with "|"): a complex of several chains or one chain;
* the log10 number of residues (all chains): a fragment, a domain or a whole ectodomain.

They describe what was measured (the construct) as much as what binds, and antigens of one cluster differ in
them (an RBD against a whole spike, one chain against a complex). `AntigenContext` learns their effect *within*
antigen clusters: descriptors and pKd are centred on their cluster's mean (`abag.clustering.cluster_antigens`
at 40 % identity) and a ridge without intercept is fitted to what is left, with its penalty chosen by
leave-one-out (`sklearn.linear_model.RidgeCV`). So it learns how constructs of one family differ, not how
families differ in level (a between-family slope learned from a few hundred families does not carry to new
ones, and moved pooled Spearman on unseen clusters down in bench/RESULTS.md). The term is centred on the
training mean of the descriptors, and the descriptors are held inside their training range, so a query with
more chains or residues than any training antigen gets the effect of the largest one. Imports numpy, pandas,
sklearn and abag's clustering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV

from .clustering import cluster_antigens, split_antigen_chains

__all__ = ["AntigenContext", "antigen_descriptors", "DESCRIPTORS"]

DESCRIPTORS = ("antigen_chains", "log10_antigen_residues")
ALPHAS = np.logspace(-2, 4, 13)
STATE_VERSION = 1


def antigen_descriptors(antigens: Sequence[str]) -> np.ndarray:
    """(n, 2): the number of chains ("|"-joined) and log10 of the residue count of each antigen entry."""
    chains = [split_antigen_chains(a) for a in antigens]
    n_chains = np.array([max(1, len(c)) for c in chains], dtype=float)
    residues = np.array([max(1, sum(len(x) for x in c)) for c in chains], dtype=float)
    return np.column_stack([n_chains, np.log10(residues)])


def _centred_on_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame(values.reshape(len(values), -1))
    return (frame - frame.groupby(groups).transform("mean")).to_numpy().reshape(values.shape)


@dataclass
class AntigenContext:
    """A fitted within-cluster ridge of pKd on the antigen descriptors (`DESCRIPTORS`)."""

    coef: np.ndarray          # (2,) per descriptor, on standardised descriptors
    mean: np.ndarray          # (2,) training means (the term is 0 there)
    scale: np.ndarray         # (2,) training standard deviations (1 where constant)
    low: np.ndarray           # (2,) training minimum of each descriptor
    high: np.ndarray          # (2,) training maximum
    alpha: float
    clusters: int             # antigen clusters of the training rows

    @classmethod
    def fit(cls, antigens: Sequence[str], pkd: np.ndarray, clusters: Sequence | None = None) -> "AntigenContext":
        """Fit on training rows' antigens and pKd; `clusters` (one label per row) defaults to the antigens'
        40 %-identity clusters."""
        antigens = [str(a) for a in antigens]
        y = np.asarray(pkd, dtype=float)
        if len(antigens) != len(y) or len(y) == 0:
            raise ValueError(f"{len(antigens)} antigens but {len(y)} pKd values")
        groups = cluster_antigens(antigens) if clusters is None else np.asarray(clusters)
        x = antigen_descriptors(antigens)
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        within_x = _centred_on_groups((x - mean) / scale, groups)
        within_y = _centred_on_groups(y, groups)
        if not np.any(within_x):  # no cluster holds two different constructs: nothing to learn
            coef, alpha = np.zeros(x.shape[1]), float("nan")
        else:
            ridge = RidgeCV(alphas=ALPHAS, fit_intercept=False).fit(within_x, within_y)
            coef, alpha = np.asarray(ridge.coef_, dtype=float), float(ridge.alpha_)
        return cls(coef, mean, scale, x.min(axis=0), x.max(axis=0), alpha, int(len(np.unique(groups))))

    def predict(self, antigens: Sequence[str]) -> np.ndarray:
        """The context term per antigen (descriptors clipped to the training range first)."""
        x = np.clip(antigen_descriptors(antigens), self.low, self.high)
        return ((x - self.mean) / self.scale) @ self.coef

    def describe(self) -> dict[str, Any]:
        """metrics.json's entry: pKd per training standard deviation of each descriptor, within clusters."""
        return {"descriptors": dict(zip(DESCRIPTORS, self.coef.round(4).tolist())),
                "alpha": None if np.isnan(self.alpha) else self.alpha, "training_clusters": self.clusters}

    def to_state(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        return {"version": STATE_VERSION, "coef": self.coef.tolist(), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "low": self.low.tolist(), "high": self.high.tolist(),
                "alpha": self.alpha, "clusters": self.clusters}

    @classmethod
    def from_state(cls, state: Any) -> "AntigenContext":
        """Inverse of `to_state`; ValueError naming what is wrong for a malformed entry."""
        try:
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"version {state.get('version')!r}, expected {STATE_VERSION}")
            arrays = [np.asarray(state[k], dtype=float) for k in ("coef", "mean", "scale", "low", "high")]
            alpha, clusters = float(state["alpha"]), int(state["clusters"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"antigen context state is unusable ({exc!r})") from None
        if any(a.shape != (len(DESCRIPTORS),) for a in arrays):
            raise ValueError(f"antigen context state needs {len(DESCRIPTORS)} values per array")
        return cls(*arrays, alpha, clusters)
