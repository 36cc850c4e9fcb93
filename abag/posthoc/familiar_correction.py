"""The antigen-aware part of the default model: the antigen construct's effect, and a correction for antigens
the model has seen.

    pKd = a(antibody) + (1 − w(antigen)) · c(antigen) + w(antigen) · r(heavy, light, antigen),
    r = r0 + r_antigen + v(antibody) · r_antibody

`a` is the model's own prediction: clamp(wide + deep) with a wide part (`abag.model.wide`), else the network's
(the default head, `fusion="antibody_only"`, ignores the antigen).
`c` (`abag.antigen_context`, default `familiar_correction="kmer_ridge_context"`; 0 with `"kmer_ridge"`) is the
effect of the antigen entry's chain count and size learned *within* antigen clusters (how an RBD and a whole
spike of one family differ), centred on the training antigens, so it reorders rows within a family more than it
moves families. It stands in for what is known about an antigen where nothing family-specific is: it counts by
1 − w, fully for an antigen from an unseen cluster, not at all for a training antigen, whose own k-mers (in r)
already carry its construct. `r` is a ridge regression on the 1- and 2-mer composition of all three chains
(`abag.model.ridge.KmerRidgeBaseline`) fitted to the network's residuals y − a on its own training rows, with
the penalty chosen by leave-one-out (GCV above 20,000 rows). A single model uses its in-sample residuals; a
fold ensemble (`abag.kfold_report`) the out-of-fold ones, which also carry what the network cannot learn about
an antigen from its antibodies, such as the antigen's level. `w` is the novelty ramp of `abag.novelty`: the
identity of the query antigen to its nearest training antigen, 0 at or below the 40 % split threshold and 1 at
90 % or more. The ridge is a sum over chains (its intercept r0 and the heavy, light and antigen terms), and
the antibody's terms count by `v`, the same kind of ramp on the antibody's identity to its nearest training
antibody (variable domains): 0 below 80 % (a new lineage, `abag.intervals.ANTIBODY_NOVEL_BELOW`), 1 at 90 %.
Each chain's learned effect is trusted only where that chain is familiar: on SKEMPI, k-mer terms learned from
other lineages moved a new antibody's level by up to 5 pKd. r is held inside the range it spanned on its
training rows, since a new antibody's k-mers can otherwise send a ridge far beyond any pKd it was fitted to. So:

- an antigen from a cluster the model never saw (w = 0) gets the network's prediction plus c, which only
  knows how constructs of a family differ (with `"kmer_ridge"`: the network's prediction exactly);
- a training antigen, or a point mutant of one (w = 1), gets the corrected prediction: the same antibody
  scores differently against two training antigens, and a mutation of the antigen moves the prediction
  through its k-mers.

The binder logit moves with the pKd at the network's own rate (the least-squares slope of its logit on its
pKd over the training rows, never negative), so `binder_prob` agrees with the corrected `pkd_pred`. The sum
stays clamped to [pkd_min, pkd_max]. Censored rows (bounds, not values) do not enter the ridge.

Why a closed-form ridge and not more network: on the measured sets the neural antigen branches (an additive
antigen head, since removed, and `fusion="interaction"`) lost to antibody-only on unseen clusters and to the
k-mer ridge on familiar antigens (bench/RESULTS.md), while a ridge on residuals keeps the network's antibody
term whole.

`FamiliarCorrection.to_state()` is plain data for a checkpoint; it uses the checkpoint's training antigen and
antibody references (`abag.intervals.PredictionSupport`) instead of storing the sequences twice. Imports
numpy, pandas and abag's antigen_context, model.ridge, intervals and novelty.
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
from abag.model.ridge import KmerRidgeBaseline, ridge_from_state, ridge_to_state, training_rows
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
            context: bool = False, clusters: np.ndarray | None = None) -> "FamiliarCorrection":
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
        ridge = KmerRidgeBaseline().fit(usable)
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
                  support: PredictionSupport, clusters: np.ndarray | None = None) -> FamiliarCorrection | None:
    """The correction `model.config` asks for, fitted on the network's outputs over `train_frame` (in-sample or
    out of fold; None for `familiar_correction="none"` or when no training row has a usable pKd); `clusters`
    are the rows' antigen clusters when the caller has them."""
    config = model.config
    if config.familiar_correction == "none" or len(train_frame) == 0:
        return None
    try:
        return FamiliarCorrection.fit(train_frame, pkd_pred, logits, support, (config.pkd_min, config.pkd_max),
                                      context=config.familiar_correction == "kmer_ridge_context", clusters=clusters)
    except ValueError:  # every training row censored: nothing to correct with
        return None


def corrected(model, frame: pd.DataFrame, pkd: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`model`'s outputs for `frame` with its familiar-antigen correction applied (unchanged without one)."""
    correction = getattr(model, "familiar_correction", None)
    if correction is None or len(frame) == 0:
        return pkd, logits
    return correction.apply(frame, pkd, logits)
