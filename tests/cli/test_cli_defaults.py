"""Every command-line default is written once: options named after a config field take its default, and
`--help` shows every default."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from abag.cli import build_parser
from abag.model.config import LARGE_TABLE_DEFAULTS, ModelConfig
from abag.suggest.config import SuggestConfig
from abag.training.config import TrainConfig


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(command: str) -> list[argparse.Action]:
    return [a for a in _subparsers(build_parser())[command]._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("command, configs", [("train", (ModelConfig, TrainConfig)), ("suggest", (SuggestConfig,))])
def test_options_named_after_a_config_field_take_its_default(command, configs):
    fields = {f.name: f.default for config in configs for f in dataclasses.fields(config)
              if f.default is not dataclasses.MISSING}
    # Required options and overrides that are unset unless given (--antibody-encoder: "same as --encoder") have none.
    matched = [a for a in _options(command) if a.dest in fields and not a.required and a.default is not None]
    assert len(matched) >= (17 if command == "train" else 4)
    for action in matched:
        assert action.default == fields[action.dest], f"{command} {action.option_strings[0]}"
    # The defaults that number every chain follow the table's size: unset in argparse, both named in --help.
    sized = [a for a in _options(command) if a.dest in LARGE_TABLE_DEFAULTS]
    assert len(sized) == (len(LARGE_TABLE_DEFAULTS) if command == "train" else 0)
    for action in sized:
        assert action.default is None, action.option_strings[0]
        assert (f"(default: {fields[action.dest]} up to 20,000 distinct antibody chains, "
                f"{LARGE_TABLE_DEFAULTS[action.dest]} above" in " ".join(action.help.split())), action.option_strings[0]


def test_the_encoder_option_defaults_to_the_model_config_encoder():
    encoder = next(a for a in _options("train") if a.option_strings == ["--encoder"])
    assert encoder.default == ModelConfig().antibody_encoder == ModelConfig().antigen_encoder


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "suggest"])
def test_help_shows_every_default(command):
    missing = []
    for action in _options(command):
        if action.required or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                                                   argparse._VersionAction)):
            continue
        if action.default is None:  # an option that is off unless given says what it does instead
            continue
        if "(default" not in (action.help or "") and "default ~" not in (action.help or ""):
            missing.append(action.option_strings[0])
    assert missing == [], f"abag {command} --help hides the defaults of {missing}"
