"""`abag train --folds K`: members on K−1 folds of antigen clusters, out-of-fold metrics, the averaged model."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import synthetic_frame, write_csv
from scipy import stats

from abag.checkpoint import load_checkpoint
from abag.cli import main
from abag.data.splits import row_groups
from abag.errors import CheckpointError
from abag.folds.members import member_dir, train_folds
from abag.inference import load_trained_model, predict_frame, predict_members
from abag.model.config import ModelConfig
from abag.model.ensemble import FoldEnsemble
from abag.training.config import TrainConfig
from abag.training.data_identity import RowRecord
from abag.training.loop import TrainingInterrupted
from abag.training.run import train

TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=32)
V27_KEYS = {"version", "test", "val", "baselines", "hyperparameters", "improvements", "data", "encoder", "training"}
# Rows per antigen (each antigen its own cluster): uneven, so that with K = 3 the members train on 100, 150 and
# 150 rows: 1, 2 and 2 optimizer steps per epoch at batch 16 x accumulation 8.
CLUSTER_SIZES = (100, 30, 30, 20, 10, 10)


def uneven_frame() -> pd.DataFrame:
    frame = synthetic_frame(n=600, n_antigens=len(CLUSTER_SIZES), seed=3)
    antigens = list(dict.fromkeys(frame["antigen"]))
    keep = frame.groupby("antigen", sort=False).cumcount() < frame["antigen"].map(
        dict(zip(antigens, CLUSTER_SIZES)))
    return frame[keep].reset_index(drop=True)


def quick_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(epochs=2, progress=False, cache_dir=str(tmp_path / "cache"))
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def folds_run(tmp_path_factory, tiny_encoders):
    tmp_path = tmp_path_factory.mktemp("folds")
    frame = uneven_frame()
    lines: list[str] = []
    result = train_folds(frame, tmp_path / "run", TINY, quick_config(tmp_path), folds=3, encoders=tiny_encoders,
                         log=lines.append)
    return frame, result, tmp_path, lines


def member_split(run_dir) -> np.ndarray:
    """The train/val/test assignment member's last.pt recorded."""
    return RowRecord.from_checkpoint(load_checkpoint(run_dir / "checkpoints" / "last.pt")["split"]).assignment()


# ----------------------------------------------------------------------------------------------- members

def test_members_hold_out_whole_clusters_and_early_stop_on_their_own_fold(folds_run):
    frame, result, _, _ = folds_run
    assert len(result.members) == 3 and sorted(np.unique(result.member_of_row)) == [1, 2, 3]
    groups = row_groups(frame, "antigen").labels  # antigen clusters at 40% identity, computed independently
    held_out_everywhere = []
    for member in result.members:
        assignment = member_split(member.run_dir)
        rows = np.flatnonzero(result.member_of_row == member.member)
        assert set(np.unique(assignment)) == {"train", "val"}  # no test part: the held-out fold is validation
        assert np.array_equal(np.flatnonzero(assignment == "val"), rows)
        assert not set(groups[assignment == "train"]) & set(groups[assignment == "val"])
        history = pd.read_csv(member.run_dir / "history.csv")
        best = member.metrics["training"]["best_epoch"]
        assert best == int(history["epoch"][history["val_spearman"].idxmax()])  # best.pt: best on its own fold
        assert member.metrics["val"]["n"] == len(rows)
        held_out_everywhere.extend(rows)
    assert sorted(held_out_everywhere) == list(range(len(frame)))  # every row held out exactly once


def test_each_member_steps_adamw_for_its_own_training_rows(folds_run):
    _, result, _, _ = folds_run
    sizes = []
    for member in result.members:
        n_train = member.metrics["data"]["n_train"]
        sizes.append(n_train)
        state = load_checkpoint(member.run_dir / "checkpoints" / "last.pt")
        steps = {int(s["step"]) for s in state["optimizer_state_dict"]["state"].values()}
        assert steps == {2 * math.ceil(math.ceil(n_train / 16) / 8)}
    assert sizes == [100, 150, 150]  # the uneven folds give 1, 2 and 2 steps per epoch


