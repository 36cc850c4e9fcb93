"""The wide part: pKd = clamp(wide(x) + deep(x)), the ridge fitted before the network and kept in its head."""

from __future__ import annotations

import copy
import dataclasses
import importlib

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from conftest import synthetic_frame

import abag.model.wide as wide_module
from abag.checkpoint import load_checkpoint, save_checkpoint
from abag.errors import CheckpointError
from abag.folds.members import train_folds
from abag.inference import load_trained_model, member_outputs, predict_frame
from abag.model.apply import SCALE_MIN_VALIDATION_ROWS, PairData, predict_parts, scale_deep
from abag.model.config import LEGACY_FIELD_VALUES, ModelConfig
from abag.model.network import build_model
from abag.model.ridge import KmerRidgeBaseline
from abag.model.wide import HeavyKmerBlock, SoftBound, WidePart, cross_fitted, soft_bound, state_shapes
from abag.training.config import TrainConfig
from abag.training.run import train

# Mean pooling: with the tiny encoder's region blocks the deep part barely moves in two epochs (std 5e-5 pKd),
# too little for the scaling test to measure a slope against float32 targets.
TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16, familiar_correction="none",
                  wide="kmer_ridge", pooling="mean")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def quick(tmp_path, **overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "progress": False, "cache_dir": str(tmp_path / "cache"), **overrides})


def fit(frame, tmp_path, name="run", model_config=TINY, encoders=None, **overrides):
    return train(frame, tmp_path / name, model_config, quick(tmp_path, **overrides), encoders=encoders,
                 log=lambda line: None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_encoders):
    tmp_path = tmp_path_factory.mktemp("wide")
    frame = synthetic_frame(n=96)
    return frame, fit(frame, tmp_path, encoders=tiny_encoders), tmp_path


# ----------------------------------------------------------------------------------------------- the part

def test_the_wide_part_is_the_kmer_ridge_plus_a_heavy_block_fitted_to_its_residual():
    frame = synthetic_frame(n=120, seed=2)
    part = WidePart.fit(frame)
    ridge = KmerRidgeBaseline().fit(frame)
    residual = frame["pkd"].to_numpy() - ridge.predict(frame)
    block = HeavyKmerBlock.fit(frame["heavy"].tolist(), residual)
    assert np.allclose(part.predict(frame), ridge.predict(frame) + block.predict(frame["heavy"].tolist()))
    restored = WidePart.from_state(part.to_state())
    assert np.array_equal(restored.predict(frame), part.predict(frame))
    assert all(isinstance(v, torch.Tensor) for v in part.to_state().values())  # plain tensors, no pickle


def test_the_heavy_block_is_dropped_when_it_does_not_predict_held_out_chains():
    frame = synthetic_frame(n=80, seed=4)
    block = HeavyKmerBlock.fit(frame["heavy"].tolist(), np.zeros(len(frame)))  # nothing left: ties go to no block
    assert np.isinf(block.alpha) and not np.any(block.predict(frame["heavy"].tolist()))
    signal = frame["heavy"].str.count("W").to_numpy(float)  # a heavy-chain k-mer effect: the block takes it
    block = HeavyKmerBlock.fit(frame["heavy"].tolist(), signal - signal.mean())
    assert np.isfinite(block.alpha) and np.corrcoef(block.predict(frame["heavy"].tolist()), signal)[0, 1] > 0.9


