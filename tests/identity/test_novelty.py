"""Antigen novelty (`abag.identity.novelty`): identity to the nearest training antigen, the ramp to the antigen
weight that the familiar-antigen correction uses, and the reference a checkpoint stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import mutate, random_sequence

from abag.identity.novelty import (
    NoveltyReference,
    antigen_weight_from_identity,
    nearest_identity,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_nearest_identity_recognises_variants_and_not_strangers():
    rng = np.random.default_rng(3)
    training = [random_sequence(rng, int(n)) for n in rng.integers(120, 320, 12)]
    training.append(random_sequence(rng, 90) + "|" + random_sequence(rng, 60))  # a two-chain antigen
    parent = training[0]
    queries = {
        "copy": parent,
        "point mutant": parent[:50] + ("A" if parent[50] != "A" else "C") + parent[51:],
        "fragment": training[1][30:110],
        "30% mutated": mutate(rng, training[2], int(0.3 * len(training[2]))),
        "stranger": random_sequence(rng, 200),
        "half known": training[3][:100] + "|" + random_sequence(rng, 100),
        "chain of a complex": training[-1].split("|")[1],
    }
    identity = dict(zip(queries, nearest_identity(training, list(queries.values()))))
    assert identity["copy"] == 1.0 and identity["fragment"] == 1.0 and identity["chain of a complex"] == 1.0
    assert identity["point mutant"] >= 0.99
    assert 0.55 < identity["30% mutated"] < 0.85  # random substitutions keep ~1/20 of the residues anyway
    assert identity["stranger"] < 0.2
    assert 0.5 <= identity["half known"] <= 0.6  # residue-weighted: one known chain, one unknown of equal length

    reference = NoveltyReference.from_antigens(training)
    weight = dict(zip(queries, reference.weights(list(queries.values()))))
    assert weight["point mutant"] == 1.0 and weight["copy"] == 1.0 and weight["stranger"] == 0.0
    assert 0.0 < weight["30% mutated"] < 1.0 and weight["half known"] < 0.45
    np.testing.assert_allclose(antigen_weight_from_identity([0.2, 0.4, 0.65, 0.9, 1.0]), [0, 0, 0.5, 1, 1])


def test_novelty_reference_survives_a_weights_only_checkpoint(tmp_path):
    rng = np.random.default_rng(4)
    training = [random_sequence(rng, 150) for _ in range(5)]
    reference = NoveltyReference.from_antigens(training + training[:2], low=0.3, high=0.8)
    assert len(reference.chains) == 5  # deduplicated
    torch.save({"novelty": reference.to_state()}, tmp_path / "state.pt")
    restored = NoveltyReference.from_state(torch.load(tmp_path / "state.pt", weights_only=True)["novelty"])
    queries = [mutate(rng, training[0], 40), random_sequence(rng, 150), training[1]]
    np.testing.assert_array_equal(restored.weights(queries), reference.weights(queries))
    assert (restored.low, restored.high) == (0.3, 0.8)
    for broken in ({"version": 99}, {**reference.to_state(), "chains": "ACDE"}, {**reference.to_state(), "low": 0.9}):
        with pytest.raises(ValueError, match="novelty"):
            NoveltyReference.from_state(broken)


def test_novelty_search_scales_to_thousands_of_antigens():
    rng = np.random.default_rng(5)
    parents = [random_sequence(rng, int(n)) for n in rng.integers(80, 300, 300)]
    training = [mutate(rng, p, 3) for p in parents for _ in range(4)]  # 1,200 antigens in 300 families
    queries = [mutate(rng, parents[k], 5) for k in range(300)] + [random_sequence(rng, 150) for _ in range(900)]
    import time

    started = time.perf_counter()
    weights = NoveltyReference.from_antigens(training).weights(queries)
    assert time.perf_counter() - started < 60  # ~2 s on one core; exact alignment of all pairs would take hours
    assert weights[:300].min() > 0.9 and weights[300:].max() == 0.0
