"""The v2.7 training contract: loss, NaN guard, clamp, accumulation, scheduler, checkpoints, resume, metrics."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import synthetic_frame

from abag.checkpoint import REQUIRED_KEYS, load_checkpoint
from abag.encoding.pair_embeddings import embed_pairs, make_caches
from abag.errors import TrainingDivergedError
from abag.model.config import ModelConfig
from abag.model.losses import StableCombinedLoss, check_loss_validity
from abag.model.network import build_model
from abag.training.config import TrainConfig
from abag.training.run import train

TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=32)


def quick_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(epochs=2, progress=False, cache_dir=str(tmp_path / "cache"), split="random")
    values.update(overrides)
    return TrainConfig(**values)


def run(frame, tmp_path, name="run", encoders=None, model_config=TINY, **overrides):
    return train(frame, tmp_path / name, model_config, quick_config(tmp_path, **overrides), encoders=encoders,
                 log=lambda line: None)


# ----------------------------------------------------------------------------- loss and validity

def test_combined_loss_is_weighted_mse_plus_bce():
    pred = torch.tensor([6.0, 9.5, 12.0])
    target = torch.tensor([7.0, 9.0, 8.0])
    logits = torch.tensor([0.3, -1.0, 2.0])
    labels = torch.tensor([0.0, 1.0, 0.0])  # target >= 9
    mse = ((pred - target) ** 2).mean()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    loss = StableCombinedLoss()(pred, target, logits)
    assert torch.allclose(loss, 0.7 * mse + 0.3 * bce)
    assert torch.allclose(StableCombinedLoss()(pred, target), 0.7 * mse)
    other = StableCombinedLoss(mse_weight=0.5, class_weight=0.5, binder_threshold=7.5)(pred, target, logits)
    labels_75 = torch.tensor([0.0, 1.0, 1.0])
    assert torch.allclose(other, 0.5 * mse + 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(logits, labels_75))


def test_censored_rows_only_penalise_predictions_above_the_bound():
    loss = StableCombinedLoss(class_weight=0.0)
    censored = torch.tensor([True, True])
    assert float(loss(torch.tensor([5.0, 4.5]), torch.tensor([6.0, 6.0]), censored=censored)) == 0.0
    assert float(loss(torch.tensor([7.0, 6.0]), torch.tensor([6.0, 6.0]), censored=censored)) == pytest.approx(0.7 * 0.5)


def test_mismatched_prediction_shape_is_refused():
    with pytest.raises(ValueError, match="3 values for 4 targets"):
        StableCombinedLoss()(torch.zeros(3), torch.zeros(4))


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "Inf"), (float("-inf"), "Inf")])
def test_check_loss_validity_names_the_loss(value, word):
    with pytest.raises(ValueError, match=f"val loss is {word}"):
        check_loss_validity(torch.tensor(value), "val loss")
    check_loss_validity(torch.tensor(1.5), "fine")  # finite: no error


# ----------------------------------------------------------------------------- model

def test_predictions_stay_in_range_when_labels_span_0_to_18(tmp_path, tiny_encoders):
    frame = synthetic_frame(n=96)
    frame["pkd"] = np.linspace(0.0, 18.0, len(frame))
    result = run(frame, tmp_path, encoders=tiny_encoders, epochs=3, learning_rate=1e-2)
    model = result.model
    # Push the head hard to both extremes: the output must still be clamped.
    with torch.no_grad():
        model.head.pkd_out.bias.fill_(1e4)
    batch = make_and_embed(model, frame)
    with torch.no_grad():
        high, _ = model(batch)
        model.head.pkd_out.bias.fill_(-1e4)
        low, _ = model(batch)
    assert float(high.max()) <= 14.0 and float(high.min()) >= 13.99
    assert float(low.min()) >= 4.0 and float(low.max()) <= 4.01
    history = result.history
    assert (history["pred_min"] >= 4.0).all() and (history["pred_max"] <= 14.0).all()


def make_and_embed(model, frame):
    """`frame` embedded as one batch, with the model's wide part per row (`offset`) when it has one."""
    antibody, antigen = make_caches(model, None)
    batch = embed_pairs(frame, antibody, antigen).batch(np.arange(len(frame)))
    offset = model.wide_offsets(frame)
    return batch if offset is None else dataclasses.replace(batch, offset=torch.from_numpy(offset))