def test_grouped_kmer_is_the_grouped_level_over_the_kmer_ridge_alone_and_numbers_nothing(monkeypatch):
    frame = synthetic_frame(n=160, seed=5)
    groups = np.arange(len(frame)) % 6
    # A level per group that no sequence carries (the assay's), on top of the sequence rule.
    y = frame["pkd"].to_numpy() + np.where(groups < 3, 1.0, -1.0)
    frame = frame.assign(pkd=y)

    def numbering(*args, **kwargs):
        raise AssertionError("grouped_kmer numbered a chain")

    monkeypatch.setattr(wide_module, "number_chains", numbering)
    part = WidePart.fit(frame, "grouped_kmer", groups)
    assert part.onehot is None and part.local is None and part.level.groups == 6
    means = pd.Series(y).groupby(groups).transform("mean").to_numpy()
    overall = float(y.mean())
    within = KmerRidgeBaseline(ks=(1, 2)).fit(frame.assign(pkd=y - means + overall))
    level = KmerRidgeBaseline(ks=(1, 2)).fit(frame.assign(pkd=means))
    scale = part.level.within_scale
    query = synthetic_frame(n=40, seed=6)
    assert 0 < scale < 1  # on whole held-out groups the within part is shrunk by its offsets
    assert np.allclose(part.predict(query),
                       overall + scale * (within.predict(query) - overall) + level.predict(query) - overall,
                       atol=1e-9)
    # The network trains against the same formula fitted fold by fold; its error is the bound's margin.
    assert np.allclose(cross_fitted(frame, "grouped_kmer", groups), part.out_of_fold, atol=1e-9)
    assert np.array_equal(cross_fitted(frame, "grouped_kmer", groups, weight=0.0, known=part.out_of_fold,
                                       within_scale=scale), part.out_of_fold)
    assert part.bound.margin == pytest.approx(float(np.sqrt(np.mean((part.out_of_fold - y) ** 2))))
    assert (part.bound.low, part.bound.high) == (y.min(), y.max())
    described = part.describe()
    assert described["level"]["within_scale"] == scale and "onehot_block" not in described
    state = part.to_state()
    assert {name: tuple(t.shape) for name, t in state.items()} == state_shapes("grouped_kmer")
    restored = WidePart.from_state(state, "grouped_kmer")
    assert np.array_equal(restored.predict(query), part.predict(query)) and restored.bound == part.bound


def test_censored_rows_do_not_enter_the_wide_part():
    frame = synthetic_frame(n=80)
    censored = frame.assign(censored=np.arange(len(frame)) % 4 == 0)
    moved = censored.assign(pkd=np.where(censored["censored"], 4.0, censored["pkd"]))
    assert np.array_equal(WidePart.fit(censored).predict(frame), WidePart.fit(moved).predict(frame))


# ----------------------------------------------------------------------------------------------- the model

def test_an_untrained_model_predicts_exactly_the_clamped_wide_part(tiny_encoders):
    frame = synthetic_frame(n=60)
    frame.loc[:4, "pkd"] = 25.0  # the ridge overshoots on these rows: the clamp must hold them
    model = build_model(TINY, tiny_encoders)
    model.set_wide(WidePart.fit(frame))
    wide = WidePart.fit(frame).predict(frame).astype(np.float32)
    assert wide.max() > 14.0
    predicted = predict_frame(model, frame, coverage=None)
    assert np.array_equal(predicted["pkd_pred"].to_numpy(), np.clip(wide, 4.0, 14.0))
    assert np.array_equal(predicted["pkd_wide"].to_numpy(), wide) and not predicted["pkd_deep"].any()


def test_a_grouped_blend_head_soft_bounds_wide_plus_deep_before_the_clamp(tiny_encoders):
    frame = synthetic_frame(n=60)
    groups = frame["antigen"].astype(str).to_numpy()
    fitted = WidePart.fit(frame, "grouped_blend", groups)
    low, high = np.quantile(fitted.predict(frame), [0.25, 0.75])  # a narrow range: rows on both sides of it
    part = dataclasses.replace(fitted, bound=SoftBound(float(low), float(high), 0.25))
    model = build_model(dataclasses.replace(TINY, wide="grouped_blend"), tiny_encoders)
    model.set_wide(part)
    wide = part.predict(frame).astype(np.float32)
    assert wide.max() > high + 0.25 and wide.min() < low - 0.25  # past the margin on both sides
    predicted = predict_frame(model, frame, coverage=None)
    assert np.array_equal(predicted["pkd_wide"].to_numpy(), wide) and not predicted["pkd_deep"].any()
    assert np.allclose(predicted["pkd_pred"].to_numpy(), part.bound.apply(wide), atol=1e-5)
    assert predicted["pkd_pred"].between(low - 0.25, high + 0.25, inclusive="neither").all()
    assert stats.spearmanr(predicted["pkd_pred"], wide)[0] == pytest.approx(1.0)  # every order kept
    # The gradient reaches the deep part through the bound (its slope is below 1 past the edges, never 0).
    x = torch.tensor([7.0, 8.0, 30.0], requires_grad=True)
    soft_bound(x, 6.5, 7.5, 0.25).sum().backward()
    assert x.grad[0] == 1.0 and 0 < x.grad[2] < x.grad[1] < 1.0


