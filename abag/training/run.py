"""Train a model and write its run folder: prepare → fit → finalize.

`train()` reads top to bottom: take the settings (from last.pt on `--resume`), split the data, build the
model and its inputs, build or restore the `TrainingState`, run the epoch loop (`abag.training.loop.fit`), then
evaluate the best epoch (`abag.training.finalize.finalize`) and write the results. `RunFolder` is the only writer
of the run folder.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from abag import distributed
from abag.checkpoint import resume_hint, save_checkpoint
from abag.data.splits import SplitResult, split_pairs
from abag.distributed import resolve_device
from abag.errors import AbagError, CheckpointError, InvalidSettingError
from abag.model.apply import (
    PairData,
    build_part_data,
    predict_data,
    prepare_wide,
    sigmoid,
)
from abag.model.config import ModelConfig
from abag.model.losses import StableCombinedLoss
from abag.model.network import AbAgModel, build_model
from abag.outputs import ensure_writable_folder, write_csv_atomic, write_json_atomic
from abag.policy import PKD_RANGE, choose_precision
from abag.stage_times import stage
from abag.training.alongside import Alongside, final_inputs
from abag.training.config import RunInputs, TrainConfig
from abag.training.data_identity import RowRecord, data_fingerprint
from abag.training.finalize import FinalReport, finalize
from abag.training.loop import TrainingInterrupted, epoch_order, fit, shard_for_process
from abag.training.monitors import EpochRecord, format_epoch
from abag.training.resume import ResumePoint, open_resume
from abag.training.state import TrainingState
from abag.version import __version__

__all__ = ["TrainConfig", "TrainResult", "TrainingInterrupted", "SplitError", "train", "seed_everything", "default_log",
           "resolve_device", "PairData", "predict_data", "sigmoid", "EpochRecord", "format_epoch",
           "data_fingerprint", "epoch_order", "shard_for_process"]


@dataclass
class TrainResult:
    """What `train` produced: metrics (as written to metrics.json), history and file locations."""

    metrics: dict
    history: pd.DataFrame
    out_dir: Path
    best_checkpoint: Path
    model: AbAgModel = field(repr=False)
    split_assignment: np.ndarray = field(repr=False)


class SplitError(AbagError):
    """The data cannot be split into training, validation and test parts as asked (bad input: exit 2)."""

    exit_code = 2


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_log(progress: bool) -> Callable[[str], None]:
    """Where a run's lines go when the caller passes no `log`: `print` with `progress` on; with it off, only
    the lines that warn (overfitting, saturated output, …), on stderr."""
    return print if progress else warnings_only


def warnings_only(message: str) -> None:
    """Print the WARNING lines of `message` (to stderr) and nothing else."""
    for line in str(message).splitlines():
        if "WARNING" in line:
            print(line.strip(), file=sys.stderr)


@dataclass
class RunFolder:
    """The run folder: checkpoints/{last,best}.pt, history.csv, metrics.json, test_predictions.csv.

    Only process 0 writes; on the others every method is a no-op.
    """

    out_dir: Path
    main: bool

    @classmethod
    def prepare(cls, out_dir: str | Path) -> "RunFolder":
        folder = cls(Path(out_dir), distributed.is_main_process())
        if folder.main:
            ensure_writable_folder(folder.out_dir)
            ensure_writable_folder(folder.out_dir / "checkpoints")
        return folder

    @property
    def last(self) -> Path:
        return self.out_dir / "checkpoints" / "last.pt"

    @property
    def best(self) -> Path:
        return self.out_dir / "checkpoints" / "best.pt"

    def save_start(self, state: TrainingState) -> None:
        """A loadable last.pt (epoch 0) even if the first epoch dies."""
        if self.main:
            save_checkpoint(state.to_checkpoint(), self.last)

    def save_epoch(self, state: TrainingState, improved: bool) -> None:
        """best.pt (when improved) before last.pt, then history.csv so progress can be watched."""
        if not self.main:
            return
        checkpoint = state.to_checkpoint()
        if improved or not self.best.exists():
            save_checkpoint(checkpoint, self.best)
        save_checkpoint(checkpoint, self.last)
        write_csv_atomic(self.out_dir / "history.csv", pd.DataFrame(state.history))

    def write_results(self, report: FinalReport, log: Callable[[str], None]) -> None:
        if not self.main:
            return
        write_json_atomic(self.out_dir / "metrics.json", report.metrics)
        write_csv_atomic(self.out_dir / "history.csv", report.history)
        if report.test_predictions is not None:
            write_csv_atomic(self.out_dir / "test_predictions.csv", report.test_predictions)
        if report.comparison:
            log(report.comparison)


def train(frame: pd.DataFrame, out_dir: str | Path, model_config: ModelConfig | None = None,
          config: TrainConfig | None = None, *, resume: bool = False, encoders: dict | None = None,
          log: Callable[[str], None] | None = None, data_info: dict | None = None, split=None) -> TrainResult:
    """Split `frame`, train, checkpoint every epoch, evaluate the best model and write the run folder.

    `frame` is a validated table (see `abag.data.load_pairs`). `split` (a `SplitResult`) overrides the
    configured split, e.g. for cross-validation folds. Writes `metrics.json`, `history.csv`,
    `test_predictions.csv` and `checkpoints/{last,best}.pt` under `out_dir`. The run's lines (split, epochs,
    the comparison table) go to `log`; without one they are printed when `config.progress` is on, and only
    the warnings (to stderr) when it is off.
    """
    folder = RunFolder.prepare(out_dir)
    model_config, config = model_config or ModelConfig(), config or TrainConfig()
    log = log if log is not None else default_log(config.progress)
    log = log if folder.main else _silent  # one voice per run: only process 0 prints
    point = open_resume(folder.last, config, frame, log) if resume else None
    if point is not None:
        model_config, config = point.model_config, point.config

    seed_everything(config.seed)
    with stage("split"):
        split = _split(frame, config, split, point)
    log(f"split: {split.description}")
    with stage("encode"):
        run, model = _prepare(frame, split, model_config, config, point, encoders, log, data_info or {})
    run_config = {"model": dataclasses.asdict(run.model_config), "train": dataclasses.asdict(config),
                  "data_fingerprint": data_fingerprint(frame, config.group_column), "abag_version": __version__}
    rows = (point.rows if point else RowRecord.from_frame(frame, config.group_column)).with_split(split)
    if point is None:
        state = TrainingState.create(model, config, run.precision, run_config, rows.to_checkpoint())
        folder.save_start(state)
    else:
        state = TrainingState.from_checkpoint(point.checkpoint, point.path, model, config, run.precision,
                                              run_config, rows.to_checkpoint(), hint=resume_hint(point.path))

    criterion = StableCombinedLoss(config.mse_weight, config.class_weight, config.binder_threshold)
    # What the end needs that the network does not change (the nearest-chain search, the baselines) needs only
    # the split: it runs in a background thread while the epochs train the head on one core.
    correcting = model.config.familiar_correction != "none"
    unchanged = Alongside(lambda: final_inputs(run, correcting))
    with stage("train"):
        stopped_early = fit(state, run, criterion, folder.save_epoch, log, folder.last)
        distributed.barrier()

    report = finalize(state, run, folder.best, stopped_early, unchanged)
    with stage("write"):
        folder.write_results(report, log)
    return TrainResult(report.metrics, report.history, folder.out_dir, folder.best, model,
                       np.asarray(split.assignment))


def _silent(_: str) -> None:
    return None


def _split(frame: pd.DataFrame, config: TrainConfig, given, point: ResumePoint | None):
    """The split to train on: a resumed run's stored one, `given` (cross-validation folds) or the configured one.

    A resumed run never recomputes its split (a changed clustering would move rows between the parts).
    """

    stored = point.stored if point is not None else None
    if stored is not None:
        assignment = stored.assignment()
        if given is not None:
            moved = int(np.sum(np.asarray(given.assignment).astype(str) != assignment))
            if moved:
                raise CheckpointError(f"{point.path} was trained on another split: {moved} rows are in a "
                                      f"different part now; resume with the same split, or start a new run "
                                      f"folder (--out)")
            return given
        return SplitResult(stored.split_method, assignment, stored.split_groups, stored.split_description)
    if given is not None:
        return given
    try:
        return split_pairs(frame, config.split, fractions=config.split_fractions, seed=config.seed,
                           group_column=config.group_column, identity=config.split_identity)
    except ValueError as exc:  # too few antigens or groups, unknown group column, …
        raise SplitError(f"cannot split the data ({config.split} split): {exc}. Use more data or "
                         f"another --split.") from None


def _prepare(frame: pd.DataFrame, split, model_config: ModelConfig, config: TrainConfig,
             point: ResumePoint | None, encoders: dict | None, log: Callable[[str], None],
             data_info: dict) -> tuple[RunInputs, AbAgModel]:
    """Rows per part, the model (its output starts at the training mean pKd, or at its wide part fitted on the
    training rows) and its inputs."""
    parts = {name: split.indices(name) for name in ("train", "val", "test")}
    if len(parts["train"]) == 0 or len(parts["val"]) == 0:
        raise SplitError(f"the {split.method} split left an empty training or validation set "
                         f"({split.sizes()}); use more data or another --split")
    if point is None:
        train_mean = float(np.clip(np.mean(frame["pkd"].to_numpy()[parts["train"]]), *PKD_RANGE))
        model_config = dataclasses.replace(model_config, initial_pkd=train_mean)
    device = resolve_device(config.device)
    model = build_model(model_config, encoders).to(device)
    try:
        precision = choose_precision(device, config.mixed_precision, config.precision)
    except ValueError as exc:
        raise InvalidSettingError(str(exc)) from None
    model.use_precision(precision)  # encoders, head and cache key agree on one precision
    # The wide part is fitted on the training rows before the network trains (on resume: read from last.pt).
    try:
        offset = prepare_wide(model, frame, parts["train"], split.groups,
                              point.checkpoint["model_state_dict"] if point else None, log)
    except ValueError as exc:
        raise InvalidSettingError(str(exc)) from None
    data = build_part_data(frame, parts, model, config, log, offset)
    return RunInputs(frame, split, parts, data, config, model_config, device, precision, data_info), model
