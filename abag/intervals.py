"""Prediction intervals and applicability: conformal calibration on out-of-fold residuals.

A row's interval is `pkd_pred ± q · scale`, where `scale = pkd_std + floor` (the members' spread plus a floor,
so a single model still gets an interval) and `q` is the conformal quantile of the calibration rows' normalised
residuals |y − ŷ| / scale, taken separately for each applicability class (Mondrian conformal prediction), since
rows far from every training antigen or antibody have larger errors. A class with too few calibration rows uses
the quantile of all of them. Calibration rows must be scored by a model that never saw their antigen cluster
(the out-of-fold predictions of `abag train --folds K`), so their residuals are honest.

Applicability compares each query with the training set: `nearest_train_antigen_identity` below
`ANTIGEN_NOVEL_BELOW` (the 40% clustering threshold: the antigen belongs to no training cluster) makes it a
novel antigen; `nearest_train_antibody_identity` below `ANTIBODY_NOVEL_BELOW` (80% over the variable domains:
no training antibody of the same lineage) a novel antibody. Imports numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ANTIGEN_NOVEL_BELOW",
    "ANTIBODY_NOVEL_BELOW",
    "APPLICABILITY_CLASSES",
    "DEFAULT_COVERAGE",
    "applicability",
    "IntervalCalibration",
    "interval_coverage",
]

ANTIGEN_NOVEL_BELOW = 0.40
ANTIBODY_NOVEL_BELOW = 0.80
APPLICABILITY_CLASSES = ("in-domain", "novel-antigen", "novel-antibody", "novel-both")
DEFAULT_COVERAGE = 0.80
MIN_CLASS_ROWS = 30  # fewer calibration rows than this in a class: use the pooled quantile


def applicability(antigen_identity: np.ndarray, antibody_identity: np.ndarray,
                  antigen_below: float = ANTIGEN_NOVEL_BELOW,
                  antibody_below: float = ANTIBODY_NOVEL_BELOW) -> np.ndarray:
    """`in-domain`, `novel-antigen`, `novel-antibody` or `novel-both` per row, from the nearest identities."""
    antigen_novel = np.asarray(antigen_identity, dtype=float) < antigen_below
    antibody_novel = np.asarray(antibody_identity, dtype=float) < antibody_below
    index = antigen_novel.astype(int) + 2 * antibody_novel.astype(int)
    return np.asarray(APPLICABILITY_CLASSES, dtype=object)[index]


def _conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The ⌈(n+1)·coverage⌉-th smallest score (finite-sample conformal guarantee); inf when n is too small."""
    n = len(scores)
    rank = math.ceil((n + 1) * coverage)
    if n == 0 or rank > n:
        return math.inf
    return float(np.sort(scores)[rank - 1])


@dataclass
class IntervalCalibration:
    """Conformal quantiles of normalised residuals, per applicability class, for one or more coverages."""

    floor: float                                  # added to pkd_std to form the scale
    quantiles: dict[str, dict[str, float]] = field(default_factory=dict)  # coverage -> class -> q
    counts: dict[str, int] = field(default_factory=dict)                  # class -> calibration rows

    @classmethod
    def fit(cls, y: np.ndarray, pred: np.ndarray, std: np.ndarray, classes: np.ndarray,
            coverages=(0.5, 0.8, 0.9, 0.95), censored: np.ndarray | None = None) -> "IntervalCalibration":
        """Calibrate on held-out rows: measured `y`, predicted `pred`, member spread `std`, applicability class.

        Censored rows are left out (their true value is only bounded).
        """
        y, pred, std = (np.asarray(a, dtype=float) for a in (y, pred, std))
        classes = np.asarray(classes, dtype=object)
        keep = np.isfinite(y) & np.isfinite(pred) & np.isfinite(std)
        if censored is not None:
            keep &= ~np.asarray(censored, dtype=bool)
        y, pred, std, classes = y[keep], pred[keep], std[keep], classes[keep]
        if len(y) == 0:
            raise ValueError("no calibration rows with a measured (uncensored) pKd")
        positive = std[std > 0]
        floor = float(np.median(positive)) if len(positive) else 1.0
        scores = np.abs(y - pred) / (std + floor)
        calibration = cls(floor, {}, {name: int(np.sum(classes == name)) for name in APPLICABILITY_CLASSES})
        calibration.counts["all"] = len(scores)
        for coverage in coverages:
            table = {"all": _conformal_quantile(scores, coverage)}
            for name in APPLICABILITY_CLASSES:
                mine = scores[classes == name]
                table[name] = _conformal_quantile(mine, coverage) if len(mine) >= MIN_CLASS_ROWS else table["all"]
            calibration.quantiles[_key(coverage)] = table
        return calibration

    def coverages(self) -> list[float]:
        return sorted(float(k) for k in self.quantiles)

    def interval(self, pred: np.ndarray, std: np.ndarray, classes: np.ndarray,
                 coverage: float = DEFAULT_COVERAGE) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) per row at `coverage`, which must be one the calibration was fitted for."""
        table = self.quantiles.get(_key(coverage))
        if table is None:
            raise ValueError(f"coverage {coverage:g} was not calibrated; available: "
                             f"{', '.join(f'{c:g}' for c in self.coverages())}")
        q = np.array([table.get(str(c), table["all"]) for c in np.asarray(classes, dtype=object)], dtype=float)
        half = q * (np.asarray(std, dtype=float) + self.floor)
        pred = np.asarray(pred, dtype=float)
        return pred - half, pred + half

    def to_state(self) -> dict:
        """Plain numbers and strings (checkpoint-safe; loads with weights_only)."""
        return {"floor": self.floor, "quantiles": self.quantiles, "counts": self.counts}

    @classmethod
    def from_state(cls, state: dict) -> "IntervalCalibration":
        try:
            quantiles = {str(k): {str(c): float(q) for c, q in v.items()} for k, v in state["quantiles"].items()}
            return cls(float(state["floor"]), quantiles, {str(k): int(v) for k, v in state["counts"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"interval calibration is malformed ({exc})") from None


def _key(coverage: float) -> str:
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie strictly between 0 and 1, got {coverage}")
    return f"{coverage:.4g}"


def interval_coverage(y: np.ndarray, low: np.ndarray, high: np.ndarray, classes: np.ndarray | None = None,
                      censored: np.ndarray | None = None) -> dict:
    """Observed coverage and mean width, overall and per applicability class (censored rows left out)."""
    y, low, high = (np.asarray(a, dtype=float) for a in (y, low, high))
    keep = np.isfinite(y)
    if censored is not None:
        keep &= ~np.asarray(censored, dtype=bool)
    inside = (y >= low) & (y <= high)
    width = high - low

    def summary(mask):
        n = int(mask.sum())
        return {"n": n, "coverage": float(inside[mask].mean()) if n else None,
                "mean_width": float(width[mask].mean()) if n else None}

    result = {"all": summary(keep)}
    if classes is not None:
        classes = np.asarray(classes, dtype=object)
        for name in APPLICABILITY_CLASSES:
            result[name] = summary(keep & (classes == name))
    return result
