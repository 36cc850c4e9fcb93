"""The default model's familiar-antigen correction (`abag.familiar_correction`): a k-mer ridge on the network's
training residuals, weighted by how familiar the query antigen is. The antigen counts for antigens the model
has seen and their point mutants; an antigen from an unseen cluster gets exactly the network's prediction."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import mutate, random_sequence

from abag.checkpoint import load_checkpoint, save_checkpoint
from abag.errors import CheckpointError
from abag.inference import load_trained_model, member_outputs, predict_frame
from abag.model.config import LARGE_TABLE_DEFAULTS, ModelConfig
from abag.posthoc.familiar_correction import (
    FamiliarCorrection,
    ridge_from_state,
    ridge_to_state,
)
from abag.posthoc.intervals import PredictionSupport
from abag.training.config import TrainConfig
from abag.training.run import train

# The correction on the antigen-blind network (no wide part, whose k-mer ridge reads the antigen itself): the model
# `abag train` builds for a table too large to number (`LARGE_TABLE_DEFAULTS`), here on the tiny encoder.
TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16, **LARGE_TABLE_DEFAULTS)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def two_antigen_table(n_antibodies: int = 40, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Every antibody measured against two unrelated antigens: strong binders of the first, weak of the second."""
    rng = np.random.default_rng(seed)
    antigens = [random_sequence(rng, 90), random_sequence(rng, 90)]
    rows = []
    for _ in range(n_antibodies):
        heavy, light = random_sequence(rng, 110), random_sequence(rng, 100)
        for antigen, level in zip(antigens, (10.0, 6.0)):
            rows.append({"heavy": heavy, "light": light, "antigen": antigen, "pkd": level + rng.normal(0, 0.3)})
    return pd.DataFrame(rows), antigens


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_encoders):
    frame, antigens = two_antigen_table()
    out = tmp_path_factory.mktemp("familiar")
    config = TrainConfig(epochs=2, progress=False, split="random", cache_dir=str(out / "cache"))
    result = train(frame, out / "run", TINY, config, encoders=tiny_encoders, log=lambda line: None)
    return frame, antigens, result


def test_the_large_table_model_tells_two_training_antigens_and_a_point_mutant_apart(trained):
    frame, antigens, result = trained
    assert LARGE_TABLE_DEFAULTS["familiar_correction"] == "kmer_ridge_context"
    model, _ = load_trained_model(result.best_checkpoint)
    assert model.familiar_correction is not None
    rng = np.random.default_rng(1)
    heavy, light = frame.heavy[0], frame.light[0]
    mutant = mutate(rng, antigens[0], 1)
    queries = pd.DataFrame({"heavy": heavy, "light": light,
                            "antigen": [antigens[0], antigens[1], mutant, random_sequence(rng, 90)]})
    predicted = predict_frame(model, queries)
    first, second, point_mutant, stranger = predicted["pkd_pred"]
    assert first - second > 2.0  # the first antigen's binders are 4 pKd stronger in training
    assert predicted["binder_prob"][0] > predicted["binder_prob"][1]
    assert abs(point_mutant - first) > 1e-3 and abs(point_mutant - first) < abs(first - second)
    context = model.familiar_correction.context.predict(queries.antigen.tolist())
    model.familiar_correction = None
    network = predict_frame(model, queries)["pkd_pred"].to_numpy()
    assert network[0] == pytest.approx(network[1])  # the network alone ignores the antigen
    # an unseen antigen: the network's prediction plus the construct term (here 0: each training antigen is its
    # own cluster, so no family shows what its constructs do)
    assert context.tolist() == [0.0] * 4 and stranger == pytest.approx(network[3], abs=1e-6)


