"""Generalisation to unseen antigens: the evaluation is leak-free, leaks would show, and the model options
used by the benchmark behave as documented."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import mutate, random_sequence
from scipy import stats

from abag.data.folds import fold_split, make_folds
from abag.data.splits import row_groups, split_pairs
from abag.encoding.batches import PairSequences
from abag.encoding.pair_embeddings import embed_pairs, make_caches
from abag.evaluation.baselines import KmerRidgeBaseline
from abag.evaluation.metrics import evaluate_predictions
from abag.model.config import ModelConfig
from abag.model.network import AbAgModel, build_model

REAL = Path(__file__).resolve().parents[2] / "shared" / "data"
# The head alone (no wide part, whose k-mer ridge reads the antigen): these tests are about what the network reads.
TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16, wide="none")


def antigen_driven_frame(n_families: int = 12, members: int = 3, rows: int = 5, seed: int = 0) -> pd.DataFrame:
    """pKd is a property of the antigen family only (plus noise): nothing transfers to a new family."""
    rng = np.random.default_rng(seed)
    heavy, light = random_sequence(rng, 60), random_sequence(rng, 50)
    out = []
    for family in range(n_families):
        parent, level = random_sequence(rng, 80), rng.uniform(6, 11)
        for member in range(members):
            antigen = mutate(rng, parent, 4) if member else parent
            for _ in range(rows):
                out.append({"heavy": mutate(rng, heavy, 4), "light": light, "antigen": antigen,
                            "family": family, "pkd": level + rng.normal(0, 0.2)})
    frame = pd.DataFrame(out)
    frame["censored"] = False
    return frame


def ridge_spearman(frame: pd.DataFrame, train_rows, test_rows) -> float:
    model = KmerRidgeBaseline().fit(frame.iloc[train_rows])
    return float(stats.spearmanr(frame.pkd.iloc[test_rows], model.predict(frame.iloc[test_rows])).statistic)


def test_random_split_flatters_and_antigen_cluster_cv_does_not():
    """The reason for the protocol: memorising antigens scores well on a random split only."""
    frame = antigen_driven_frame()
    random = split_pairs(frame, "random", fractions=(0.7, 0.0, 0.3), seed=0)
    leaky = ridge_spearman(frame, random.indices("train"), random.indices("test"))
    groups, tests, _ = make_folds(frame, 4, seed=0)
    honest = [ridge_spearman(frame, np.setdiff1d(np.arange(len(frame)), t), t) for t in tests]
    assert leaky > 0.8
    assert np.mean(honest) < 0.5 and np.mean(honest) < leaky - 0.4


def test_within_cluster_spearman_exposes_memorised_antigens_even_on_a_random_split():
    """Pooled Spearman rewards knowing each antigen's level; within a cluster there is nothing to memorise."""
    frame = antigen_driven_frame(rows=10)
    split = split_pairs(frame, "random", fractions=(0.7, 0.0, 0.3), seed=0)
    train, test = split.indices("train"), split.indices("test")
    predicted = KmerRidgeBaseline().fit(frame.iloc[train]).predict(frame.iloc[test])
    clusters = row_groups(frame, "antigen").labels
    result = evaluate_predictions(frame.pkd.iloc[test], predicted, groups=clusters[test], n_boot=200)
    assert result["spearman"] > 0.8
    assert result["n_groups_within"] >= 10 and abs(result["spearman_within_group"]) < 0.3
    lo, hi = result["spearman_within_group_ci95"]
    assert lo < 0.3 and hi - lo < 0.8


@pytest.mark.skipif(not (REAL / "saaintdb_dev.csv").exists(), reason="real data not available")
def test_saaintdb_cv_folds_never_share_an_antigen_cluster():
    from abag.data.pipeline import load_pairs

    frame, _ = load_pairs(REAL / "saaintdb_dev.csv")
    groups, tests, protocol = make_folds(frame, 5, seed=0)
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(frame)))
    for i, test in enumerate(tests):
        split = fold_split(groups, test, seed=i)
        train, val = set(groups[split.indices("train")]), set(groups[split.indices("val")])
        held_out = set(groups[test])
        assert not held_out & train and not held_out & val and not train & val
        # Exact antigen strings never cross either (a stricter check than identity clusters need).
        assert not set(frame.antigen.iloc[test]) & set(frame.antigen.iloc[split.indices("train")])


