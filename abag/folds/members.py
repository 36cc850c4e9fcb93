"""`abag train --folds K`: K members, each trained on K−1 folds of antigen clusters, and one model that has
seen all the data.

`train_folds` deals whole antigen clusters (or whole values of `group_column` with `split="group"`) to K
folds with the planning cross-validation uses (`abag.folds.crossval.make_folds`). Member k is an ordinary
`abag.train` run in `OUT/members/member_k/`: it trains on the other folds and validates, and so
early-stops, on fold k (no test part). Every member therefore keeps the v2.7 contract (loss, clamp,
accumulation steps for its own training rows, checkpoint keys, exact resume). `abag.folds.assembly` then
scores every row with the member that held it out and writes the ensemble into `OUT`.

`OUT/folds.json`, written before the first member trains, records the plan and the settings. `resume=True`
refuses a changed K or changed data, keeps the recorded settings (only epochs, device, progress and the
cache folder may change, as for a single run), skips finished members, resumes the member in progress from its
own `last.pt`, and continues finished members from theirs when the epochs were raised (bit for bit as a run
trained that long from the start; an early-stopped member stays stopped), then reassembles the ensemble.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from abag import distributed
from abag.checkpoint import (
    KIND_FOLD_ENSEMBLE,
    checkpoint_kind,
    ensemble_resume_message,
    load_checkpoint,
    resume_hint,
)
from abag.data.folds import make_folds
from abag.data.splits import SplitResult, TooFewGroupsError
from abag.encoding.loader import load_encoders
from abag.errors import CheckpointError
from abag.folds.assembly import assemble
from abag.model.config import ModelConfig
from abag.model.network import encoder_names
from abag.outputs import ensure_writable_folder, write_json_atomic
from abag.stage_times import stage
from abag.training.config import TrainConfig
from abag.training.data_identity import data_fingerprint
from abag.training.resume import saved_settings
from abag.training.run import SplitError, default_log, train
from abag.version import METRICS_VERSION, __version__

__all__ = ["FOLDS_FILE", "FoldAssignment", "MemberRun", "FoldsResult", "plan_folds", "train_folds"]

FOLDS_FILE = "folds.json"
FOLDS_FORMAT = "abag-folds"
FOLD_GROUPINGS = ("antigen", "group")


@dataclass(frozen=True)
class FoldAssignment:
    """Which rows each member holds out: whole groups (antigen clusters or group-column values) per fold."""

    grouping: str               # "antigen" or "group" (the TrainConfig.split the folds keep whole)
    groups: np.ndarray          # group id per row
    member_of_row: np.ndarray   # 1..K: the member that holds the row out (and scores it out of fold)
    protocol: str               # e.g. "5-fold CV over 38 antigen clusters at 40% identity (fold seed 0)"

    @property
    def k(self) -> int:
        return int(self.member_of_row.max())

    def held_out(self, member: int) -> np.ndarray:
        """Positional rows of fold `member` (1-based)."""
        return np.flatnonzero(self.member_of_row == member)

    def held_out_groups(self, member: int) -> list[int]:
        return sorted(int(g) for g in np.unique(self.groups[self.held_out(member)]))

    def split(self, member: int) -> SplitResult:
        """Member `member`'s split: train = the other folds, val = its own fold, no test part."""
        assignment = np.where(self.member_of_row == member, "val", "train").astype("<U5")
        n_val = int(np.sum(assignment == "val"))
        description = (f"member {member}/{self.k} of {self.protocol}: trains on the other {self.k - 1} folds "
                       f"({len(assignment) - n_val} rows), validates and early-stops on fold {member} "
                       f"({n_val} rows, {len(self.held_out_groups(member))} {self.grouping} groups); no test part")
        return SplitResult(self.grouping, assignment, self.groups, description)

    def record(self) -> list[dict]:
        """Per member: its held-out groups and rows (what folds.json and metrics.json record)."""
        return [{"member": m, "held_out_groups": self.held_out_groups(m), "n_held_out_rows": len(self.held_out(m))}
                for m in range(1, self.k + 1)]


