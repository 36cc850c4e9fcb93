"""Intervals and applicability end to end: fold runs, single runs, the checkpoint, predict and evaluate."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_sequence, synthetic_frame, write_csv

from abag.checkpoint import load_checkpoint, save_checkpoint
from abag.cli import main
from abag.folds.members import train_folds
from abag.inference import load_trained_model, member_outputs, predict_frame
from abag.model.config import ModelConfig
from abag.posthoc.intervals import APPLICABILITY_CLASSES, INTERVAL_COLUMNS
from abag.training.config import TrainConfig
from abag.training.run import train

TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=32)


def quick(tmp_path, **overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "progress": False, "cache_dir": str(tmp_path / "cache"), **overrides})


@pytest.fixture(scope="module")
def fold_run(tmp_path_factory, tiny_encoders):
    tmp_path = tmp_path_factory.mktemp("interval_folds")
    frame = synthetic_frame(n=240, n_antigens=6, seed=11)
    result = train_folds(frame, tmp_path / "run", TINY, quick(tmp_path), folds=3, encoders=tiny_encoders,
                         log=lambda _: None)
    return frame, result, tmp_path


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, tiny_encoders):
    tmp_path = tmp_path_factory.mktemp("interval_single")
    frame = synthetic_frame(n=160, n_antigens=8, seed=12)
    result = train(frame, tmp_path / "run", TINY, quick(tmp_path), encoders=tiny_encoders, log=lambda _: None)
    return frame, result, tmp_path


def new_antigen_rows(frame: pd.DataFrame, n: int = 6) -> pd.DataFrame:
    """Training antibodies against an antigen unrelated to every training antigen."""
    rows = frame.head(n).copy()
    rows["antigen"] = random_sequence(np.random.default_rng(99), 70)
    return rows


def test_out_of_fold_rows_of_a_held_out_cluster_are_flagged_novel_antigen(fold_run):
    frame, result, _ = fold_run
    table = result.predictions
    # Every antigen is its own cluster (unrelated random sequences), so each row's member never saw its antigen.
    assert set(table["applicability"]) <= {"novel-antigen", "novel-both"}
    assert (table["nearest_train_antigen_identity"] < 0.4).all()
    # The antibodies are close mutants of one template: familiar to every member.
    assert (table["nearest_train_antibody_identity"] >= 0.8).all()
    assert (table["pkd_std"] > 0).all()
    assert (table["pkd_low"] < table["pkd_pred"]).all() and (table["pkd_pred"] < table["pkd_high"]).all()


def test_a_fold_ensemble_checkpoint_carries_what_intervals_need_and_loads_with_weights_only(fold_run):
    _, result, _ = fold_run
    raw = torch.load(result.best_checkpoint, weights_only=True)
    assert {"intervals", "antigen_reference", "antibody_reference"} <= set(raw)
    assert raw["intervals"]["counts"]["all"] == len(result.predictions)
    assert "out-of-fold" in raw["intervals"]["source"]
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    section = metrics["intervals"]
    assert section["calibration_rows"]["all"] == len(result.predictions)
    assert section["out_of_fold_in_sample"]["nominal_coverage"] == 0.8
    covered = section["out_of_fold_in_sample"]["coverage"]["all"]["coverage"]
    assert 0.7 <= covered <= 0.95  # conformal on the same rows: at least nominal, up to ties/finite size
    saved = pd.read_csv(result.out_dir / "test_predictions.csv")
    assert set(INTERVAL_COLUMNS) | {"pkd_std"} <= set(saved.columns)


def test_predicting_with_a_fold_ensemble_needs_no_training_data(fold_run, tiny_encoders):
    frame, result, _ = fold_run
    model, _ = load_trained_model(result.best_checkpoint, "cpu", encoders=tiny_encoders)
    query = pd.concat([frame.head(6), new_antigen_rows(frame)], ignore_index=True)
    predicted = predict_frame(model, query)
    assert set(INTERVAL_COLUMNS) <= set(predicted.columns)
    assert list(predicted["applicability"][:6]) == ["in-domain"] * 6  # training antigens and antibodies
    assert np.allclose(predicted["nearest_train_antigen_identity"][:6], 1.0)
    assert list(predicted["applicability"][6:]) == ["novel-antigen"] * 6
    # A novel antigen's interval uses that class's quantile times the row's scale; a fold ensemble's spread
    # scales no row (most members trained on each out-of-fold calibration row itself).
    calibration = model.prediction_support.calibration
    assert calibration.scale.spread_classes == () and calibration.scale.spread == 0
    scale = calibration.scale(predicted["pkd_std"], predicted["applicability"],
                              predicted["nearest_train_antigen_identity"], predicted["nearest_train_antibody_identity"])
    width = (predicted["pkd_high"] - predicted["pkd_low"]) / scale
    table = calibration.quantiles["0.8"]
    assert np.allclose(width[6:], 2 * table["novel-antigen"])
    # The default model has no post-training term: the prediction is the members' mean of clamp(bound(wide + deep))
    # and the interval the calibrated one around it, for training and novel antigens alike. (With the
    # familiar-antigen correction the interval also spans the network's: tests/posthoc/test_familiar_correction.py.)
    network = pd.Series(member_outputs(model, query).network_pkd.mean(axis=0))
    assert np.allclose(predicted["pkd_pred"], network, atol=1e-5)
    assert np.allclose(width[:6], 2 * table["in-domain"], atol=1e-4)
    narrow = predict_frame(model, query, coverage=0.5)
    assert ((narrow["pkd_high"] - narrow["pkd_low"]) <= (predicted["pkd_high"] - predicted["pkd_low"])).all()


def test_one_model_has_zero_spread_and_an_interval_from_the_validation_residuals_alone(single_run, tiny_encoders):
    frame, result, _ = single_run
    model, state = load_trained_model(result.best_checkpoint, "cpu", encoders=tiny_encoders)
    calibration = model.prediction_support.calibration
    assert calibration.floor == 1.0
    val = frame[result.split_assignment == "val"].reset_index(drop=True)
    predicted = predict_frame(model, val)
    assert (predicted["pkd_std"] == 0).all()
    residuals = np.sort(np.abs(predicted["pkd"] - predicted["pkd_pred"]).to_numpy())
    expected = residuals[math.ceil((len(residuals) + 1) * 0.8) - 1]  # the conformal quantile, pooled
    half = (predicted["pkd_high"] - predicted["pkd_low"]) / 2
    assert np.allclose(half, expected, atol=1e-5)
    assert set(predicted["applicability"]) <= {"novel-antigen", "novel-both"}  # held-out clusters
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert metrics["intervals"]["calibrated_on"] == "val"
    assert f"epoch {state['best_epoch']}" in metrics["intervals"]["caveat"]
    assert metrics["intervals"]["test"]["coverage"]["all"]["n"] == int(np.sum(result.split_assignment == "test"))
    last = torch.load(result.out_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["intervals"] == torch.load(result.best_checkpoint, weights_only=True)["intervals"]


def test_an_old_checkpoint_without_intervals_still_predicts(single_run, tiny_encoders, tmp_path):
    frame, result, _ = single_run
    state = load_checkpoint(result.best_checkpoint)
    old = tmp_path / "old.pt"
    save_checkpoint({k: v for k, v in state.items() if k not in ("intervals",)}, old)
    model, _ = load_trained_model(old, "cpu", encoders=tiny_encoders)
    with pytest.warns(UserWarning, match="no interval calibration"):
        predicted = predict_frame(model, frame.head(5))
    assert predicted["pkd_low"].isna().all() and predicted["pkd_high"].isna().all()
    assert set(predicted["applicability"]) <= set(APPLICABILITY_CLASSES)  # references still there
    older = tmp_path / "older.pt"
    save_checkpoint({k: v for k, v in state.items()
                     if k not in ("intervals", "antigen_reference", "antibody_reference", "familiar_correction")},
                    older)
    model, _ = load_trained_model(older, "cpu", encoders=tiny_encoders)
    with pytest.warns(UserWarning):
        predicted = predict_frame(model, frame.head(5))
    assert (predicted["applicability"] == "unknown").all()
    assert predicted["nearest_train_antigen_identity"].isna().all()
    assert np.isfinite(predicted["pkd_pred"]).all()


def test_a_damaged_calibration_is_a_checkpoint_error(single_run, tiny_encoders, tmp_path):
    from abag.errors import CheckpointError

    _, result, _ = single_run
    state = load_checkpoint(result.best_checkpoint)
    bad = tmp_path / "bad.pt"
    save_checkpoint({**state, "intervals": {"floor": 1.0}}, bad)
    with pytest.raises(CheckpointError, match="damaged"):
        load_trained_model(bad, "cpu", encoders=tiny_encoders)


def test_predict_cli_writes_the_columns_and_prints_the_summary(fold_run, tmp_path, capsys):
    frame, result, cache = fold_run
    data = write_csv(pd.concat([frame.head(4), new_antigen_rows(frame, 3)], ignore_index=True), tmp_path / "q.csv")
    out = tmp_path / "p.csv"
    code = main(["predict", "--checkpoint", str(result.best_checkpoint), "--data", data, "--out", str(out),
                 "--coverage", "90", "--embedding-cache", str(cache / "cache"), "--quiet"])
    assert code == 0
    written = pd.read_csv(out)
    assert set(INTERVAL_COLUMNS) | {"pkd_pred", "pkd_std"} <= set(written.columns)
    assert list(written["applicability"]) == ["in-domain"] * 4 + ["novel-antigen"] * 3
    err = capsys.readouterr().err
    assert "90% interval calibrated on" in err and "3 of 7 rows are novel-antigen or novel-both" in err
    code = main(["predict", "--checkpoint", str(result.best_checkpoint), "--data", data, "--out", str(out),
                 "--coverage", "0.83"])
    assert code == 2 and "calibrated coverages" in capsys.readouterr().err


def test_evaluate_reports_interval_coverage_per_class(fold_run, tmp_path, capsys):
    frame, result, cache = fold_run
    data = write_csv(frame.head(40), tmp_path / "e.csv")
    code = main(["evaluate", "--checkpoint", str(result.best_checkpoint), "--data", data,
                 "--embedding-cache", str(cache / "cache"), "--quiet", "--json"])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    coverage = metrics["intervals"]["coverage"]
    assert coverage["all"]["n"] == 40 and coverage["in-domain"]["n"] == 40
    assert 0 <= coverage["all"]["coverage"] <= 1 and coverage["all"]["mean_width"] > 0
    assert metrics["intervals"]["nominal_coverage"] == 0.8