@pytest.mark.parametrize("kind", ["grouped_blend", "grouped_kmer"])
def test_training_a_grouped_model_fits_the_level_over_the_split_groups_and_reports_it(tmp_path, tiny_encoders,
                                                                                     kind):
    frame = synthetic_frame(n=96, seed=3)
    result = fit(frame, tmp_path, model_config=dataclasses.replace(TINY, wide=kind), encoders=tiny_encoders)
    described = result.metrics["wide"]
    part = result.model.wide_part()
    train_rows = int((result.split_assignment == "train").sum())
    assert part.level is not None and part.level.groups == described["level"]["groups"] >= 2
    assert described["level"]["groups"] < train_rows  # over the split's groups (antigen clusters), not rows
    assert described["bound"]["margin"] == pytest.approx(part.bound.margin) and part.bound.margin > 0
    assert described["formula"].startswith("pKd = clamp(soft_bound(wide(x) + deep(x)))")
    predicted = predict_frame(result.model, frame, coverage=None)
    wide, deep = predicted["pkd_wide"].to_numpy(), predicted["pkd_deep"].to_numpy()
    assert np.allclose(predicted["pkd_pred"].to_numpy(), np.clip(part.bound.apply(wide + deep), 4.0, 14.0),
                       atol=1e-4)


def test_the_parts_sum_to_the_prediction_of_one_model(trained):
    frame, result, _ = trained
    predicted = predict_frame(result.model, frame, coverage=None)
    wide, deep = predicted["pkd_wide"].to_numpy(), predicted["pkd_deep"].to_numpy()
    assert predicted["pkd_deep"].abs().max() > 0  # training moved the deep part off zero
    assert np.array_equal(predicted["pkd_pred"].to_numpy(), np.clip(wide + deep, 4.0, 14.0))
    assert np.allclose(wide, result.model.wide_part().predict(frame), atol=1e-5)


def test_the_deep_part_is_centred_on_the_training_rows_and_best_pt_holds_it(trained, tiny_encoders):
    frame, result, _ = trained
    train_rows = frame.iloc[np.flatnonzero(result.split_assignment == "train")]
    deep = predict_frame(result.model, train_rows, coverage=None)["pkd_deep"].to_numpy()
    assert abs(deep.astype(np.float64).mean()) < 1e-5 and result.metrics["wide"]["deep_shift"] != 0.0
    shift = load_checkpoint(result.best_checkpoint)["model_state_dict"]["head.deep_shift"]
    assert shift.item() == pytest.approx(result.metrics["wide"]["deep_shift"])
    assert load_checkpoint(result.best_checkpoint.with_name("last.pt"))["model_state_dict"]["head.deep_shift"] == 0


def test_the_deep_part_is_scaled_by_its_validation_slope_and_a_second_pass_keeps_it(trained):
    frame, result, _ = trained
    model, cpu = copy.deepcopy(result.model), torch.device("cpu")
    rows = frame.iloc[:40].reset_index(drop=True)
    wide = model.wide_part().predict(rows).astype(np.float32)
    deep, _, _ = predict_parts(model, PairData(rows, None, wide), cpu)
    shift = float(model.head.deep_shift)
    assert deep.std() > 0
    # The validation residual moves half as much as the deep part (at another level): beta is 0.5.
    val = PairData(rows.assign(pkd=wide + 0.5 * deep + 0.3, censored=False), None, wide)
    assert scale_deep(model, val, cpu) == pytest.approx(0.5, abs=1e-4)
    scaled, _, _ = predict_parts(model, val, cpu)
    assert np.allclose(scaled, shift + 0.5 * (deep - shift), atol=1e-5)
    weights = copy.deepcopy(model.head.pkd_out.state_dict())
    assert scale_deep(model, val, cpu) == 1.0  # already scaled: the slope is 1 and nothing changes
    assert all(torch.equal(weights[k], v) for k, v in model.head.pkd_out.state_dict().items())
    # A deep part that points the wrong way is switched off; too few exact rows leave it alone.
    against = PairData(val.frame.assign(pkd=wide - scaled), None, wide)
    assert scale_deep(model, against, cpu) == 0.0
    assert np.allclose(predict_parts(model, against, cpu)[0], shift)
    few = PairData(val.frame.assign(censored=np.arange(len(rows)) >= SCALE_MIN_VALIDATION_ROWS - 1), None, wide)
    assert scale_deep(copy.deepcopy(result.model), few, cpu) is None