def test_masked_pooling_ignores_padding(tiny_encoders):
    encoder = tiny_encoders["tiny"]
    alone = encoder(["ACDEFGHIK"])
    padded = encoder(["ACDEFGHIK", "W" * 80])  # same batch, so the short chain is padded
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_long_chains_are_windowed_not_truncated(tiny_encoders):
    encoder = tiny_encoders["tiny"]
    base = "ACDEFGHIKLMNPQRSTVWY" * 15  # 300 residues > 126 window
    changed_tail = base[:-5] + "WWWWW"
    first, second = encoder([base, changed_tail])
    assert not torch.allclose(first, second)  # the tail (beyond one window) still counts
    assert encoder.window.windows(300)[-1] == (300 - 126, 300)


# ----------------------------------------------------------------------------- training loop

def test_optimizer_steps_follow_gradient_accumulation(tmp_path, tiny_encoders):
    frame = synthetic_frame(n=300)
    result = run(frame, tmp_path, encoders=tiny_encoders, epochs=3)
    n_train = result.metrics["data"]["n_train"]
    expected_per_epoch = math.ceil(math.ceil(n_train / 16) / 8)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    adam_steps = {int(s["step"]) for s in state["optimizer_state_dict"]["state"].values()}
    assert adam_steps == {3 * expected_per_epoch}
    assert list(result.history["optimizer_steps"]) == [expected_per_epoch] * 3
    assert result.metrics["training"]["optimizer_steps"] == 3 * expected_per_epoch


def test_scheduler_is_reduce_on_plateau_on_validation_spearman(tmp_path, tiny_encoders):
    result = run(synthetic_frame(), tmp_path, encoders=tiny_encoders, epochs=1)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    scheduler = state["scheduler_state_dict"]
    assert scheduler["mode"] == "max" and scheduler["factor"] == 0.6 and scheduler["patience"] == 10
    assert scheduler["min_lrs"] == [1e-6]
    optimizer = state["optimizer_state_dict"]["param_groups"][0]
    assert optimizer["lr"] == 1e-3 and optimizer["weight_decay"] == 1e-5
    assert result.metrics["hyperparameters"]["scheduler_metric"] == "val_spearman"


def test_checkpoint_holds_every_state(tmp_path, tiny_encoders):
    run(synthetic_frame(), tmp_path, encoders=tiny_encoders, epochs=1)
    for name in ("last.pt", "best.pt"):
        state = torch.load(tmp_path / "run" / "checkpoints" / name, weights_only=True)  # PyTorch >= 2.6 default
        assert set(REQUIRED_KEYS) <= set(state)
        assert state["epoch"] == 1 and len(state["history"]) == 1
        assert isinstance(state["rng_state"], torch.Tensor)
        assert state["numpy_rng_state"]["kind"] == "MT19937" and len(state["numpy_rng_state"]["keys"]) == 624
        assert state["python_rng_state"][0] == 3
        assert "scaler_state_dict" in state and "data_order" in state
        assert state["config"]["train"]["gradient_accumulation"] == 8


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, tiny_encoders):
    frame = synthetic_frame(n=120)
    straight = run(frame, tmp_path, "straight", encoders=tiny_encoders, epochs=4)
    run(frame, tmp_path, "resumed", encoders=tiny_encoders, epochs=2)
    resumed = train(frame, tmp_path / "resumed", TINY, quick_config(tmp_path, epochs=4), resume=True,
                    encoders=tiny_encoders, log=lambda line: None)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model_state_dict"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["model_state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert list(straight.history["train_loss"]) == list(resumed.history["train_loss"])
    assert len(resumed.history) == 4


