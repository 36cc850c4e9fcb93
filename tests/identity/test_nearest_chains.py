"""The bounded nearest-chain search (`abag.nearest_chains`): the same answers as the unbounded search where it
matters, and memory that does not grow with (queries x seed-sharing references)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import mutate, random_sequence

from abag.identity import nearest_chains
from abag.identity.nearest_chains import nearest_chain_identity

FRAMEWORK_A = "EVQLVESGGGLVQPGGSLRLSCAASGFTFS"  # shared by every antibody-like chain below
FRAMEWORK_B = "WVRQAPGKGLEWVSRFTISRDNSKNTLYLQMNSLRAEDTAVYYC"


def antibody_like(rng: np.random.Generator, n: int) -> list[str]:
    """Chains that share long framework stretches and differ in random 'CDR' stretches."""
    return [FRAMEWORK_A + random_sequence(rng, 25) + FRAMEWORK_B[:20] + random_sequence(rng, 25) + "WGQGTLVTVSS"
            for _ in range(n)]  # 61 of 111 residues shared


@pytest.fixture
def unbounded(monkeypatch):
    """Run a search with no limit: every shared seed looked up, every holder expanded."""
    def run(references, queries):
        with monkeypatch.context() as patch:
            patch.setattr(nearest_chains, "COMMON_SEED_LIMIT", 10**9)
            patch.setattr(nearest_chains, "RAREST_SEEDS", 10**9)
            patch.setattr(nearest_chains, "COMMON_SEED_HOLDERS", 10**9)
            return nearest_chain_identity(references, queries)
    return run


def test_common_seeds_are_skipped_without_losing_the_nearest_chain(monkeypatch, unbounded):
    rng = np.random.default_rng(0)
    references = antibody_like(rng, 400)  # every framework seed is held by all 400 (limit below: 16)
    queries = ([mutate(rng, references[k], 6) for k in range(40)]           # close variants (~95 %)
               + [mutate(rng, references[k], 25) for k in range(40, 60)]    # lineage-level (~80 %)
               + antibody_like(rng, 40))                                    # same framework, new "CDRs"
    exhaustive = unbounded(references, queries)
    monkeypatch.setattr(nearest_chains, "COMMON_SEED_LIMIT", 16)
    bounded = nearest_chain_identity(references, queries)
    assert bounded[:40].min() > 0.9
    np.testing.assert_allclose(bounded[:60], exhaustive[:60], atol=0.03)
    assert ((bounded < 0.8) == (exhaustive < 0.8)).all()
    assert bounded[60:].max() < 0.8  # a shared framework alone never makes an antibody familiar


def test_a_variant_family_larger_than_the_limit_still_gives_a_close_member(monkeypatch):
    rng = np.random.default_rng(1)
    parent = random_sequence(rng, 120)
    references = [mutate(rng, parent, 4) for _ in range(300)] + [random_sequence(rng, 120) for _ in range(50)]
    queries = [mutate(rng, parent, 4) for _ in range(30)] + [random_sequence(rng, 120) for _ in range(10)]
    monkeypatch.setattr(nearest_chains, "COMMON_SEED_LIMIT", 8)
    identity = nearest_chain_identity(references, queries)
    assert identity[:30].min() > 0.9 and identity[30:].max() < 0.3


def test_memory_stays_bounded_when_every_reference_shares_a_framework():
    rng = np.random.default_rng(2)
    references = antibody_like(rng, 12_000)
    queries = antibody_like(rng, 3_000)
    tracemalloc.start()
    try:
        identity = nearest_chain_identity(references, queries)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # All-seed product: every query x every reference (36M entries, ~430 MB as COO) per pass.
    assert peak < 250 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert identity.max() < 0.8


def test_exact_copies_and_empty_inputs():
    rng = np.random.default_rng(3)
    references = [random_sequence(rng, 80) for _ in range(5)]
    assert nearest_chain_identity(references, []).shape == (0,)
    np.testing.assert_array_equal(nearest_chain_identity([], references[:2]), [0.0, 0.0])
    np.testing.assert_array_equal(nearest_chain_identity(references, [references[3], "ACDEFG"]), [1.0, 0.0])
