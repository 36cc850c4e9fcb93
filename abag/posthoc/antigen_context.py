"""What an antigen entry says about a measured pKd beyond its family: two descriptors, learned within families.

The familiar-antigen correction (`abag.posthoc.familiar_correction`) trusts an antigen's k-mers only where the antigen is
familiar, so on an antigen from a cluster the model never saw it adds nothing. Two properties of an antigen entry
are not family-specific:

* the number of chains of the entry (chains are joined with "|"): a complex of several chains or one chain;
* the log10 number of residues (all chains): a fragment, a domain or a whole ectodomain.

They describe what was measured (the construct) as much as what binds, and antigens of one cluster differ in them
(an RBD against a whole spike, one chain against a complex). `AntigenContext` learns their effect *within* antigen
clusters: descriptors and pKd are centred on their cluster's mean (`abag.identity.clustering.cluster_antigens` at 40 %
identity) and a ridge without intercept (`sklearn.linear_model.Ridge`) is fitted to what is left. Its penalty is
chosen by cross-validation over whole clusters (`sklearn.model_selection.GroupKFold`, up to 10 folds): the effect
must predict the within-cluster differences of clusters it was not fitted on, and an infinite penalty (no term at
all) is among the candidates, so a slope that does not carry from family to family is dropped rather than shrunk
(rows of one cluster are correlated, so leave-one-row-out would trust it too much: on SKEMPI's 12 clusters it kept
a slope of −1.5 pKd per SD of log residues). So it learns how constructs of one family differ, not how families
differ in level (a between-family slope learned from a few hundred families does not carry to new ones, and moved
pooled Spearman on unseen clusters down in bench/RESULTS.md). The term is centred on the training mean of the
descriptors, and the descriptors are held inside their training range, so a query with more chains or residues
than any training antigen gets the effect of the largest one. Imports numpy, pandas, sklearn and abag's
clustering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

from abag.identity.clustering import cluster_antigens, split_antigen_chains

__all__ = ["AntigenContext", "antigen_descriptors", "DESCRIPTORS"]

DESCRIPTORS = ("antigen_chains", "log10_antigen_residues")
ALPHAS = (np.inf, *np.logspace(-2, 4, 13))  # np.inf: no term (first, so that it wins ties)
MAX_FOLDS = 10
STATE_VERSION = 1


def antigen_descriptors(antigens: Sequence[str]) -> np.ndarray:
    """(n, 2): the number of chains ("|"-joined) and log10 of the residue count of each antigen entry (each
    distinct entry computed once)."""
    codes, distinct = pd.factorize(pd.Series(list(antigens), dtype=object).astype(str))
    chains = [split_antigen_chains(a) for a in distinct]
    n_chains = np.array([max(1, len(c)) for c in chains], dtype=float)
    residues = np.array([max(1, sum(len(x) for x in c)) for c in chains], dtype=float)
    return np.column_stack([n_chains, np.log10(residues)]).reshape(-1, 2)[codes]


def _centred_on_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame(values.reshape(len(values), -1))
    return (frame - frame.groupby(groups).transform("mean")).to_numpy().reshape(values.shape)


def _penalty_over_clusters(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The ridge penalty (from `ALPHAS`, np.inf = no term) with the lowest squared error on held-out clusters;
    np.inf when fewer than two clusters hold different constructs."""
    varied = np.unique(groups[np.any(x != 0, axis=1)])
    if len(varied) < 2:
        return np.inf
    folds = list(GroupKFold(n_splits=min(MAX_FOLDS, len(varied))).split(x, y, groups))
    errors = []
    for alpha in ALPHAS:
        error = 0.0
        for train, test in folds:
            if np.isinf(alpha) or not np.any(x[train]):
                error += float(y[test] @ y[test])
                continue
            ridge = Ridge(alpha=alpha, fit_intercept=False).fit(x[train], y[train])
            error += float(np.sum((y[test] - x[test] @ ridge.coef_) ** 2))
        errors.append(error)
    return float(ALPHAS[int(np.argmin(errors))])


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
        alpha = _penalty_over_clusters(within_x, within_y, groups)
        coef = np.zeros(x.shape[1]) if np.isinf(alpha) else \
            np.asarray(Ridge(alpha=alpha, fit_intercept=False).fit(within_x, within_y).coef_, dtype=float)
        return cls(coef, mean, scale, x.min(axis=0), x.max(axis=0), alpha, int(len(np.unique(groups))))

    def predict(self, antigens: Sequence[str]) -> np.ndarray:
        """The context term per antigen (descriptors clipped to the training range first)."""
        x = np.clip(antigen_descriptors(antigens), self.low, self.high)
        return ((x - self.mean) / self.scale) @ self.coef

    def describe(self) -> dict[str, Any]:
        """metrics.json's entry: pKd per training standard deviation of each descriptor, within clusters."""
        return {"descriptors": dict(zip(DESCRIPTORS, self.coef.round(4).tolist())),
                "alpha": None if np.isinf(self.alpha) else self.alpha, "training_clusters": self.clusters,
                "selection": f"cross-validation over antigen clusters (up to {MAX_FOLDS} folds); no term when "
                             "nothing predicted held-out clusters better"}

    def to_state(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        return {"version": STATE_VERSION, "coef": self.coef.tolist(), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "low": self.low.tolist(), "high": self.high.tolist(),
                "alpha": None if np.isinf(self.alpha) else self.alpha, "clusters": self.clusters}

    @classmethod
    def from_state(cls, state: Any) -> "AntigenContext":
        """Inverse of `to_state`; ValueError naming what is wrong for a malformed entry."""
        try:
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"version {state.get('version')!r}, expected {STATE_VERSION}")
            arrays = [np.asarray(state[k], dtype=float) for k in ("coef", "mean", "scale", "low", "high")]
            alpha = np.inf if state["alpha"] is None else float(state["alpha"])
            clusters = int(state["clusters"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"antigen context state is unusable ({exc!r})") from None
        if any(a.shape != (len(DESCRIPTORS),) for a in arrays):
            raise ValueError(f"antigen context state needs {len(DESCRIPTORS)} values per array")
        return cls(*arrays, alpha, clusters)
