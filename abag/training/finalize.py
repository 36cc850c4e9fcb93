"""After the epoch loop: reload the best epoch's weights, evaluate them on validation and test beside the
baselines, and assemble what the run folder gets (metrics.json, history.csv, test_predictions.csv).

It also calibrates the prediction intervals on the validation part (`abag.posthoc.intervals`: residuals of the best
epoch, pkd_std = 0 for one model, applicability against the training part) and adds the calibration and the
training antigen/antibody references to best.pt and last.pt (`store_support`: the only file this module
writes, with best.pt's weights once the deep part of a wide model is centred on the training rows and scaled on the
validation rows: `abag.model.apply.centre_deep` and `scale_deep`;
everything else `abag.train` writes). Before any of that it fits the familiar-antigen correction
(`abag.posthoc.familiar_correction`) on the best epoch's in-sample outputs over the training part, so the validation
and test metrics are those of the model as saved. What needs only the split (the references with the held-out rows'
nearest chains, the evaluation groups, the k-mer ridge design, the baselines) comes from `abag.training.alongside`,
usually computed while the epochs ran.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from abag import distributed
from abag.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from abag.evaluation.metrics import evaluate_predictions
from abag.evaluation.tables import format_comparison
from abag.model.apply import centre_deep, predict_data, scale_deep, sigmoid
from abag.model.ridge import RidgeDesign
from abag.posthoc.familiar_correction import corrected, fit_for_model
from abag.posthoc.intervals import (
    DEFAULT_COVERAGE,
    SCALE_MIN_ROWS,
    IntervalCalibration,
    PredictionSupport,
    applicability,
    interval_report,
    nearest_identities,
)
from abag.stage_times import beside, stage
from abag.training.alongside import Alongside, FinalInputs, final_inputs
from abag.training.config import RunInputs
from abag.training.metrics_document import build_metrics
from abag.training.state import TrainingState


@dataclass
class FinalReport:
    """What the run folder receives at the end of training."""

    metrics: dict
    history: pd.DataFrame = field(repr=False)
    test_predictions: pd.DataFrame | None = field(repr=False)
    comparison: str | None  # the printed model-vs-baselines table on the test part


def reload_best(state: TrainingState, best_path: Path) -> None:
    """Load best.pt's weights into the model, refusing weights whose keys do not fit it."""
    if best_path.exists():
        weights = load_checkpoint(best_path)["model_state_dict"]
        load_model_weights(state.model, weights, state.model.trainable_state_dict().keys(), best_path)


def finalize(state: TrainingState, run: RunInputs, best_path: Path, stopped_early: bool,
             alongside: Alongside[FinalInputs] | None = None) -> FinalReport:
    """Evaluate the best epoch on validation and test, with the baselines on the same split. `alongside`:
    `final_inputs` started beside the epoch loop (None: computed here)."""

    config, frame, parts = run.config, run.frame, run.parts
    with stage("evaluate"):
        reload_best(state, best_path)
        deep_shift = centre_deep(state.model, run.data["train"], run.device, run.precision)  # None without wide
        deep_scale = scale_deep(state.model, run.data["val"], run.device, run.precision)  # None: not scaled
        if deep_scale is not None and deep_scale != 1.0:
            # Centred, the raw part's training mean was -shift; scaled, it is -beta * shift, so the shift that
            # centres it again is beta * shift (no second pass over the training rows).
            with torch.no_grad():
                state.model.head.deep_shift.mul_(deep_scale)
            deep_shift = float(state.model.head.deep_shift)
    with stage("references and baselines"):
        # The validation and test rows' nearest training antigens and antibodies (the correction and the
        # calibration read them from the references' memo), the k-mer ridge design, the baselines' metrics.
        if alongside is None:
            inputs = final_inputs(run, correcting=state.model.config.familiar_correction != "none")
        else:  # computed during the epochs; this stage is the wait for the rest
            inputs = alongside.result()
            beside("references and baselines", alongside.seconds)
    support, clusters, antibodies, baselines = inputs.support, inputs.clusters, inputs.antibodies, inputs.baselines
    with stage("familiar correction"):
        state.model.familiar_correction = fit_correction(state, run, support, clusters[parts["train"]], inputs.design)
    inputs.design = None  # distinct chains x features: released before the evaluation
    predictions = {}
    with stage("evaluate"):
        for name in ("val", "test"):
            data = run.data[name]
            if len(data):
                pkd, logits = predict_data(state.model, data, run.device, precision=run.precision)
                with stage("familiar correction"):
                    pkd, logits = corrected(state.model, data.frame, pkd, logits)
                predictions[name] = (pkd, sigmoid(logits))

        def evaluation(name: str) -> dict:
            data, (pkd, binder_prob) = run.data[name], predictions[name]
            return evaluate_predictions(data.target.numpy(), pkd, binder_prob, censored=data.censored.numpy(),
                                        threshold=config.binder_threshold, seed=config.seed,
                                        groups=clusters[parts[name]], antibody_groups=antibodies[parts[name]])

        # Each part's bootstrap intervals are numpy work that releases the GIL: the two parts run side by side.
        with ThreadPoolExecutor(max_workers=2) as pool:
            evaluations = {name: pool.submit(evaluation, name) for name in predictions}
        results = {name: evaluations[name].result() if name in evaluations else None for name in ("val", "test")}
    metrics = build_metrics(state.model, run, results, baselines, state.history, state.best_epoch, stopped_early)
    with stage("intervals"):
        metrics["intervals"] = calibrate_single_split(run, predictions, state.best_epoch, support)
        state.model.prediction_support = support
        if distributed.is_main_process():
            if deep_shift is not None:  # best.pt predicts as the model evaluated here (last.pt keeps training's 0)
                save_checkpoint({**load_checkpoint(best_path), "model_state_dict": state.model.trainable_state_dict()},
                                best_path)
            store_support(support, [best_path, best_path.with_name("last.pt")], state.model.familiar_correction)
    if deep_shift is not None:
        metrics["wide"]["deep_shift"] = deep_shift
        metrics["wide"]["deep_scale"] = deep_scale
    test_predictions = None
    if "test" in predictions:
        test_predictions = frame.iloc[parts["test"]].copy()
        test_predictions["pkd_pred"], test_predictions["binder_prob"] = predictions["test"]
    comparison = None
    if results.get("test"):
        comparison = format_comparison({"model": results["test"], **baselines},
                                       title=f"test ({run.split.description})")
    return FinalReport(metrics, pd.DataFrame(state.history), test_predictions, comparison)


