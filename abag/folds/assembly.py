"""The run folder of a fold ensemble (`abag.folds.members`), once its members are trained.

`assemble` loads every member's best epoch over the shared encoders, predicts each row with the member
that held it out (out-of-fold predictions), fits the baselines out of fold too (each fold's baseline on
that member's training folds), and writes `OUT/test_predictions.csv` (every row, with its member),
`OUT/history.csv` (every member's epochs), `OUT/metrics.json` (schema v2.7: `test` = the pooled
out-of-fold metrics, `val` = the mean of the members' validation metrics, plus a `folds` section) and
the ensemble checkpoint `OUT/checkpoints/best.pt` (= `last.pt`; kind "fold_ensemble", for prediction only:
no training state, which each member's own checkpoints hold): the model settings, every member's head
weights, the fold assignment, and the
prediction-interval calibration (`calibrate_folds`): each row's out-of-fold residual, scaled by its novelty
(identities against its own member's training rows) and, in-domain, by the members' spread, in the
applicability class of that row; with the training antigen and antibody references over all rows; and the
ensemble's familiar-antigen correction (`abag.posthoc.familiar_correction`, fitted on the out-of-fold residuals of the
members' networks; each member's own correction, fitted on its training folds, made its out-of-fold
predictions). The
out-of-fold rows also early-stopped their member, so the out-of-fold metrics are slightly optimistic;
metrics.json says so.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from abag import distributed
from abag.checkpoint import KIND_FOLD_ENSEMBLE, save_checkpoint
from abag.data.splits import row_groups
from abag.evaluation.baselines import fit_baselines
from abag.evaluation.metrics import evaluate_predictions
from abag.evaluation.tables import format_comparison
from abag.identity.novelty import NoveltyReference
from abag.inference import load_trained_model, member_outputs, predict_members
from abag.model.ensemble import FoldEnsemble
from abag.outputs import write_csv_atomic, write_json_atomic
from abag.posthoc.familiar_correction import fit_for_model
from abag.posthoc.intervals import (
    DEFAULT_COVERAGE,
    IntervalCalibration,
    PredictionSupport,
    antibody_keys,
    applicability,
    interval_report,
)
from abag.stage_times import stage

__all__ = ["FoldsReport", "assemble", "OPTIMISM_NOTE"]

OPTIMISM_NOTE = ("each row's out-of-fold prediction comes from the member that never trained on its cluster, but "
                 "that member's held-out fold also chose its best epoch (early stopping), so these metrics are "
                 "slightly optimistic")


@dataclass
class FoldsReport:
    """What the ensemble's run folder receives."""

    metrics: dict
    history: pd.DataFrame = field(repr=False)
    predictions: pd.DataFrame = field(repr=False)
    model: FoldEnsemble = field(repr=False)
    comparison: str


def assemble(setup, members) -> FoldsReport:
    """Out-of-fold predictions and baselines, metrics, the ensemble model; writes them on process 0.

    `setup` is `abag.folds.members._Setup`, `members` the `abag.folds.members.MemberRun`s in member order.
    """
    frame, plan, config = setup.frame, setup.plan, setup.config
    with stage("evaluate"):
        loaded = [load_trained_model(m.run_dir / "checkpoints" / "best.pt", config.device, encoders=setup.encoders)
                  for m in members]
        models = [model for model, _ in loaded]
        cache_dir = config.cache_dir if config.embedding_cache else None
        predictions, network = _out_of_fold(frame, plan, models, cache_dir)
        clusters = plan.groups if plan.grouping == "antigen" else \
            row_groups(frame, "antigen", identity=config.split_identity).labels
        score = _scorer(frame, config, np.asarray(clusters), np.asarray(row_groups(frame, "antibody").labels))
        test = score(predictions["pkd_pred"].to_numpy(), predictions["binder_prob"].to_numpy())
    with stage("baselines"):
        baselines = {name: {**score(column, None), "method": method}
                     for name, (column, method) in _out_of_fold_baselines(frame, plan).items()}
    history = pd.concat([pd.read_csv(m.run_dir / "history.csv").assign(member=m.member) for m in members],
                        ignore_index=True)
    history = history[["member", *[c for c in history.columns if c != "member"]]]
    metrics = _metrics_document(setup, members, test, baselines)
    ensemble = FoldEnsemble.from_members(models)
    with stage("intervals"):
        ensemble.prediction_support, metrics["intervals"], predictions = calibrate_folds(
            ensemble, frame, plan, predictions, cache_dir)
    # The familiar-antigen correction on out-of-fold residuals (each row against the network of the member that
    # held it out): in-sample residuals would hide what the network cannot learn about an antigen, such as its
    # level, because it has fitted its training rows through their antibodies.
    with stage("familiar correction"):
        ensemble.familiar_correction = fit_for_model(ensemble, frame, *network, ensemble.prediction_support,
                                                     np.asarray(clusters))
    metrics["familiar_correction"] = None if ensemble.familiar_correction is None else \
        ensemble.familiar_correction.describe()
    comparison = format_comparison({"model": test, **baselines}, title=f"out of fold ({plan.protocol})")
    if distributed.is_main_process():
        # This run's training settings, not member 1's best.pt's: that file may predate a resume with more epochs.
        settings = {**loaded[0][1]["config"], "train": asdict(config)}
        with stage("write"):
            checkpoint = _ensemble_checkpoint(ensemble, settings, plan, metrics)
            _write(setup.out_dir, predictions, history, metrics, checkpoint)
        setup.log(comparison)
    return FoldsReport(metrics, history, predictions, ensemble, comparison)