# ----------------------------------------------------------------------------------------------- out of fold

def test_every_row_is_scored_once_by_the_member_that_held_it_out(folds_run, tiny_encoders):
    frame, result, tmp_path, _ = folds_run
    predictions = pd.read_csv(result.out_dir / "test_predictions.csv", keep_default_na=False)
    assert len(predictions) == len(frame) and list(predictions["heavy"]) == list(frame["heavy"])
    assert np.array_equal(predictions["member"], result.member_of_row)
    for member in result.members:
        rows = np.flatnonzero(result.member_of_row == member.member)
        model, _ = load_trained_model(member.run_dir / "checkpoints" / "best.pt", encoders=tiny_encoders)
        own = predict_frame(model, frame.iloc[rows], cache_dir=tmp_path / "cache")
        assert np.allclose(predictions["pkd_pred"].to_numpy()[rows], own["pkd_pred"], atol=1e-5)
        spearman = stats.spearmanr(frame["pkd"].to_numpy()[rows], own["pkd_pred"]).statistic
        assert spearman == pytest.approx(member.metrics["val"]["spearman"], abs=1e-6)  # its best epoch, its fold
    pooled = stats.spearmanr(frame["pkd"], predictions["pkd_pred"]).statistic
    assert result.metrics["test"]["n"] == len(frame)
    assert result.metrics["test"]["spearman"] == pytest.approx(pooled, abs=1e-6)


def test_baselines_are_fitted_out_of_fold(folds_run):
    frame, result, _, _ = folds_run
    pkd = frame["pkd"].to_numpy()
    fold_means = np.array([pkd[result.member_of_row != m].mean() for m in result.member_of_row])
    expected_rmse = float(np.sqrt(np.mean((pkd - fold_means) ** 2)))
    baselines = result.metrics["baselines"]["test"]
    assert baselines["train_mean"]["rmse"] == pytest.approx(expected_rmse, rel=1e-6)
    assert not np.isclose(expected_rmse, pkd.std())  # an all-data mean would give another RMSE
    assert baselines["kmer_ridge"]["n"] == len(frame) and "out of fold" in baselines["kmer_ridge"]["method"]


def test_metrics_json_keeps_the_v27_keys_and_records_the_folds(folds_run):
    frame, result, _, _ = folds_run
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert V27_KEYS <= set(metrics) and metrics["version"] == "v2.7"
    assert metrics["data"]["split"] == "antigen" and metrics["data"]["evaluation"] == "out_of_fold"
    assert metrics["hyperparameters"]["batch_size"] == 16 and metrics["hyperparameters"]["gradient_accumulation"] == 8
    folds = metrics["folds"]
    assert folds["k"] == 3 and "optimistic" in folds["caveat"] and "optimistic" in metrics["data"]["split_description"]
    held_out = [set(m["held_out_groups"]) for m in folds["members"]]
    assert set().union(*held_out) == set(result.predictions["fold_group"])
    assert sum(len(h) for h in held_out) == len(set().union(*held_out))  # each cluster held out by one member
    assert [m["n_val"] for m in folds["members"]] == [int((result.member_of_row == k).sum()) for k in (1, 2, 3)]
    assert metrics["val"]["n"] == len(frame)
    assert metrics["val"]["spearman"] == pytest.approx(np.mean([m["val"]["spearman"] for m in folds["members"]]))
    assert metrics["training"]["optimizer_steps"] == sum(m["optimizer_steps"] for m in folds["members"])
    history = pd.read_csv(result.out_dir / "history.csv")
    assert list(history["member"].unique()) == [1, 2, 3] and len(history) == 6


# ----------------------------------------------------------------------------------------------- the ensemble