def test_intervals_cover_the_network_too_and_evaluate_scores_those_intervals(trained, monkeypatch):
    from abag.inference import evaluate_frame

    frame, _, result = trained
    model, _ = load_trained_model(result.best_checkpoint)
    rows = frame.head(8)
    predicted = predict_frame(model, rows)
    with monkeypatch.context() as patch:  # the network alone: its own predictions and intervals
        patch.setattr(model, "familiar_correction", None)
        network = predict_frame(model, rows)
    moved = (predicted["pkd_pred"] - network["pkd_pred"]).abs()
    assert (moved > 0.5).all()  # training antigens: the correction moved every prediction
    assert (predicted["pkd_low"] <= np.minimum(predicted["pkd_pred"], network["pkd_pred"])).all()
    assert (predicted["pkd_high"] >= np.maximum(predicted["pkd_pred"], network["pkd_pred"])).all()
    width, network_width = (t["pkd_high"] - t["pkd_low"] for t in (predicted, network))
    assert np.allclose(width, network_width + moved, atol=1e-4)
    reported = evaluate_frame(model, rows)["intervals"]["coverage"]["all"]
    inside = (rows["pkd"].to_numpy() >= predicted["pkd_low"]) & (rows["pkd"].to_numpy() <= predicted["pkd_high"])
    assert reported["coverage"] == pytest.approx(inside.mean()) and reported["mean_width"] == pytest.approx(width.mean())


def test_training_records_the_correction_and_old_checkpoints_have_none(trained, tmp_path):
    _, _, result = trained
    entry = result.metrics["familiar_correction"]
    assert entry["training_antigens"] == 2 and entry["alpha"] > 0 and "ridge" in entry["ridge"]
    state = load_checkpoint(result.best_checkpoint)
    assert state["familiar_correction"]["kind"] == "kmer_ridge"
    assert ModelConfig.from_dict({k: v for k, v in state["config"]["model"].items()
                                  if k != "familiar_correction"}).familiar_correction == "none"
    damaged = tmp_path / "damaged.pt"
    save_checkpoint({**state, "familiar_correction": {**state["familiar_correction"], "ridge": {"ks": [1]}}}, damaged)
    with pytest.raises(CheckpointError, match="damaged.*k-mer ridge"):
        load_trained_model(damaged)


def test_correction_off_trains_the_network_alone(tmp_path, tiny_encoders):
    frame, antigens = two_antigen_table(n_antibodies=12)
    config = TrainConfig(epochs=1, progress=False, split="random", cache_dir=str(tmp_path / "cache"))
    off = dataclasses.replace(TINY, familiar_correction="none")
    result = train(frame, tmp_path / "run", off, config, encoders=tiny_encoders, log=lambda line: None)
    assert result.metrics["familiar_correction"] is None
    assert "familiar_correction" not in load_checkpoint(result.best_checkpoint)
    model, _ = load_trained_model(result.best_checkpoint)
    queries = pd.DataFrame({"heavy": frame.heavy[0], "light": frame.light[0], "antigen": antigens})
    first, second = predict_frame(model, queries)["pkd_pred"]
    assert first == second
    with pytest.raises(ValueError, match="familiar_correction"):
        train(frame, tmp_path / "bad", dataclasses.replace(TINY, familiar_correction="ridge"), config,
              encoders=tiny_encoders, log=lambda line: None)


# ----------------------------------------------------------------------------------------- the correction

def correction_on(frame: pd.DataFrame, pkd_pred: np.ndarray, logits: np.ndarray) -> FamiliarCorrection:
    return FamiliarCorrection.fit(frame, pkd_pred, logits, PredictionSupport.from_training(frame, None, ""), (4.0, 14.0))


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


