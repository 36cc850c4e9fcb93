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
    """

    def __init__(self, mse_weight: float = 0.7, class_weight: float = 0.3,
                 binder_threshold: float = BINDER_THRESHOLD):
        super().__init__()
        self.mse_weight = mse_weight
        self.class_weight = class_weight
        self.binder_threshold = binder_threshold

    def forward(self, pred: torch.Tensor, target: torch.Tensor, class_logits: torch.Tensor | None = None,
                censored: torch.Tensor | None = None) -> torch.Tensor:
        pred, target = pred.float().reshape(-1), target.float().reshape(-1)
        if pred.shape != target.shape:
            raise ValueError(f"predictions have {pred.numel()} values for {target.numel()} targets")
        censored = censored.reshape(-1).bool() if censored is not None else None
        error = pred - target
        if censored is not None:
            error = torch.where(censored, error.clamp(min=0.0), error)
        loss = self.mse_weight * error.pow(2).mean()
        if class_logits is not None:
            loss = loss + self.class_weight * self.binder_loss(class_logits, target, censored)
        return loss

    def binder_loss(self, class_logits: torch.Tensor, target: torch.Tensor,
                    censored: torch.Tensor | None = None) -> torch.Tensor:
        """Mean BCE-with-logits over the rows whose binder label is known (0 when there are none)."""
        labels = (target >= self.binder_threshold).float()
        bce = F.binary_cross_entropy_with_logits(class_logits.float().reshape(-1), labels, reduction="none")
        if censored is None:
            return bce.mean()
        known = (~censored | (target < self.binder_threshold)).float()
        return (bce * known).sum() / known.sum().clamp(min=1.0)


def check_loss_validity(loss: torch.Tensor | float, name: str = "loss") -> None:
    """Raise `ValueError` naming `name` when the loss is NaN or Inf (call before the optimizer steps)."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if math.isnan(value):
        raise ValueError(f"{name} is NaN")
    if math.isinf(value):
        raise ValueError(f"{name} is Inf ({value})")
