"""Training at scale (issue "Reliability at scale"): the split travels with the checkpoint, resume refuses
changed data and says what changed, censored rows never count as binders, saturation is monitored, the
improvements list describes the run, accumulation weighs rows, and weights are reloaded key-checked."""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import synthetic_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abag.checkpoint import load_checkpoint
from abag.data.splits import split_pairs
from abag.errors import CheckpointError
from abag.model.config import ModelConfig
from abag.model.losses import StableCombinedLoss
from abag.training.config import TrainConfig
from abag.training.data_identity import (
    RowRecord,
    data_fingerprint,
    legacy_data_fingerprint,
)
from abag.training.monitors import (
    SATURATION_MARGIN,
    TRAIN_LOSS_MODE,
    EpochRecord,
    format_epoch,
    saturation_share,
)
from abag.training.run import train

TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=32)
# No dropout anywhere, so that two runs that see the same rows compute the same gradients.
NO_DROPOUT = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=32, dropout=0.0,
                         input_dropout=0.0)
quiet = dict(log=lambda line: None)


def config(tmp_path, **overrides) -> TrainConfig:
    values = dict(epochs=1, progress=False, cache_dir=str(tmp_path / "cache"), split="random")
    values.update(overrides)
    return TrainConfig(**values)


def grouped_frame(n: int = 96) -> pd.DataFrame:
    frame = synthetic_frame(n=n)
    frame["cluster"] = [f"c{i % 8}" for i in range(n)]
    frame.loc[frame.index % 9 == 0, "censored"] = True
    return frame


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- 1. the split and the data

def test_the_split_is_stored_per_row_and_loads_with_weights_only(tmp_path, tiny_encoders):
    frame = synthetic_frame(n=80)
    result = train(frame, tmp_path / "run", TINY, config(tmp_path), encoders=tiny_encoders, **quiet)
    for name in ("last.pt", "best.pt"):
        state = torch.load(tmp_path / "run" / "checkpoints" / name, weights_only=True)
        record = RowRecord.from_checkpoint(state["split"])
        assert list(record.assignment()) == list(result.split_assignment)
        assert record.split_method == "random" and not record.differences(RowRecord.from_frame(frame))


def test_resume_keeps_the_stored_split_when_splitting_would_now_differ(tmp_path, tiny_encoders, monkeypatch):
    frame = synthetic_frame(n=80)
    first = train(frame, tmp_path / "run", TINY, config(tmp_path), encoders=tiny_encoders, **quiet)
    splits = importlib.import_module("abag.data.splits")
    original = splits.split_pairs

    def another_split(*args, **kwargs):  # as if a new abag release clustered differently
        result = original(*args, **kwargs)
        result.assignment = result.assignment[::-1].copy()
        return result

    monkeypatch.setattr(splits, "split_pairs", another_split)
    resumed = train(frame, tmp_path / "run", TINY, config(tmp_path, epochs=2), resume=True,
                    encoders=tiny_encoders, **quiet)
    assert list(resumed.split_assignment) == list(first.split_assignment)
    test_rows = pd.read_csv(tmp_path / "run" / "test_predictions.csv")
    assert sorted(test_rows["heavy"]) == sorted(frame["heavy"][first.split_assignment == "test"])


def test_the_data_fingerprint_covers_censored_flags_and_the_group_column():
    frame = grouped_frame()
    censored = frame.assign(censored=~frame["censored"])
    regrouped = frame.assign(cluster=frame["cluster"].where(frame.index != 3, "c99"))
    assert data_fingerprint(censored) != data_fingerprint(frame)
    assert data_fingerprint(regrouped, "cluster") != data_fingerprint(frame, "cluster")
    assert legacy_data_fingerprint(censored) == legacy_data_fingerprint(frame)  # what the old check missed


@pytest.fixture(scope="module")
def grouped_run(tmp_path_factory, tiny_encoders):
    """One epoch of a group split by 'cluster', with censored rows: the run every refusal starts from."""
    tmp_path = tmp_path_factory.mktemp("grouped")
    frame = grouped_frame()
    train(frame, tmp_path / "run", TINY, config(tmp_path, split="group", group_column="cluster"),
          encoders=tiny_encoders, **quiet)
    return tmp_path, frame


def resume_with(grouped_run, frame, tiny_encoders, **overrides):
    tmp_path, _ = grouped_run
    return train(frame, tmp_path / "run", TINY, config(tmp_path, epochs=2, split="group", group_column="cluster",
                                                        **overrides),
                 resume=True, encoders=tiny_encoders, **quiet)