def test_fit_uses_residuals_skips_censored_rows_and_clamps():
    frame, antigens = two_antigen_table(n_antibodies=30, seed=3)
    flat = np.full(len(frame), 8.0)
    logits = (flat - 9.0) * 0.5
    correction = correction_on(frame, flat, logits)
    shift = correction.shift(frame)
    first = frame.antigen == antigens[0]
    assert shift[first].mean() == pytest.approx(2.0, abs=0.3) and shift[~first].mean() == pytest.approx(-2.0, abs=0.3)
    # a network that already predicts the level leaves nothing to correct
    exact = correction_on(frame, frame.pkd.to_numpy(), logits)
    assert np.abs(exact.shift(frame)).max() < 1e-6
    # censored rows are bounds: they must not pull the ridge (here they would invert the levels)
    censored = frame.assign(pkd=np.where(first, 4.0, 12.0), censored=True)
    mixed = pd.concat([frame.assign(censored=False), censored], ignore_index=True)
    with_bounds = correction_on(mixed, np.full(len(mixed), 8.0), np.zeros(len(mixed)))
    assert with_bounds.shift(frame[first]).mean() == pytest.approx(shift[first].mean(), abs=0.3)
    pkd, moved_logits = correction.apply(frame, np.full(len(frame), 13.5), np.zeros(len(frame)))
    assert pkd.max() <= 14.0 and pkd[first].min() == 14.0
    assert np.allclose(moved_logits, correction.logit_per_pkd * (pkd - 13.5), atol=1e-5)


def test_antibody_terms_count_only_for_familiar_antibodies():
    rng = np.random.default_rng(8)
    antigen = random_sequence(rng, 90)
    heavy = [random_sequence(rng, 110) for _ in range(60)]
    frame = pd.DataFrame({"heavy": heavy, "light": "", "antigen": antigen,
                          "pkd": [8.0 + 20.0 * h.count("W") / len(h) for h in heavy]})
    correction = correction_on(frame, np.full(len(frame), 8.0), np.zeros(len(frame)))
    own = correction.shift(frame)
    assert spearman(own, frame.pkd) > 0.9  # training antibodies: their own k-mer terms count
    strangers = frame.iloc[:2].assign(heavy=[random_sequence(rng, 110), "W" * 20 + random_sequence(rng, 90)])
    assert correction.antibody_weights(strangers).tolist() == [0.0, 0.0]
    first, second = correction.shift(strangers)  # new lineages: the antigen's term only, whatever their k-mers
    assert first == pytest.approx(second) and abs(first - (frame.pkd.mean() - 8.0)) < 0.5


def test_the_ridge_never_leaves_the_range_it_spanned_in_training():
    rng = np.random.default_rng(9)
    parent = random_sequence(rng, 300)
    heavy, light = random_sequence(rng, 110), random_sequence(rng, 100)
    rows = []
    for _ in range(60):
        added = int(rng.integers(0, 4))
        chars = list(parent)
        for position in rng.choice(300, size=added, replace=False):
            chars[position] = "W"
        rows.append({"heavy": heavy, "light": light, "antigen": "".join(chars), "pkd": 8.0 + added})
    frame = pd.DataFrame(rows)
    correction = correction_on(frame, np.full(len(frame), 8.0), np.zeros(len(frame)))
    low, high = correction.ridge_range
    chars = list(parent)
    for position in rng.choice(300, size=20, replace=False):
        chars[position] = "W"
    far = frame.iloc[:1].assign(antigen="".join(chars))  # a familiar antigen (93% identical), 20 W more
    assert correction.weights(far)[0] == 1.0 and correction.ridge.predict(far)[0] > high + 1.0
    assert correction.shift(far)[0] == pytest.approx(high)


def test_members_move_together_and_the_logit_follows_the_pkd():
    frame, antigens = two_antigen_table(n_antibodies=20, seed=4)
    rng = np.random.default_rng(0)
    network = 8.0 + rng.normal(0, 0.5, len(frame))
    correction = correction_on(frame, network, 2.0 * (network - 9.0))
    assert correction.logit_per_pkd == pytest.approx(2.0)
    members = np.stack([network, network + 0.1])
    pkd, logits = correction.apply(frame, members, np.zeros_like(members))
    shift = correction.shift(frame)
    assert np.allclose(pkd[1] - pkd[0], 0.1, atol=1e-5) and np.allclose(pkd[0] - network, shift, atol=1e-4)
    assert np.allclose(logits, 2.0 * shift, atol=1e-3)
    assert correction_on(frame, network, -network).logit_per_pkd == 0.0  # never moves the logit backwards


