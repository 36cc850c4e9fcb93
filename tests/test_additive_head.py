"""The additive head (fusion="additive"): μ + a(antibody) + w·(g(antigen) + i(antibody, antigen)), the novelty
weight w from the nearest training antigen, branch dropout, and heads that ignore the antigen never encoding it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import mutate, random_sequence
from torch import nn

from abag.encoding.batches import PairEmbeddings, PairSequences
from abag.encoding.pair_embeddings import embed_pairs, make_caches
from abag.identity.novelty import (
    NoveltyReference,
    antigen_weight_from_identity,
    nearest_identity,
)
from abag.model.config import ModelConfig
from abag.model.network import AbAgModel, AdditiveHead, AffinityHead, build_model

TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16)
ADDITIVE = dataclasses.replace(TINY, fusion="additive")
D_AB, D_AG = 12, 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def head_config(**changes) -> ModelConfig:
    return dataclasses.replace(ADDITIVE, trim_antibody=False, **changes)


def random_batch(n: int, seed: int = 0) -> PairEmbeddings:
    g = torch.Generator().manual_seed(seed)
    light_present = torch.arange(n) % 3 != 0  # some single-domain antibodies
    return PairEmbeddings(torch.randn(n, D_AB, generator=g), torch.randn(n, D_AB, generator=g), light_present,
                          torch.randn(n, D_AG, generator=g))


def with_antigen(batch: PairEmbeddings, antigen: torch.Tensor) -> PairEmbeddings:
    return dataclasses.replace(batch, antigen=antigen)


def wake_antigen_terms(head: nn.Module, seed: int = 0) -> None:
    """g and i start at zero (an untrained head is antibody-only); give them weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for branch in (head.antigen_branch, head.interaction_branch):
            branch[-1].weight.copy_(torch.randn(branch[-1].weight.shape, generator=g))


# ----------------------------------------------------------------------------------------------- the head

def test_untrained_head_is_antibody_only_and_training_makes_the_antigen_count():
    torch.manual_seed(0)
    head = AdditiveHead(D_AB, D_AG, head_config(dropout=0.1, input_dropout=0.0))
    rng = np.random.default_rng(0)
    antibodies, antigens = torch.randn(6, 2, D_AB), torch.randn(6, D_AG)
    ab_effect, ag_effect = rng.uniform(-1, 1, 6), np.array([-1.5, -1.0, -0.5, 0.5, 1.0, 1.5])
    i, j = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    i, j = i.ravel(), j.ravel()
    batch = PairEmbeddings(antibodies[i, 0], antibodies[i, 1], torch.ones(36, dtype=torch.bool), antigens[j])
    target = torch.tensor(8.0 + ab_effect[i] + ag_effect[j], dtype=torch.float32)

    head.eval()
    with torch.no_grad():
        before, _ = head(batch)
    # Rows of one batch may differ in the last bit (blocked matmul), hence a tolerance, not equality.
    assert float(before.view(6, 6).std(dim=1).max()) < 1e-5  # the antigen has no effect yet

    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    head.train()
    for _ in range(300):
        optimizer.zero_grad()
        pkd, _ = head(batch)
        nn.functional.mse_loss(pkd, target).backward()
        optimizer.step()
    head.eval()
    with torch.no_grad():
        after, _ = head(batch)
        alone, _ = head(batch, torch.zeros(36))
    after, alone = after.view(6, 6).numpy(), alone.view(6, 6).numpy()
    # The same antibody now gets different predictions against different antigens, ordered like the truth …
    assert np.all(after[:, -1] - after[:, 0] > 1.5)
    assert all(np.corrcoef(row, ag_effect)[0, 1] > 0.9 for row in after)
    # … and μ + a alone (what an unseen antigen gets) still ranks the antibodies, the antigen averaged out.
    assert np.ptp(alone, axis=1).max() < 1e-5
    assert np.corrcoef(alone[:, 0], ab_effect)[0, 1] > 0.9
    assert abs(float(alone.mean()) - (8.0 + ab_effect.mean())) < 0.3