def test_resume_refuses_different_data(tmp_path, tiny_encoders):
    from abag.errors import CheckpointError

    run(synthetic_frame(seed=0), tmp_path, encoders=tiny_encoders, epochs=1)
    with pytest.raises(CheckpointError, match="different data"):
        train(synthetic_frame(seed=1), tmp_path / "run", TINY, quick_config(tmp_path), resume=True,
              encoders=tiny_encoders, log=lambda line: None)


def test_nan_loss_stops_training_before_the_optimizer_steps(tmp_path, tiny_encoders, monkeypatch):
    frame = synthetic_frame()
    run(frame, tmp_path, encoders=tiny_encoders, epochs=1)
    before = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    original = StableCombinedLoss.forward
    monkeypatch.setattr(StableCombinedLoss, "forward",
                        lambda self, *a, **k: original(self, *a, **k) * float("nan"))
    with pytest.raises(TrainingDivergedError, match=r"NaN at epoch 2, step 1") as info:
        train(frame, tmp_path / "run", TINY, quick_config(tmp_path, epochs=3), resume=True,
              encoders=tiny_encoders, log=lambda line: None)
    assert info.value.epoch == 2 and info.value.last_checkpoint.endswith("last.pt")
    after = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert after["epoch"] == 1
    assert all(torch.equal(before["model_state_dict"][k], after["model_state_dict"][k]) for k in before["model_state_dict"])


def test_overfit_ratio_compares_the_same_loss(tmp_path, tiny_encoders):
    result = run(synthetic_frame(), tmp_path, encoders=tiny_encoders, epochs=2)
    history = result.history
    assert np.allclose(history["overfit_ratio"], history["val_loss"] / history["train_loss"])


def test_overfit_and_saturation_warnings_are_printed():
    from abag.training.monitors import EpochRecord, format_epoch

    record = EpochRecord(3, 0.1, 0.5, 5.0, 0.2, 1.0, 1e-3, 4.0, 14.0, 0.4, 1, 0.1)
    line = format_epoch(record, TrainConfig())
    assert "WARNING: overfitting" in line and "WARNING: saturated output — 40% of validation predictions" in line
    calm = format_epoch(EpochRecord(3, 0.5, 0.6, 1.2, 0.2, 1.0, 1e-3, 5, 9, 0.0, 1, 0.1), TrainConfig())
    assert "WARNING" not in calm


def test_metrics_json_schema(tmp_path, tiny_encoders):
    run(synthetic_frame(), tmp_path, encoders=tiny_encoders, epochs=2)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["version"] == "v2.7"
    for key in ("spearman", "pearson", "rmse", "mae", "r2", "spearman_ci95"):
        assert key in metrics["test"] and key in metrics["val"]
    for key in ("recall", "precision", "f1", "auroc"):
        assert key in metrics["test"]["binder"]
    hp = metrics["hyperparameters"]
    assert hp["batch_size"] == 16 and hp["gradient_accumulation"] == 8 and hp["effective_batch_size"] == 128
    assert hp["learning_rate"] == 1e-3 and hp["dropout"] == 0.1 and hp["weight_decay"] == 1e-5
    assert hp["mse_weight"] == 0.7 and hp["class_weight"] == 0.3
    assert hp["scheduler"] == "ReduceLROnPlateau" and hp["loss_function"] == "StableCombinedLoss"
    assert len(metrics["improvements"]) >= 9
    assert metrics["data"]["split"] == "random" and "random" in metrics["data"]["split_description"]
    assert metrics["data"]["n_train"] + metrics["data"]["n_val"] + metrics["data"]["n_test"] == 96
    assert metrics["encoder"]["antibody"] == "tiny"
    assert set(metrics["baselines"]["test"]) == {"train_mean", "kmer_ridge"}
    assert (tmp_path / "run" / "history.csv").exists() and (tmp_path / "run" / "test_predictions.csv").exists()