def test_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    frame, _ = two_antigen_table(n_antibodies=10, seed=5)
    correction = correction_on(frame, np.full(len(frame), 8.0), np.zeros(len(frame)))
    path = tmp_path / "state.pt"
    torch.save({"familiar_correction": correction.to_state()}, path)
    state = torch.load(path, weights_only=True)["familiar_correction"]
    support = PredictionSupport(None, correction.reference, correction.antibody_reference)
    again = FamiliarCorrection.from_state(state, support)
    assert np.allclose(again.shift(frame), correction.shift(frame))
    ridge = ridge_from_state(ridge_to_state(correction.ridge))
    assert np.allclose(ridge.predict(frame), correction.ridge.predict(frame)) and ridge.alpha_ == correction.ridge.alpha_
    with pytest.raises(ValueError, match="antigen_reference"):
        FamiliarCorrection.from_state(state, PredictionSupport(None, None, None))
    with pytest.raises(ValueError, match="coefficients"):
        ridge_from_state({**ridge_to_state(correction.ridge), "coef": [0.0, 1.0]})


def test_fold_ensemble_corrects_familiar_antigens_and_its_out_of_fold_rows_stay_honest(tmp_path, tiny_encoders):
    from abag.folds.members import member_dir, train_folds

    rng = np.random.default_rng(7)
    antigens = [random_sequence(rng, 80) for _ in range(6)]
    levels = [10.0, 6.0, 9.0, 7.0, 11.0, 5.0]
    rows = []
    for i in range(36):
        heavy, light = random_sequence(rng, 110), random_sequence(rng, 100)
        for a in (i % 6, (i + 1) % 6):
            rows.append({"heavy": heavy, "light": light, "antigen": antigens[a], "pkd": levels[a] + rng.normal(0, .3)})
    frame = pd.DataFrame(rows)
    config = TrainConfig(epochs=1, progress=False, cache_dir=str(tmp_path / "cache"))
    result = train_folds(frame, tmp_path / "run", TINY, config, folds=3, encoders=tiny_encoders, log=lambda _: None)
    assert result.metrics["familiar_correction"]["training_antigens"] == 6
    ensemble, _ = load_trained_model(result.best_checkpoint)
    queries = pd.DataFrame({"heavy": frame.heavy[0], "light": frame.light[0], "antigen": [antigens[4], antigens[5]]})
    strong, weak = predict_frame(ensemble, queries)["pkd_pred"]
    assert strong - weak > 2.0
    # Every out-of-fold row's antigen cluster was unseen by the member that scored it, so its prediction is
    # that member's network alone: the reported metrics are those of an antigen-blind predictor there.
    # The ensemble's correction is fitted on out-of-fold residuals (each row against the network of the member
    # that never saw its cluster), not on the ensemble's in-sample outputs.
    out_of_fold = np.zeros(len(frame))
    for k in (1, 2, 3):
        member, _ = load_trained_model(member_dir(tmp_path / "run", k) / "checkpoints" / "best.pt")
        assert member.familiar_correction is not None
        held_out = result.predictions[result.predictions.member == k]
        network = member_outputs(member, frame.iloc[held_out.index]).network_pkd[0]
        assert np.allclose(held_out["pkd_pred"].to_numpy(), network, atol=1e-5)
        out_of_fold[held_out.index] = network
    support = ensemble.prediction_support
    refit = FamiliarCorrection.fit(frame, out_of_fold, np.zeros(len(frame)), support, (4.0, 14.0))
    in_sample = member_outputs(ensemble, frame).network_pkd.mean(axis=0)
    in_sample_fit = FamiliarCorrection.fit(frame, in_sample, np.zeros(len(frame)), support, (4.0, 14.0))
    saved = ensemble.familiar_correction.shift(frame)
    assert np.allclose(saved, refit.shift(frame), atol=1e-4)
    assert not np.allclose(saved, in_sample_fit.shift(frame), atol=1e-2)