def test_ensemble_checkpoint_predicts_the_members_mean_and_spread(folds_run, tiny_encoders, monkeypatch):
    frame, result, tmp_path, _ = folds_run
    state = torch.load(result.best_checkpoint, weights_only=True)
    assert state["ensemble"]["n_folds"] == 3
    assert np.array_equal(state["ensemble"]["member_of_row"].numpy(), result.member_of_row)
    import abag.model.ensemble as encoders  # the ensemble loads its encoders through its own import of load_encoder

    loads = []
    original = encoders.load_encoder
    monkeypatch.setattr(encoders, "load_encoder", lambda name, *a, **k: loads.append(name) or original(name))
    ensemble, _ = load_trained_model(result.best_checkpoint)
    assert isinstance(ensemble, FoldEnsemble) and loads == ["tiny"]  # one encoder load, not one per member
    new = synthetic_frame(n=20, seed=9)
    predicted = predict_frame(ensemble, new, cache_dir=tmp_path / "cache")
    members = [predict_frame(load_trained_model(m.run_dir / "checkpoints" / "best.pt", encoders=tiny_encoders)[0],
                             new, cache_dir=tmp_path / "cache") for m in result.members]
    pkd = np.stack([m["pkd_pred"].to_numpy() for m in members])
    assert np.allclose(predicted["pkd_pred"], pkd.mean(0), atol=1e-5)
    assert np.allclose(predicted["pkd_std"], pkd.std(0), atol=1e-5) and (predicted["pkd_std"] > 0).all()
    assert np.allclose(predicted["binder_prob"], np.mean([m["binder_prob"] for m in members], axis=0), atol=1e-6)
    assert np.allclose(predict_members(ensemble, new, cache_dir=tmp_path / "cache"), pkd, atol=1e-5)


# What only a training run has: a fold ensemble's checkpoint carries none of it, each member's carries all of it.
TRAINING_STATE = {"epoch", "optimizer_state_dict", "scheduler_state_dict", "scaler_state_dict", "best_spearman",
                  "best_epoch", "stale_epochs", "history", "data_order", "world_size", "rng_state", "cuda_rng_state",
                  "numpy_rng_state", "python_rng_state"}


def test_the_ensemble_checkpoint_says_what_it_is_and_members_hold_the_training_state(folds_run):
    _, result, _, _ = folds_run
    for name in ("best.pt", "last.pt"):
        state = torch.load(result.out_dir / "checkpoints" / name, weights_only=True)
        assert state["kind"] == "fold_ensemble" and not TRAINING_STATE & set(state), sorted(TRAINING_STATE & set(state))
        assert {"model_state_dict", "config", "ensemble", "intervals"} <= set(state)
    for run in result.members:
        training = run.metrics["training"]
        for name in ("best.pt", "last.pt"):
            state = torch.load(run.run_dir / "checkpoints" / name, weights_only=True)
            assert state["kind"] == "single" and TRAINING_STATE <= set(state) and "ensemble" not in state
            assert state["optimizer_state_dict"]["state"] and state["scheduler_state_dict"]
            assert len(state["history"]) == state["epoch"]
        last = torch.load(run.run_dir / "checkpoints" / "last.pt", weights_only=True)
        assert last["epoch"] == training["epochs_run"] and last["best_epoch"] == training["best_epoch"]


