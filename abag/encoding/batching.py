"""Length-sorted, token-budget batching (the idea of fair-esm's `get_batch_indices`).

Encoders pad every row of a batch to the batch's longest row, so batching unsorted chains of mixed lengths
wastes most of the compute on padding. Sorting by length and filling each batch up to a token budget
(rows × longest row) keeps padding to a few percent and the per-batch memory bounded.
"""

from __future__ import annotations

from typing import Sequence


def token_budget_batches(lengths: Sequence[int], token_budget: int, max_batch_size: int | None = None) -> list[list[int]]:
    """Indices grouped into batches whose padded size (rows × longest row) stays within `token_budget`.

    Items are sorted by length first, so rows in a batch have similar lengths and padding stays small.
    Every index appears exactly once; an item longer than the budget gets a batch of its own.
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be positive, got {token_budget}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        longest_if_added = max(longest, lengths[index])
        too_many = max_batch_size is not None and len(current) >= max_batch_size
        if current and (longest_if_added * (len(current) + 1) > token_budget or too_many):
            batches.append(current)
            current, longest_if_added = [], lengths[index]
        current.append(index)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


def fixed_size_batches(n: int, batch_size: int) -> list[list[int]]:
    """Consecutive, unsorted batches of `batch_size` items: the naive scheme, for comparison."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Token slots the encoder computes for these batches (rows × longest row, summed)."""
    return sum(max(lengths[i] for i in b) * len(b) for b in batches if len(b))


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of encoded token slots that are padding, for the given batches."""
    slots = padded_tokens(lengths, batches)
    real = sum(lengths[i] for b in batches for i in b)
    return 0.0 if slots == 0 else 1.0 - real / slots
