"""The diversity rule: a batch does not spend itself on near-duplicates.

Picks are made one at a time. At each pick every remaining candidate gets its acquisition score, and the
best-scoring candidate whose Hamming distance to every earlier pick of the batch is at least
`min_distance` is taken (ties in a seeded random order). With `min_distance` 2, no two picks differ by a
single residue: a batch of single mutants takes at most one substitution per position until the positions
run out. When no remaining candidate is that far from all earlier picks, the radius drops by one for the
rest of the batch (recorded per pick in `BatchPicks.radius`), so a batch is always full.
`min_distance` 1, the default, turns the rule off (every candidate is distinct): on the Phillips landscapes
the rule found no more top variants and cost finds in the first rounds (bench/RESULTS_suggest.md).
Imports numpy and abag.suggest.encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from abag.suggest.encoding import hamming_from

__all__ = ["BatchPicks", "pick_batch"]


@dataclass(frozen=True)
class BatchPicks:
    """The picked candidate rows in pick order, their score when picked, and the radius then in force."""

    rows: np.ndarray
    scores: np.ndarray
    radius: np.ndarray

    @property
    def relaxed(self) -> bool:
        return bool(len(self.radius)) and bool((self.radius < self.radius[0]).any())


def pick_batch(n: int, codes: np.ndarray, scores_for_pick: Callable[[int], np.ndarray], min_distance: int,
               tie_break: np.ndarray) -> BatchPicks:
    """`n` distinct rows of `codes` picked by the rule above; `scores_for_pick(i)` scores all rows at pick i."""
    total = len(codes)
    if n > total:
        raise ValueError(f"cannot pick {n} of {total} candidates")
    available = np.ones(total, dtype=bool)
    nearest = np.full(total, np.iinfo(np.int64).max, dtype=np.int64)  # distance to the closest pick so far
    radius = min_distance
    rows, scores, radii = [], [], []
    for pick in range(n):
        score = np.nan_to_num(np.asarray(scores_for_pick(pick), dtype=np.float64), nan=-np.inf)
        eligible = available & (nearest >= radius)
        while not eligible.any():  # everything left is too close to the batch: relax the radius
            radius -= 1
            eligible = available & (nearest >= radius)
        best = np.flatnonzero(eligible & (score == score[eligible].max()))
        row = int(best[np.argmin(tie_break[best])])
        rows.append(row)
        scores.append(score[row])
        radii.append(radius)
        available[row] = False
        nearest = np.minimum(nearest, hamming_from(codes, row))
    return BatchPicks(np.array(rows, dtype=np.int64), np.array(scores), np.array(radii, dtype=np.int64))