def test_an_ensemble_checkpoint_predicts_but_never_resumes(folds_run, tiny_encoders, tmp_path):
    from abag.checkpoint import capture_rng_state, checkpoint_kind

    frame, result, _, _ = folds_run
    new = synthetic_frame(n=12, seed=9)
    expected = predict_frame(load_trained_model(result.best_checkpoint, encoders=tiny_encoders)[0], new)
    # One written before `kind`, with the empty training-state keys it carried then, still predicts the same.
    old = torch.load(result.best_checkpoint, weights_only=True)
    del old["kind"]
    old.update({"epoch": 2, "optimizer_state_dict": {}, "scheduler_state_dict": {}, "best_spearman": 0.5,
                "history": [], **capture_rng_state()})
    torch.save(old, tmp_path / "old_ensemble.pt")
    assert checkpoint_kind(old) == "fold_ensemble"
    predicted = predict_frame(load_trained_model(tmp_path / "old_ensemble.pt", encoders=tiny_encoders)[0], new)
    assert np.array_equal(predicted["pkd_pred"], expected["pkd_pred"])
    # Neither is resumed, even where no folds.json beside it gives the folder away: the error says what does resume.
    for source in (result.best_checkpoint, tmp_path / "old_ensemble.pt"):
        with pytest.raises(CheckpointError, match="fold ensemble.*--folds K plus --resume.*member_k/checkpoints/last"):
            load_checkpoint(source, resumable=True)
        copy = tmp_path / "copy" / source.stem
        (copy / "checkpoints").mkdir(parents=True)
        (copy / "checkpoints" / "last.pt").write_bytes(source.read_bytes())
        with pytest.raises(CheckpointError, match="fold ensemble"):
            train(frame, copy, TINY, quick_config(tmp_path), resume=True, encoders=tiny_encoders, log=lambda _: None)
        with pytest.raises(CheckpointError, match="fold ensemble"):
            train_folds(frame, copy, TINY, quick_config(tmp_path), folds=3, resume=True, encoders=tiny_encoders,
                        log=lambda _: None)
    # A member's checkpoint written before `kind` is a single run's, and resumes.
    member = torch.load(result.members[0].run_dir / "checkpoints" / "last.pt", weights_only=True)
    del member["kind"]
    torch.save(member, tmp_path / "old_member.pt")
    assert load_checkpoint(tmp_path / "old_member.pt", resumable=True)["epoch"] == member["epoch"]


def test_the_ensemble_forward_pass_is_the_members_mean(folds_run, tiny_encoders):
    from abag.encoding.batches import PairSequences

    frame, result, _, _ = folds_run
    ensemble = result.model
    batch = PairSequences(list(frame["heavy"][:6]), list(frame["light"][:6]), list(frame["antigen"][:6]))
    with torch.no_grad():
        pkd, logits = ensemble.eval()(batch)
        each = [ensemble.member(k)(batch) for k in range(ensemble.n_folds)]
    assert torch.allclose(pkd, torch.stack([p for p, _ in each]).mean(0))
    assert torch.allclose(torch.sigmoid(logits), torch.stack([torch.sigmoid(l) for _, l in each]).mean(0))
    assert bool(((pkd >= 4) & (pkd <= 14)).all())


def test_a_single_model_predicts_with_zero_spread(folds_run, tiny_encoders):
    frame, result, tmp_path, _ = folds_run
    model, _ = load_trained_model(result.members[0].run_dir / "checkpoints" / "best.pt", encoders=tiny_encoders)
    predicted = predict_frame(model, frame.head(10), cache_dir=tmp_path / "cache")
    assert (predicted["pkd_std"] == 0).all()
    members = predict_members(model, frame.head(10), cache_dir=tmp_path / "cache")
    assert members.shape == (1, 10) and np.array_equal(members[0], predicted["pkd_pred"].to_numpy())


# ----------------------------------------------------------------------------------------------- resume

