"""Use a trained checkpoint: rebuild the model, predict pKd and binder probability, evaluate.

A fold-ensemble checkpoint (`abag train --folds K`, kind "fold_ensemble") is rebuilt
as an `abag.model.ensemble.FoldEnsemble`: predictions are the members' mean, `pkd_std` their spread (0 for a single
model), and `predict_members` gives every member's pKd. The checkpoint's "intervals", "antigen_reference" and
"antibody_reference" entries (`abag.posthoc.intervals.PredictionSupport`) become `model.prediction_support`, from
which `predict_frame` adds `pkd_low`/`pkd_high` (a calibrated interval), the nearest training antigen and
antibody identities and the `applicability` class. A model with a wide part (`abag.model.wide`) holds it in its
head's weights (each fold member its own); `predict_frame` shows it and the deep part as columns. Its
"familiar_correction" entry
(`abag.posthoc.familiar_correction`) becomes `model.familiar_correction`, which moves the predictions for antigens
the model has seen (every member by the same amount). Imports abag's checkpoint, ensemble, errors,
familiar_correction, intervals, model, pair_embeddings and policy modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from abag.checkpoint import load_checkpoint
from abag.distributed import resolve_device
from abag.encoding.pair_embeddings import EmbeddedPairs, embed_pairs, make_caches
from abag.errors import CheckpointError, EncoderUnavailableError
from abag.evaluation.metrics import evaluate_predictions
from abag.model.apply import PairData, predict_parts, sigmoid
from abag.model.config import ModelConfig
from abag.model.ensemble import FoldEnsemble, build_fold_ensemble
from abag.model.network import AbAgModel, build_model
from abag.policy import choose_precision
from abag.posthoc.familiar_correction import FamiliarCorrection, corrected
from abag.posthoc.intervals import DEFAULT_COVERAGE, PredictionSupport, interval_report

_DROPPED_HEAVY_BLOCK = re.compile(r"\.wide\.(level_)?heavy_(coef|shift|alpha|chains)$")
"""Weights of the heavy-chain block that the one-hot wide kinds carried before it was dropped from them."""


def load_trained_model(checkpoint: str | Path, device: str = "auto", *,
                       encoders: dict | None = None) -> tuple[AbAgModel, dict]:
    """Rebuild the model a checkpoint was trained with and load its weights; returns (model, checkpoint).

    A fold-ensemble checkpoint gives a `FoldEnsemble`. `encoders` (name -> loaded encoder) are reused
    instead of loading them again.
    """
    state = load_checkpoint(checkpoint)
    try:
        model_config = ModelConfig.from_dict(state["config"]["model"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint} has no usable model configuration ({exc})") from None
    except CheckpointError as exc:  # an option removed since the release that wrote it
        raise CheckpointError(f"checkpoint {checkpoint}: {exc}") from None
    try:
        model = _build(model_config, state, encoders, checkpoint)
    except EncoderUnavailableError as exc:
        raise EncoderUnavailableError(f"cannot use checkpoint {checkpoint}: its encoder is unavailable here — "
                                      f"{exc}") from None
    weights = state["model_state_dict"]
    if model.antigen_encoder is None and isinstance(weights, dict):
        # Checkpoints from before 2.7.x could hold fine-tuned copies of an antigen encoder the head ignores.
        weights = {k: v for k, v in weights.items() if not k.startswith("antigen_encoder.")}
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # shape mismatches: weights from another architecture
        # torch's first line only names the model ("Error(s) in loading state_dict for …:"); the next says what.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise CheckpointError(f"checkpoint {checkpoint} does not match the model it describes: "
                              f"{' '.join(lines[:2])[:300]}") from None
    missing_head = [k for k in missing if k.startswith("head.")]
    if not missing_head and unexpected and all(_DROPPED_HEAVY_BLOCK.search(k) for k in unexpected):
        raise CheckpointError(f"checkpoint {checkpoint} was written by an earlier abag, whose wide part "
                              f"{model_config.wide!r} carried a heavy-chain 3-mer block that this version dropped "
                              f"(CHANGELOG); train the model again with this version (the shipped model already is)")
    if missing_head or unexpected:
        raise CheckpointError(f"checkpoint {checkpoint} does not match the model it describes "
                              f"(missing {missing_head[:3]}, unexpected {list(unexpected)[:3]})")
    try:
        model.prediction_support = PredictionSupport.from_checkpoint(state)
        if state.get("familiar_correction") is not None:
            model.familiar_correction = FamiliarCorrection.from_state(state["familiar_correction"],
                                                                      model.prediction_support)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {checkpoint} is damaged: {exc}") from None
    target = resolve_device(device)
    train_settings = state["config"].get("train", {}) if isinstance(state["config"], dict) else {}
    model.to(target).eval()
    model.use_precision(_trained_precision(target, train_settings))
    return model, state


def _build(model_config: ModelConfig, state: dict, encoders: dict | None, checkpoint) -> AbAgModel:
    """The untrained model a checkpoint describes: one model, or a fold ensemble of `n_folds` heads."""
    ensemble = state.get("ensemble")
    if ensemble is None:
        return build_model(model_config, encoders)
    try:
        n_folds = int(ensemble["n_folds"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint} is damaged: its fold-ensemble record is unreadable "
                              f"({exc})") from None
    return build_fold_ensemble(model_config, n_folds, encoders)


def _trained_precision(device, train_settings: dict):
    """The precision the run trained in, where this device can run it; otherwise the automatic choice."""
    mixed = bool(train_settings.get("mixed_precision", True))
    try:
        return choose_precision(device, mixed, str(train_settings.get("precision", "auto")))
    except ValueError:  # e.g. a run forced to fp16 on a GPU, predicted on a CPU
        return choose_precision(device, mixed)


def predict_frame(model: AbAgModel, frame: pd.DataFrame, *, cache_dir: str | Path | None = None,
                  batch_size: int = 256, progress: bool = False, coverage: float | None = DEFAULT_COVERAGE
                  ) -> pd.DataFrame:
    """`frame` plus `pkd_pred`, `binder_prob`, `pkd_std`, the parts `pkd_wide` and `pkd_deep`, and (unless
    `coverage` is None) the interval columns. What `pkd_pred` is, over the K members (K = 1 for one model):

        pkd_pred = mean_k clamp[4, 14](b_k(wide_k(x) + deep_k(x))) (+ the familiar-antigen correction, if any)
        pkd_wide = mean_k wide_k(x)   (the ridge on explicit sequence features; 0 with wide="none")
        pkd_deep = mean_k deep_k(x)   (the head over the language-model vectors, before the clamp)

    with b_k the identity but for wide="grouped_blend" (`WidePart.bounded`: a soft bound to the training pKd
    range), so for one model pkd_pred = clamp(b(pkd_wide + pkd_deep)); `pkd_correction` (only when the model has a
    familiar-antigen correction) is what that correction added, per row.

    For a fold ensemble `pkd_pred` and `binder_prob` are the members' means and `pkd_std` the standard deviation
    of their pKd (ddof 0); for a single model `pkd_std` is 0. With `coverage` (default 0.8) come `pkd_low`,
    `pkd_high`, `nearest_train_antigen_identity`, `nearest_train_antibody_identity` and `applicability`
    (`abag.posthoc.intervals`), from `model.prediction_support`; a model without it gets NaN and a warning. Every
    distinct chain is encoded once (in `cache_dir` when the encoders are frozen, in memory when they were
    fine-tuned). A familiar-antigen correction (`model.familiar_correction`) moves every member's pKd and logit;
    the interval then spans the calibrated intervals around both the corrected and the network's own prediction.
    """
    outputs = member_outputs(model, frame, cache_dir=cache_dir, batch_size=batch_size, progress=progress)
    out = frame.reset_index(drop=True).copy()
    out["pkd_pred"] = outputs.pkd.mean(axis=0)
    out["binder_prob"] = outputs.binder_prob.mean(axis=0)
    out["pkd_std"] = outputs.pkd.std(axis=0)
    out["pkd_wide"] = outputs.wide.mean(axis=0)
    out["pkd_deep"] = outputs.deep.mean(axis=0)
    if outputs.corrected:
        out["pkd_correction"] = (outputs.pkd - outputs.network_pkd).mean(axis=0)
    if coverage is None:
        return out
    support = getattr(model, "prediction_support", None) or PredictionSupport(None, None, None)
    # The calibration measured the residuals of the model's pKd (wide + deep, clamped, corrected where the model
    # has a correction: finalize and the fold assembly calibrate on those); where the correction moved a
    # prediction, the interval also covers the uncorrected one (`PredictionSupport.annotate`).
    moved = outputs.network_pkd.mean(axis=0) if outputs.corrected else None
    return support.annotate(out, coverage, also_cover=moved)


def predict_members(model: AbAgModel, frame: pd.DataFrame, *, cache_dir: str | Path | None = None,
                    batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """The pKd every member predicts for every row: shape (K, len(frame)); (1, n) for a single model."""
    return member_outputs(model, frame, cache_dir=cache_dir, batch_size=batch_size, progress=progress).pkd


@dataclass
class MemberOutputs:
    """Every member's outputs for every row, each (K, n): the network's (with its wide part: clamp(wide + deep)),
    and the model's (the network's moved by `model.familiar_correction`; the same arrays when there is no
    correction), and the parts: `wide` (0 without a wide part) and `deep` (before the clamp)."""

    network_pkd: np.ndarray
    network_logits: np.ndarray
    pkd: np.ndarray
    logits: np.ndarray
    corrected: bool   # whether a familiar-antigen correction was applied
    wide: np.ndarray | None = None
    deep: np.ndarray | None = None

    @property
    def binder_prob(self) -> np.ndarray:
        return sigmoid(self.logits)


def member_outputs(model: AbAgModel, frame: pd.DataFrame, *, cache_dir: str | Path | None = None,
                   batch_size: int = 256, progress: bool = False) -> MemberOutputs:
    """Every member's network outputs and the model's (with its familiar-antigen correction) for `frame`, from
    one pass: the chains are embedded once for all members."""
    members = [model.member(k) for k in range(model.n_folds)] if isinstance(model, FoldEnsemble) else [model]
    if len(frame) == 0:
        empty = np.zeros((len(members), 0), np.float32)
        return MemberOutputs(empty, empty, empty, empty, model.familiar_correction is not None, empty, empty)
    data = _prepared_data(model, frame.reset_index(drop=True), cache_dir, progress)
    device = next(model.head.parameters()).device
    wides, deeps, pkds, logits = [], [], [], []
    for member in members:  # each member adds its own wide part (fitted on its own training rows)
        offset = member.wide_offsets(data.frame) if model.has_wide else None
        deep, pkd, logit = predict_parts(member, data.with_offset(offset), device, batch_size=batch_size)
        wides.append(np.zeros(len(data), np.float32) if offset is None else offset)
        deeps.append(deep)
        pkds.append(pkd)
        logits.append(logit)
    pkd, logit = np.stack(pkds), np.stack(logits)
    return MemberOutputs(pkd, logit, *corrected(model, data.frame, pkd, logit), model.familiar_correction is not None,
                         np.stack(wides), np.stack(deeps))


def embed_frame(model: AbAgModel, frame: pd.DataFrame, cache_dir: str | Path | None = None,
                progress: bool = False) -> EmbeddedPairs:
    """Every distinct chain of `frame` encoded once by `model`'s encoders, in eval mode (through the disk
    cache at `cache_dir` when the encoders are frozen; in memory when they were fine-tuned, since a disk
    cache is keyed by the encoder's name, which does not cover fine-tuned weights)."""
    was_training = model.training
    model.eval()
    try:
        antibody_cache, antigen_cache = make_caches(model, cache_dir if model.encoders_frozen else None,
                                                    progress=progress)
        return embed_pairs(frame, antibody_cache, antigen_cache)
    finally:
        model.train(was_training)


