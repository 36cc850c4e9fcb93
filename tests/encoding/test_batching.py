"""Token-budget batching: every index once, the budget respected, and < 10% padding on real chains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abag.encoding.batching import (
    fixed_size_batches,
    padded_tokens,
    padding_fraction,
    token_budget_batches,
)
from abag.encoding.embedding_cache import CHAINS_PER_SHARD
from abag.encoding.sequence_encoder import WindowSpec
from abag.training.config import TrainConfig

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SAAINT = DATA / "saaintdb_dev.csv"
PHILLIPS = DATA / "phillips2021_cr9114_cr6261.csv.gz"
BUDGET = TrainConfig().token_budget  # the budget the cache uses in practice


def check_plan(lengths, batches, budget, max_batch_size=None):
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))            # every index exactly once
    for b in batches:
        assert b, "empty batch"
        if len(b) > 1:
            assert max(lengths[i] for i in b) * len(b) <= budget   # over budget only when alone
        if max_batch_size is not None:
            assert len(b) <= max_batch_size


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 3000), max_size=300), budget=st.integers(1, 20000),
       max_batch_size=st.one_of(st.none(), st.integers(1, 64)))
def test_every_index_once_and_no_batch_over_budget(lengths, budget, max_batch_size):
    check_plan(lengths, token_budget_batches(lengths, budget, max_batch_size), budget, max_batch_size)


def test_items_longer_than_the_budget_get_a_batch_of_their_own():
    batches = token_budget_batches([5000, 10, 10, 9000, 10], 1000)
    assert sorted(batches) == [[0], [1, 2, 4], [3]]


def test_batches_are_length_sorted_and_full():
    lengths = list(np.random.default_rng(0).integers(50, 500, 1000))
    batches = token_budget_batches(lengths, 4096)
    maxima = [max(lengths[i] for i in b) for b in batches]
    assert maxima == sorted(maxima)
    # A batch closes only when the next item would not fit.
    for b, nxt in zip(batches, batches[1:]):
        assert (len(b) + 1) * max(lengths[i] for i in b + nxt[:1]) > 4096


def test_empty_input_and_invalid_arguments():
    assert token_budget_batches([], 100) == []
    assert fixed_size_batches(0, 4) == []
    with pytest.raises(ValueError):
        token_budget_batches([1, 2], 0)
    with pytest.raises(ValueError):
        fixed_size_batches(3, 0)


def test_padding_helpers():
    lengths = [10, 20, 30, 40]
    assert padded_tokens(lengths, [[0, 1], [2, 3]]) == 2 * 20 + 2 * 40
    assert padding_fraction(lengths, [[0, 1], [2, 3]]) == pytest.approx(1 - 100 / 120)
    assert padding_fraction(lengths, [[0], [1], [2], [3]]) == 0.0
    assert fixed_size_batches(5, 2) == [[0, 1], [2, 3], [4]]


# ----------------------------------------------------------------------------- real chains

def real_chains() -> list[str]:
    if not (SAAINT.is_file() and PHILLIPS.is_file()):
        pytest.skip(f"real data not found in {DATA}")
    chains: list[str] = []
    saaint = pd.read_csv(SAAINT, keep_default_na=False)
    phillips = pd.read_csv(PHILLIPS, keep_default_na=False).sample(n=3000, random_state=0)
    for frame in (saaint, phillips):
        chains += list(frame["heavy"]) + [c for c in frame["light"] if c]
        chains += [c for a in frame["antigen"] for c in a.split("|")]
    return list(dict.fromkeys(chains))


@pytest.mark.parametrize("encoder, window, n_special", [("antiberty", WindowSpec(510, 255), 2),
                                                         ("esm2", WindowSpec(1022, 511), 2)])
def test_padding_is_under_ten_percent_on_real_chains(encoder, window, n_special):
    """The cache's plan: distinct chains sorted by length, cut into shards, each shard's windows batched."""
    chains = sorted(real_chains(), key=len)
    assert len(chains) > 3000
    slots = tokens = 0
    for start in range(0, len(chains), CHAINS_PER_SHARD):
        shard = chains[start:start + CHAINS_PER_SHARD]
        lengths = [e - s + n_special for c in shard for s, e in window.windows(len(c))]
        batches = token_budget_batches(lengths, BUDGET)
        check_plan(lengths, batches, BUDGET)
        slots += padded_tokens(lengths, batches)
        tokens += sum(lengths)
    padding = 1 - tokens / slots
    assert padding < 0.10, f"{encoder}: padding {padding:.1%}"


def test_unsorted_fixed_batches_pad_far_more_on_real_chains():
    chains = real_chains()
    rng = np.random.default_rng(0)
    lengths = [min(len(c), 510) + 2 for c in rng.permutation(np.array(chains, dtype=object))]
    naive = padding_fraction(lengths, fixed_size_batches(len(lengths), 32))
    packed = padding_fraction(lengths, token_budget_batches(lengths, BUDGET))
    assert packed < 0.10 < naive