def test_resume_in_the_middle_of_a_member_is_bit_identical(tmp_path, tiny_encoders, monkeypatch):
    from abag.training.run import RunFolder

    frame = synthetic_frame(n=96, n_antigens=6)
    config = quick_config(tmp_path, epochs=3)
    straight = train_folds(frame, tmp_path / "straight", TINY, config, folds=3, encoders=tiny_encoders,
                           log=lambda _: None)
    original = RunFolder.save_epoch

    def save_then_interrupt(folder, state, improved):
        original(folder, state, improved)
        if folder.out_dir.name == "member_2" and state.epoch == 1:
            raise KeyboardInterrupt  # Ctrl-C right after member 2's first epoch was saved

    monkeypatch.setattr(RunFolder, "save_epoch", save_then_interrupt)
    with pytest.raises(TrainingInterrupted):
        train_folds(frame, tmp_path / "resumed", TINY, config, folds=3, encoders=tiny_encoders, log=lambda _: None)
    monkeypatch.undo()
    assert load_checkpoint(member_dir(tmp_path / "resumed", 2) / "checkpoints" / "last.pt")["epoch"] == 1
    assert not member_dir(tmp_path / "resumed", 3).exists()
    first_metrics = (member_dir(tmp_path / "resumed", 1) / "metrics.json").read_text()
    lines: list[str] = []
    resumed = train_folds(frame, tmp_path / "resumed", TINY, config, folds=3, resume=True, encoders=tiny_encoders,
                          log=lines.append)
    assert [m.trained_now for m in resumed.members] == [False, True, True]
    assert any("member 1/3: finished earlier" in line for line in lines)
    assert (member_dir(tmp_path / "resumed", 1) / "metrics.json").read_text() == first_metrics
    for member in (1, 2, 3):
        a = load_checkpoint(member_dir(tmp_path / "straight", member) / "checkpoints" / "last.pt")
        b = load_checkpoint(member_dir(tmp_path / "resumed", member) / "checkpoints" / "last.pt")
        assert all(torch.equal(a["model_state_dict"][k], b["model_state_dict"][k]) for k in a["model_state_dict"])
        assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    a, b = (load_checkpoint(r.best_checkpoint)["model_state_dict"] for r in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(straight.predictions["pkd_pred"], resumed.predictions["pkd_pred"])
    assert straight.metrics["test"]["spearman"] == resumed.metrics["test"]["spearman"]


# The smallest data that gives the default 5 folds (6 antigens, each its own cluster). With patience 1 the
# members end differently in 4 epochs: member 1 stops early at epoch 2, members 2-4 at epoch 4, member 5 runs
# all 4, so a resume from 2 to 4 epochs meets a member that must stay stopped and members that must continue.
FIVE_FOLD_ROWS, FIVE_FOLD_ANTIGENS = 40, 6
# The network alone (wide="none", mean pooling): the mix of stopping epochs above is a property of its training
# curve; the wide part's own resume is tested in tests/model/test_wide.py.
TINY_16 = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16, wide="none", pooling="mean")


def five_fold_config(tmp_path, epochs: int) -> TrainConfig:
    return quick_config(tmp_path, epochs=epochs, early_stopping_patience=1)


def five_folds(path, config, tiny_encoders, **options):
    return train_folds(synthetic_frame(n=FIVE_FOLD_ROWS, n_antigens=FIVE_FOLD_ANTIGENS), path, TINY_16, config,
                       folds=5, encoders=tiny_encoders, **options)


@pytest.fixture(scope="module")
def straight_four_epochs(tmp_path_factory, tiny_encoders):
    """A 5-fold run trained for 4 epochs from the start: what every resume to 4 epochs must reproduce."""
    tmp_path = tmp_path_factory.mktemp("straight")
    result = five_folds(tmp_path / "run", five_fold_config(tmp_path, 4), tiny_encoders, log=lambda _: None)
    epochs = [m.metrics["training"]["epochs_run"] for m in result.members]
    stopped = [m.metrics["training"]["stopped_early"] for m in result.members]
    # The mix this data was chosen for (else the tests below would not meet both cases).
    assert epochs[0] == 2 and stopped[0] and 4 in epochs[1:], (epochs, stopped)
    return result


