"""After the epoch loop: reload the best epoch's weights, evaluate them on validation and test beside the
baselines, and assemble what the run folder gets (metrics.json, history.csv, test_predictions.csv).

Nothing here writes files; `abag.train` does. May import from: splits, baselines, checkpoint, metrics,
metrics_document, pair_data, train_setup, training_state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .checkpoint import load_checkpoint, load_model_weights
from .metrics_document import build_metrics
from .pair_data import predict_data, sigmoid
from .train_setup import RunInputs
from .training_state import TrainingState


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


def evaluation_groups(run: RunInputs) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the antigen cluster (the split's groups when it has them) and the antibody, for the
    within-cluster and within-antibody metrics and the cluster bootstrap."""
    from .splits import row_groups

    split = run.split
    if split.groups is not None and split.method == "antigen":
        clusters = np.asarray(split.groups)
    else:
        clusters = row_groups(run.frame, "antigen", identity=run.config.split_identity).labels
    return np.asarray(clusters), np.asarray(row_groups(run.frame, "antibody").labels)


def finalize(state: TrainingState, run: RunInputs, best_path: Path, stopped_early: bool) -> FinalReport:
    """Evaluate the best epoch on validation and test, with the baselines on the same split."""
    from .baselines import evaluate_baselines
    from .metrics import evaluate_predictions, format_comparison

    reload_best(state, best_path)
    config, frame, parts = run.config, run.frame, run.parts
    clusters, antibodies = evaluation_groups(run)
    results, predictions = {}, {}
    for name in ("val", "test"):
        data = run.data[name]
        if len(data) == 0:
            results[name] = None
            continue
        pkd, logits = predict_data(state.model, data, run.device, precision=run.precision)
        predictions[name] = (pkd, sigmoid(logits))
        results[name] = evaluate_predictions(data.target.numpy(), pkd, sigmoid(logits),
                                             censored=data.censored.numpy(), threshold=config.binder_threshold,
                                             seed=config.seed, groups=clusters[parts[name]],
                                             antibody_groups=antibodies[parts[name]])
    baselines = {}
    if len(run.data["test"]):
        baselines = evaluate_baselines(frame.iloc[parts["train"]], frame.iloc[parts["test"]],
                                       threshold=config.binder_threshold, seed=config.seed,
                                       groups=clusters[parts["test"]], antibody_groups=antibodies[parts["test"]])
    metrics = build_metrics(state.model, run, results, baselines, state.history, state.best_epoch, stopped_early)
    test_predictions = None
    if "test" in predictions:
        test_predictions = frame.iloc[parts["test"]].copy()
        test_predictions["pkd_pred"], test_predictions["binder_prob"] = predictions["test"]
    comparison = None
    if results.get("test"):
        comparison = format_comparison({"model": results["test"], **baselines},
                                       title=f"test ({run.split.description})")
    return FinalReport(metrics, pd.DataFrame(state.history), test_predictions, comparison)
