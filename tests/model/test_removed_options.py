"""Experimental model options removed after abag 2.7.0 (head="linear", composition_k, fusion "concat" and
"additive" with branch_dropout, member_loss="each"): a checkpoint that used one fails with a message naming the
option and the last release that had it; checkpoints that did not, including those holding the removed keys
at their neutral values, still load."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import synthetic_frame, write_csv

from abag.checkpoint import load_checkpoint, save_checkpoint
from abag.cli import main
from abag.errors import CheckpointError
from abag.inference import load_trained_model, predict_frame
from abag.model.config import LEGACY_FIELD_VALUES, REMOVED_FIELDS, ModelConfig
from abag.training.config import TrainConfig
from abag.training.run import train

TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16)
# What abag 2.7.0 wrote for a model that used none of the removed options.
NEUTRAL = {"head": "mlp", "composition_k": 0, "member_loss": "mean", "branch_dropout": 0.5}
LAST_RELEASE = "written by abag 2.7.0, the last release with th"
UNRELEASED = "only existed in the development version after abag 2.7.0"
INSTALL = "pip install abag==2.7.0"


def saved_v27(**options) -> dict:
    """A model config as abag 2.7.0 saved it (every field of its ModelConfig), with `options` changed."""
    return {**dataclasses.asdict(TINY), **NEUTRAL, **options}


@pytest.mark.parametrize("options, named", [
    (dict(head="linear"), "head='linear'"),
    (dict(composition_k=2), "composition_k=2"),
    (dict(fusion="concat"), "fusion='concat'"),
])
def test_a_config_that_used_a_removed_option_names_it_and_the_last_release(options, named):
    with pytest.raises(CheckpointError) as error:
        ModelConfig.from_dict(saved_v27(**options))
    message = str(error.value)
    assert named in message and LAST_RELEASE in message and INSTALL in message


@pytest.mark.parametrize("options, named", [
    (dict(fusion="additive"), "fusion='additive'"),
    (dict(fusion="additive", branch_dropout=0.3), "branch_dropout=0.3"),
    (dict(member_loss="each"), "member_loss='each'"),
])
def test_an_option_that_was_never_released_says_to_retrain(options, named):
    with pytest.raises(CheckpointError) as error:
        ModelConfig.from_dict(saved_v27(**options))
    message = str(error.value)
    assert named in message and UNRELEASED in message and "abag train" in message and INSTALL not in message


def test_several_removed_options_are_named_together():
    with pytest.raises(CheckpointError, match="head='linear', composition_k=1, options .* these options"):
        ModelConfig.from_dict(saved_v27(head="linear", composition_k=1))


@pytest.mark.parametrize("fusion", ["antibody_only", "interaction"])
def test_removed_keys_at_their_neutral_values_are_ignored(fusion):
    saved = saved_v27(fusion=fusion, branch_dropout=0.9)  # branch_dropout meant nothing without fusion additive
    assert ModelConfig.from_dict(saved) == dataclasses.replace(TINY, fusion=fusion)


def test_a_config_from_before_the_newer_fields_rebuilds_the_v27_model():
    old = {k: v for k, v in dataclasses.asdict(TINY).items() if k not in LEGACY_FIELD_VALUES}
    assert ModelConfig.from_dict(old) == dataclasses.replace(TINY, **LEGACY_FIELD_VALUES)
    assert not set(REMOVED_FIELDS) & set(LEGACY_FIELD_VALUES)
    assert not set(REMOVED_FIELDS) & {f.name for f in dataclasses.fields(ModelConfig)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_encoders):
    folder = tmp_path_factory.mktemp("removed")
    frame = synthetic_frame(n=48)
    config = TrainConfig(epochs=1, progress=False, split="random", cache_dir=str(folder / "cache"))
    result = train(frame, folder / "run", TINY, config, encoders=tiny_encoders, log=lambda line: None)
    return frame, folder, result


def _rewrite(source, target, **model_options):
    state = load_checkpoint(source)
    state["config"]["model"] = {**state["config"]["model"], **model_options}
    save_checkpoint(state, target)
    return target


def test_loading_a_checkpoint_with_a_removed_option_fails_clearly(trained, capsys):
    frame, folder, result = trained
    path = _rewrite(result.best_checkpoint, folder / "linear.pt", head="linear")
    with pytest.raises(CheckpointError, match=f"checkpoint {path}: .*head='linear'.*{LAST_RELEASE}"):
        load_trained_model(path)
    data = write_csv(frame.head(4), folder / "query.csv")
    assert main(["predict", "--checkpoint", str(path), "--data", data, "--out", str(folder / "p.csv"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "head='linear'" in err and INSTALL in err


def test_resuming_a_run_with_a_removed_option_fails_clearly(trained, tiny_encoders):
    frame, folder, result = trained
    run = folder / "resume_me"
    (run / "checkpoints").mkdir(parents=True)
    last = result.best_checkpoint.with_name("last.pt")
    _rewrite(last, run / "checkpoints" / "last.pt", member_loss="each", n_members=3)
    config = TrainConfig(epochs=2, progress=False, split="random", cache_dir=str(folder / "cache"))
    with pytest.raises(CheckpointError, match="member_loss='each'.*retrain it with `abag train`"):
        train(frame, run, TINY, config, resume=True, encoders=tiny_encoders, log=lambda line: None)


def test_a_checkpoint_with_neutral_removed_keys_loads_and_predicts_the_same(trained):
    frame, folder, result = trained
    path = _rewrite(result.best_checkpoint, folder / "neutral.pt", **NEUTRAL)
    model, _ = load_trained_model(path)
    assert model.config == result.model.config
    before = predict_frame(result.model, frame.head(6), coverage=None)["pkd_pred"].to_numpy()
    after = predict_frame(model, frame.head(6), coverage=None)["pkd_pred"].to_numpy()
    np.testing.assert_allclose(after, before, rtol=1e-5)
