"""What a trained abag checkpoint gives a suggestion round: chain embeddings and a pKd prior.

`checkpoint_inputs(model, frame)` embeds every row with the model's own (frozen) encoders, through the
embedding cache when `cache_dir` is given, exactly as training and prediction do (variable-domain
trimming included), and predicts each row with `abag.predict_frame`. A row's embedding is
[heavy | light | antigen] (light zeros for single-domain antibodies; antigen only when the head reads it).
Without a cache folder the chains go through a temporary one, so they are encoded once for both.
The prior's std is `predict_frame`'s `pkd_std` (the spread of a fold ensemble); a single model reports 0,
and the note says so. Imports numpy, pandas and abag's inference module.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from abag.inference import embed_frame, predict_frame

__all__ = ["CheckpointInputs", "checkpoint_inputs"]


@dataclass(frozen=True)
class CheckpointInputs:
    """Per row of the frame it was computed for: embedding, prior pKd and prior std."""

    embeddings: np.ndarray    # (n, d) float64
    prior_mean: np.ndarray    # (n,)
    prior_std: np.ndarray     # (n,); zeros when the checkpoint has no uncertainty
    note: str


def checkpoint_inputs(model, frame: pd.DataFrame, cache_dir: str | Path | None = None,
                      progress: bool = False) -> CheckpointInputs:
    """Embeddings and prior predictions of `model` for every row of `frame` (heavy, light, antigen).

    Without `cache_dir`, a temporary on-disk cache lets the prediction and the embedding share one encoding.
    """
    if cache_dir is None and model.encoders_frozen:
        with tempfile.TemporaryDirectory(prefix="abag-suggest-") as folder:
            return checkpoint_inputs(model, frame, folder, progress)
    frame = frame.reset_index(drop=True)
    predicted = predict_frame(model, frame, cache_dir=cache_dir, progress=progress)
    mean = predicted["pkd_pred"].to_numpy(dtype=np.float64)
    std = predicted["pkd_std"].to_numpy(dtype=np.float64) if "pkd_std" in predicted else np.zeros(len(frame))
    if not np.any(std > 0):
        note = "the checkpoint reports no uncertainty (a single model): its pkd_std is 0"
    else:
        note = "the checkpoint's pkd_std is the spread of its fold-ensemble members"
    embedded = embed_frame(model, frame, cache_dir, progress)
    light = np.where((embedded.light_index >= 0)[:, None], embedded.antibody[np.maximum(embedded.light_index, 0)],
                     0.0)
    vectors = np.hstack([embedded.antibody[embedded.heavy_index], light, embedded.antigen[embedded.antigen_index]])
    return CheckpointInputs(vectors.astype(np.float64), mean, std, note)