@pytest.mark.parametrize("change, phrase", [
    ("censored", "censored flags changed for 3 rows (rows 2, 5, 8)"),
    ("group", "the group column 'cluster' changed for 8 rows (rows 1, 2, 3, 4, 5, …)"),
    ("pkd", "pKd values changed for 1 row (row 11)"),
    ("dropped", "rows added/removed (the checkpoint's data had 96 rows, this data has 94): 2 rows are gone"),
    ("added", "3 rows are new (rows 97, 98, 99 of this data)"),
    ("reordered", "the same rows are in a different order"),
    ("no-group-column", "the group column 'cluster' is missing"),
])
def test_resume_refuses_changed_data_and_says_what_changed(change, phrase, grouped_run, tiny_encoders):
    tmp_path, frame = grouped_run
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = digest(last)
    changed = frame.copy()
    if change == "censored":
        changed.loc[[1, 4, 7], "censored"] = ~changed.loc[[1, 4, 7], "censored"]
    elif change == "group":
        changed.loc[:7, "cluster"] = "renamed"
    elif change == "pkd":
        changed.loc[10, "pkd"] += 0.5
    elif change == "dropped":
        changed = changed.drop(index=[5, 6])
    elif change == "added":
        changed = pd.concat([changed, synthetic_frame(n=3, seed=9).assign(cluster="c1")], ignore_index=True)
    elif change == "reordered":
        changed = changed.iloc[::-1]
    else:
        changed = changed.drop(columns="cluster")
    with pytest.raises(CheckpointError, match="different data") as info:
        resume_with(grouped_run, changed, tiny_encoders)
    assert phrase in str(info.value) and str(last) in str(info.value)
    assert digest(last) == before  # nothing was trained or saved


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(censored_rows=st.sets(st.integers(0, 95), max_size=6), group_rows=st.sets(st.integers(0, 95), max_size=6))
def test_fuzz_changed_group_labels_or_censored_flags_are_refused_by_name(censored_rows, group_rows, grouped_run,
                                                                        tiny_encoders):
    tmp_path, frame = grouped_run
    changed = frame.copy()
    flip, regroup = sorted(censored_rows), sorted(group_rows)
    changed.loc[flip, "censored"] = ~changed.loc[flip, "censored"]
    changed.loc[regroup, "cluster"] = changed.loc[regroup, "cluster"] + "-moved"
    if not flip and not regroup:
        return  # the same data: resuming is allowed (covered by the bit-identical resume tests)
    with pytest.raises(CheckpointError) as info:
        resume_with(grouped_run, changed, tiny_encoders)
    message = str(info.value)
    if flip:
        assert f"censored flags changed for {len(flip)} row" in message
        assert f"row{'s' if len(flip) > 1 else ''} {', '.join(str(r + 1) for r in flip[:5])}" in message
    else:
        assert "censored" not in message
    if regroup:
        assert f"the group column 'cluster' changed for {len(regroup)} row" in message
    else:
        assert "group column" not in message


def test_resume_refuses_a_split_other_than_the_stored_one(tmp_path, tiny_encoders):
    frame = synthetic_frame(n=80)
    train(frame, tmp_path / "run", TINY, config(tmp_path), encoders=tiny_encoders, **quiet)
    other = split_pairs(frame, "random", seed=1)
    with pytest.raises(CheckpointError, match=r"another split: \d+ rows are in a different part"):
        train(frame, tmp_path / "run", TINY, config(tmp_path, epochs=2), resume=True, encoders=tiny_encoders,
              split=other, **quiet)


def test_a_checkpoint_without_a_row_record_still_resumes(tmp_path, tiny_encoders):
    """Checkpoints written before row records existed: checked by their old fingerprint, split recomputed."""
    frame = synthetic_frame(n=80)
    straight = train(frame, tmp_path / "straight", TINY, config(tmp_path, epochs=2), encoders=tiny_encoders,
                     **quiet)
    train(frame, tmp_path / "old", TINY, config(tmp_path), encoders=tiny_encoders, **quiet)
    last = tmp_path / "old" / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    del state["split"]
    state["config"]["data_fingerprint"] = legacy_data_fingerprint(frame)
    torch.save(state, last)
    with pytest.raises(CheckpointError, match="different data"):
        train(synthetic_frame(n=80, seed=5), tmp_path / "old", TINY, config(tmp_path, epochs=2), resume=True,
              encoders=tiny_encoders, **quiet)
    resumed = train(frame, tmp_path / "old", TINY, config(tmp_path, epochs=2), resume=True, encoders=tiny_encoders,
                    **quiet)
    assert list(resumed.history["train_loss"]) == list(straight.history["train_loss"])


