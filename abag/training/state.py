"""Everything that changes while a run trains, and its round trip through a checkpoint.

`TrainingState` holds the model, optimizer, scheduler, GradScaler, the epoch history and the counters
(epoch, best validation Spearman and its epoch, epochs without improvement). `to_checkpoint()` adds the
RNG states (torch, CUDA, NumPy, Python) at the moment of saving; `restore()` loads all of it back, RNG last,
so a resumed run continues bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from abag import distributed
from abag.checkpoint import (
    KIND_SINGLE,
    capture_rng_state,
    load_model_weights,
    restore_rng_state,
)
from abag.policy import Precision
from abag.training.config import TrainConfig

DATA_ORDER_SCHEME = "torch.randperm(seed * 1000003 + epoch)"


@dataclass
class TrainingState:
    """The mutable state of a run; `epoch` is the last completed epoch (0 before the first)."""

    model: Any = field(repr=False)                 # abag.model.AbAgModel
    optimizer: torch.optim.Optimizer = field(repr=False)
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau = field(repr=False)
    scaler: torch.amp.GradScaler = field(repr=False)
    run_config: dict = field(repr=False)          # the checkpoint's "config": model and train settings, data id
    seed: int = 0
    split: dict | None = field(default=None, repr=False)  # abag.training.data_identity.RowRecord.to_checkpoint()
    history: list[dict] = field(default_factory=list, repr=False)
    epoch: int = 0
    best_spearman: float = -math.inf
    best_epoch: int = 0
    stale_epochs: int = 0

    @classmethod
    def create(cls, model, config: TrainConfig, precision: Precision, run_config: dict,
               split: dict | None = None) -> "TrainingState":
        """A fresh state: AdamW over the trainable weights, ReduceLROnPlateau on validation Spearman."""
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=config.scheduler_factor, patience=config.scheduler_patience,
            min_lr=config.min_lr)
        scaler = torch.amp.GradScaler("cuda", enabled=precision.needs_scaler)
        return cls(model, optimizer, scheduler, scaler, run_config, config.seed, split)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, path: str | Path, model, config: TrainConfig,
                        precision: Precision, run_config: dict, split: dict | None = None,
                        hint: str = "") -> "TrainingState":
        """`create` followed by `restore`: the state a checkpoint was saved in."""
        state = cls.create(model, config, precision, run_config, split)
        state.restore(checkpoint, path, hint)
        return state

    def restore(self, checkpoint: dict, path: str | Path, hint: str = "") -> None:
        """Load weights (key-checked), optimizer, scheduler, scaler, history, counters, and the RNG states."""
        load_model_weights(self.model, checkpoint["model_state_dict"], self.model.trainable_state_dict().keys(),
                           path, hint=hint)
        self.optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
        self.scheduler.load_state_dict(checkpoint["scheduler_state_dict"])
        if checkpoint.get("scaler_state_dict"):
            self.scaler.load_state_dict(checkpoint["scaler_state_dict"])
        self.history = list(checkpoint["history"])
        self.epoch = int(checkpoint["epoch"])
        self.best_spearman = float(checkpoint["best_spearman"])
        self.best_epoch = int(checkpoint.get("best_epoch", 0))
        self.stale_epochs = int(checkpoint.get("stale_epochs", 0))
        restore_rng_state(checkpoint)  # last: building the model and optimizer above draws random numbers

    def to_checkpoint(self) -> dict:
        """The checkpoint dict (plain tensors, numbers, strings, lists and dicts: loads with weights_only)."""
        checkpoint = {
            "kind": KIND_SINGLE, "epoch": self.epoch, "model_state_dict": self.model.trainable_state_dict(),
            "optimizer_state_dict": self.optimizer.state_dict(),
            "scheduler_state_dict": self.scheduler.state_dict(), "scaler_state_dict": self.scaler.state_dict(),
            "best_spearman": self.best_spearman, "best_epoch": self.best_epoch,
            "stale_epochs": self.stale_epochs, "history": self.history, "config": self.run_config,
            "data_order": {"scheme": DATA_ORDER_SCHEME, "seed": self.seed},
            "world_size": distributed.world_size(), **capture_rng_state(),
        }
        if self.split is not None:
            checkpoint["split"] = self.split
        return checkpoint

    def end_epoch(self, record: dict, spearman: float | None) -> bool:
        """Append the epoch's history row and update the counters; returns whether Spearman improved."""
        self.history.append(record)
        self.epoch = int(record["epoch"])
        improved = spearman is not None and spearman > self.best_spearman
        if improved:
            self.best_spearman, self.best_epoch, self.stale_epochs = spearman, self.epoch, 0
        else:
            self.stale_epochs += 1
        return improved

    def stopped_early(self, config: TrainConfig) -> bool:
        """Whether validation Spearman has not improved for `early_stopping_patience` epochs."""
        return self.stale_epochs >= config.early_stopping_patience
