"""Prediction intervals and the applicability class of each row.

A row's interval is `pkd_pred ± q · scale(row)`. `scale` (`IntervalScale`) is a non-negative linear fit of the
error size on the member spread and the row's novelty (1 − identity to the nearest training antigen and
antibody, clipped to the calibration range, so never extrapolated); `q` is the split-conformal quantile of the
held-out residuals / scale, one per applicability class (Mondrian). Calibration rows must be scored by a model
that never saw their antigen cluster; a fold ensemble leaves the spread out of the scale (K - 1 of its members
trained on each out-of-fold row itself, so the spread there measures what they memorised, which a new row never
shows: `abag.folds.assembly.calibrate_folds`). Classes: `in-domain`, `novel-antigen` (nearest training
antigen under 40 %, the clustering threshold), `novel-antibody` (under 80 % over the variable domains),
`novel-both`. `PredictionSupport` is what a checkpoint carries for this. Method: docs/intervals.md; measured
coverage: bench/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LinearRegression

from abag.encoding.features import trim_antibody_chains
from abag.identity.novelty import NoveltyReference

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
    "IntervalScale",
    "interval_coverage",
]

ANTIGEN_NOVEL_BELOW = 0.40
ANTIBODY_NOVEL_BELOW = 0.80
APPLICABILITY_CLASSES = ("in-domain", "novel-antigen", "novel-antibody", "novel-both")
DEFAULT_COVERAGE = 0.80
MIN_CLASS_ROWS = 30  # fewer calibration rows than this in a class: use the pooled quantile
SCALE_MIN_ROWS = 100  # fewer calibration rows than this: no fitted scale (pkd_std + floor)
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


def _distance(identity, n: int, neutral: float, low: float, high: float) -> np.ndarray:
    """1 − identity, clipped to the calibration's range; unknown (NaN or absent) identities get `neutral`."""
    if identity is None:
        return np.full(n, neutral)
    distance = 1.0 - np.asarray(identity, dtype=float)
    return np.clip(np.where(np.isfinite(distance), distance, neutral), low, high)


@dataclass(frozen=True)
class IntervalScale:
    """The expected error size of a row: intercept + spread·pkd_std + novelty terms, never below `minimum`.

    The spread term counts only for rows of `spread_classes` (None: every row). Novelty distances
    (1 − nearest identity) are clipped to the `*_range` seen in calibration; a row whose identity is unknown gets
    the calibration median (`neutral`). The default is a constant scale of 1.
    """

    intercept: float = 1.0
    spread: float = 0.0
    antigen_distance: float = 0.0
    antibody_distance: float = 0.0
    antigen_range: tuple[float, float] = (0.0, 1.0)
    antibody_range: tuple[float, float] = (0.0, 1.0)
    neutral: tuple[float, float] = (0.0, 0.0)     # (antigen, antibody) distance used where identity is unknown
    minimum: float = 0.0
    spread_classes: tuple[str, ...] | None = None  # applicability classes whose spread counts (None: all)

    @classmethod
    def fixed(cls, std: np.ndarray) -> "IntervalScale":
        """`pkd_std + floor` (floor = the median positive spread, 1 when there is none): no fit."""
        positive = std[std > 0]
        return cls(intercept=float(np.median(positive)) if len(positive) else 1.0, spread=1.0 if len(positive) else 0.0)

    @classmethod
    def fit(cls, abs_error: np.ndarray, std: np.ndarray | None, classes: np.ndarray, antigen_identity=None,
            antibody_identity=None, spread_classes: Sequence[str] | None = None) -> "IntervalScale":
        """Non-negative least squares of |error| on [1, antigen distance, antibody distance, pkd_std in the
        `spread_classes` (None: all rows; no spread column when `std` is None)]."""
        n = len(abs_error)
        spread_classes = None if spread_classes is None else tuple(str(c) for c in spread_classes)
        if n < SCALE_MIN_ROWS:
            return cls.fixed(np.zeros(n) if std is None else std)
        columns, ranges, neutral = [np.ones(n)], [], []
        for identity in (antigen_identity, antibody_identity):
            raw = None if identity is None else 1.0 - np.asarray(identity, dtype=float)
            finite = raw[np.isfinite(raw)] if raw is not None else np.zeros(0)
            low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 0.0)
            middle = float(np.median(finite)) if len(finite) else 0.0
            ranges.append((low, high))
            neutral.append(middle)
            columns.append(_distance(identity, n, middle, low, high))
        std = np.zeros(n) if std is None else std
        columns.append(std * _spread_counts(classes, spread_classes))
        fitted = LinearRegression(fit_intercept=False, positive=True).fit(np.column_stack(columns), abs_error)
        c0, c_antigen, c_antibody, c_spread = (float(c) for c in fitted.coef_)
        scale = cls(c0, c_spread, c_antigen, c_antibody, ranges[0], ranges[1], (neutral[0], neutral[1]),
                    spread_classes=spread_classes)
        typical = float(np.median(scale(std, classes, antigen_identity, antibody_identity)))
        if not typical > 0:  # every residual zero, or a degenerate fit: a constant scale
            return cls.fixed(np.zeros(n))
        return dataclasses.replace(scale, minimum=0.1 * typical)  # no row's interval collapses to a point

    def __call__(self, std: np.ndarray, classes=None, antigen_identity=None, antibody_identity=None) -> np.ndarray:
        """The scale of each row, from its spread, applicability class and nearest training identities."""
        std = np.asarray(std, dtype=float)
        n = len(std)
        if classes is None and self.spread and self.spread_classes is not None:
            raise ValueError(f"the spread counts only in {', '.join(self.spread_classes)}: pass the rows' classes")
        counts = 1.0 if classes is None else _spread_counts(classes, self.spread_classes)
        value = (self.intercept + self.spread * std * counts
                 + self.antigen_distance * _distance(antigen_identity, n, self.neutral[0], *self.antigen_range)
                 + self.antibody_distance * _distance(antibody_identity, n, self.neutral[1], *self.antibody_range))
        return np.maximum(value, self.minimum)

    def to_state(self) -> dict:
        return {**dataclasses.asdict(self), "antigen_range": list(self.antigen_range),
                "antibody_range": list(self.antibody_range), "neutral": list(self.neutral),
                "spread_classes": None if self.spread_classes is None else list(self.spread_classes)}

    @classmethod
    def from_state(cls, state: dict) -> "IntervalScale":
        pairs = {k: tuple(float(x) for x in state[k]) for k in ("antigen_range", "antibody_range", "neutral")}
        if any(len(v) != 2 for v in pairs.values()):
            raise ValueError("scale ranges must have two values")
        singles = {k: float(state[k]) for k in ("intercept", "spread", "antigen_distance", "antibody_distance",
                                                  "minimum")}
        spread_classes = state.get("spread_classes")
        return cls(**singles, **pairs,
                   spread_classes=None if spread_classes is None else tuple(str(c) for c in spread_classes))


