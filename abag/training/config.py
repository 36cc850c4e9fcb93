"""What a training run is set up with: its settings (`TrainConfig`) and its prepared inputs (`RunInputs`).

`TrainConfig` is saved in every checkpoint (as a plain dict) and restored on `--resume`; `RunInputs` is what
`abag.train` hands to `fit` and `finalize`: the table, the split, each part's rows and the device and
precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from abag.policy import BINDER_THRESHOLD, Precision


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults are the v2.7 specification."""

    epochs: int = 100
    batch_size: int = 16
    gradient_accumulation: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    grad_clip_norm: float = 1.0
    mse_weight: float = 0.7
    class_weight: float = 0.3
    # Optional pairwise ranking term within antigen clusters (abag.model.ranking); 0 = the v2.7 loss alone.
    ranking_weight: float = 0.0
    ranking_rows_per_group: int = 4  # with ranking on: micro-batches hold runs of this many rows of one cluster
    binder_threshold: float = BINDER_THRESHOLD
    scheduler_factor: float = 0.6
    scheduler_patience: int = 10
    min_lr: float = 1e-6
    early_stopping_patience: int = 15
    overfit_warning_ratio: float = 3.0
    # Share of validation predictions within `SATURATION_MARGIN` of either output bound above which the
    # epoch line warns that the head is saturating (see abag.training.monitors).
    saturation_warning_share: float = 0.10
    seed: int = 0
    split: str = "antigen"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_identity: float = 0.4
    group_column: str | None = None
    embedding_cache: bool = True
    cache_dir: str | None = None
    token_budget: int = 8192
    mixed_precision: bool = True
    precision: str = "auto"  # "auto" (policy.choose_precision) or a forced "fp32" / "bf16" / "fp16"
    device: str = "auto"
    progress: bool = True

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation


@dataclass
class RunInputs:
    """Everything fixed for the length of a run: data, split, per-part rows, device and precision."""

    frame: pd.DataFrame = field(repr=False)
    split: object                          # abag.data.splits.SplitResult
    parts: dict[str, np.ndarray] = field(repr=False)
    data: dict = field(repr=False)         # part name -> abag.model.apply.PairData
    config: TrainConfig
    model_config: object                   # abag.model.ModelConfig
    device: torch.device
    precision: Precision
    data_info: dict = field(default_factory=dict)