def assert_same_as_straight(straight, resumed) -> None:
    """Every member's last and best weights, losses and epochs, and the ensemble, bit for bit."""
    for member in range(1, 6):
        for name in ("last.pt", "best.pt"):
            a = load_checkpoint(member_dir(straight.out_dir, member) / "checkpoints" / name)
            b = load_checkpoint(member_dir(resumed.out_dir, member) / "checkpoints" / name)
            assert (a["epoch"], a["best_epoch"]) == (b["epoch"], b["best_epoch"]), (member, name)
            assert a["model_state_dict"].keys() == b["model_state_dict"].keys()
            assert all(torch.equal(a["model_state_dict"][k], b["model_state_dict"][k]) for k in a["model_state_dict"])
            assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    a, b = (load_checkpoint(r.best_checkpoint) for r in (straight, resumed))
    assert a["model_state_dict"].keys() == b["model_state_dict"].keys()
    assert all(torch.equal(a["model_state_dict"][k], b["model_state_dict"][k]) for k in a["model_state_dict"])
    assert a["config"]["train"]["epochs"] == b["config"]["train"]["epochs"] == 4
    assert np.array_equal(straight.predictions["pkd_pred"], resumed.predictions["pkd_pred"])
    assert straight.metrics["test"] == resumed.metrics["test"]
    keys = ("best_epoch", "epochs_run", "stopped_early", "optimizer_steps")
    assert [{k: m[k] for k in keys} for m in straight.metrics["folds"]["members"]] == \
        [{k: m[k] for k in keys} for m in resumed.metrics["folds"]["members"]]
    assert straight.metrics["hyperparameters"]["epochs"] == resumed.metrics["hyperparameters"]["epochs"] == 4


def test_resume_with_more_epochs_continues_finished_members_bit_identically(straight_four_epochs, tmp_path,
                                                                            tiny_encoders):
    out = tmp_path / "run"
    five_folds(out, five_fold_config(tmp_path, 2), tiny_encoders, log=lambda _: None)
    assert {load_checkpoint(member_dir(out, m) / "checkpoints" / "last.pt")["epoch"] for m in range(1, 6)} == {2}
    lines: list[str] = []
    resumed = five_folds(out, five_fold_config(tmp_path, 4), tiny_encoders, resume=True, log=lines.append)
    assert_same_as_straight(straight_four_epochs, resumed)
    # Which members stop at epoch 2 depends on the numerics (torch's kernels differ between releases): each
    # member's line follows what the straight run did (the fixture makes sure both cases occur).
    for member, straight in enumerate(straight_four_epochs.members, start=1):
        if straight.metrics["training"]["epochs_run"] == 2 and straight.metrics["training"]["stopped_early"]:
            said = f"member {member}/5: stopped early at epoch 2, so it stays stopped"
        else:
            said = f"member {member}/5: trained for 2 epochs earlier; continuing from epoch 2 to 4"
        assert any(said in line for line in lines), (said, lines)
    # The ensemble was reassembled from the continued members; a further resume leaves everything as it is.
    assert pd.read_csv(out / "history.csv").groupby("member").size().tolist() == \
        [m.metrics["training"]["epochs_run"] for m in straight_four_epochs.members]
    again = five_folds(out, five_fold_config(tmp_path, 4), tiny_encoders, resume=True, log=lambda _: None)
    assert [m.trained_now for m in again.members] == [False] * 5


