"""The antigen terms fitted after the network: pKd = a(antibody) + (1 − w)·c(antigen) + w·r(heavy, light, antigen).

`a` is the model's own prediction (clamp(wide + deep) with a wide part, `abag.model.wide`); `c` the antigen construct term (`abag.posthoc.antigen_context`); `r` a k-mer ridge
(`abag.model.ridge.KmerRidgeBaseline`) on the network's residuals on its training rows (out of fold for a fold ensemble), whose
antibody terms count by the antibody's familiarity v. `w` and `v` ramp with the identity to the nearest training
antigen (0 at 40 %, 1 at 90 %) and antibody (0 below 80 %, 1 at 90 %). `r` is held inside the range it spanned in
training, the binder logit moves with the pKd at the network's own rate, and the sum is clamped to [4, 14].
`FamiliarCorrection.to_state()` is plain data for a checkpoint. Why and how well: docs/intervals.md,
bench/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from abag.identity.novelty import (
    NOVELTY_RAMP,
    NoveltyReference,
    antigen_weight_from_identity,
)
from abag.model.config import CORRECTIONS
from abag.model.ridge import (
    KmerRidgeBaseline,
    RidgeDesign,
    ridge_from_state,
    ridge_to_state,
    training_rows,
)
from abag.posthoc.antigen_context import AntigenContext
from abag.posthoc.intervals import (
    ANTIBODY_NOVEL_BELOW,
    PredictionSupport,
    antibody_keys,
)

__all__ = ["CORRECTIONS", "FamiliarCorrection", "corrected", "fit_for_model", "ridge_from_state", "ridge_to_state"]


STATE_VERSION = 1


@dataclass
class FamiliarCorrection:
    """The fitted correction: the residual ridge, the training antigens it trusts, and the logit rate."""

    ridge: KmerRidgeBaseline
    reference: NoveltyReference        # the training antigens (w = ramp of the identity to the nearest)
    antibody_reference: NoveltyReference  # the training antibodies ("heavy|light" variable domains), for v
    logit_per_pkd: float               # binder-logit change per unit of pKd correction
    pkd_bounds: tuple[float, float]    # the model's clamp
    ridge_range: tuple[float, float]   # the ridge's lowest and highest value on its training rows
    context: AntigenContext | None = None  # the antigen construct term, counted by 1 − w

    @classmethod
    def fit(cls, train_frame: pd.DataFrame, pkd_pred: np.ndarray, logits: np.ndarray,
            support: PredictionSupport, pkd_bounds: tuple[float, float],
            context: bool = False, clusters: np.ndarray | None = None,
            design: RidgeDesign | None = None) -> "FamiliarCorrection":
        """Fit the residual ridge to `train_frame`'s pKd minus the network's `pkd_pred` on those rows (in-sample
        for one model, out of fold for a fold ensemble); `logits` give the binder logit's rate per pKd, and
        `support` the training antigen and antibody references. With `context`, an `AntigenContext` is also fitted,
        to the pKd within antigen clusters (`clusters`: one label per row, the run's own when it has them; else
        computed)."""
        frame = train_frame.reset_index(drop=True)
        pkd_pred, logits = np.asarray(pkd_pred, dtype=float), np.asarray(logits, dtype=float)
        if len(pkd_pred) != len(frame) or len(logits) != len(frame):
            raise ValueError(f"{len(frame)} training rows but {len(pkd_pred)} predictions and {len(logits)} logits")
        residual = pd.to_numeric(frame["pkd"], errors="coerce").to_numpy(dtype=float) - pkd_pred
        usable = training_rows(frame.assign(pkd=residual))
        if usable.empty:
            raise ValueError("no uncensored training row with a finite pKd to fit the correction on")
        antigen_context = None
        if context:  # the construct's effect within antigen clusters, on the pKd (the network is antigen-blind)
            antigens = usable["antigen"].astype(str).tolist()
            measured = pd.to_numeric(frame.loc[usable.index, "pkd"]).to_numpy(float)
            groups = None if clusters is None else np.asarray(clusters)[usable.index.to_numpy()]
            antigen_context = AntigenContext.fit(antigens, measured, groups)
        ridge = KmerRidgeBaseline().fit(usable, design=design)  # design: see `RidgeDesign` (the same rows' XᵀX)
        fitted = ridge.predict(usable)
        return cls(ridge, support.antigen_reference, support.antibody_reference, _logit_rate(pkd_pred, logits),
                   (float(pkd_bounds[0]), float(pkd_bounds[1])), (float(fitted.min()), float(fitted.max())),
                   antigen_context)

    def weights(self, frame: pd.DataFrame) -> np.ndarray:
        """w per row: the antigen's familiarity (0 for an unseen cluster, 1 for a training antigen)."""
        return self.reference.weights(frame["antigen"].astype(str).tolist()).astype(float)

    def antibody_weights(self, frame: pd.DataFrame) -> np.ndarray:
        """v per row: how far the antibody's own k-mer terms count (0 for a new lineage, 1 for a close variant)."""
        identity = self.antibody_reference.identity(antibody_keys(frame))
        return antigen_weight_from_identity(identity, ANTIBODY_NOVEL_BELOW, NOVELTY_RAMP[1])

    def shift(self, frame: pd.DataFrame) -> np.ndarray:
        """(1 − w) · c + w · r per row: what the correction adds to the network's pKd (before the clamp); c is the
        antigen construct term (0 without one). r never leaves the range the ridge spanned on its training rows
        (a new antibody's k-mers can send a ridge far outside it)."""
        weights = self.weights(frame)
        shift = np.zeros(len(frame)) if self.context is None else \
            (1.0 - weights) * self.context.predict(frame["antigen"].astype(str).tolist())
        familiar = weights > 0
        if familiar.any():  # the ridge only runs on rows it can change
            rows = frame.iloc[np.flatnonzero(familiar)]
            terms = self.ridge.chain_contributions(rows)
            ridge = self.ridge.fit_.intercept + terms["antigen"] + self.antibody_weights(rows) * (
                terms["heavy"] + terms["light"])
            shift[familiar] += weights[familiar] * np.clip(ridge, *self.ridge_range)
        return shift

    def apply(self, frame: pd.DataFrame, pkd: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(corrected pKd, corrected logits) for `frame`'s rows; `pkd` and `logits` are (n,) or (members, n), and
        every member moves by the same `shift`."""
        shift = self.shift(frame)
        low, high = self.pkd_bounds
        pkd = np.asarray(pkd, dtype=np.float32)
        corrected = np.clip(pkd + shift.astype(np.float32), low, high)
        moved = corrected - pkd  # what the clamp left of the shift, per member
        return corrected, np.asarray(logits, dtype=np.float32) + np.float32(self.logit_per_pkd) * moved

    def describe(self) -> dict[str, Any]:
        """metrics.json's `familiar_correction` entry."""
        return {"method": "k-mer ridge on the network's training residuals, times the antigen's familiarity "
                          "(0 at <= 40% identity to every training antigen, 1 at >= 90%); its antibody terms "
                          "also times the antibody's (0 below 80% identity to every training antibody, 1 at 90%)",
                "ridge": self.ridge.method, "alpha": self.ridge.alpha_, "logit_per_pkd": self.logit_per_pkd,
                "ridge_range": list(self.ridge_range),
                "training_antigens": len(self.reference.chains),
                "training_antibodies": len(self.antibody_reference.chains),
                "antigen_context": None if self.context is None else self.context.describe()}

    def to_state(self) -> dict[str, Any]:
        """Plain data for a checkpoint (the sequences live in its `antigen_reference` and `antibody_reference`)."""
        return {"version": STATE_VERSION, "kind": "kmer_ridge", "ridge": ridge_to_state(self.ridge),
                "logit_per_pkd": float(self.logit_per_pkd), "pkd_bounds": list(self.pkd_bounds),
                "ridge_range": list(self.ridge_range),
                "context": None if self.context is None else self.context.to_state()}

    @classmethod
    def from_state(cls, state: Any, support: PredictionSupport) -> "FamiliarCorrection":
        """Inverse of `to_state`, given the checkpoint's training references; ValueError if unusable."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION or state.get("kind") != "kmer_ridge":
            raise ValueError(f"'familiar_correction' is not a version-{STATE_VERSION} k-mer ridge correction")
        if support.antigen_reference is None or support.antibody_reference is None:
            raise ValueError("'familiar_correction' needs the training antigens and antibodies ('antigen_reference', "
                             "'antibody_reference'), which are missing")
        try:
            low, high = (float(v) for v in state["pkd_bounds"])
            ridge_low, ridge_high = (float(v) for v in state["ridge_range"])
            rate = float(state["logit_per_pkd"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"'familiar_correction' is unusable ({exc!r})") from None
        context = None if state.get("context") is None else AntigenContext.from_state(state["context"])
        return cls(ridge_from_state(state.get("ridge")), support.antigen_reference, support.antibody_reference, rate,
                   (low, high), (ridge_low, ridge_high), context)


def _logit_rate(pkd_pred: np.ndarray, logits: np.ndarray) -> float:
    """Least-squares slope of the binder logit on the predicted pKd (0 when pKd does not vary or it is < 0)."""
    keep = np.isfinite(pkd_pred) & np.isfinite(logits)
    x, y = pkd_pred[keep], logits[keep]
    if x.size < 2 or np.ptp(x) == 0:
        return 0.0
    x = x - x.mean()
    return max(0.0, float(x @ (y - y.mean()) / (x @ x)))


def fit_for_model(model, train_frame: pd.DataFrame, pkd_pred: np.ndarray, logits: np.ndarray,
                  support: PredictionSupport, clusters: np.ndarray | None = None,
                  design: RidgeDesign | None = None) -> FamiliarCorrection | None:
    """The correction `model.config` asks for, fitted on the network's outputs over `train_frame` (in-sample or
    out of fold; None for `familiar_correction="none"` or when no training row has a usable pKd); `clusters`
    are the rows' antigen clusters when the caller has them, `design` the k-mer ridge design of those rows."""
    config = model.config
    if config.familiar_correction == "none" or len(train_frame) == 0:
        return None
    try:
        return FamiliarCorrection.fit(train_frame, pkd_pred, logits, support, (config.pkd_min, config.pkd_max),
                                      context=config.familiar_correction == "kmer_ridge_context", clusters=clusters,
                                      design=design)
    except ValueError:  # every training row censored: nothing to correct with
        return None


def corrected(model, frame: pd.DataFrame, pkd: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`model`'s outputs for `frame` with its familiar-antigen correction applied (unchanged without one)."""
    correction = getattr(model, "familiar_correction", None)
    if correction is None or len(frame) == 0:
        return pkd, logits
    return correction.apply(frame, pkd, logits)