def test_antibody_only_fusion_ignores_the_antigen(tiny_encoders):
    model = build_model(dataclasses.replace(TINY, fusion="antibody_only"), tiny_encoders).eval()
    rng = np.random.default_rng(0)
    heavy, light = [random_sequence(rng, 50) for _ in range(3)], [random_sequence(rng, 40), "", random_sequence(rng, 40)]
    with torch.no_grad():
        a, _ = model(PairSequences(heavy, light, [random_sequence(rng, 60) for _ in range(3)]))
        b, _ = model(PairSequences(heavy, light, [random_sequence(rng, 70) for _ in range(3)]))
    torch.testing.assert_close(a, b)
    assert not hasattr(model.head, "antigen_proj")


@pytest.mark.parametrize("options", [dict(fusion="interaction", input_dropout=0.5),
                                     dict(fusion="antibody_only", trim_antibody="motif"),
                                     dict(n_members=3, input_dropout=0.2)])
def test_head_options_build_and_stay_in_range(tiny_encoders, options):
    model = build_model(dataclasses.replace(TINY, **options), tiny_encoders)
    rng = np.random.default_rng(1)
    batch = PairSequences([random_sequence(rng, 50) for _ in range(4)], ["", *[random_sequence(rng, 40)] * 3],
                          [random_sequence(rng, 60) for _ in range(4)])
    model.train()
    pkd, logits = model(batch)
    pkd.sum().backward()  # trainable end to end
    assert pkd.shape == logits.shape == (4,)
    assert float(pkd.detach().min()) >= 4.0 and float(pkd.detach().max()) <= 14.0


def test_head_members_are_independent_and_averaged(tiny_encoders):
    from abag.model.network import MemberLinear

    model = build_model(dataclasses.replace(TINY, n_members=4), tiny_encoders).eval()
    first = model.head.antibody_proj[0]
    assert isinstance(first, MemberLinear) and first.weight.shape[0] == 4
    assert not torch.allclose(first.weight[0], first.weight[1])  # different initialisations
    rng = np.random.default_rng(2)
    batch = PairSequences([random_sequence(rng, 50)], [""], [random_sequence(rng, 60)])
    with torch.no_grad():
        model.head.pkd_out.bias[1:] = -1e4  # members 2-4 pinned at the floor (4.0) ...
        floor, _ = model(batch)
        model.head.pkd_out.bias[1:] = 1e4   # ... then at the ceiling (14.0); member 1 is unchanged
        ceiling, _ = model(batch)
    # The head averages bounded member predictions: (p0 + 3*14)/4 - (p0 + 3*4)/4 = 7.5.
    assert float(ceiling - floor) == pytest.approx(7.5, abs=1e-4)


def test_unknown_fusion_is_rejected(tiny_encoders):
    with pytest.raises(ValueError, match="unknown fusion"):
        build_model(dataclasses.replace(TINY, fusion="cross_attention"), tiny_encoders)


# ----------------------------------------------------------------------------------------------- bench helpers

def load_bench():
    """bench/bench_real_data.py as a module (registered first: its dataclasses resolve annotations through it)."""
    if "bench_real_data" in sys.modules:
        return sys.modules["bench_real_data"]
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_real_data.py"
    spec = importlib.util.spec_from_file_location("bench_real_data", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_real_data"] = module
    spec.loader.exec_module(module)
    return module


def test_phillips_subsample_is_seeded_and_balances_censored_rows():
    bench = load_bench()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "antibody": ["A"] * 500 + ["B"] * 50,
        "censored": np.r_[rng.random(500) < 0.9, np.zeros(50, bool)],
        "pkd": rng.uniform(6, 9, 550),
    })
    a = bench.phillips_subsample(frame, 40, seed=0)
    b = bench.phillips_subsample(frame, 40, seed=0)
    pd.testing.assert_frame_equal(a, b)
    counts = a.groupby("antibody").censored.agg(["size", "sum"])
    assert counts.loc["A", "size"] == 40 and counts.loc["A", "sum"] == 20  # half exact, half censored
    assert counts.loc["B", "size"] == 40 and counts.loc["B", "sum"] == 0