# ----------------------------------------------------------------------------- 2. censored rows, binder head

def test_censored_rows_are_never_positive_binder_labels():
    loss = StableCombinedLoss(mse_weight=0.0, class_weight=1.0, binder_threshold=9.0)
    target = torch.tensor([9.5, 10.0, 6.0, 7.0])
    censored = torch.tensor([True, False, True, False])   # row 0: pKd <= 9.5, class unknown; row 2: <= 6
    logits = torch.tensor([2.0, 1.0, -0.5, 0.3], requires_grad=True)
    value = loss(torch.full((4,), 8.0), target, logits, censored)
    known = torch.nn.functional.binary_cross_entropy_with_logits(logits[1:].detach(), torch.tensor([1.0, 0.0, 0.0]))
    assert float(value.detach()) == pytest.approx(float(known))
    value.backward()
    assert float(logits.grad[0]) == 0.0 and float(logits.grad[2]) > 0  # row 2 is pushed towards "not a binder"
    only_unknown = loss(torch.tensor([8.0]), torch.tensor([11.0]), torch.tensor([3.0]), torch.tensor([True]))
    assert float(only_unknown) == 0.0


# ----------------------------------------------------------------------------- 3. saturation monitor

def test_saturation_share_counts_predictions_near_either_bound():
    predictions = np.array([4.0, 4.04, 4.06, 9.0, 13.96, 14.0, 13.9, 8.0])
    assert saturation_share(predictions, (4.0, 14.0)) == pytest.approx(4 / 8)
    assert saturation_share(np.array([]), (4.0, 14.0)) == 0.0


def test_saturation_is_recorded_in_history_and_warned(tmp_path, tiny_encoders, monkeypatch):
    fit = importlib.import_module("abag.training.loop")
    original = fit.predict_data

    def saturated(*args, **kwargs):
        pkd, logits = original(*args, **kwargs)
        pkd = pkd.copy()
        pkd[: math.ceil(0.3 * len(pkd))] = 14.0 - SATURATION_MARGIN / 2
        return pkd, logits

    monkeypatch.setattr(fit, "predict_data", saturated)
    lines = []
    result = train(synthetic_frame(n=100), tmp_path / "run", TINY, config(tmp_path, epochs=2),
                   encoders=tiny_encoders, log=lines.append)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    n_val = result.metrics["data"]["n_val"]
    assert list(history["val_saturation"]) == pytest.approx([math.ceil(0.3 * n_val) / n_val] * 2)
    assert sum("WARNING: saturated output" in line for line in lines) == 2
    assert list(history["train_loss_mode"]) == [TRAIN_LOSS_MODE] * 2


def test_the_overfitting_warning_shows_a_ratio_above_its_limit():
    """A ratio just above the limit is shown with the digits that make it read as above it (not "3.00 > 3.0")."""
    for ratio, shown in ((3.004, "3.004 > 3.0"), (3.2, "3.20 > 3.0"), (3.00004, "3.00004 > 3.0")):
        over = format_epoch(EpochRecord(3, 0.5, 0.5 * ratio, ratio, 0.2, 1.0, 1e-3, 4.0, 14.0, 0.0, 1, 0.1),
                            TrainConfig())
        assert f"val/train loss ratio {shown}" in over, over
    calm = format_epoch(EpochRecord(3, 0.5, 1.5, 3.0, 0.2, 1.0, 1e-3, 4.0, 14.0, 0.0, 1, 0.1), TrainConfig())
    assert "overfitting" not in calm  # at the limit: no warning


def test_the_saturation_warning_needs_more_than_the_threshold():
    record = EpochRecord(3, 0.5, 0.6, 1.2, 0.2, 1.0, 1e-3, 4.0, 14.0, 0.10, 1, 0.1)
    assert "saturated" not in format_epoch(record, TrainConfig())
    record.val_saturation = 0.11
    assert "11% of validation predictions" in format_epoch(record, TrainConfig())
    assert "saturated" not in format_epoch(record, TrainConfig(saturation_warning_share=0.2))


