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
no training antibody of the same lineage) a novel antibody. Antibodies are compared as their variable
domains ("heavy|light", `abag.features.variable_domain`) with the same chain identity as antigens
(`abag.novelty.NoveltyReference`).

`PredictionSupport` is what a checkpoint carries for all this (the calibration table and the training
antigen and antibody references, as plain data), and `PredictionSupport.annotate` adds the columns
`nearest_train_antigen_identity`, `nearest_train_antibody_identity`, `applicability`, `pkd_low` and
`pkd_high` to a table of predictions. Imports numpy, scipy and abag's features and novelty modules only.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .features import trim_antibody_chains
from .novelty import NoveltyReference

__all__ = [
    "ANTIGEN_NOVEL_BELOW",
    "ANTIBODY_NOVEL_BELOW",
    "APPLICABILITY_CLASSES",
    "DEFAULT_COVERAGE",
    "CALIBRATED_COVERAGES",
    "INTERVAL_COLUMNS",
    "PredictionSupport",
    "antibody_keys",
    "interval_report",
    "applicability",
    "IntervalCalibration",
    "interval_coverage",
]

ANTIGEN_NOVEL_BELOW = 0.40
ANTIBODY_NOVEL_BELOW = 0.80
APPLICABILITY_CLASSES = ("in-domain", "novel-antigen", "novel-antibody", "novel-both")
DEFAULT_COVERAGE = 0.80
MIN_CLASS_ROWS = 30  # fewer calibration rows than this in a class: use the pooled quantile
CALIBRATED_COVERAGES = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 … 0.95: any --coverage on it
INTERVAL_COLUMNS = ("pkd_low", "pkd_high", "nearest_train_antigen_identity", "nearest_train_antibody_identity",
                    "applicability")


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
            coverages: Sequence[float] = CALIBRATED_COVERAGES, censored: np.ndarray | None = None) -> "IntervalCalibration":
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


def antibody_keys(frame: pd.DataFrame) -> list[str]:
    """Each row's antibody as "heavy|light" variable domains (light empty for a single-domain antibody)."""
    light = frame["light"].fillna("").astype(str).tolist() if "light" in frame else [""] * len(frame)
    heavy, light = trim_antibody_chains(frame["heavy"].astype(str).tolist(), light)
    return [f"{h}|{l}" for h, l in zip(heavy, light)]


def nearest_identities(frame: pd.DataFrame, antigen_reference: NoveltyReference,
                       antibody_reference: NoveltyReference) -> tuple[np.ndarray, np.ndarray]:
    """(antigen identity, antibody identity) of every row to its nearest training antigen / antibody."""
    return (antigen_reference.identity(frame["antigen"].astype(str).tolist()),
            antibody_reference.identity(antibody_keys(frame)))


