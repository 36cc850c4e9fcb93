"""Rows of a split part served to the model, and predictions over them.

`build_part_data` encodes every distinct chain once (through the embedding cache) when the encoders are
frozen, or keeps raw sequences when they are fine-tuned or the cache is off; `predict_data` runs the model
over a part in eval mode.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from abag import distributed
from abag.encoding.pair_embeddings import (
    EmbeddedPairs,
    embed_pairs,
    make_caches,
    sequences_batch,
)
from abag.policy import Precision


class PairData:
    """Rows of one split part, served either from the embedding tables or as raw sequences."""

    def __init__(self, frame: pd.DataFrame, embedded: EmbeddedPairs | None):
        self.frame = frame.reset_index(drop=True)
        self.embedded = embedded
        self.target = torch.tensor(self.frame["pkd"].to_numpy(dtype=np.float32))
        self.censored = torch.tensor(self.frame["censored"].to_numpy(dtype=bool)) \
            if "censored" in self.frame else torch.zeros(len(self.frame), dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.frame)

    def inputs(self, rows: np.ndarray, device: torch.device):
        if self.embedded is not None:
            return self.embedded.batch(rows).to(device)
        return sequences_batch(self.frame, rows)


def build_part_data(frame: pd.DataFrame, parts: dict[str, np.ndarray], model, config,
                    log: Callable[[str], None]) -> dict[str, PairData]:
    """Embed every distinct chain once (cached path) or keep sequences (fine-tuning / --no-embedding-cache)."""
    use_cache = config.embedding_cache and model.encoders_frozen
    if config.embedding_cache and not model.encoders_frozen:
        log("embedding cache: off (encoder layers are fine-tuned, so embeddings change during training)")
    if not use_cache:
        return {name: PairData(frame.iloc[rows], None) for name, rows in parts.items()}
    antibody_cache, antigen_cache = make_caches(model, config.cache_dir, config.token_budget, config.progress)
    started = time.perf_counter()
    embedded = embed_pairs(frame, antibody_cache, antigen_cache)
    caches = {id(c): c for c in (antibody_cache, antigen_cache) if c is not None}.values()
    # Under torchrun each process encodes a share; report the totals.
    counts = distributed.all_gather_objects((sum(c.stats.encoded for c in caches), sum(c.stats.reused for c in caches)))
    encoded = sum(c[0] for c in counts)
    reused = counts[0][1]
    where = config.cache_dir or "memory only"
    log(f"embedding cache ({where}): {encoded} chains encoded, {reused} reused "
        f"in {time.perf_counter() - started:.1f}s" + (" — nothing to encode" if encoded == 0 else ""))
    return {name: PairData(frame.iloc[rows], embedded.subset(rows)) for name, rows in parts.items()}


@contextlib.contextmanager
def head_threads(data: PairData, device: torch.device) -> Iterator[None]:
    """One intra-op CPU thread while only the head computes (cached embeddings on the CPU); else unchanged.

    The head's tensors are tiny (16 to 256 rows by a few hundred features), so a second thread adds only its
    synchronisation, and on a CPU shared with other work every op waits for a busy core: an epoch of 16k rows
    took 85 s with 2 threads and 4.2 s with 1 on the loaded 2-core machine (an earlier scale run). Encoders
    (the sequence path) keep every thread. The previous thread count is restored on exit.
    """
    if device.type != "cpu" or data.embedded is None or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast(device: torch.device, precision: Precision | None):
    """The run's autocast context (nothing at all for fp32 or when no precision is given)."""
    if precision is None or not precision.enabled:
        return contextlib.nullcontext()
    return precision.autocast(device)


@torch.no_grad()
def predict_data(model: torch.nn.Module, data: PairData, device: torch.device, batch_size: int = 256,
                 precision: Precision | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pKd predictions, binder logits) for every row of `data`, in order, in eval mode."""
    was_training = model.training
    model.eval()
    preds, logits = [], []
    with head_threads(data, device):
        for start in range(0, len(data), batch_size):
            rows = np.arange(start, min(start + batch_size, len(data)))
            with autocast(device, precision):
                pkd, logit = model(data.inputs(rows, device))
            preds.append(pkd.float().cpu())
            logits.append(logit.float().cpu())
    model.train(was_training)
    if not preds:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
    return torch.cat(preds).numpy(), torch.cat(logits).numpy()


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function; saturates quietly (exp overflow for very negative logits is just 0)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))