def _out_of_fold(frame: pd.DataFrame, plan, models: list, cache_dir) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray]]:
    """Every row (in table order) with `pkd_pred` and `binder_prob` from the member that held it out, and that
    member's network pKd and logit per row (before its familiar-antigen correction)."""
    table = frame.reset_index(drop=True).copy()
    pkd, probability = np.zeros(len(frame), np.float32), np.zeros(len(frame), np.float32)
    network_pkd, network_logits = np.zeros(len(frame)), np.zeros(len(frame))
    for member, model in enumerate(models, start=1):
        rows = plan.held_out(member)
        outputs = member_outputs(model, frame.iloc[rows], cache_dir=cache_dir)
        pkd[rows], probability[rows] = outputs.pkd[0], outputs.binder_prob[0]
        network_pkd[rows], network_logits[rows] = outputs.network_pkd[0], outputs.network_logits[0]
    table["pkd_pred"], table["binder_prob"] = pkd, probability
    table["member"] = plan.member_of_row
    table["fold_group"] = plan.groups
    return table, (network_pkd, network_logits)


def fold_applicability(frame: pd.DataFrame, member_of_row: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(antigen identity, antibody identity, class) of every row against the training rows of the member
    that held it out (so the rows of a held-out antigen cluster come out novel-antigen)."""
    antigen, antibody = np.full(len(frame), np.nan), np.full(len(frame), np.nan)
    antigens, antibodies = frame["antigen"].astype(str).to_numpy(), np.asarray(antibody_keys(frame), dtype=object)
    for member in np.unique(member_of_row):
        mine, others = member_of_row == member, member_of_row != member
        antigen[mine] = NoveltyReference.from_antigens(antigens[others].tolist()).identity(antigens[mine].tolist())
        antibody[mine] = NoveltyReference.from_antigens(antibodies[others].tolist()).identity(
            antibodies[mine].tolist())
    return antigen, antibody, applicability(antigen, antibody)


def calibrate_folds(ensemble: FoldEnsemble, frame: pd.DataFrame, plan, predictions: pd.DataFrame, cache_dir
                    ) -> tuple[PredictionSupport, dict, pd.DataFrame]:
    """The ensemble's interval calibration on the out-of-fold residuals, metrics.json's `intervals` section,
    and the out-of-fold table with pkd_std, identities, applicability and the in-sample 80% interval.

    The members' spread is left out of the scale (it is still reported as pkd_std): K − 1 of the members trained on
    each out-of-fold row itself, so there the spread tracks the row's residual (the members that fitted it agree
    with the observation, the one that did not departs), which on a new row, unseen by every member, it does not.
    On Phillips variants, where the wide part's local term nearly interpolates its training rows, Spearman(|error|,
    spread) was 0.84 on the calibration rows and 0.18 on held-out rows, and with the spread in the scale the 80 %
    interval covered 0.70 of held-out rows (bench/RESULTS.md, "The local term without groups")."""
    y = pd.to_numeric(frame["pkd"], errors="coerce").to_numpy(dtype=float)
    censored = frame["censored"].to_numpy(dtype=bool) if "censored" in frame else np.zeros(len(frame), bool)
    pred = predictions["pkd_pred"].to_numpy(dtype=float)
    std = predict_members(ensemble, frame, cache_dir=cache_dir).std(axis=0)
    antigen, antibody, classes = fold_applicability(frame, plan.member_of_row)
    calibration = IntervalCalibration.fit(y, pred, std, classes, censored=censored, antigen_identity=antigen,
                                          antibody_identity=antibody, spread_classes=())
    source = f"{calibration.counts['all']} out-of-fold residuals of a {plan.k}-fold ensemble"
    support = PredictionSupport.from_training(frame, calibration, source)
    report = interval_report(y, pred, std, classes, calibration, DEFAULT_COVERAGE, censored, antigen, antibody)
    section = {"calibrated_on": "out_of_fold", "source": source, "floor": calibration.floor,
               "scale": calibration.scale.to_state(),
               "method": "split conformal on |y - pred| / scale per applicability class (Mondrian); scale = "
                         "non-negative linear fit of |y - pred| on the antigen and antibody novelty (1 - nearest "
                         "training identity, each row against its member's training rows); pkd_std (the std of all "
                         "members' predictions) is left out: on an out-of-fold row most members trained on that row "
                         "itself, so it is no measure of the spread on new rows",
               "calibration_rows": calibration.counts,
               "out_of_fold_in_sample": report,
               "caveat": "coverage measured on the calibration rows themselves (in-sample); an honest estimate "
                         "needs held-out data (bench/bench_intervals.py)"}
    low, high = calibration.interval(pred, std, classes, DEFAULT_COVERAGE, antigen, antibody)
    table = predictions.assign(pkd_std=std, pkd_low=low, pkd_high=high, nearest_train_antigen_identity=antigen,
                               nearest_train_antibody_identity=antibody, applicability=classes)
    return support, section, table


def _out_of_fold_baselines(frame: pd.DataFrame, plan) -> dict[str, tuple[np.ndarray, str]]:
    """Each baseline's out-of-fold predictions (fitted on each member's training folds) and its method."""
    columns: dict[str, tuple[np.ndarray, str]] = {}
    for member in range(1, plan.k + 1):
        rows = plan.held_out(member)
        fitted = fit_baselines(frame.iloc[np.flatnonzero(plan.member_of_row != member)])
        for name, predictor in fitted.items():
            if name not in columns:
                columns[name] = (np.full(len(frame), np.nan),
                                 f"fitted out of fold on each member's training folds (member 1: {predictor.method})")
            columns[name][0][rows] = predictor.predict(frame.iloc[rows])
    return columns


def _scorer(frame: pd.DataFrame, config, clusters: np.ndarray, antibodies: np.ndarray):
    """`evaluate_predictions` over every row, with the cluster and antibody groupings of a single run."""
    y = pd.to_numeric(frame["pkd"], errors="coerce").to_numpy(dtype=float)
    censored = frame["censored"].to_numpy(dtype=bool) if "censored" in frame else np.zeros(len(frame), bool)

    def score(pkd: np.ndarray, probability: np.ndarray | None) -> dict:
        return evaluate_predictions(y, pkd, probability, censored=censored, threshold=config.binder_threshold,
                                    seed=config.seed, groups=clusters, antibody_groups=antibodies)

    return score


def mean_metrics(parts: list[dict]) -> dict:
    """The members' metrics averaged key by key (numbers only, nested dicts too); counts (`n`, `n_*`) summed.

    None values are left out of a mean (None when no member has a number); intervals, strings and flags,
    which have no meaningful mean, are left out.
    """
    out: dict[str, Any] = {}
    for key in parts[0]:
        present = [p.get(key) for p in parts if p.get(key) is not None]
        if present and all(isinstance(v, dict) for v in present):
            out[key] = mean_metrics(present)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            numbers = [float(v) for v in present if math.isfinite(float(v))]
            counted = key == "n" or key.startswith("n_")
            out[key] = (int(sum(numbers)) if counted else float(np.mean(numbers))) if numbers else None
    return out


def _member_record(plan, run) -> dict:
    """One member in metrics.json's `folds` section."""
    metrics, training = run.metrics, run.metrics["training"]
    return {"member": run.member, "held_out_groups": plan.held_out_groups(run.member),
            "n_train": metrics["data"]["n_train"], "n_val": metrics["data"]["n_val"],
            "best_epoch": training["best_epoch"], "epochs_run": training["epochs_run"],
            "stopped_early": training["stopped_early"], "optimizer_steps": training["optimizer_steps"],
            "val": metrics.get("val"), "run_dir": str(run.run_dir.relative_to(run.run_dir.parents[1])),
            "trained_now": run.trained_now, "seconds": round(run.seconds, 1)}


