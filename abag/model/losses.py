"""The v2.7 loss: 0.7·MSE on pKd + 0.3·BCE-with-logits on the binder class, and the NaN/Inf guard.

Censored rows (true pKd at most the reported bound, e.g. an assay floor) are one-sided in both terms: the
squared error counts only above the bound, and the binder label is used only where the bound settles it
(bound below the threshold: certainly not a binder).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from abag.policy import BINDER_THRESHOLD


class StableCombinedLoss(nn.Module):
    """`mse_weight·MSE(pred, target) + class_weight·BCEWithLogits(class_logits, target ≥ binder_threshold)`.

    Without `class_logits` it is `mse_weight·MSE` alone. Rows flagged `censored` add squared error only
    where the prediction exceeds the bound; in the BCE term a censored row with a bound below the threshold
    is a non-binder, and one with a bound at or above it (class unknown) is left out of the mean.

    `segments` (sizes of consecutive runs of rows, summing to the batch) gives the loss of those runs taken
    one at a time, each weighted by its share of the rows: what an accumulation group of micro-batches adds up
    to, computed in one pass (`abag.training.loop`). It changes only the BCE term under censoring, whose mean
    is over each run's rows with a known label.
    """

    def __init__(self, mse_weight: float = 0.7, class_weight: float = 0.3,
                 binder_threshold: float = BINDER_THRESHOLD):
        super().__init__()
        self.mse_weight = mse_weight
        self.class_weight = class_weight
        self.binder_threshold = binder_threshold

    def forward(self, pred: torch.Tensor, target: torch.Tensor, class_logits: torch.Tensor | None = None,
                censored: torch.Tensor | None = None, segments: list[int] | None = None) -> torch.Tensor:
        pred, target = pred.float().reshape(-1), target.float().reshape(-1)
        if pred.shape != target.shape:
            raise ValueError(f"predictions have {pred.numel()} values for {target.numel()} targets")
        censored = censored.reshape(-1).bool() if censored is not None else None
        error = pred - target
        if censored is not None:
            error = torch.where(censored, error.clamp(min=0.0), error)
        if segments is not None and sum(segments) != pred.numel():
            raise ValueError(f"segments of {sum(segments)} rows for a batch of {pred.numel()}")
        # The squared error's row-weighted mean over segments is its mean over all rows.
        loss = self.mse_weight * error.pow(2).mean()
        if class_logits is not None:
            loss = loss + self.class_weight * self.binder_loss(class_logits, target, censored, segments)
        return loss

    def binder_loss(self, class_logits: torch.Tensor, target: torch.Tensor,
                    censored: torch.Tensor | None = None, segments: list[int] | None = None) -> torch.Tensor:
        """Mean BCE-with-logits over the rows whose binder label is known (0 when there are none); with
        `segments`, each run's such mean weighted by its share of the rows."""
        labels = (target >= self.binder_threshold).float()
        bce = F.binary_cross_entropy_with_logits(class_logits.float().reshape(-1), labels, reduction="none")
        if censored is None:
            return bce.mean()
        known = (~censored | (target < self.binder_threshold)).float()
        if segments is None or len(segments) == 1:
            return (bce * known).sum() / known.sum().clamp(min=1.0)
        sizes = torch.tensor(segments, device=bce.device)
        run = torch.repeat_interleave(torch.arange(len(segments), device=bce.device), sizes)
        known_bce = torch.zeros(len(segments), device=bce.device).index_add(0, run, bce * known)
        known_rows = torch.zeros(len(segments), device=bce.device).index_add(0, run, known).clamp(min=1.0)
        return (known_bce / known_rows * sizes / bce.numel()).sum()


def check_loss_validity(loss: torch.Tensor | float, name: str = "loss") -> None:
    """Raise `ValueError` naming `name` when the loss is NaN or Inf (call before the optimizer steps)."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if math.isnan(value):
        raise ValueError(f"{name} is NaN")
    if math.isinf(value):
        raise ValueError(f"{name} is Inf ({value})")
