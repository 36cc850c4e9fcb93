"""The per-epoch record (one line of history.csv), the monitors it carries, and the line printed for it.

Monitors: the overfit ratio (validation loss / training loss, warned above `overfit_warning_ratio`) and
output saturation: the share of validation predictions within `SATURATION_MARGIN` pKd of either bound of
the model's output range. The output is a scaled sigmoid, so it can never leave the range; a head pushed
into the flat ends of the sigmoid instead piles predictions up at the bounds, where their gradient is
below 2% of its peak. A tenth of the predictions there (`TrainConfig.saturation_warning_share`, 0.10) is
far more than labels near the bounds explain, so the line warns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abag.policy import PKD_RANGE
from abag.training.config import TrainConfig

SATURATION_MARGIN = 0.05
TRAIN_LOSS_MODE = "train_mode_running_mean"
"""How `train_loss` is measured: in train mode (dropout on), averaged over the epoch's micro-batches while
the weights change. `val_loss` is measured after the epoch in eval mode (dropout off), so with strong
dropout the overfit ratio can sit below 1 without anything being wrong."""


@dataclass
class EpochRecord:
    """One line of `history.csv`."""

    epoch: int
    train_loss: float
    val_loss: float
    overfit_ratio: float
    val_spearman: float | None
    val_rmse: float | None
    learning_rate: float
    pred_min: float
    pred_max: float
    val_saturation: float       # share of validation predictions within SATURATION_MARGIN of a bound
    optimizer_steps: int
    seconds: float
    train_loss_mode: str = TRAIN_LOSS_MODE


def saturation_share(predictions: np.ndarray, bounds: tuple[float, float] = PKD_RANGE,
                     margin: float = SATURATION_MARGIN) -> float:
    """Share of `predictions` within `margin` of either end of `bounds` (0.0 for no predictions)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.size == 0:
        return 0.0
    low, high = bounds
    return float(np.mean((predictions <= low + margin) | (predictions >= high - margin)))


def _shown_above(value: float, limit: float) -> str:
    """`value` (> `limit`) with two decimals, or as many more as it takes not to read as `limit` (3.004 > 3.0)."""
    for digits in (2, 3, 4, 5, 6):
        text = f"{value:.{digits}f}"
        if float(text) > limit:
            return text
    return repr(value)


def format_epoch(record: EpochRecord, config: TrainConfig) -> str:
    """The per-epoch line, with the overfitting and saturation warnings appended."""
    spearman = "n/a" if record.val_spearman is None else f"{record.val_spearman:.4f}"
    rmse = "n/a" if record.val_rmse is None else f"{record.val_rmse:.3f}"
    line = (f"epoch {record.epoch:3d} | train loss {record.train_loss:.4f} | val loss {record.val_loss:.4f} | "
            f"overfit ratio {record.overfit_ratio:.2f} | val Spearman {spearman} | val RMSE {rmse} | "
            f"lr {record.learning_rate:.2e} | pred range [{record.pred_min:.2f}, {record.pred_max:.2f}] | "
            f"at bounds {record.val_saturation:.0%} | steps {record.optimizer_steps} | {record.seconds:.1f}s")
    if record.overfit_ratio > config.overfit_warning_ratio:
        line += f"\n  WARNING: overfitting — val/train loss ratio " \
                f"{_shown_above(record.overfit_ratio, config.overfit_warning_ratio)} > {config.overfit_warning_ratio}"
    if record.val_saturation > config.saturation_warning_share:
        line += (f"\n  WARNING: saturated output — {record.val_saturation:.0%} of validation predictions are "
                 f"within {SATURATION_MARGIN} of the output bounds (more than {config.saturation_warning_share:.0%}); "
                 f"try a lower --learning-rate, and check the labels' range")
    return line
