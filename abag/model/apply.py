"""Rows of a split part served to the model, and predictions over them.

`build_part_data` encodes every distinct chain once (through the embedding cache) when the encoders are
frozen, or keeps raw sequences when they are fine-tuned or the cache is off, and attaches each row's wide-part
prediction (`abag.model.wide`, computed once per run; `prepare_wide` fits it first); `predict_data` runs the
model over a part in eval mode (`predict_parts` also returns the deep part).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
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
from abag.model.wide import CANDIDATES, CROSS_FIT_FOLDS, WIDE_SPECS, cross_fitted, fit_wide
from abag.policy import Precision


class PairData:
    """Rows of one split part, served either from the embedding tables or as raw sequences, with each row's
    wide-part prediction (`offset`: (n,), or (K, n) for the K members of a fold ensemble; None without one)."""

    def __init__(self, frame: pd.DataFrame, embedded: EmbeddedPairs | None, offset: np.ndarray | None = None):
        self.frame = frame.reset_index(drop=True)
        self.embedded = embedded
        self.offset = None if offset is None else np.ascontiguousarray(offset, dtype=np.float32)
        if self.offset is not None and self.offset.shape[-1] != len(self.frame):
            raise ValueError(f"{len(self.frame)} rows but {self.offset.shape[-1]} wide offsets")
        self.target = torch.tensor(self.frame["pkd"].to_numpy(dtype=np.float32))
        self.censored = torch.tensor(self.frame["censored"].to_numpy(dtype=bool)) \
            if "censored" in self.frame else torch.zeros(len(self.frame), dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.frame)

    def with_offset(self, offset: np.ndarray | None) -> "PairData":
        """The same rows and embeddings with other wide offsets (another member's)."""
        data = copy.copy(self)
        data.offset = None if offset is None else np.ascontiguousarray(offset, dtype=np.float32)
        return data

    def inputs(self, rows: np.ndarray, device: torch.device):
        offset = None if self.offset is None else torch.from_numpy(self.offset[..., rows])
        if self.embedded is not None:
            return dataclasses.replace(self.embedded.batch(rows), offset=offset).to(device)
        return dataclasses.replace(sequences_batch(self.frame, rows), offset=offset)


def prepare_wide(model, frame: pd.DataFrame, train_rows: np.ndarray, groups: np.ndarray | None,
                 saved_weights: dict | None, log: Callable[[str], None]) -> np.ndarray | None:
    """Give `model` its wide part before training and return every row's offset (None without a wide part).

    The part is fitted on the training rows (on resume: read from the checkpoint's weights, `saved_weights`),
    a "ridge_choice" part choosing its candidate (a "ridge_blend" part weighing them) by folds of `groups` where the
    split has them. Training rows get cross-fitted offsets (`abag.model.wide.cross_fitted`, the same folds, the
    chosen candidate or weights), so the network learns what the part misses on rows it did not see; the others,
    the full part's."""
    if not model.has_wide:
        return None
    started = time.perf_counter()
    kind = model.config.wide
    train_frame = frame.iloc[train_rows]
    train_groups = None if groups is None else np.asarray(groups)[train_rows]
    known = None  # the fit's own out-of-fold predictions (ridge_choice, ridge_blend), not recomputed below
    if saved_weights is not None:
        prefix = "head.wide."
        model.head.wide.load_state_dict({k[len(prefix):]: v for k, v in saved_weights.items() if k.startswith(prefix)})
        model.wide_part()  # ValueError when the checkpoint holds no fitted part
        source = "read from the checkpoint"
    else:
        fitted = fit_wide(train_frame, kind, train_groups)
        model.set_wide(fitted)
        known = fitted.out_of_fold
        source = "fitted on the training rows"
    part = model.wide_part()
    offset = model.wide_offsets(frame)
    offset[train_rows] = cross_fitted(train_frame, kind, train_groups, weight=part.onehot_weight, known=known,
                                      local=part.local,
                                      within_scale=1.0 if part.level is None else part.level.within_scale)
    heavy = part.describe()["heavy_block"]
    block = "" if heavy is None else f"; heavy {heavy['k']}-mer block " + (
        f"alpha {heavy['alpha']:g}" if heavy["alpha"] is not None else "unused (no gain on held-out heavy chains)")
    chosen = ""
    over = "folds of the run's groups" if train_groups is not None else "random folds"
    if part.onehot is not None and WIDE_SPECS[kind].blend:  # "ridge_blend": the weights, and what they gave
        rmse = part.cv_rmse
        chosen = (f"{1 - part.weight:.2f} x {CANDIDATES[0]} + {part.weight:.2f} x {CANDIDATES[1]} (held-out RMSE "
                  f"{part.blend_rmse:.2f}; alone {rmse[0]:.2f} and {rmse[1]:.2f} over {part.cv_folds} {over}); "
                  "the k-mer ridge: " if part.cv_folds else
                  f"{CANDIDATES[0]} alone (not cross-validated: fewer than two groups): ")
    elif part.onehot is not None:  # "ridge_choice": which candidate, by how much
        mine, other = part.cv_rmse[part.choice], part.cv_rmse[1 - part.choice]
        chosen = (f"{CANDIDATES[part.choice]} chosen (held-out RMSE {mine:.2f} against the "
                  f"{CANDIDATES[1 - part.choice]}'s {other:.2f} over {part.cv_folds} {over}); the k-mer ridge: "
                  if part.cv_folds else f"{CANDIDATES[0]} kept (not cross-validated: fewer than two groups): ")
    if part.level is not None:  # "grouped_blend": the candidates predict deviations from the group level
        block += (f"; fitted to deviations from the means of {part.level.groups} groups (scaled by "
                  f"{part.level.within_scale:.2f}), the level a {part.level.ridge.method}")
    if part.local is not None:  # "grouped_blend": what the blend misses, near its rows
        block += (f"; a local term on {len(part.local.rows)} training rows (length scales {part.local.lengths[0]:g} "
                  f"/ {part.local.lengths[1]:g}, held-out error x {part.local.error_ratio:.3f})")
    if part.bound is not None:
        block += (f"; wide + deep soft-bounded to [{part.bound.low:.2f}, {part.bound.high:.2f}] with a margin of "
                  f"{part.bound.margin:.2f} (the wide part's held-out RMSE)")
    log(f"wide part ({kind}, {source}): {chosen}{part.ridge.method}{block}; the network trains against "
        f"{CROSS_FIT_FOLDS}-fold cross-fitted predictions ({time.perf_counter() - started:.1f}s)")
    return offset


def centre_deep(model, data: PairData, device: torch.device, precision: Precision | None = None) -> float | None:
    """After training: shift the deep part so that its mean over `data`'s rows with an exact pKd (the training
    rows) is 0, and return the shift (None without a wide part).

    The wide part holds the level (its intercept fits the training mean); the deep part's is not identified by
    the loss at the early-stopped epoch, which is chosen by validation Spearman (blind to level): on 5 random
    folds of CR9114 it drifted by up to ±0.27 pKd between folds, which cost 0.04 of pooled Spearman. The shift
    is recomputed from 0, so finalizing twice gives the same model."""
    if not model.has_wide:
        return None
    with torch.no_grad():
        model.head.deep_shift.zero_()
    deep, _, _ = predict_parts(model, data, device, precision=precision)
    exact = ~data.censored.numpy() & np.isfinite(data.target.numpy())
    shift = -float(np.mean(deep[exact], dtype=np.float64)) if exact.any() else 0.0
    with torch.no_grad():
        model.head.deep_shift.fill_(shift)
    return shift


SCALE_MIN_VALIDATION_ROWS = 10
"""Exact validation rows below which `scale_deep` leaves the deep part as trained (a slope from fewer is noise)."""


def scale_deep(model, val: PairData, device: torch.device, precision: Precision | None = None) -> float | None:
    """After `centre_deep`: scale the deep part by beta in [0, 1], the least-squares slope (with an intercept) of
    the validation rows' pKd minus the wide part on the deep part, and return beta (None without a wide part or
    with fewer than `SCALE_MIN_VALIDATION_ROWS` exact validation rows: unchanged). The shift is not scaled:
    the caller re-centres (beta x the shift, as `abag.training.finalize` does).

    Why: the deep part learns the wide part's residual on the training rows, and on rows unlike them it can add
    more error than it removes: over held-out SAAINT-DB antigen clusters a wide+deep model had RMSE 1.47 against
    the wide part's 1.26 (bench/RESULTS.md). The validation rows are held out the way the split holds out the test
    rows (whole antigen clusters by default), so their slope says how far to trust the deep part there: 1 keeps
    it, 0 leaves the wide part alone. The slope of a part already scaled by its own beta is 1, so finalizing twice
    gives the same model."""
    if not model.has_wide or val.offset is None or val.offset.ndim != 1:
        return None
    exact = ~val.censored.numpy() & np.isfinite(val.target.numpy())
    if exact.sum() < SCALE_MIN_VALIDATION_ROWS:
        return None
    deep, _, _ = predict_parts(model, val, device, precision=precision)
    deep = deep[exact].astype(np.float64)
    residual = val.target.numpy()[exact].astype(np.float64) - val.offset[exact].astype(np.float64)
    spread = float(np.var(deep))
    if spread <= 0.0:  # a constant deep part: nothing to scale
        return 1.0
    beta = float(np.clip(np.mean((deep - deep.mean()) * (residual - residual.mean())) / spread, 0.0, 1.0))
    if abs(beta - 1.0) < 1e-4:  # already scaled (a second finalize): leave the weights bit for bit
        return 1.0
    with torch.no_grad():  # the deep part is linear in the pKd layer: scaling it scales deep(x) exactly
        model.head.pkd_out.weight.mul_(beta)
        model.head.pkd_out.bias.mul_(beta)
    return beta


def build_part_data(frame: pd.DataFrame, parts: dict[str, np.ndarray], model, config,
                    log: Callable[[str], None], offset: np.ndarray | None = None) -> dict[str, PairData]:
    """Embed every distinct chain once (cached path) or keep sequences (fine-tuning / --no-embedding-cache);
    `offset` (from `prepare_wide`) is every row's wide prediction, computed once per run (the full part's when a
    model with a wide part is given none)."""
    use_cache = config.embedding_cache and model.encoders_frozen
    if offset is None and model.has_wide:
        offset = model.wide_offsets(frame)
    if config.embedding_cache and not model.encoders_frozen:
        log("embedding cache: off (encoder layers are fine-tuned, so embeddings change during training)")
    if not use_cache:
        return {name: PairData(frame.iloc[rows], None, None if offset is None else offset[rows])
                for name, rows in parts.items()}
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
    return {name: PairData(frame.iloc[rows], embedded.subset(rows), None if offset is None else offset[rows])
            for name, rows in parts.items()}


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


def predict_data(model: torch.nn.Module, data: PairData, device: torch.device, batch_size: int = 256,
                 precision: Precision | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pKd predictions, binder logits) for every row of `data`, in order, in eval mode."""
    _, pkd, logits = predict_parts(model, data, device, batch_size, precision)
    return pkd, logits


@torch.no_grad()
def predict_parts(model: torch.nn.Module, data: PairData, device: torch.device, batch_size: int = 256,
                  precision: Precision | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(deep part, pKd, binder logits) for every row of `data`, in order, in eval mode (`AffinityHead.parts`:
    pKd = clamp(offset + deep) with a wide part; deep = pKd without one)."""
    was_training = model.training
    model.eval()
    deeps, preds, logits = [], [], []
    with head_threads(data, device):
        for start in range(0, len(data), batch_size):
            rows = np.arange(start, min(start + batch_size, len(data)))
            with autocast(device, precision):
                if hasattr(model, "parts"):
                    deep, pkd, logit = model.parts(data.inputs(rows, device))
                else:  # any other (pKd, logit) module: no parts to show
                    pkd, logit = model(data.inputs(rows, device))
                    deep = pkd
            deeps.append(deep.float().cpu())
            preds.append(pkd.float().cpu())
            logits.append(logit.float().cpu())
    model.train(was_training)
    if not preds:
        empty = np.zeros(0, dtype=np.float32)
        return empty, empty, empty
    return torch.cat(deeps).numpy(), torch.cat(preds).numpy(), torch.cat(logits).numpy()


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function; saturates quietly (exp overflow for very negative logits is just 0)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))