def test_resume_with_more_epochs_after_interruptions_mid_member_is_bit_identical(straight_four_epochs, tmp_path,
                                                                                 tiny_encoders, monkeypatch):
    from abag.training.run import RunFolder

    out, original = tmp_path / "run", RunFolder.save_epoch
    five_folds(out, five_fold_config(tmp_path, 2), tiny_encoders, log=lambda _: None)

    def interrupt_after(member: int, epoch: int):
        def save_then_interrupt(folder, state, improved):
            original(folder, state, improved)
            if folder.out_dir.name == f"member_{member}" and state.epoch == epoch:
                raise KeyboardInterrupt  # Ctrl-C right after that epoch was saved
        return save_then_interrupt

    # Member 2's last epoch saved, its evaluation not yet run: its metrics.json still describes 2 epochs.
    monkeypatch.setattr(RunFolder, "save_epoch", interrupt_after(2, 4))
    with pytest.raises(TrainingInterrupted):
        five_folds(out, five_fold_config(tmp_path, 4), tiny_encoders, resume=True, log=lambda _: None)
    assert load_checkpoint(member_dir(out, 2) / "checkpoints" / "last.pt")["epoch"] == 4
    assert json.loads((member_dir(out, 2) / "metrics.json").read_text())["training"]["epochs_run"] == 2
    # The next resume evaluates member 2 from its last.pt, then Ctrl-C comes in the middle of member 3's epochs.
    monkeypatch.setattr(RunFolder, "save_epoch", interrupt_after(3, 3))
    lines: list[str] = []
    with pytest.raises(TrainingInterrupted):
        five_folds(out, five_fold_config(tmp_path, 4), tiny_encoders, resume=True, log=lines.append)
    monkeypatch.undo()
    assert any("member 2/5: its last.pt (epoch 4) is newer than its results" in line for line in lines)
    assert [load_checkpoint(member_dir(out, m) / "checkpoints" / "last.pt")["epoch"] for m in (3, 4)] == [3, 2]
    resumed = five_folds(out, five_fold_config(tmp_path, 4), tiny_encoders, resume=True, log=lambda _: None)
    assert [m.trained_now for m in resumed.members] == [False, False, True, True, True]
    assert_same_as_straight(straight_four_epochs, resumed)


def test_resume_refuses_another_k_and_other_data(folds_run, tiny_encoders):
    frame, result, tmp_path, _ = folds_run
    with pytest.raises(CheckpointError, match="holds a 3-fold run; resume it with --folds 3"):
        train_folds(frame, result.out_dir, TINY, quick_config(tmp_path), folds=4, resume=True,
                    encoders=tiny_encoders, log=lambda _: None)
    changed = frame.assign(pkd=frame["pkd"] + 0.1)
    with pytest.raises(CheckpointError, match="different data"):
        train_folds(changed, result.out_dir, TINY, quick_config(tmp_path), folds=3, resume=True,
                    encoders=tiny_encoders, log=lambda _: None)
    # The single-split API on a --folds folder (the notebook with FOLDS = None on a folds run) says what the
    # folder holds (it said "trained on different data", about the ensemble's checkpoint).
    with pytest.raises(CheckpointError, match="holds a --folds run"):
        train(frame, result.out_dir, TINY, quick_config(tmp_path), resume=True, encoders=tiny_encoders,
              log=lambda _: None)


def test_folds_need_clusters_and_frozen_encoders(tmp_path, tiny_encoders):
    from abag.training.run import SplitError

    frame = synthetic_frame(n=40, n_antigens=2)
    with pytest.raises(SplitError, match="cannot make 3 folds"):
        train_folds(frame, tmp_path / "a", TINY, quick_config(tmp_path), folds=3, encoders=tiny_encoders)
    with pytest.raises(SplitError, match="random"):
        train_folds(frame, tmp_path / "b", TINY, quick_config(tmp_path, split="random"), folds=2,
                    encoders=tiny_encoders)
    with pytest.raises(ValueError, match="frozen encoders"):
        train_folds(frame, tmp_path / "c", ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny",
                                                       finetune_layers=1), quick_config(tmp_path), folds=2)


# ----------------------------------------------------------------------------------------------- command line

