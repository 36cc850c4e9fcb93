"""The antigen construct term (`abag.antigen_context`): a ridge on two global antigen descriptors (chains, log
residues) learned within antigen clusters. It counts where the familiar-antigen k-mer ridge cannot (antigens from
unseen clusters) and not where it can (training antigens)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import random_sequence

from abag.checkpoint import load_checkpoint
from abag.inference import load_trained_model, member_outputs, predict_frame
from abag.model.config import ModelConfig
from abag.posthoc.antigen_context import AntigenContext, antigen_descriptors
from abag.posthoc.familiar_correction import FamiliarCorrection
from abag.posthoc.intervals import PredictionSupport
from abag.training.config import TrainConfig
from abag.training.run import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_descriptors_count_chains_and_residues():
    x = antigen_descriptors(["A" * 100, "A" * 60 + "|" + "C" * 40, "AC||D|"])
    assert x[:, 0].tolist() == [1.0, 2.0, 2.0]  # empty chains do not count
    assert x[:, 1] == pytest.approx(np.log10([100, 100, 3]))


def context_table(seed: int = 0, families: int = 30) -> pd.DataFrame:
    """Antigen families (one shared chain each) measured as entries of one to four chains; within a family each
    chain beyond the first costs one pKd, and families differ in level at random."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(families):
        shared, level = random_sequence(rng, int(rng.integers(80, 200))), rng.uniform(6.0, 11.0)
        for chains in (1, 2, 3, 4):
            antigen = "|".join([shared, *(random_sequence(rng, int(rng.integers(40, 120))) for _ in range(chains - 1))])
            rows.append({"heavy": random_sequence(rng, 110), "light": random_sequence(rng, 100), "antigen": antigen,
                         "pkd": level - (chains - 1) + rng.normal(0, 0.3)})
    return pd.DataFrame(rows)


def test_context_learns_a_chain_effect_and_holds_it_inside_the_training_range():
    frame = context_table()
    context = AntigenContext.fit(frame.antigen.tolist(), frame.pkd.to_numpy())
    assert context.clusters == 30  # one cluster per family (they share a chain)
    one, four, ten = context.predict(["A" * 120, "|".join(["A" * 30] * 4), "|".join(["A" * 12] * 10)])
    assert one - four == pytest.approx(3.0, abs=0.3)
    assert ten == pytest.approx(four, abs=0.05)  # 10 chains: beyond the training range, treated as 4
    again = AntigenContext.from_state(context.to_state())
    assert np.allclose(again.predict(frame.antigen.tolist()), context.predict(frame.antigen.tolist()))
    with pytest.raises(ValueError, match="antigen context state"):
        AntigenContext.from_state({**context.to_state(), "coef": [1.0]})