def test_training_scales_the_deep_part_on_validation_and_reports_it(trained):
    _, result, _ = trained
    assert 0.0 <= result.metrics["wide"]["deep_scale"] <= 1.0


def test_the_gradient_still_reaches_the_deep_part_beyond_the_clamp():
    from abag.model.network import inward_clamp

    x = torch.tensor([15.0, 15.0, 3.0, 3.0, 9.0], requires_grad=True)
    target = torch.tensor([13.0, 14.0, 5.0, 4.0, 8.0])
    ((inward_clamp(x, 4.0, 14.0) - target) ** 2).sum().backward()
    # rows above 14 and below 4 are pulled back in; a target at the bound gives no gradient (nothing to fix)
    assert x.grad.tolist() == [2.0, 0.0, -2.0, 0.0, 2.0]
    y = torch.tensor([15.0, 3.0], requires_grad=True)
    clamped = inward_clamp(y, 4.0, 14.0)
    (clamped[1] - clamped[0]).backward()  # a loss that would push both further out: no gradient
    assert y.grad.tolist() == [0.0, 0.0]


def test_checkpoint_round_trip_reproduces_the_predictions_and_the_wide_part(trained, tiny_encoders):
    frame, result, _ = trained
    state = load_checkpoint(result.best_checkpoint)
    assert state["model_state_dict"]["head.wide.fitted"].item() == 1.0
    assert result.metrics["wide"]["kind"] == "kmer_ridge"
    loaded, _ = load_trained_model(result.best_checkpoint, encoders=tiny_encoders)
    before = predict_frame(result.model, frame.head(20), coverage=None)
    after = predict_frame(loaded, frame.head(20), coverage=None)
    for column in ("pkd_pred", "pkd_wide", "pkd_deep", "binder_prob"):
        assert np.array_equal(before[column].to_numpy(), after[column].to_numpy())
    train_rows = frame.iloc[np.flatnonzero(result.split_assignment == "train")]
    assert np.array_equal(loaded.wide_part().predict(frame), WidePart.fit(train_rows).predict(frame))


def test_the_wide_part_is_fitted_on_the_training_rows_only(trained):
    frame, result, _ = trained
    train_rows = np.flatnonzero(result.split_assignment == "train")
    assert len(train_rows) < len(frame)
    assert np.array_equal(result.model.wide_part().predict(frame), WidePart.fit(frame.iloc[train_rows]).predict(frame))
    assert not np.allclose(result.model.wide_part().predict(frame), WidePart.fit(frame).predict(frame))


def test_resume_reads_the_wide_part_back_and_stays_bit_identical(tmp_path, tiny_encoders, monkeypatch):
    import abag.model.apply as apply

    frame = synthetic_frame(n=96)
    straight = fit(frame, tmp_path, "straight", encoders=tiny_encoders, epochs=3)
    fit(frame, tmp_path, "resumed", encoders=tiny_encoders, epochs=1)
    monkeypatch.setattr(apply, "fit_wide", lambda *a, **k: pytest.fail("resume refitted the wide part"))
    resumed = train(frame, tmp_path / "resumed", TINY, quick(tmp_path, epochs=3), resume=True,
                    encoders=tiny_encoders, log=lambda line: None)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model_state_dict"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["model_state_dict"]
    assert a.keys() == b.keys() and "head.wide.ridge_coef" in a
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert list(straight.history["train_loss"]) == list(resumed.history["train_loss"])