@dataclass
class MemberRun:
    """One member's run folder and its metrics.json (as written by `abag.train`)."""

    member: int
    run_dir: Path
    metrics: dict = field(repr=False)
    trained_now: bool            # False for a member finished before a --resume and left as it was
    seconds: float


@dataclass
class FoldsResult:
    """What `train_folds` produced. `metrics` is OUT/metrics.json: `test` holds the out-of-fold metrics."""

    metrics: dict
    history: pd.DataFrame                 # every member's epochs, with a `member` column
    out_dir: Path
    best_checkpoint: Path                 # the ensemble checkpoint (OUT/checkpoints/best.pt)
    model: object = field(repr=False)     # abag.model.ensemble.FoldEnsemble
    predictions: pd.DataFrame = field(repr=False)   # every row, predicted out of fold (test_predictions.csv)
    member_of_row: np.ndarray = field(repr=False)   # 1..K per row
    members: list[MemberRun] = field(repr=False)
    seconds: float = 0.0

    @property
    def split_assignment(self) -> np.ndarray:
        """"test" for every row, since every row is scored out of fold (the single-split result's attribute)."""
        return np.full(len(self.member_of_row), "test")


@dataclass(frozen=True)
class _Setup:
    """What every member needs: the table, the fold plan, the settings and the shared encoders."""

    frame: pd.DataFrame
    plan: FoldAssignment
    model_config: ModelConfig
    config: TrainConfig
    out_dir: Path
    encoders: dict
    data_info: dict
    log: Callable[[str], None]


class TooFewFoldGroupsError(SplitError):
    """The data hold fewer antigen clusters (or groups) than the folds asked for."""


def plan_folds(frame: pd.DataFrame, config: TrainConfig, k: int) -> FoldAssignment:
    """Deal whole antigen clusters (`config.split="antigen"`) or groups ("group") to `k` folds, seeded by
    `config.seed`; raises `SplitError` when the data have too few groups."""
    if config.split not in FOLD_GROUPINGS:
        raise SplitError(f"--folds keeps whole antigen clusters (split 'antigen') or groups (split 'group') "
                         f"apart, not a {config.split!r} split; use --split antigen or group, or the single split")
    group_column = config.group_column if config.split == "group" else None
    try:
        groups, tests, protocol = make_folds(frame, k, group_column=group_column, identity=config.split_identity,
                                             seed=config.seed)
    except TooFewGroupsError as exc:
        raise TooFewFoldGroupsError(f"cannot make {k} folds: {exc}") from None
    except ValueError as exc:
        raise SplitError(f"cannot make {k} folds: {exc}") from None
    member_of_row = np.zeros(len(frame), dtype=np.int64)
    for member, rows in enumerate(tests, start=1):
        member_of_row[rows] = member
    return FoldAssignment(config.split, np.asarray(groups), member_of_row, protocol)