def _metrics_document(setup, members, test: dict, baselines: dict) -> dict:
    """metrics.json: member 1's document (the same recipe for every member) with the ensemble's results."""
    plan, n = setup.plan, len(setup.frame)
    document = copy.deepcopy(members[0].metrics)
    trainings = [m.metrics["training"] for m in members]
    description = (f"{plan.k}-fold ensemble, {plan.protocol}: member k trains on the other folds and early-stops "
                   f"on fold k; test = every row predicted out of fold by the member that held it out (slightly "
                   f"optimistic: the same fold chose that member's best epoch); the saved model averages the "
                   f"{plan.k} members")
    document.update({
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "test": test, "val": mean_metrics([m.metrics["val"] for m in members if m.metrics.get("val")]),
        "baselines": {"test": baselines},
    })
    document["data"] = {**setup.data_info, "n_train": n, "n_val": n, "n_test": n, "split": plan.grouping,
                        "split_description": description, "evaluation": "out_of_fold", "folds": plan.k}
    document["training"] = {
        "epochs_run": max(t["epochs_run"] for t in trainings),
        "best_epoch": int(round(float(np.median([t["best_epoch"] for t in trainings])))),
        "stopped_early": all(t["stopped_early"] for t in trainings),
        "optimizer_steps": int(sum(t["optimizer_steps"] for t in trainings)),
        "world_size": trainings[0].get("world_size", 1),
        "aggregation": "epochs_run: the longest member; best_epoch: median over members; optimizer_steps: "
                       "all members together (per member under folds.members)",
    }
    document["improvements"] = [line for line in document.get("improvements", []) if not line.startswith("split:")]
    document["improvements"].append(f"split: {description}; baselines fitted out of fold beside the model")
    document["folds"] = {
        "k": plan.k, "protocol": plan.protocol, "grouping": plan.grouping, "evaluation": "out_of_fold",
        "test": "pooled out-of-fold predictions: every row scored once, by the member that held out its cluster",
        "val": "mean over the members of their validation metrics (member k's validation set is fold k)",
        "caveat": OPTIMISM_NOTE, "members": [_member_record(plan, m) for m in members],
    }
    return document