@dataclass
class PredictionSupport:
    """What a checkpoint carries so that predictions get intervals and an applicability class without the
    training data: the calibration, the training antigens and antibodies, and where the calibration came from.

    Any part may be missing (older checkpoints): no calibration gives NaN intervals, no references NaN
    identities and applicability "unknown".
    """

    calibration: IntervalCalibration | None
    antigen_reference: NoveltyReference | None
    antibody_reference: NoveltyReference | None
    source: str = ""          # e.g. "817 out-of-fold residuals of a 5-fold ensemble"

    @classmethod
    def from_training(cls, train_frame: pd.DataFrame, calibration: IntervalCalibration | None,
                      source: str) -> "PredictionSupport":
        """References over the rows a model trained on, with a calibration fitted elsewhere."""
        return cls(calibration, NoveltyReference.from_antigens(train_frame["antigen"].astype(str).tolist()),
                   NoveltyReference.from_antigens(antibody_keys(train_frame)), source)

    def to_checkpoint(self) -> dict[str, Any]:
        """Checkpoint entries "intervals", "antigen_reference", "antibody_reference" (plain data)."""
        entries: dict[str, Any] = {}
        if self.calibration is not None:
            entries["intervals"] = {**self.calibration.to_state(), "source": self.source}
        for name in ("antigen_reference", "antibody_reference"):
            if getattr(self, name) is not None:
                entries[name] = getattr(self, name).to_state()
        return entries

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> "PredictionSupport":
        """The entries `to_checkpoint` wrote (absent ones stay None); ValueError names a malformed one."""
        state = checkpoint.get("intervals")
        calibration = None if state is None else IntervalCalibration.from_state(state)
        references = []
        for name in ("antigen_reference", "antibody_reference"):
            try:
                entry = checkpoint.get(name)
                references.append(None if entry is None else NoveltyReference.from_state(entry))
            except ValueError as exc:
                raise ValueError(f"'{name}': {exc}") from None
        source = str(state.get("source", "")) if isinstance(state, dict) else ""
        return cls(calibration, references[0], references[1], source)

    def annotate(self, predicted: pd.DataFrame, coverage: float = DEFAULT_COVERAGE) -> pd.DataFrame:
        """`predicted` (with pkd_pred, pkd_std) plus the identity, applicability and interval columns."""
        out = predicted.copy()
        if self.antigen_reference is not None and self.antibody_reference is not None:
            antigen, antibody = nearest_identities(out, self.antigen_reference, self.antibody_reference)
            classes = applicability(antigen, antibody)
        else:
            antigen = antibody = np.full(len(out), np.nan)
            classes = np.full(len(out), "unknown", dtype=object)
        if self.calibration is not None:
            low, high = self.calibration.interval(out["pkd_pred"].to_numpy(float), out["pkd_std"].to_numpy(float),
                                                  classes, coverage)
        else:
            warnings.warn("this checkpoint carries no interval calibration (trained before intervals existed): "
                          "pkd_low and pkd_high are NaN; retrain it to get calibrated intervals", stacklevel=3)
            low = high = np.full(len(out), np.nan)
        out["pkd_low"], out["pkd_high"] = low, high
        out["nearest_train_antigen_identity"] = antigen
        out["nearest_train_antibody_identity"] = antibody
        out["applicability"] = classes
        return out

    def summary(self, predicted: pd.DataFrame, coverage: float = DEFAULT_COVERAGE) -> str:
        """One or two lines: what the interval means and how many rows are novel."""
        n = len(predicted)
        classes = predicted["applicability"].astype(str)
        if self.calibration is None:
            first = "pkd_low/pkd_high: NaN (this checkpoint has no interval calibration; retrain to get one)"
        else:
            first = (f"pkd_low/pkd_high: {coverage:.0%} interval calibrated on {self.source or 'held-out residuals'}"
                     f" (member spread and applicability class scale it)")
        if (classes == "unknown").all():
            return first + "; applicability unknown (the checkpoint records no training antigens or antibodies)."
        novel_antigen = int(classes.isin(["novel-antigen", "novel-both"]).sum())
        novel_antibody = int(classes.isin(["novel-antibody", "novel-both"]).sum())
        return (f"{first};\n{novel_antigen} of {n} rows are novel-antigen or novel-both (nearest training antigen "
                f"< {ANTIGEN_NOVEL_BELOW:.0%} identity): treat their pKd as the antibody's general affinity, not "
                f"antigen-specific; {novel_antibody} of {n} have a novel antibody (< {ANTIBODY_NOVEL_BELOW:.0%}).")


def interval_report(y: np.ndarray, pred: np.ndarray, std: np.ndarray, classes: np.ndarray,
                    calibration: IntervalCalibration, coverage: float = DEFAULT_COVERAGE,
                    censored: np.ndarray | None = None) -> dict:
    """Coverage and mean width per class at `coverage`, and the Spearman of |error| against `pkd_std`."""
    low, high = calibration.interval(pred, std, classes, coverage)
    report = interval_coverage(y, low, high, classes, censored)
    y, pred, std = (np.asarray(a, dtype=float) for a in (y, pred, std))
    keep = np.isfinite(y) & np.isfinite(pred)
    if censored is not None:
        keep &= ~np.asarray(censored, dtype=bool)
    error = np.abs(y - pred)[keep]
    spread = std[keep]
    rho = stats.spearmanr(error, spread).statistic if len(error) > 2 and np.ptp(spread) > 0 else None
    novel = np.asarray(classes, dtype=object) != "in-domain"
    report["novel"] = interval_coverage(y[novel], low[novel], high[novel], None,
                                        None if censored is None else np.asarray(censored, dtype=bool)[novel])["all"]
    return {"nominal_coverage": float(coverage), "coverage": report,
            "spearman_abs_error_vs_pkd_std": None if rho is None or not math.isfinite(rho) else float(rho)}
