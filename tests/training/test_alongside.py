"""abag.training.alongside: work beside the epoch loop returns what it would have returned after it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import synthetic_frame

from abag.identity import novelty
from abag.posthoc.intervals import PredictionSupport, nearest_identities
from abag.training.alongside import Alongside, training_support


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