def fit_correction(state: TrainingState, run: RunInputs, support: PredictionSupport, clusters: np.ndarray,
                   design: RidgeDesign | None = None):
    """The familiar-antigen correction (`abag.posthoc.familiar_correction`) on the best epoch's in-sample outputs over
    the training part (`clusters`: its rows' antigen clusters; `design`: their k-mer ridge design); None when the
    model config turns it off."""
    if state.model.config.familiar_correction == "none" or len(run.data["train"]) == 0:
        return None
    pkd, logits = predict_data(state.model, run.data["train"], run.device, precision=run.precision)
    return fit_for_model(state.model, run.data["train"].frame, pkd, logits, support, clusters, design)


def calibrate_single_split(run: RunInputs, predictions: dict, best_epoch: int, support: PredictionSupport) -> dict:
    """Interval calibration on the validation residuals of the best epoch (one model: pkd_std = 0), set on
    `support` (which holds the training references), and metrics.json's `intervals` section (the test part,
    when there is one, is honest)."""
    frame, parts = run.frame, run.parts
    names = [name for name in ("val", "test") if name in predictions]
    # One search per reference for both parts (each search first collects the training chains' seeds).
    held_out = np.concatenate([parts[name] for name in names]) if names else np.zeros(0, int)
    antigens, antibodies = nearest_identities(frame.iloc[held_out], support.antigen_reference,
                                              support.antibody_reference)
    part, start = {}, 0
    for name in names:
        end = start + len(parts[name])
        antigen, antibody = antigens[start:end], antibodies[start:end]
        part[name] = (run.data[name].target.numpy().astype(float), np.asarray(predictions[name][0], float),
                      applicability(antigen, antibody), run.data[name].censored.numpy(), antigen, antibody)
        start = end
    where = "held-out antigen clusters" if run.split.method == "antigen" else f"a {run.split.method} split"
    section = {"calibrated_on": "val", "method": "split conformal on |y - pred| / scale per applicability class "
               "(Mondrian); scale = non-negative linear fit of |y - pred| on the antigen and antibody novelty "
               f"(1 at fewer than {SCALE_MIN_ROWS} rows); one model, so pkd_std = 0 and the interval comes from "
               "the residuals alone",
               "caveat": f"the validation part ({where}) also chose the best epoch (epoch {best_epoch}), so its "
                         f"residuals are slightly optimistic"}
    if "val" not in part:
        return {**section, "calibration_rows": None}
    y, pred, classes, censored, antigen, antibody = part["val"]
    try:
        support.calibration = IntervalCalibration.fit(y, pred, np.zeros(len(y)), classes, censored=censored,
                                                      antigen_identity=antigen, antibody_identity=antibody)
    except ValueError as exc:  # every validation row censored
        return {**section, "calibration_rows": None, "problem": str(exc)}
    n = support.calibration.counts["all"]
    support.source = f"{n} validation residuals ({where}; they also chose the best epoch)"
    section["calibration_rows"] = support.calibration.counts
    section["scale"] = support.calibration.scale.to_state()
    for name, key in (("val", "val_in_sample"), ("test", "test")):
        if name in part:
            y, pred, classes, censored, antigen, antibody = part[name]
            section[key] = interval_report(y, pred, np.zeros(len(y)), classes, support.calibration,
                                           DEFAULT_COVERAGE, censored, antigen, antibody)
    return section


def store_support(support: PredictionSupport, paths: list[Path], correction=None) -> None:
    """Add the calibration, references and familiar-antigen correction to existing checkpoints (rewritten
    atomically; nothing else changes)."""
    entries = support.to_checkpoint()
    if correction is not None:
        entries["familiar_correction"] = correction.to_state()
    for path in paths:
        if path.exists():
            save_checkpoint({**load_checkpoint(path), **entries}, path)