@pytest.mark.parametrize("members", [1, 3])
def test_zero_antigen_weight_is_exactly_the_antibody_only_head(members):
    torch.manual_seed(1)
    config = head_config(n_members=members)
    additive = AdditiveHead(D_AB, D_AG, config).eval()
    wake_antigen_terms(additive)
    antibody_only = AffinityHead(D_AB, D_AG, dataclasses.replace(config, fusion="antibody_only")).eval()
    shared = {k: v for k, v in additive.state_dict().items() if k in antibody_only.state_dict()}
    assert set(shared) == set(antibody_only.state_dict())  # a(antibody) + μ is the antibody_only head
    antibody_only.load_state_dict(shared)

    batch = random_batch(8)
    other = with_antigen(batch, torch.randn(8, D_AG))
    zero = torch.zeros(8)
    with torch.no_grad():
        reference, reference_logit = antibody_only(batch)
        for x in (batch, other):
            pkd, logit = additive(x, zero)
            assert torch.equal(pkd, reference) and torch.equal(logit, reference_logit)
        full, _ = additive(batch)
        full_other, _ = additive(other)
        half, _ = additive(batch, torch.full((8,), 0.5))
    assert (full - reference).abs().min() > 1e-4 and (full - full_other).abs().min() > 1e-4
    if members == 1:  # one member: the weight moves the prediction monotonically from a + μ to the full sum
        between = (half - torch.minimum(full, reference) > -1e-6) & (torch.maximum(full, reference) - half > -1e-6)
        assert bool(between.all())


def test_branch_dropout_drops_whole_rows_in_training_mode_only():
    torch.manual_seed(2)
    head = AdditiveHead(D_AB, D_AG, head_config(dropout=0.1, input_dropout=0.0, branch_dropout=0.5))
    wake_antigen_terms(head)
    for module in head.modules():  # isolate branch dropout from ordinary dropout
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    batch = random_batch(200)
    head.eval()
    with torch.no_grad():
        full, full_logit = head(batch)
        alone, alone_logit = head(batch, torch.zeros(200))
        assert torch.equal(head(batch)[0], full)  # eval mode: nothing is dropped, ever
        head.train()
        pkd, logit = head(batch)
    kept = torch.isclose(pkd, full, atol=1e-6) & torch.isclose(logit, full_logit, atol=1e-6)
    dropped = torch.isclose(pkd, alone, atol=1e-6) & torch.isclose(logit, alone_logit, atol=1e-6)
    assert bool((kept ^ dropped).all())  # each row is either whole or antibody-only, in pKd and logit alike
    assert 60 < int(dropped.sum()) < 140

    quiet = AdditiveHead(D_AB, D_AG, head_config(dropout=0.0, branch_dropout=0.5))
    wake_antigen_terms(quiet)
    with torch.no_grad():
        quiet.eval()
        expected, _ = quiet(batch)
        quiet.train()
        assert torch.equal(quiet(batch)[0], expected)  # dropout 0 switches branch dropout off too


def test_output_stays_in_range_and_bad_weights_are_refused():
    head = AdditiveHead(D_AB, D_AG, head_config(n_members=2)).train()
    wake_antigen_terms(head)
    batch = random_batch(16)
    pkd, logits = head(batch, torch.rand(16))
    (pkd.sum() + logits.sum()).backward()
    assert head.antigen_branch[0].weight.grad is not None and head.antibody_proj[0].weight.grad is not None
    head.eval()
    with torch.no_grad():
        high = head.pkd_out.bias.fill_(1e4) is not None and head(batch)[0]
        low = head.pkd_out.bias.fill_(-1e4) is not None and head(batch)[0]
        assert float(high.min()) >= 13.99 and float(high.max()) <= 14.0
        assert float(low.min()) >= 4.0 and float(low.max()) <= 4.01
        head.pkd_out.bias.fill_(0.0)
        for branch in (head.antigen_branch, head.interaction_branch):
            branch[-1].weight.mul_(1e4)  # antigen terms of either sign, far beyond the range
        wild = head(batch)[0]
        assert float(wild.min()) >= 4.0 and float(wild.max()) <= 14.0 and float(wild.max() - wild.min()) > 9.9
    for bad in (torch.full((16,), 1.5), torch.full((16,), float("nan")), torch.ones(15)):
        with pytest.raises(ValueError, match="antigen_weight"):
            head(batch, bad)
    with pytest.raises(ValueError, match="needs head 'mlp'"):
        AdditiveHead(D_AB, D_AG, head_config(head="linear"))
    with pytest.raises(ValueError, match="branch_dropout"):
        AdditiveHead(D_AB, D_AG, head_config(branch_dropout=1.5))


# ----------------------------------------------------------------------------------------------- novelty

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


# ----------------------------------------------------------------------------------------------- the model