def test_cli_trains_folds_and_predicts_and_evaluates_with_the_ensemble(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    data = write_csv(synthetic_frame(n=60, n_antigens=4), tmp_path / "pairs.csv")
    out = tmp_path / "run"
    train_args = ["train", "--data", data, "--out", str(out), "--encoder", "tiny", "--epochs", "1", "--quiet",
                  "--hidden-dim", "16"]
    assert main([*train_args, "--folds", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["folds"]["k"] == 2 and metrics["test"]["n"] == 60
    capsys.readouterr()
    assert main([*train_args, "--folds", "2"]) == 2 and "already holds a training run" in capsys.readouterr().err
    assert main([*train_args, "--folds", "1", "--resume"]) == 2 and "holds a --folds run" in capsys.readouterr().err
    assert main([*train_args, "--folds", "3", "--resume"]) == 2 and "2-fold run" in capsys.readouterr().err
    assert main([*train_args, "--folds", "2", "--resume"]) == 0 and "not retrained" in capsys.readouterr().out
    assert main([*train_args, "--resume"]) == 0 and "not retrained" in capsys.readouterr().out  # keeps its kind
    # More epochs on --resume: every member continues, and the ensemble is rebuilt from them.
    assert main([*train_args, "--epochs", "2", "--resume"]) == 0
    assert "continuing from epoch 1 to 2" in capsys.readouterr().out
    assert [load_checkpoint(member_dir(out, m) / "checkpoints" / "last.pt")["epoch"] for m in (1, 2)] == [2, 2]
    assert [m["epochs_run"] for m in json.loads((out / "metrics.json").read_text())["folds"]["members"]] == [2, 2]
    assert main([*train_args, "--out", str(tmp_path / "r"), "--folds", "2", "--split", "random"]) == 2

    new = synthetic_frame(n=12, seed=7).drop(columns=["pkd", "censored"])
    new.to_csv(tmp_path / "new.csv", index=False)
    predictions = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(out / "checkpoints" / "best.pt"), "--data", str(tmp_path / "new.csv"),
                 "--out", str(predictions), "--quiet"]) == 0
    predicted = pd.read_csv(predictions)
    assert len(predicted) == 12 and (predicted["pkd_std"] > 0).all() and predicted["pkd_pred"].between(4, 14).all()
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "checkpoints" / "best.pt"), "--data", data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 60


def test_cli_default_is_five_folds_where_folds_apply_and_one_split_otherwise(tmp_path, monkeypatch, capsys):
    from abag.cli.train import DEFAULT_FOLDS

    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    common = ["--encoder", "tiny", "--epochs", "1", "--quiet", "--hidden-dim", "16"]
    many = write_csv(synthetic_frame(n=60, n_antigens=7), tmp_path / "many.csv")
    assert main(["train", "--data", many, "--out", str(tmp_path / "default"), *common]) == 0
    assert json.loads((tmp_path / "default" / "metrics.json").read_text())["folds"]["k"] == DEFAULT_FOLDS == 5
    for name, extra in (("one", ["--folds", "1"]), ("random", ["--split", "random"])):
        assert main(["train", "--data", many, "--out", str(tmp_path / name), *common, *extra]) == 0
        assert "folds" not in json.loads((tmp_path / name / "metrics.json").read_text())
        assert (tmp_path / name / "checkpoints" / "last.pt").exists() and not (tmp_path / name / "folds.json").exists()
    # A single-split run resumes as one, without --folds.
    assert main(["train", "--data", many, "--out", str(tmp_path / "one"), *common, "--epochs", "2", "--resume"]) == 0
    assert len(pd.read_csv(tmp_path / "one" / "history.csv")) == 2
    # Too few antigen clusters for the default 5 folds: one split, and the log says why.
    capsys.readouterr()
    few = write_csv(synthetic_frame(n=60, n_antigens=4), tmp_path / "few.csv")
    assert main(["train", "--data", few, "--out", str(tmp_path / "few"), *common]) == 0
    assert "cannot make 5 folds" in capsys.readouterr().out
    assert "folds" not in json.loads((tmp_path / "few" / "metrics.json").read_text())
    # Asked for explicitly, too few clusters stays an error.
    assert main(["train", "--data", few, "--out", str(tmp_path / "few5"), *common, "--folds", "5"]) == 2
