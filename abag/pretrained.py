"""The model that ships inside the wheel: where it is, how to load it, and its model card.

It is trained by bench/train_pretrained.py from public data (docs/model-card.md says on what, how well and what
for) with the offline AntiBERTy encoder, so it loads without the Hugging Face hub.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from abag.errors import CheckpointError
from abag.inference import load_trained_model

PRETRAINED_NAME = "abag-saaintdb-antiberty"
"""The shipped model's name: trained on SAAINT-DB, encoded with AntiBERTy."""


def _folder() -> Path:
    return Path(str(resources.files("abag") / "resources" / "pretrained"))


def pretrained_path() -> Path:
    """The shipped checkpoint (a fold ensemble); a `CheckpointError` says how to get one if it is missing."""
    path = _folder() / f"{PRETRAINED_NAME}.pt"
    if not path.exists():
        raise CheckpointError(f"this abag has no pretrained model ({path} is missing): pass --checkpoint with a "
                              f"model from `abag train`, or reinstall abag from a release wheel")
    return path


def model_card() -> dict:
    """The shipped model's card: training data, accuracy by applicability class, intended use, limits."""
    path = _folder() / f"{PRETRAINED_NAME}.card.json"
    if not path.exists():
        raise CheckpointError(f"this abag has no pretrained model card ({path} is missing)")
    return json.loads(path.read_text(encoding="utf-8"))


def load_pretrained(device: str = "auto", *, encoders: dict | None = None):
    """The shipped model, as `load_trained_model` returns it: (model, checkpoint)."""
    return load_trained_model(pretrained_path(), device=device, encoders=encoders)


def describe() -> str:
    """The model card as text, for `abag info`."""
    card = model_card()
    lines = [f"{card['name']} (abag {card['abag_version']}): {card['summary']}",
             f"Trained on: {card['training_data']}",
             f"Encoder: {card['encoder']}; {card['members']} fold members; weights {card['weights']}",
             "Accuracy, out of fold (every row scored by a member that never saw its antigen cluster):"]
    for group in card["accuracy"]:
        lines.append(f"  {group['group']:<28} rows {group['rows']:>4}  Spearman {group['spearman']}  "
                     f"RMSE {group['rmse']}  80% interval coverage {group['coverage_80']}")
    if card.get("phillips_spearman_within_antibody") is not None:
        lines.append(f"  within one antibody's variants (Phillips 2021, zero-shot): Spearman "
                     f"{card['phillips_spearman_within_antibody']}")
    lines += [f"Intended use: {card['intended_use']}", f"Not for: {card['not_for']}",
              "More: docs/model-card.md"]
    return "\n".join(lines)