def _ensemble_checkpoint(ensemble: FoldEnsemble, settings: dict, plan, metrics: dict) -> dict:
    """A weights_only-loadable checkpoint of the ensemble, kind "fold_ensemble": it predicts, and has no training
    state (no epoch, optimizer, scheduler, RNG or history: no single training made it); the run resumes from
    folds.json and each member's own last.pt."""
    checkpoint = {
        "kind": KIND_FOLD_ENSEMBLE, "model_state_dict": ensemble.trainable_state_dict(), "config": settings,
        "ensemble": {"kind": KIND_FOLD_ENSEMBLE, "n_folds": plan.k, "grouping": plan.grouping,
                     "protocol": plan.protocol, "members": metrics["folds"]["members"],
                     "member_of_row": torch.from_numpy(plan.member_of_row.astype(np.int64)),
                     "groups": torch.from_numpy(np.asarray(plan.groups).astype(np.int64))},
    }
    if getattr(ensemble, "prediction_support", None) is not None:
        checkpoint.update(ensemble.prediction_support.to_checkpoint())
    if ensemble.familiar_correction is not None:
        checkpoint["familiar_correction"] = ensemble.familiar_correction.to_state()
    return checkpoint


def _write(out_dir, predictions: pd.DataFrame, history: pd.DataFrame, metrics: dict, checkpoint: dict) -> None:
    """The tables and metrics first, then best.pt and last.pt (last: a complete run has last.pt)."""
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_csv_atomic(out_dir / "test_predictions.csv", predictions)
    write_csv_atomic(out_dir / "history.csv", history)
    write_json_atomic(out_dir / "metrics.json", metrics)
    save_checkpoint(checkpoint, out_dir / "checkpoints" / "best.pt")
    save_checkpoint(checkpoint, out_dir / "checkpoints" / "last.pt")