def test_cached_and_uncached_training_agree(tmp_path, tiny_encoders):
    frame = synthetic_frame(n=64)
    cached = run(frame, tmp_path, "cached", encoders=tiny_encoders, epochs=2)
    uncached = run(frame, tmp_path, "uncached", encoders=tiny_encoders, epochs=2, embedding_cache=False)
    np.testing.assert_allclose(cached.history["train_loss"], uncached.history["train_loss"], rtol=1e-4)
    a = load_checkpoint(tmp_path / "cached" / "checkpoints" / "last.pt")["model_state_dict"]
    b = load_checkpoint(tmp_path / "uncached" / "checkpoints" / "last.pt")["model_state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_frozen_encoders_stay_in_eval_mode_while_training(tiny_encoders):
    model = build_model(TINY, tiny_encoders)
    model.train()
    assert model.head.training and not model.antibody_encoder.training


def test_finetuning_last_layers_trains_encoder_weights(tmp_path):
    from abag.encoding.loader import load_tiny_encoder

    encoders = {"tiny": load_tiny_encoder()}
    config = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=32, finetune_layers=1)
    before = {k: v.clone() for k, v in encoders["tiny"].model.state_dict().items()}
    run(synthetic_frame(n=48), tmp_path, encoders=encoders, model_config=config, epochs=1)
    after = encoders["tiny"].model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("encoder.layer.1.") for k in changed)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert any(k.startswith("antibody_encoder.") for k in state["model_state_dict"])


def test_resuming_an_early_stopped_run_trains_nothing_more(tmp_path, tiny_encoders):
    frame = synthetic_frame()
    first = run(frame, tmp_path, encoders=tiny_encoders, epochs=6, early_stopping_patience=1)
    assert first.metrics["training"]["stopped_early"]
    before = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    again = train(frame, tmp_path / "run", TINY, quick_config(tmp_path, epochs=6, early_stopping_patience=1),
                  resume=True, encoders=tiny_encoders, log=lambda line: None)
    after = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert len(again.history) == len(first.history) == before["epoch"] == after["epoch"]


# ----------------------------------------------------------------------------- what a run prints

def test_progress_off_prints_nothing_but_warnings(tmp_path, capsys, tiny_encoders):
    """`TrainConfig(progress=False)` with no `log`: no epoch lines, splits or tables; warnings still reach
    stderr. `log=print` (what the notebook passes) brings every line back."""
    from abag import train_folds

    frame = synthetic_frame(n=40, n_antigens=6)
    calm = dict(overfit_warning_ratio=1e9, saturation_warning_share=1.0)  # nothing to warn about
    train(frame, tmp_path / "one", TINY, quick_config(tmp_path, split="antigen", **calm), encoders=tiny_encoders)
    train_folds(frame, tmp_path / "folds", TINY, quick_config(tmp_path, split="antigen", **calm), folds=2,
                encoders=tiny_encoders)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    train(frame, tmp_path / "warns", TINY, quick_config(tmp_path, overfit_warning_ratio=1e-9),
          encoders=tiny_encoders)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 2 and all(line.startswith("WARNING: overfitting") for line in lines)
    train(frame, tmp_path / "loud", TINY, quick_config(tmp_path, **calm), encoders=tiny_encoders, log=print)
    assert "epoch   2 |" in capsys.readouterr().out


def test_training_rows_that_are_all_censored_train_without_correction_or_baselines(tmp_path, tiny_encoders):
    """Nothing for a ridge to fit (every pKd an upper bound): the default's wide part stops with a message that
    says what to do; the network alone (with the correction asked for) trains, the report says so by leaving the
    correction and the baselines out, and nothing raises."""
    from abag.errors import InvalidSettingError

    frame = synthetic_frame(n=96).assign(censored=True)
    with pytest.raises(InvalidSettingError, match=r"needs training rows with a measured, uncensored pKd.*--wide none"):
        run(frame, tmp_path, name="default", encoders=tiny_encoders, epochs=1)
    network = dataclasses.replace(TINY, wide="none", familiar_correction="kmer_ridge_context")
    result = run(frame, tmp_path, encoders=tiny_encoders, model_config=network, epochs=1)
    assert result.metrics["familiar_correction"] is None
    assert not result.metrics["baselines"]["test"]
    assert result.best_checkpoint.is_file()