# ----------------------------------------------------------------------------- 4. improvements

def test_improvements_describe_the_run_that_was_trained(tmp_path, tiny_encoders):
    result = train(synthetic_frame(n=80), tmp_path / "run", TINY,
                   config(tmp_path, batch_size=4, gradient_accumulation=1, learning_rate=5e-4),
                   encoders=tiny_encoders, **quiet)
    text = "\n".join(json.loads((tmp_path / "run" / "metrics.json").read_text())["improvements"])
    assert "batch 4 x gradient accumulation 1 (effective 4)" in text and "lr 0.0005" in text
    assert "accumulation 8" not in text and "effective 128" not in text
    assert "random row split" in text and "antigen-cluster" not in text
    assert "censored rows" not in text  # none in this data
    assert result.metrics["hyperparameters"]["precision"] == "fp32"


# ----------------------------------------------------------------------------- 5. accumulation weighs rows

def test_a_short_last_micro_batch_weighs_only_its_rows(tmp_path, tiny_encoders):
    """One accumulation group of 8 + 8 + … + short micro-batches equals one batch of all training rows."""
    frame = synthetic_frame(n=66)
    n_train = split_pairs(frame, "random", seed=0).sizes()["train"]
    assert n_train % 8 != 0  # 53 rows: six micro-batches of 8 and one of 5
    micro = config(tmp_path, epochs=3, batch_size=8, gradient_accumulation=math.ceil(n_train / 8))
    whole = config(tmp_path, epochs=3, batch_size=n_train, gradient_accumulation=1)
    a = train(frame, tmp_path / "micro", NO_DROPOUT, micro, encoders=tiny_encoders, **quiet)
    b = train(frame, tmp_path / "whole", NO_DROPOUT, whole, encoders=tiny_encoders, **quiet)
    assert list(a.history["optimizer_steps"]) == list(b.history["optimizer_steps"]) == [1, 1, 1]
    wa = load_checkpoint(tmp_path / "micro" / "checkpoints" / "last.pt")["model_state_dict"]
    wb = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["model_state_dict"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


def test_segments_weigh_each_micro_batch_by_its_rows():
    """The loss of one pass over a group equals its micro-batches' losses weighted by their rows, censored rows
    whose binder class is unknown included (the BCE mean is over each micro-batch's known rows)."""
    generator = torch.Generator().manual_seed(0)
    pred, logits = 4 + 10 * torch.rand(21, generator=generator), torch.randn(21, generator=generator)
    target = 5 + 6 * torch.rand(21, generator=generator)
    censored = torch.zeros(21, dtype=torch.bool)
    censored[[0, 1, 2, 3, 9, 17]] = True
    target[[0, 1, 2, 3]] = 10.0   # censored at or above the threshold: class unknown, out of the BCE mean
    criterion, sizes = StableCombinedLoss(), [8, 8, 5]
    for flags in (censored, None):
        pieces = [criterion(p, t, c, None if flags is None else f)
                  for p, t, c, f in zip(pred.split(sizes), target.split(sizes), logits.split(sizes),
                                        (censored if flags is None else flags).split(sizes))]
        expected = sum(n / 21 * piece for n, piece in zip(sizes, pieces))
        got = criterion(pred, target, logits, flags, segments=sizes)
        assert float(got) == pytest.approx(float(expected), rel=1e-6)
    # Under censoring the runs' own means differ from the mean over the whole pass (what the segments keep):
    assert float(criterion(pred, target, logits, censored)) != pytest.approx(float(expected), rel=1e-3)
    with pytest.raises(ValueError, match="segments of 20 rows for a batch of 21"):
        criterion(pred, target, logits, censored, segments=[8, 8, 4])


def test_a_group_in_one_pass_trains_as_its_micro_batches(tmp_path, tiny_encoders, monkeypatch):
    """Only the head learns, so each accumulation group runs as one pass: the same weights as its micro-batches
    one at a time (no dropout; rows censored at and above the binder threshold)."""
    frame = grouped_frame(n=90)
    frame.loc[frame.index % 9 == 0, "pkd"] = [10.5 if i % 2 else 6.0 for i in range(len(frame.index[::9]))]
    settings_ = config(tmp_path, epochs=3, batch_size=8, gradient_accumulation=3)
    one_pass = train(frame, tmp_path / "one", NO_DROPOUT, settings_, encoders=tiny_encoders, **quiet)
    loop = importlib.import_module("abag.training.loop")
    original, seen = loop._train_epoch, []

    def micro_batches_apart(*args, **kwargs):
        seen.append(kwargs.pop("whole_groups"))
        return original(*args, **kwargs, whole_groups=False)

    monkeypatch.setattr(loop, "_train_epoch", micro_batches_apart)
    apart = train(frame, tmp_path / "apart", NO_DROPOUT, settings_, encoders=tiny_encoders, **quiet)
    assert seen == [True] * 3  # the default run used one pass per group
    np.testing.assert_allclose(one_pass.history["train_loss"], apart.history["train_loss"], rtol=1e-5)
    wa = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")["model_state_dict"]
    wb = load_checkpoint(tmp_path / "apart" / "checkpoints" / "last.pt")["model_state_dict"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- weights are key-checked

def test_the_best_epoch_reload_refuses_weights_that_do_not_fit(tmp_path, tiny_encoders, monkeypatch):
    train_module = importlib.import_module("abag.training.run")  # `abag.train` is also the train() function
    original = train_module.save_checkpoint

    def save_without_a_weight(state, path):
        if path.name == "best.pt":
            weights = dict(state["model_state_dict"])
            weights.pop(sorted(weights)[0])
            state = {**state, "model_state_dict": weights}
        return original(state, path)

    monkeypatch.setattr(train_module, "save_checkpoint", save_without_a_weight)
    with pytest.raises(CheckpointError, match=r"best\.pt does not match the model it describes \(missing \['head"):
        train(synthetic_frame(n=60), tmp_path / "run", TINY, config(tmp_path), encoders=tiny_encoders, **quiet)



def test_a_checkpoint_whose_weights_have_other_shapes_says_which(tmp_path, tiny_encoders):
    """A weight of another shape (another pooling's head, say) is named in the message, not only torch's first
    line ("Error(s) in loading state_dict for …:")."""
    from abag.inference import load_trained_model

    train(synthetic_frame(n=60), tmp_path / "run", TINY, config(tmp_path), encoders=tiny_encoders, **quiet)
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=False)
    key = next(k for k in state["model_state_dict"] if k.endswith("antibody_norm.weight"))
    state["model_state_dict"][key] = torch.ones(3)
    torch.save(state, best)
    with pytest.raises(CheckpointError, match=r"does not match the model it describes: .*size mismatch for "
                                              + re.escape(key)):
        load_trained_model(best, encoders=tiny_encoders)


def test_a_checkpoint_from_before_the_heavy_block_was_dropped_says_to_retrain(tmp_path, tiny_encoders):
    """A grouped_blend model written while the one-hot kinds carried the heavy-chain block: its extra weights are
    named as that, with what to do; any other foreign weight keeps the generic message."""
    from abag.inference import load_trained_model

    assert TINY.wide == "grouped_blend"
    train(synthetic_frame(n=60), tmp_path / "run", TINY, config(tmp_path), encoders=tiny_encoders, **quiet)
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=False)
    assert not any(".heavy_" in k for k in state["model_state_dict"])
    old = {**state["model_state_dict"], "head.wide.heavy_coef": torch.zeros(8000, dtype=torch.float64),
           "head.wide.level_heavy_alpha": torch.tensor(-1.0, dtype=torch.float64)}
    torch.save({**state, "model_state_dict": old}, best)
    with pytest.raises(CheckpointError, match=r"earlier abag, whose wide part 'grouped_blend' carried a heavy-chain "
                                              r"3-mer block .* train the model again"):
        load_trained_model(best, encoders=tiny_encoders)
    torch.save({**state, "model_state_dict": {**old, "head.not_a_layer.weight": torch.zeros(2)}}, best)
    with pytest.raises(CheckpointError, match=r"does not match the model it describes \(missing \[\], unexpected"):
        load_trained_model(best, encoders=tiny_encoders)


def test_resume_refuses_weights_with_foreign_keys(tmp_path, tiny_encoders):
    frame = synthetic_frame(n=60)
    train(frame, tmp_path / "run", TINY, config(tmp_path), encoders=tiny_encoders, **quiet)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["model_state_dict"]["head.not_a_layer.weight"] = torch.zeros(2)
    torch.save(state, last)
    with pytest.raises(CheckpointError, match=r"unexpected \['head.not_a_layer.weight'\].*delete"):
        train(frame, tmp_path / "run", TINY, config(tmp_path, epochs=2), resume=True, encoders=tiny_encoders,
              **quiet)