def test_within_antibody_scores_never_use_censored_rows():
    bench = load_bench()
    predictions = pd.DataFrame({"row": np.arange(8), "fold": [0, 0, 0, 0, 1, 1, 1, 1],
                                "pkd": [6, 7, 8, 9, 6, 7, 8, 6.0],
                                "censored": [False] * 7 + [True],
                                "model": [1, 2, 3, 4, 1, 2, 3, 100.0]})
    antibody = np.array(["X"] * 8)
    result = bench.within_antibody(predictions, antibody, ["model"], n_boot=20)
    pooled = result["X"]["model"]["pooled"]
    assert pooled["n"] == 7 and pooled["n_censored"] == 1
    assert result["X"]["model"]["mean_over_folds"] == pytest.approx(1.0)


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
    assert antibody_encoder.is_trainable and model.antigen_encoder is None  # the model keeps no unused encoder
    # The model holds the antibody encoder's view for its pooling (the same weights).
    assert model.encoders == [antibody_encoder.with_pooling(TINY.pooling)] and all(not k.startswith("antigen_encoder.")
                                                        for k in model.state_dict())
    with torch.no_grad():
        direct, _ = model(batch)
    cached = embed_pairs(frame, *make_caches(model, None))
    assert cached.antigen.shape == (3, 0)
    with torch.no_grad():
        from_cache, _ = model(cached.batch(np.arange(3)))
    torch.testing.assert_close(direct, from_cache, rtol=1e-5, atol=1e-5)
    assert predict_frame(model, frame, coverage=None)["pkd_pred"].between(4, 14).all()
    # The same encoder, wired into a head that reads the antigen, is run (so the check above can fail).
    aware = AbAgModel(dataclasses.replace(TINY, fusion="interaction"), antibody_encoder, antigen_encoder).eval()
    with pytest.raises(AssertionError, match="antigen encoder ran"):
        aware(batch)


def test_an_antibody_only_model_never_loads_its_antigen_encoder(tmp_path, monkeypatch, tiny_encoders):
    """Colab's default: IgT5 for the antibody, ESM-2 650M named for the antigen. The antibody-only head never
    reads the antigen, so the antigen encoder is never loaded, in training, fold ensembles or prediction."""
    from conftest import synthetic_frame

    import abag
    import abag.encoding.loader as loader
    import abag.model.ensemble as ensemble
    import abag.model.network as network
    from abag.inference import load_trained_model, predict_frame

    loads = []

    def load(name, *args, **kwargs):
        loads.append(name)
        if name != "tiny":
            raise AssertionError(f"loaded {name}, which the model does not use")
        return tiny_encoders["tiny"]

    for module in (loader, network, ensemble):
        monkeypatch.setattr(module, "load_encoder", load)
    config = ModelConfig(antibody_encoder="tiny", antigen_encoder="facebook/esm2_t33_650M_UR50D", hidden_dim=16)
    assert config.fusion == "antibody_only" and network.encoder_names(config) == ["tiny"]
    model = build_model(config)
    tiny = tiny_encoders["tiny"].with_pooling(config.pooling)  # the default's view of the tiny encoder
    assert model.antigen_encoder is None and model.encoders == [tiny] and model.encoders_frozen
    frame = synthetic_frame(n=40, n_antigens=6)
    quiet = abag.TrainConfig(epochs=1, progress=False, cache_dir=str(tmp_path / "cache"))
    single = abag.train(frame, tmp_path / "single", config, quiet)
    folds = abag.train_folds(frame, tmp_path / "folds", config, quiet, folds=2)
    assert single.metrics["encoder"]["antigen_revision"] is None
    for checkpoint in (single.best_checkpoint, folds.best_checkpoint):
        loaded, _ = load_trained_model(checkpoint)
        assert loaded.antigen_encoder is None
        assert predict_frame(loaded, frame.head(5), cache_dir=tmp_path / "cache")["pkd_pred"].between(4, 14).all()
    assert set(loads) == {"tiny"}
    # A head that reads the antigen does load it (so the check above can fail).
    with pytest.raises(AssertionError, match="loaded facebook/esm2_t33_650M_UR50D"):
        build_model(dataclasses.replace(config, fusion="interaction"))