def _spread_counts(classes: np.ndarray, spread_classes: tuple[str, ...] | None) -> np.ndarray | float:
    """1.0 for rows whose spread enters the scale, 0.0 for the others."""
    if spread_classes is None:
        return 1.0
    return np.isin(np.asarray(classes, dtype=object).astype(str), spread_classes).astype(float)


@dataclass
class IntervalCalibration:
    """Conformal quantiles of residuals / `scale`, per applicability class, for one or more coverages."""

    scale: IntervalScale
    quantiles: dict[str, dict[str, float]] = field(default_factory=dict)  # coverage -> class -> q
    counts: dict[str, int] = field(default_factory=dict)                  # class -> calibration rows

    @classmethod
    def fit(cls, y: np.ndarray, pred: np.ndarray, std: np.ndarray | None, classes: np.ndarray,
            coverages: Sequence[float] = CALIBRATED_COVERAGES, censored: np.ndarray | None = None,
            antigen_identity=None, antibody_identity=None, spread_classes: Sequence[str] | None = None,
            scale: IntervalScale | None = None) -> "IntervalCalibration":
        """Calibrate on held-out rows: measured `y`, predicted `pred`, applicability class, and the nearest
        training identities (each row against the training rows of the model that predicted it).

        `std` is the member spread; it enters the scale only for rows of `spread_classes` (None: all), the
        classes whose calibration rows measured it as new rows will, and not at all when `std` is None.
        Censored rows are left out (their true value is only bounded). A given `scale` is used as it is
        (`IntervalScale.fixed(std)` reproduces the first calibration, `pkd_std + floor`), not fitted.
        """
        y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
        honest = std is not None
        std = np.asarray(std, dtype=float) if honest else np.zeros(len(y))
        novelty = [None if a is None else np.asarray(a, dtype=float) for a in (antigen_identity, antibody_identity)]
        classes = np.asarray(classes, dtype=object)
        keep = np.isfinite(y) & np.isfinite(pred) & np.isfinite(std)
        if censored is not None:
            keep &= ~np.asarray(censored, dtype=bool)
        if not keep.any():
            raise ValueError("no calibration rows with a measured (uncensored) pKd")
        y, pred, std, classes = y[keep], pred[keep], std[keep], classes[keep]
        novelty = [None if a is None else a[keep] for a in novelty]
        error = np.abs(y - pred)
        if scale is None:
            scale = IntervalScale.fit(error, std if honest else None, classes, *novelty, spread_classes=spread_classes)
        scores = error / scale(std, classes, *novelty)
        calibration = cls(scale, {}, {name: int(np.sum(classes == name)) for name in APPLICABILITY_CLASSES})
        calibration.counts["all"] = len(scores)
        for coverage in coverages:
            table = {"all": _conformal_quantile(scores, coverage)}
            for name in APPLICABILITY_CLASSES:
                mine = scores[classes == name]
                table[name] = _conformal_quantile(mine, coverage) if len(mine) >= MIN_CLASS_ROWS else table["all"]
            calibration.quantiles[_key(coverage)] = table
        return calibration

    @property
    def floor(self) -> float:
        """The scale of a row with zero spread and the least novelty seen in calibration."""
        scale = self.scale
        least = (scale.intercept + scale.antigen_distance * scale.antigen_range[0]
                 + scale.antibody_distance * scale.antibody_range[0])
        return float(max(least, scale.minimum))

    def coverages(self) -> list[float]:
        return sorted(float(k) for k in self.quantiles)

    def interval(self, pred: np.ndarray, std: np.ndarray, classes: np.ndarray, coverage: float = DEFAULT_COVERAGE,
                 antigen_identity=None, antibody_identity=None) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) per row at `coverage`, which must be one the calibration was fitted for. Pass the rows'
        nearest training identities (`annotate` does); without them the scale uses the calibration's median."""
        table = self.quantiles.get(_key(coverage))
        if table is None:
            raise ValueError(f"coverage {coverage:g} was not calibrated; available: "
                             f"{', '.join(f'{c:g}' for c in self.coverages())}")
        q = np.array([table.get(str(c), table["all"]) for c in np.asarray(classes, dtype=object)], dtype=float)
        half = q * self.scale(np.asarray(std, dtype=float), classes, antigen_identity, antibody_identity)
        pred = np.asarray(pred, dtype=float)
        return pred - half, pred + half

    def to_state(self) -> dict:
        """Plain numbers and strings (checkpoint-safe; loads with weights_only)."""
        return {"scale": self.scale.to_state(), "quantiles": self.quantiles, "counts": self.counts}

    @classmethod
    def from_state(cls, state: dict) -> "IntervalCalibration":
        """Rebuild a saved calibration; one saved before the fitted scale (only "floor") is `pkd_std + floor`."""
        try:
            if "scale" in state:
                scale = IntervalScale.from_state(state["scale"])
            else:
                scale = IntervalScale(intercept=float(state["floor"]), spread=1.0)
            quantiles = {str(k): {str(c): float(q) for c, q in v.items()} for k, v in state["quantiles"].items()}
            return cls(scale, quantiles, {str(k): int(v) for k, v in state["counts"].items()})
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

    def annotate(self, predicted: pd.DataFrame, coverage: float = DEFAULT_COVERAGE,
                 also_cover: np.ndarray | None = None) -> pd.DataFrame:
        """`predicted` (with pkd_pred, pkd_std) plus the identity, applicability and interval columns.

        `also_cover`: a second prediction per row whose calibrated interval the reported one must contain too
        (the network's own, where `abag.posthoc.familiar_correction` moved it: the calibration never saw those moves)."""
        out = predicted.copy()
        if self.antigen_reference is not None and self.antibody_reference is not None:
            antigen, antibody = nearest_identities(out, self.antigen_reference, self.antibody_reference)
            classes = applicability(antigen, antibody)
        else:
            antigen = antibody = np.full(len(out), np.nan)
            classes = np.full(len(out), "unknown", dtype=object)
        if self.calibration is not None:
            std = out["pkd_std"].to_numpy(float)
            low, high = self.calibration.interval(out["pkd_pred"].to_numpy(float), std, classes, coverage, antigen,
                                                  antibody)
            if also_cover is not None:
                other_low, other_high = self.calibration.interval(np.asarray(also_cover, float), std, classes,
                                                                  coverage, antigen, antibody)
                low, high = np.fmin(low, other_low), np.fmax(high, other_high)
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
            scale = self.calibration.scale
            parts = [name for name, used in (("member spread", scale.spread > 0),
                                             ("novelty", scale.antigen_distance > 0 or scale.antibody_distance > 0))
                     if used] + ["applicability class"]
            first = (f"pkd_low/pkd_high: {coverage:.0%} interval calibrated on {self.source or 'held-out residuals'}"
                     f" ({' and '.join(parts)} scale it)")
        if (classes == "unknown").all():
            return first + "; applicability unknown (the checkpoint records no training antigens or antibodies)."
        novel_antigen = int(classes.isin(["novel-antigen", "novel-both"]).sum())
        novel_antibody = int(classes.isin(["novel-antibody", "novel-both"]).sum())
        return (f"{first};\n{novel_antigen} of {n} rows are novel-antigen or novel-both (nearest training antigen "
                f"< {ANTIGEN_NOVEL_BELOW:.0%} identity): treat their pKd as the antibody's general affinity, not "
                f"antigen-specific; {novel_antibody} of {n} have a novel antibody (< {ANTIBODY_NOVEL_BELOW:.0%}).")


def interval_report(y: np.ndarray, pred: np.ndarray, std: np.ndarray, classes: np.ndarray,
                    calibration: IntervalCalibration, coverage: float = DEFAULT_COVERAGE,
                    censored: np.ndarray | None = None, antigen_identity=None, antibody_identity=None,
                    bounds: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Coverage and mean width per class at `coverage`, and the Spearman of |error| against `pkd_std`.

    Pass the rows' nearest training identities so that the intervals are the ones `annotate` gives, or the
    intervals themselves as `bounds` (pkd_low, pkd_high)."""
    if bounds is None:
        bounds = calibration.interval(pred, std, classes, coverage, antigen_identity, antibody_identity)
    low, high = (np.asarray(b, dtype=float) for b in bounds)
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