def _prepared_data(model: AbAgModel, frame: pd.DataFrame, cache_dir, progress: bool) -> PairData:
    """`frame` embedded for `model` (through the cache when the encoders are frozen)."""
    labelled = frame if "pkd" in frame else frame.assign(pkd=np.nan)
    embedded = embed_frame(model, labelled, cache_dir, progress)
    return PairData(labelled.assign(pkd=labelled["pkd"].astype(float)), embedded)


def evaluate_frame(model: AbAgModel, frame: pd.DataFrame, *, binder_threshold: float = 9.0,
                   cache_dir: str | Path | None = None, seed: int = 0, coverage: float = DEFAULT_COVERAGE) -> dict:
    """Metrics (regression, binder head, bootstrap interval) of the model on a labelled table, and an
    `intervals` entry: the coverage and mean width of the `coverage` interval per applicability class."""

    predicted = predict_frame(model, frame, cache_dir=cache_dir, coverage=coverage)
    censored = predicted["censored"].to_numpy(dtype=bool) if "censored" in predicted else None
    y, pred = predicted["pkd"].to_numpy(dtype=float), predicted["pkd_pred"].to_numpy()
    metrics = evaluate_predictions(y, pred, predicted["binder_prob"].to_numpy(), censored=censored,
                                   threshold=binder_threshold, seed=seed)
    support = getattr(model, "prediction_support", None)
    if support is not None and support.calibration is not None:
        metrics["intervals"] = interval_report(y, pred, predicted["pkd_std"].to_numpy(), predicted["applicability"],
                                               support.calibration, coverage, censored,
                                               predicted["nearest_train_antigen_identity"].to_numpy(float),
                                               predicted["nearest_train_antibody_identity"].to_numpy(float),
                                               bounds=(predicted["pkd_low"].to_numpy(float),
                                                       predicted["pkd_high"].to_numpy(float)))
        metrics["intervals"]["calibration"] = support.source
    else:
        metrics["intervals"] = None
    return metrics