def train_folds(frame: pd.DataFrame, out_dir: str | Path, model_config: ModelConfig | None = None,
                config: TrainConfig | None = None, *, folds: int = 5, resume: bool = False,
                encoders: dict | None = None, log: Callable[[str], None] | None = None,
                data_info: dict | None = None) -> FoldsResult:
    """Train `folds` members on folds of antigen clusters and write the ensemble's run folder `out_dir`.

    Member k trains on the other folds and early-stops on fold k (`out_dir/members/member_k/`). The saved
    model (`checkpoints/best.pt`) averages the members; `metrics.json` (schema v2.7) reports out-of-fold
    metrics beside out-of-fold baselines; `test_predictions.csv` has every row with its out-of-fold
    prediction and the member that made it. Needs frozen encoders (the members share them). Lines go to `log`;
    without one, as in `abag.train`: printed with `config.progress` on, only the warnings with it off.
    """

    started = time.perf_counter()
    out_dir = Path(out_dir)
    model_config, config = model_config or ModelConfig(), config or TrainConfig()
    log = log if log is not None else default_log(config.progress)
    if int(folds) < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if model_config.finetune_layers > 0:
        raise ValueError("train_folds needs frozen encoders (finetune_layers = 0): the members share one set")
    frame = frame.reset_index(drop=True)
    if distributed.is_main_process():
        ensure_writable_folder(out_dir)
    model_config, config, stored = _settings(out_dir, frame, model_config, config, int(folds), resume, log)
    with stage("split"):
        plan = plan_folds(frame, config, int(folds))
    if stored is not None and stored.get("members") != plan.record():
        raise CheckpointError(f"{out_dir / FOLDS_FILE} records other folds than this data and these settings give; "
                              f"resume with the same data, or start a new run folder (--out)")
    _write_record(out_dir, frame, plan, model_config, config)
    log(f"{plan.k}-fold ensemble: {plan.protocol}; {len(frame)} rows; member k early-stops on fold k")
    with stage("encode"):
        shared = _shared_encoders(model_config, encoders)
    setup = _Setup(frame, plan, model_config, config, out_dir, shared, dict(data_info or {}), log)
    members = [_run_member(setup, member, resume) for member in range(1, plan.k + 1)]
    report = assemble(setup, members)
    seconds = time.perf_counter() - started
    log(f"{plan.k} members in {seconds:.0f}s ({sum(m.trained_now for m in members)} trained now)")
    return FoldsResult(report.metrics, report.history, out_dir, out_dir / "checkpoints" / "best.pt", report.model,
                       report.predictions, plan.member_of_row, members, seconds)


def _shared_encoders(model_config: ModelConfig, encoders: dict | None) -> dict:
    """The run's encoders, loaded once for all members."""

    return load_encoders(encoder_names(model_config), encoders)  # an unused antigen encoder is not loaded


