"""abag.training.alongside: what the end of training needs from the split alone, computed beside the epochs,
is what it would have been after them."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import synthetic_frame

from abag.identity import novelty
from abag.posthoc.intervals import PredictionSupport, nearest_identities
from abag.model.config import ModelConfig
from abag.training import alongside as alongside_module
from abag.training import run as run_module
from abag.training.alongside import Alongside, training_support
from abag.training.config import TrainConfig
from abag.training.run import train


def test_the_work_runs_while_the_caller_goes_on_and_result_waits_for_it():
    release, started = threading.Event(), threading.Event()

    def work():
        started.set()
        assert release.wait(30)  # finishes only once the caller has gone on past the start
        return 42

    running = Alongside(work)
    assert started.wait(30)
    release.set()
    assert running.result() == 42 and running.seconds > 0
    assert running.result() == 42  # asking again does not run it again


def test_an_error_in_the_work_is_raised_by_result():
    def work():
        raise ValueError("no training rows")

    running = Alongside(work)
    with pytest.raises(ValueError, match="no training rows"):
        running.result()


def test_training_support_holds_the_held_out_rows_identities_as_a_search_after_training_would(monkeypatch):
    frame = synthetic_frame(n=80, n_antigens=8, seed=3)
    rows = np.random.default_rng(0).permutation(len(frame))
    parts = {"train": rows[:56], "val": rows[56:68], "test": rows[68:]}
    support = Alongside(lambda: training_support(frame, parts)).result()
    # Searched already: the references' memo holds every held-out antigen, and nothing is searched again.
    held_out_antigens = set(frame["antigen"].iloc[np.concatenate([parts["val"], parts["test"]])])
    assert held_out_antigens <= set(support.antigen_reference._memo)
    monkeypatch.setattr(novelty, "_antigen_identity", lambda *a: pytest.fail("searched again"))
    for reference in (support.antigen_reference, support.antibody_reference):
        reference.identity(list(reference._memo))
    monkeypatch.undo()
    fresh = PredictionSupport.from_training(frame.iloc[parts["train"]], None, "")
    held_out = frame.iloc[np.concatenate([parts["val"], parts["test"]])]
    expected = nearest_identities(held_out, fresh.antigen_reference, fresh.antibody_reference)
    got = nearest_identities(held_out, support.antigen_reference, support.antibody_reference)
    for mine, theirs in zip(got, expected):
        np.testing.assert_array_equal(mine, theirs)
    assert support.calibration is None


class _AfterTraining:
    """Alongside's stand-in that runs the work only when asked for its result (after the epochs)."""

    def __init__(self, work):
        self._work, self.seconds = work, 0.0

    def result(self):
        return self._work()


def test_a_run_with_the_work_beside_the_epochs_writes_what_a_run_computing_it_afterwards_writes(
        tmp_path, monkeypatch, tiny_encoders):
    frame = synthetic_frame(n=96, n_antigens=8, seed=5)
    model_config = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16)

    def train_into(name):
        config = TrainConfig(epochs=2, progress=False, cache_dir=str(tmp_path / "cache"))
        return train(frame, tmp_path / name, model_config, config, encoders=tiny_encoders, log=lambda line: None)

    started = []
    monkeypatch.setattr(run_module, "Alongside", lambda work: started.append(1) or Alongside(work))
    beside = train_into("beside")
    monkeypatch.setattr(run_module, "Alongside", _AfterTraining)
    after = train_into("after")
    assert started == [1]
    for key in ("test", "val", "baselines", "intervals", "familiar_correction"):
        assert beside.metrics.get(key) == after.metrics.get(key), key
    assert beside.metrics["baselines"]  # the baselines were computed beside the epochs, not skipped
    assert (tmp_path / "beside" / "test_predictions.csv").read_bytes() == \
        (tmp_path / "after" / "test_predictions.csv").read_bytes()


def test_final_inputs_fit_no_ridge_design_without_a_correction(tmp_path, tiny_encoders, monkeypatch):
    designs = []
    original = alongside_module.RidgeDesign.of
    monkeypatch.setattr(alongside_module.RidgeDesign, "of", lambda frame: designs.append(len(frame)) or original(frame))
    frame = synthetic_frame(n=96, n_antigens=8, seed=5)
    config = TrainConfig(epochs=1, progress=False, cache_dir=str(tmp_path / "cache"))
    tiny = dict(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16)
    result = train(frame, tmp_path / "plain", ModelConfig(**tiny, familiar_correction="none"), config,
                   encoders=tiny_encoders, log=lambda line: None)
    assert designs == [] and result.metrics["baselines"]  # the baseline builds its own design
    corrected = ModelConfig(**tiny, wide="none", familiar_correction="kmer_ridge_context")
    train(frame, tmp_path / "corrected", corrected, config, encoders=tiny_encoders, log=lambda line: None)
    assert len(designs) == 1  # shared by the correction and the baseline