def test_a_run_written_before_the_within_scale_and_the_local_term_resumes_without_them(tmp_path, tiny_encoders):
    frame = synthetic_frame(n=96, seed=3)
    config = dataclasses.replace(TINY, wide="grouped_blend")
    fit(frame, tmp_path, "old", model_config=config, encoders=tiny_encoders, epochs=1)
    folder = tmp_path / "old" / "checkpoints"
    newer = ("head.wide.level_within_scale", *(f"head.wide.{name}" for name in wide_module.LOCAL_EMPTY_SHAPES))
    for name in ("last.pt", "best.pt"):  # as the abag before them wrote both
        checkpoint = load_checkpoint(folder / name)
        assert load_checkpoint(folder / name)["model_state_dict"]["head.wide.level_within_scale"] < 1
        for key in newer:
            del checkpoint["model_state_dict"][key]
        save_checkpoint(checkpoint, folder / name)
    resumed = train(frame, tmp_path / "old", config, quick(tmp_path, epochs=2), resume=True,
                    encoders=tiny_encoders, log=lambda line: None)
    part = resumed.model.wide_part()
    assert part.level.within_scale == 1.0 and part.local is None  # what that run's wide part was
    assert len(resumed.history["train_loss"]) == 2
    # A weight the network trains is still required.
    checkpoint = load_checkpoint(folder / "last.pt")
    del checkpoint["model_state_dict"][next(k for k in checkpoint["model_state_dict"] if k.endswith(".weight"))]
    save_checkpoint(checkpoint, folder / "last.pt")
    with pytest.raises(CheckpointError, match="missing"):
        train(frame, tmp_path / "old", config, quick(tmp_path, epochs=3), resume=True, encoders=tiny_encoders,
              log=lambda line: None)


# ----------------------------------------------------------------------------------------------- wide = none

# `wide="none"` with correction none, synthetic_frame(n=96), hidden 16, 2 epochs: the pKd of the first six rows
# as abag computed them before the wide part existed (commit 7deefeb, torch 2.13 on a CPU), to float32 precision.
BEFORE_THE_WIDE_PART = [9.425077438354492, 9.595372200012207, 9.611787796020508, 9.604059219360352,
                        9.592034339904785, 9.599882125854492]
BEFORE_THE_WIDE_PART_TORCH = (2, 13)
# Another torch computes the same network with other kernels: 2 epochs of training drift by up to 0.004 pKd
# (torch 2.6, `.ci/compat floors`). A different network moves these predictions further (torch 2.13): dropout 0.2
# by 0.026, hidden 17 by 0.07, another seed by 0.11, the wide part switched on by 1.09.
OTHER_TORCH_TOLERANCE = 0.01


def test_wide_none_is_the_old_network_exactly(tmp_path, tiny_encoders, monkeypatch):
    # 7deefeb ran an accumulation group's micro-batches one at a time, drawing dropout masks per micro-batch;
    # today one pass per group computes the same gradient with masks drawn at once, which moves these numbers
    # as another seed would. The old order is still the path of a learning encoder: train through it here.
    loop = importlib.import_module("abag.training.loop")
    original = loop._train_epoch
    monkeypatch.setattr(loop, "_train_epoch", lambda *a, **k: original(*a, **{**k, "whole_groups": False}))
    frame = synthetic_frame(n=96)
    result = fit(frame, tmp_path, model_config=dataclasses.replace(TINY, wide="none"), encoders=tiny_encoders)
    assert not any(".wide." in key for key in result.model.state_dict())
    predicted = predict_frame(result.model, frame.head(6), coverage=None)
    same_torch = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) == BEFORE_THE_WIDE_PART_TORCH
    tolerance = 1e-5 if same_torch else OTHER_TORCH_TOLERANCE
    assert np.allclose(predicted["pkd_pred"].to_numpy(), BEFORE_THE_WIDE_PART, rtol=0, atol=tolerance)
    assert not predicted["pkd_wide"].any() and np.array_equal(predicted["pkd_deep"], predicted["pkd_pred"])
    assert result.metrics["wide"] is None


