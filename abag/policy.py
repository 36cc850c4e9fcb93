"""Decisions the whole package shares: the pKd range, the residue alphabet and its code table, and precision.

Every other module takes these from here, so that the range the model predicts, the range the loader warns
about and the range the monitors watch cannot drift apart, and so that the encoders, the head and the
embedding cache always agree on the precision a run computes in. This module imports nothing from abag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "PKD_RANGE",
    "BINDER_THRESHOLD",
    "AMINO_ACIDS",
    "STANDARD_AMINO_ACIDS",
    "UNKNOWN_RESIDUE",
    "RESIDUE_CODE",
    "residue_codes",
    "Precision",
    "choose_precision",
    "PRECISION_CHOICES",
]

PKD_RANGE: tuple[float, float] = (4.0, 14.0)
"""What the model can predict: the head's output is bounded and clamped to this interval."""

BINDER_THRESHOLD = 9.0
"""pKd at or above which a pair counts as a strong binder (Kd ≤ 1 nM)."""

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
"""The 20 standard residues, in the order their codes 0–19 follow."""

STANDARD_AMINO_ACIDS = frozenset(AMINO_ACIDS)

UNKNOWN_RESIDUE = len(AMINO_ACIDS)
"""The code of any byte that is not one of the 20 standard residues (upper case)."""

RESIDUE_CODE = np.full(256, UNKNOWN_RESIDUE, dtype=np.uint8)
RESIDUE_CODE[np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)] = np.arange(len(AMINO_ACIDS), dtype=np.uint8)
RESIDUE_CODE.setflags(write=False)
"""Byte → residue code lookup: 0–19 for `AMINO_ACIDS`, `UNKNOWN_RESIDUE` for everything else."""


def residue_codes(sequence: str | bytes) -> np.ndarray:
    """The residue codes (uint8) of one sequence; non-standard residues get `UNKNOWN_RESIDUE`."""
    raw = sequence.encode("ascii", "replace") if isinstance(sequence, str) else sequence
    return RESIDUE_CODE[np.frombuffer(raw, dtype=np.uint8)]


@dataclass(frozen=True)
class Precision:
    """The numeric precision a run computes in, shared by the encoders, the head and the embedding cache."""

    name: str                        # "fp32", "bf16" or "fp16"; part of the cache key and of metrics.json
    autocast_dtype: torch.dtype | None
    needs_scaler: bool               # fp16 training needs a GradScaler (its state is checkpointed)

    @property
    def enabled(self) -> bool:
        return self.autocast_dtype is not None

    def autocast(self, device: torch.device):
        """An autocast context for `device` (a no-op for fp32)."""
        if self.autocast_dtype is None:
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=self.autocast_dtype)


FP32 = Precision("fp32", None, False)
BF16 = Precision("bf16", torch.bfloat16, False)
FP16 = Precision("fp16", torch.float16, True)

_NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere (A100) and newer; a T4 (7.5) only emulates bf16


PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


def choose_precision(device: torch.device | str, mixed_precision: bool = True, requested: str = "auto") -> Precision:
    """The precision for `device`: fp32 on CPU or when mixed precision is off; on CUDA bf16 where the GPU runs
    it natively (compute capability ≥ 8.0), else fp16 with a GradScaler.

    `requested` ("fp32", "bf16", "fp16") overrides the automatic choice, for checks and for GPUs where the
    automatic choice misbehaves; fp16 needs CUDA (its GradScaler does), and mixed_precision=False allows only fp32.
    """
    device = torch.device(device)
    if requested != "auto":
        return _requested_precision(device, mixed_precision, requested)
    if device.type != "cuda" or not mixed_precision:
        return FP32
    index = device.index if device.index is not None else torch.cuda.current_device()
    if tuple(torch.cuda.get_device_capability(index)) >= _NATIVE_BF16_CAPABILITY:
        return BF16
    return FP16


def _requested_precision(device: torch.device, mixed_precision: bool, requested: str) -> Precision:
    chosen = {"fp32": FP32, "bf16": BF16, "fp16": FP16}.get(requested)
    if chosen is None:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISION_CHOICES)}")
    if chosen is not FP32 and not mixed_precision:
        raise ValueError(f"precision {requested} asks for mixed precision, which is switched off "
                         f"(--no-mixed-precision means fp32 everywhere)")
    if chosen is FP16 and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA GPU (its gradient scaler runs only there); use fp32 or bf16")
    return chosen