def test_context_learns_nothing_from_differences_between_families():
    """Families whose entries all have the same chain count: single-chain families bind 3 pKd tighter than
    three-chain ones, but no family shows what a chain does to its own members, so the term stays 0."""
    rng = np.random.default_rng(4)
    antigens, pkd = [], []
    for family in range(40):
        chains = 1 if family % 2 else 3
        shared = [random_sequence(rng, 100) for _ in range(chains)]
        for _ in range(3):
            antigens.append("|".join(shared))
            pkd.append((10.0 if chains == 1 else 7.0) + rng.normal(0, 0.3))
    context = AntigenContext.fit(antigens, np.array(pkd))
    assert np.allclose(context.predict(antigens), 0.0)
    # the same rows grouped as pairs of a one-chain and a three-chain family: now every cluster shows the effect
    paired = AntigenContext.fit(antigens, np.array(pkd), clusters=np.arange(len(pkd)) // 6)
    assert context.describe()["alpha"] is None and paired.predict(["A" * 100])[0] > 1.0


def test_the_context_moves_unseen_antigens_the_kmer_ridge_leaves_alone():
    frame = context_table(seed=1)
    support = PredictionSupport.from_training(frame, None, "")
    flat = np.full(len(frame), 8.0)
    plain = FamiliarCorrection.fit(frame, flat, np.zeros(len(frame)), support, (4.0, 14.0))
    with_context = FamiliarCorrection.fit(frame, flat, np.zeros(len(frame)), support, (4.0, 14.0), context=True)
    rng = np.random.default_rng(5)
    unseen = pd.DataFrame({"heavy": frame.heavy[:2], "light": frame.light[:2],
                           "antigen": [random_sequence(rng, 150), "|".join(random_sequence(rng, 50) for _ in range(4))]})
    assert plain.weights(unseen).tolist() == [0.0, 0.0] and plain.shift(unseen).tolist() == [0.0, 0.0]
    single, complex_ = with_context.shift(unseen)
    assert single - complex_ == pytest.approx(3.0, abs=0.4)
    # training antigens (w = 1): their own k-mers speak, the construct term does not count
    assert (with_context.weights(frame) == 1.0).all()
    assert np.allclose(with_context.shift(frame), plain.shift(frame))
    state = with_context.to_state()
    again = FamiliarCorrection.from_state(state, PredictionSupport(None, with_context.reference,
                                                                   with_context.antibody_reference))
    assert np.allclose(again.shift(unseen), with_context.shift(unseen))
    assert FamiliarCorrection.from_state(plain.to_state(), support).context is None
    assert with_context.describe()["antigen_context"]["descriptors"]["antigen_chains"] < 0
    assert plain.describe()["antigen_context"] is None
    # the caller's clusters are the ones used: every row its own cluster leaves no family to learn from
    alone = FamiliarCorrection.fit(frame, flat, np.zeros(len(frame)), support, (4.0, 14.0), context=True,
                                   clusters=np.arange(len(frame)))
    assert alone.context.clusters == len(frame) and np.allclose(alone.context.predict(unseen.antigen.tolist()), 0.0)


def test_a_slope_that_does_not_carry_across_clusters_is_dropped():
    """Within each family a chain moves the pKd by 1.5, but up in half the families and down in the others: no
    slope predicts a held-out family, so the term is dropped (infinite penalty), not merely kept small."""
    rng = np.random.default_rng(6)
    antigens, pkd, clusters = [], [], []
    for family in range(12):
        shared, sign = random_sequence(rng, 120), (-1.0) ** family
        for chains in (1, 2, 3):
            for _ in range(4):
                antigens.append("|".join([shared, *(random_sequence(rng, 60) for _ in range(chains - 1))]))
                pkd.append(8.0 + sign * 1.5 * (chains - 2) + rng.normal(0, 0.2))
                clusters.append(family)
    context = AntigenContext.fit(antigens, np.array(pkd), np.array(clusters))
    assert np.isinf(context.alpha) and np.allclose(context.predict(antigens), 0.0)
    state = context.to_state()
    assert state["alpha"] is None and np.isinf(AntigenContext.from_state(state).alpha)


def test_training_with_the_context_option_saves_and_reloads_it(tmp_path, tiny_encoders):
    frame = context_table(seed=2, families=15)
    config = TrainConfig(epochs=1, progress=False, split="random", cache_dir=str(tmp_path / "cache"))
    model_config = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16,
                               familiar_correction="kmer_ridge_context", wide="none")  # the antigen-blind network
    result = train(frame, tmp_path / "run", model_config, config, encoders=tiny_encoders, log=lambda line: None)
    assert result.metrics["familiar_correction"]["antigen_context"] is not None
    assert load_checkpoint(result.best_checkpoint)["familiar_correction"]["context"]["version"] == 1
    model, _ = load_trained_model(result.best_checkpoint)
    rng = np.random.default_rng(3)
    queries = pd.DataFrame({"heavy": frame.heavy[0], "light": frame.light[0],
                            "antigen": [random_sequence(rng, 150), "|".join(random_sequence(rng, 50) for _ in range(4))]})
    predicted = predict_frame(model, queries)["pkd_pred"].to_numpy()
    network = member_outputs(model, queries).network_pkd.mean(axis=0)
    assert network[0] == pytest.approx(network[1])  # the network is antigen-blind
    expected = model.familiar_correction.context.predict(queries.antigen.tolist())
    assert np.allclose(predicted - network, expected, atol=1e-4)  # unseen antigens: network + context only
    assert predicted[0] - predicted[1] > 1.0