def test_a_config_saved_before_the_wide_part_loads_as_none(trained, tmp_path, tiny_encoders):
    assert LEGACY_FIELD_VALUES["wide"] == "none" and TINY.wide == "kmer_ridge"
    saved = {k: v for k, v in dataclasses.asdict(TINY).items() if k != "wide"}
    assert ModelConfig.from_dict(saved).wide == "none"
    frame, _, _ = trained
    result = fit(frame, tmp_path, model_config=dataclasses.replace(TINY, wide="none"), encoders=tiny_encoders,
                 epochs=1)
    state = load_checkpoint(result.best_checkpoint)
    del state["config"]["model"]["wide"]
    old = tmp_path / "old.pt"
    save_checkpoint(state, old)
    model, _ = load_trained_model(old, encoders=tiny_encoders)
    assert model.config.wide == "none" and model.wide_part() is None
    assert not predict_frame(model, frame.head(4), coverage=None)["pkd_wide"].any()


def test_unknown_wide_kind_is_refused(tiny_encoders):
    with pytest.raises(ValueError, match="unknown wide part"):
        build_model(dataclasses.replace(TINY, wide="onehot"), tiny_encoders)


# ----------------------------------------------------------------------------------------------- fold ensembles

def fold_frame() -> pd.DataFrame:
    frame = synthetic_frame(n=120, n_antigens=6, seed=5)
    return frame


@pytest.fixture(scope="module")
def folds(tmp_path_factory, tiny_encoders):
    tmp_path = tmp_path_factory.mktemp("wide_folds")
    frame = fold_frame()
    result = train_folds(frame, tmp_path / "run", TINY, quick(tmp_path, epochs=1), folds=3, encoders=tiny_encoders,
                         log=lambda line: None)
    return frame, result, tmp_path


def test_an_ensemble_predicts_the_mean_of_its_members_clamped_sums(folds, tiny_encoders):
    frame, result, tmp_path = folds
    ensemble, _ = load_trained_model(result.best_checkpoint, encoders=tiny_encoders)
    query = synthetic_frame(n=15, seed=8)
    outputs = member_outputs(ensemble, query, cache_dir=tmp_path / "cache")
    predicted = predict_frame(ensemble, query, cache_dir=tmp_path / "cache", coverage=None)
    assert outputs.wide.shape == (3, len(query)) and not np.allclose(outputs.wide[0], outputs.wide[1])
    assert np.allclose(predicted["pkd_pred"], np.clip(outputs.wide + outputs.deep, 4, 14).mean(0), atol=1e-6)
    assert np.allclose(predicted["pkd_wide"], outputs.wide.mean(0)) and np.allclose(predicted["pkd_deep"],
                                                                                    outputs.deep.mean(0))
    for k, member in enumerate(result.members):  # the checkpoint keeps each member's own wide part
        own, _ = load_trained_model(member.run_dir / "checkpoints" / "best.pt", encoders=tiny_encoders)
        assert np.array_equal(ensemble.member(k).wide_part().predict(query), own.wide_part().predict(query))


def test_a_members_wide_part_never_sees_the_fold_it_scores(folds, tiny_encoders, tmp_path):
    frame, result, _ = folds
    member_of_row = result.member_of_row
    ensemble = result.model
    for k in range(3):
        others = frame.iloc[np.flatnonzero(member_of_row != k + 1)]
        assert np.array_equal(ensemble.member(k).wide_part().predict(frame), WidePart.fit(others).predict(frame))
    # Shift the labels of fold 1: member 1's out-of-fold predictions (wide part and network) do not move.
    shifted = frame.assign(pkd=np.where(member_of_row == 1, frame["pkd"] + 2.0, frame["pkd"]))
    again = train_folds(shifted, tmp_path / "shifted", TINY, quick(tmp_path, epochs=1), folds=3,
                        encoders=tiny_encoders, log=lambda line: None)
    assert np.array_equal(again.member_of_row, member_of_row)
    rows = member_of_row == 1
    assert np.array_equal(again.predictions["pkd_pred"].to_numpy()[rows], result.predictions["pkd_pred"].to_numpy()[rows])
    assert not np.allclose(again.predictions["pkd_pred"].to_numpy()[~rows],
                           result.predictions["pkd_pred"].to_numpy()[~rows])
