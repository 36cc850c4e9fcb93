"""Shared by the attempt scripts: `key=value` arguments and the attempts log.

Values are JSON (`hidden_dim=64`, `fusion='"interaction"'`) or True/False; `counters` (e.g. repeats) are
integers the script itself uses; every other key must be a ModelConfig or TrainConfig field.
"""
import dataclasses
import json
from pathlib import Path

from abag.model.config import ModelConfig
from abag.training.config import TrainConfig

ATTEMPTS_LOG = Path(__file__).with_name("attempts.jsonl")


def parse_attempt_args(pairs, counters):
    """(counter values, ModelConfig keywords, TrainConfig keywords) from `key=value` strings."""
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    counts, model_kw, train_kw = dict(counters), {}, {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        value = json.loads(value) if value not in ("True", "False") else value == "True"
        if key in counts:
            counts[key] = int(value)
        elif key in model_fields:
            model_kw[key] = value
        elif key in train_fields:
            train_kw[key] = value
        else:
            raise SystemExit(f"unknown field {key}")
    return counts, model_kw, train_kw


def record_attempt(line: dict) -> None:
    """Print one attempt's summary and append it to attempts.jsonl."""
    print(json.dumps(line))
    with open(ATTEMPTS_LOG, "a") as fh:
        fh.write(json.dumps(line) + "\n")
