"""An optional pairwise ranking term within antigen clusters, and the batch order that gives it pairs.

Users ask "which of my antibodies binds X best?": a ranking question inside one antigen. The v2.7 loss
(0.7·MSE + 0.3·BCE) scores each row alone, so a head can fit the between-antigen level well and still order
the antibodies of one antigen at random. `TrainConfig(ranking_weight=λ)` (`abag train --ranking-weight λ`)
adds λ times a pairwise logistic loss over the pairs of a micro-batch that share a group (antigen cluster of
the split, else the exact antigen): for a pair with measured pKd y_i > y_j, softplus(−(ŷ_i − ŷ_j)), so a
correctly ordered pair costs less the more clearly it is ordered. Pairs closer than `RANKING_MIN_GAP` pKd
(within assay noise) and pairs with a censored row are left out. λ = 0, the default, is the v2.7 loss.

Random micro-batches of 16 rows rarely hold two rows of one cluster, so when the term is on,
`grouped_epoch_order` lays each epoch out in runs of `rows_per_group` rows of one group (groups and their rows
shuffled by the epoch's generator, then the runs shuffled): a batch of 16 then holds four runs of four. The
order is still a function of (seed, epoch) alone, so resume stays bit-identical. Imports numpy and torch only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["RANKING_MIN_GAP", "grouped_epoch_order", "pairwise_ranking_loss"]

RANKING_MIN_GAP = 0.3  # pKd: pairs measured closer than this are not ranked


def grouped_epoch_order(groups: np.ndarray, generator: torch.Generator, rows_per_group: int) -> np.ndarray:
    """A permutation of the rows in shuffled runs of up to `rows_per_group` rows sharing a group."""
    groups = np.asarray(groups)
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    _, codes = np.unique(groups, return_inverse=True)
    row_key = torch.randperm(n, generator=generator).numpy()
    group_key = torch.randperm(int(codes.max()) + 1, generator=generator).numpy()
    order = np.lexsort((row_key, group_key[codes]))          # groups contiguous, rows shuffled inside
    sorted_codes = codes[order]
    position = np.arange(n) - np.searchsorted(sorted_codes, sorted_codes)  # rank inside the group
    run_of = np.cumsum(np.concatenate([[True], (sorted_codes[1:] != sorted_codes[:-1])
                                       | (position[1:] % rows_per_group == 0)])) - 1
    run_key = torch.randperm(int(run_of[-1]) + 1, generator=generator).numpy()
    return order[np.lexsort((position, run_key[run_of]))]


def pairwise_ranking_loss(pred: torch.Tensor, target: torch.Tensor, groups: torch.Tensor,
                          censored: torch.Tensor | None = None) -> torch.Tensor:
    """Mean softplus(−(ŷ_i − ŷ_j)) over same-group pairs with y_i ≥ y_j + `RANKING_MIN_GAP` (0 when none).

    `pred` may carry leading member dimensions (M, B); each member is ranked and the results averaged.
    """
    target = target.float().reshape(-1)
    groups = groups.reshape(-1)
    usable = torch.ones_like(target, dtype=torch.bool) if censored is None else ~censored.reshape(-1).bool()
    pair = (groups[:, None] == groups[None, :]) & usable[:, None] & usable[None, :]
    pair &= (target[:, None] - target[None, :]) >= RANKING_MIN_GAP
    if not bool(pair.any()):
        return pred.float().sum() * 0.0  # keeps the graph (and DDP's view of the parameters) intact
    first, second = pair.nonzero(as_tuple=True)
    pred = pred.float()
    margin = pred[..., first] - pred[..., second]
    return F.softplus(-margin).mean()
