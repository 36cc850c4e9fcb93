"""`--resume`: open last.pt, check that it may continue on this data and this many processes, and take the
run's settings from it (only where the run goes, how long it trains and how it reports may change).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from abag import distributed
from abag.checkpoint import load_checkpoint, resume_hint
from abag.errors import CheckpointError
from abag.model.config import ModelConfig
from abag.training.config import TrainConfig
from abag.training.data_identity import RowRecord, legacy_data_fingerprint


@dataclass
class ResumePoint:
    """A checkpoint to continue from, with the settings it was trained with and its data's rows."""

    checkpoint: dict = field(repr=False)
    path: Path
    model_config: ModelConfig
    config: TrainConfig
    rows: RowRecord = field(repr=False)                  # this data (checked to match the checkpoint's)
    stored: RowRecord | None = field(repr=False)         # the checkpoint's, with its split; None if older


def open_resume(last_path: Path, requested: TrainConfig, frame: pd.DataFrame,
                log: Callable[[str], None]) -> ResumePoint | None:
    """The run to continue from `last_path` (None, with a note, when there is none yet)."""
    folds_record = last_path.parent.parent / "folds.json"
    if folds_record.exists():  # a --folds run folder: its members have their own checkpoints
        raise CheckpointError(f"{last_path.parent.parent} holds a --folds run ({folds_record}), not a single-split "
                              f"run: resume it with --folds K (abag.train_folds, the notebook's FOLDS), or start "
                              f"a new run folder (--out)")
    if not last_path.exists():
        log(f"--resume: no checkpoint at {last_path}; starting a new run")
        return None
    checkpoint = load_checkpoint(last_path, hint=resume_hint(last_path), resumable=True)
    model_config, config = saved_settings(checkpoint["config"], requested, last_path)
    rows = RowRecord.from_frame(frame, config.group_column)
    stored = _check_same_data(checkpoint, frame, rows, last_path)
    if int(checkpoint.get("world_size", 1)) != distributed.world_size():
        raise CheckpointError(f"{last_path} was written by a run with {checkpoint.get('world_size', 1)} "
                              f"process(es); resume with the same number (now {distributed.world_size()})")
    log(f"resuming from {last_path} (epoch {checkpoint['epoch']}) to epoch {config.epochs}")
    return ResumePoint(checkpoint, last_path, model_config, config, rows, stored)


def _check_same_data(checkpoint: dict, frame: pd.DataFrame, rows: RowRecord, last_path: Path) -> RowRecord | None:
    """The checkpoint's row record after checking `rows` against it; refuses different data, saying how."""
    if "split" not in checkpoint:  # written before row records: its fingerprint is all there is to check
        if checkpoint["config"].get("data_fingerprint") != legacy_data_fingerprint(frame):
            raise CheckpointError(f"{last_path} was trained on different data; resume with the same data, "
                                  f"or start a new run folder (--out)")
        return None
    try:
        stored = RowRecord.from_checkpoint(checkpoint["split"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {last_path} is damaged: its record of the data's rows and split is "
                              f"unreadable ({exc}). {resume_hint(last_path)}") from None
    changes = stored.differences(rows)
    if changes:
        raise CheckpointError(f"{last_path} was trained on different data: {'; '.join(changes)}. Resume with the "
                              f"same data (the stored split and the training order refer to its rows), or start a "
                              f"new run folder (--out)")
    return stored


def saved_settings(saved: dict, requested: TrainConfig, last_path: Path) -> tuple[ModelConfig, TrainConfig]:
    """Everything that shapes the result comes from the checkpoint; only where and how long may change."""
    try:
        model_config = ModelConfig.from_dict(saved["model"])
        config = TrainConfig(**{**saved["train"], "split_fractions": tuple(saved["train"]["split_fractions"])})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {last_path} has settings this abag cannot use ({exc}). "
                              f"{resume_hint(last_path)}") from None
    except CheckpointError as exc:  # an option removed since the release that wrote it
        raise CheckpointError(f"checkpoint {last_path}: {exc}") from None
    config = dataclasses.replace(config, epochs=requested.epochs, progress=requested.progress,
                                 device=requested.device, cache_dir=requested.cache_dir)
    return model_config, config