def test_predictions_shrink_antigen_terms_by_familiarity(tiny_encoders, recwarn):
    from abag.inference import predict_frame

    rng = np.random.default_rng(6)
    model = build_model(ADDITIVE, tiny_encoders).eval()
    wake_antigen_terms(model.head)
    training = [random_sequence(rng, 100) for _ in range(4)]
    model.novelty = NoveltyReference.from_antigens(training)
    heavy, light = random_sequence(rng, 110), random_sequence(rng, 100)
    antigens = [training[0], mutate(rng, training[0], 1), random_sequence(rng, 100), random_sequence(rng, 80)]
    frame = pd.DataFrame({"heavy": heavy, "light": light, "antigen": antigens})
    familiar, mutant, stranger, other_stranger = predict_frame(model, frame)["pkd_pred"]
    assert stranger == other_stranger  # weight 0: the antibody-only prediction, whatever the antigen
    assert abs(mutant - stranger) > 1e-4 and abs(familiar - stranger) > 1e-4  # weight 1: the antigen counts
    assert not [w for w in recwarn.list if "training antigens" in str(w.message)]
    model.novelty = None
    with pytest.warns(UserWarning, match="no training antigens"):
        unweighted = predict_frame(model, frame)["pkd_pred"]
    assert unweighted[0] == pytest.approx(familiar, abs=1e-6) and abs(unweighted[2] - stranger) > 1e-4


def test_checkpoint_restores_the_training_antigens(tmp_path, tiny_encoders):
    from conftest import synthetic_frame

    from abag.checkpoint import load_checkpoint, save_checkpoint
    from abag.errors import CheckpointError
    from abag.inference import load_trained_model, predict_frame
    from abag.training.config import TrainConfig
    from abag.training.run import train

    frame = synthetic_frame(n=48)
    config = TrainConfig(epochs=1, progress=False, split="random", cache_dir=str(tmp_path / "cache"))
    result = train(frame, tmp_path / "run", ADDITIVE, config, encoders=tiny_encoders, log=lambda line: None)
    path = result.best_checkpoint
    state = load_checkpoint(path)
    state["novelty"] = NoveltyReference.from_antigens(frame.antigen.iloc[:24]).to_state()
    save_checkpoint(state, path)
    model, _ = load_trained_model(path)
    assert isinstance(model.head, AdditiveHead) and model.novelty.chains == tuple(sorted(set(frame.antigen[:24])))
    wake_antigen_terms(model.head)
    queries = frame.iloc[[0, 1]].assign(antigen=[random_sequence(np.random.default_rng(7), 70)] * 2)
    weights = model.antigen_weights(queries.antigen)
    assert weights.tolist() == [0.0, 0.0]
    state["novelty"] = {"version": 1, "chains": [1, 2]}
    save_checkpoint(state, path)
    with pytest.raises(CheckpointError, match="damaged"):
        load_trained_model(path)


def _antigen_encoder_that_must_not_run(monkeypatch, encoder):
    def refuse(*args, **kwargs):
        raise AssertionError("the antigen encoder ran")

    monkeypatch.setattr(encoder.model, "forward", refuse)


def test_a_head_that_ignores_the_antigen_never_encodes_it(monkeypatch):
    from abag.encoding.loader import load_tiny_encoder
    from abag.inference import predict_frame

    rng = np.random.default_rng(8)
    frame = pd.DataFrame({"heavy": [random_sequence(rng, 90) for _ in range(3)], "light": ["", *[random_sequence(rng, 80)] * 2],
                          "antigen": [random_sequence(rng, 60), random_sequence(rng, 70) + "|" + random_sequence(rng, 30),
                                      random_sequence(rng, 60)]})
    batch = PairSequences(list(frame.heavy), list(frame.light), list(frame.antigen))
    antibody_encoder, antigen_encoder = load_tiny_encoder(seed=0), load_tiny_encoder(seed=1, hidden_size=24)
    _antigen_encoder_that_must_not_run(monkeypatch, antigen_encoder)
    model = AbAgModel(dataclasses.replace(TINY, finetune_layers=1), antibody_encoder, antigen_encoder).eval()
    assert TINY.fusion == "antibody_only" and not model.uses_antigen
    assert antibody_encoder.is_trainable and not antigen_encoder.is_trainable  # nothing to learn there
    with torch.no_grad():
        direct, _ = model(batch)
    cached = embed_pairs(frame, *make_caches(model, None))
    assert cached.antigen.shape == (3, 0)
    with torch.no_grad():
        from_cache, _ = model(cached.batch(np.arange(3)))
    torch.testing.assert_close(direct, from_cache, rtol=1e-5, atol=1e-5)
    assert predict_frame(model, frame, coverage=None)["pkd_pred"].between(4, 14).all()
    # The same encoder, wired into a head that reads the antigen, is run (so the check above can fail).
    aware = AbAgModel(dataclasses.replace(TINY, fusion="additive"), antibody_encoder, antigen_encoder).eval()
    with pytest.raises(AssertionError, match="antigen encoder ran"):
        aware(batch)
