"""The v2.7 loss: 0.7·MSE on pKd + 0.3·BCE-with-logits on the binder class, and the NaN/Inf guard."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class StableCombinedLoss(nn.Module):
    """`mse_weight·MSE(pred, target) + class_weight·BCEWithLogits(class_logits, target ≥ binder_threshold)`.

    Without `class_logits` it is `mse_weight·MSE` alone. Rows flagged `censored` (true pKd at most the
    reported value, e.g. an assay floor) add squared error only where the prediction exceeds the bound.
    """

    def __init__(self, mse_weight: float = 0.7, class_weight: float = 0.3, binder_threshold: float = 9.0):
        super().__init__()
        self.mse_weight = mse_weight
        self.class_weight = class_weight
        self.binder_threshold = binder_threshold

    def forward(self, pred: torch.Tensor, target: torch.Tensor, class_logits: torch.Tensor | None = None,
                censored: torch.Tensor | None = None) -> torch.Tensor:
        pred, target = pred.float().reshape(-1), target.float().reshape(-1)
        error = pred - target
        if censored is not None:
            error = torch.where(censored.reshape(-1), error.clamp(min=0.0), error)
        loss = self.mse_weight * error.pow(2).mean()
        if class_logits is not None:
            labels = (target >= self.binder_threshold).float()
            loss = loss + self.class_weight * F.binary_cross_entropy_with_logits(
                class_logits.float().reshape(-1), labels)
        return loss


def check_loss_validity(loss: torch.Tensor | float, name: str = "loss") -> None:
    """Raise `ValueError` naming `name` when the loss is NaN or Inf (call before the optimizer steps)."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if math.isnan(value):
        raise ValueError(f"{name} is NaN")
    if math.isinf(value):
        raise ValueError(f"{name} is Inf ({value})")