def _settings(out_dir: Path, frame: pd.DataFrame, model_config: ModelConfig, config: TrainConfig, folds: int,
              resume: bool, log: Callable[[str], None]) -> tuple[ModelConfig, TrainConfig, dict | None]:
    """The settings to train with: the requested ones, or on resume the recorded ones (after checking that
    the folder holds a fold run with the same K on the same data)."""
    path = out_dir / FOLDS_FILE
    if not resume:
        return model_config, config, None
    if not path.exists():
        last = out_dir / "checkpoints" / "last.pt"
        if last.exists() and _is_ensemble_file(last):  # copied here without its run folder
            raise CheckpointError(ensemble_resume_message(last))
        if last.exists():
            raise CheckpointError(f"{out_dir} holds a single-split training run, not a --folds run; resume it "
                                  f"without --folds, or choose a new --out folder")
        log(f"--resume: no {path}; starting a new {folds}-fold run")
        return model_config, config, None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("format") != FOLDS_FORMAT:
            raise ValueError(f"no '{FOLDS_FORMAT}' format tag")
        stored_folds = int(stored["folds"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is damaged ({exc}); delete {out_dir} (or choose a new --out) to start "
                              f"over") from None
    if stored_folds != folds:
        raise CheckpointError(f"{out_dir} holds a {stored_folds}-fold run; resume it with --folds {stored_folds} "
                              f"(folds=={stored_folds}), or choose a new --out folder for {folds} folds")
    model_config, config = saved_settings(stored["config"], config, path)
    if stored.get("data_fingerprint") != data_fingerprint(frame, config.group_column):
        raise CheckpointError(f"{out_dir} was trained on different data ({stored.get('n_rows')} rows then, "
                              f"{len(frame)} now, or changed values); resume with the same data, or start a new "
                              f"run folder (--out)")
    log(f"resuming the {folds}-fold run in {out_dir}")
    return model_config, config, stored


def _is_ensemble_file(path: Path) -> bool:
    """Whether `path` is a fold ensemble's checkpoint (an unreadable file is not: the caller's message applies)."""
    try:
        return checkpoint_kind(load_checkpoint(path)) == KIND_FOLD_ENSEMBLE
    except CheckpointError:
        return False


def _write_record(out_dir: Path, frame: pd.DataFrame, plan: FoldAssignment, model_config: ModelConfig,
                  config: TrainConfig) -> None:
    """folds.json: the plan and the settings, before any member trains (what --resume checks)."""
    if not distributed.is_main_process():
        return
    write_json_atomic(out_dir / FOLDS_FILE, {
        "format": FOLDS_FORMAT, "format_version": 1, "abag_version": __version__, "folds": plan.k,
        "grouping": plan.grouping, "protocol": plan.protocol, "n_rows": len(frame),
        "data_fingerprint": data_fingerprint(frame, config.group_column), "members": plan.record(),
        "config": {"model": dataclasses.asdict(model_config), "train": dataclasses.asdict(config)},
    })


def member_dir(out_dir: str | Path, member: int) -> Path:
    """The run folder of member `member` (1-based)."""
    return Path(out_dir) / "members" / f"member_{member}"


def _finished(run_dir: Path, split: SplitResult) -> dict | None:
    """A finished member's metrics.json (it exists, reads, and matches its fold's sizes); else None."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        sizes = split.sizes()
        matches = (metrics["version"] == METRICS_VERSION and metrics["data"]["n_train"] == sizes["train"]
                   and metrics["data"]["n_val"] == sizes["val"] and metrics["training"]["epochs_run"] >= 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return metrics if matches and (run_dir / "checkpoints" / "best.pt").is_file() else None


def _continues(run_dir: Path, metrics: dict, epochs: int) -> str | None:
    """Why a finished member must go through `abag.train` again on a resume (None: it is complete as it is).

    It continues from its last.pt when asked for more epochs than it was trained for, or when its last.pt has
    moved past its metrics.json (an earlier resume was interrupted before that member's evaluation).
    """
    training = metrics["training"]
    trained_for = int(metrics.get("hyperparameters", {}).get("epochs", training["epochs_run"]))
    last_path = run_dir / "checkpoints" / "last.pt"
    last_epoch = int(load_checkpoint(last_path, hint=resume_hint(last_path), resumable=True)["epoch"]) \
        if last_path.is_file() else int(training["epochs_run"])
    if last_epoch != int(training["epochs_run"]):
        return f"its last.pt (epoch {last_epoch}) is newer than its results; resuming it"
    if trained_for >= epochs:
        return None
    if training["stopped_early"]:  # as a single run resumed with more epochs: stays stopped, is re-evaluated
        return f"stopped early at epoch {last_epoch}, so it stays stopped (re-evaluated for --epochs {epochs})"
    return f"trained for {trained_for} epochs earlier; continuing from epoch {last_epoch} to {epochs}"


def _run_member(setup: _Setup, member: int, resume: bool) -> MemberRun:
    """Train member `member` with `abag.train` on its split (resuming its own last.pt, also to more epochs), or
    skip it if finished for this many epochs."""
    run_dir, split, k = member_dir(setup.out_dir, member), setup.plan.split(member), setup.plan.k
    finished = _finished(run_dir, split) if resume else None
    if finished is not None:
        reason = _continues(run_dir, finished, setup.config.epochs)
        if reason is None:
            setup.log(f"member {member}/{k}: finished earlier ({run_dir}); not retrained")
            return MemberRun(member, run_dir, finished, False, 0.0)
        setup.log(f"member {member}/{k}: {reason}")
    sizes = split.sizes()
    setup.log(f"member {member}/{k}: {sizes['train']} training rows, {sizes['val']} held out (fold {member}: "
              f"validation and early stopping, then its out-of-fold predictions)")
    prefix = f"[member {member}/{k}] "
    started = time.perf_counter()
    result = train(setup.frame, run_dir, setup.model_config, setup.config,
                   resume=resume and (run_dir / "checkpoints" / "last.pt").exists(), encoders=setup.encoders,
                   log=lambda line: setup.log(prefix + line), data_info=setup.data_info, split=split)
    return MemberRun(member, run_dir, result.metrics, True, time.perf_counter() - started)
