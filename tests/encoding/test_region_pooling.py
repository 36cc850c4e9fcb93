"""Region pooling (`ModelConfig.pooling="regions"`): the domain's mean beside the means over its frameworks and
each CDR, from IMGT numbering; windows, caching and the model path must agree with the plain mean."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_frame

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "numbering"))
from numbering_sequences import IGG1_CH1, JUNK, TRASTUZUMAB_VH, TRASTUZUMAB_VL  # noqa: E402

from abag.encoding.batches import PairSequences  # noqa: E402
from abag.encoding.pair_embeddings import embed_pairs, make_caches  # noqa: E402
from abag.model.config import ModelConfig  # noqa: E402
from abag.model.network import build_model  # noqa: E402
from abag.numbering import POOLED_REGIONS, number_chain  # noqa: E402

WIDTH = 32  # the tiny encoder's


def _residue_vectors(encoder, chain: str) -> torch.Tensor:
    """The encoder's last hidden states over the residues of one chain that fits one window."""
    hidden, residues = encoder._run([chain], encoder.device)
    return hidden[0][residues[0]].float()


@pytest.mark.parametrize("chain", [TRASTUZUMAB_VH, TRASTUZUMAB_VL])
def test_each_block_is_the_mean_over_its_imgt_region(tiny_encoders, chain):
    mean_encoder = tiny_encoders["tiny"]
    encoder = mean_encoder.with_pooling("regions")
    assert encoder.model is mean_encoder.model and encoder.hidden_size == 5 * WIDTH
    assert encoder.cache_key != mean_encoder.cache_key
    with torch.inference_mode():
        pooled = encoder([chain])[0].reshape(5, WIDTH)
        mean = mean_encoder([chain])[0]
        residues = _residue_vectors(mean_encoder, chain)
    torch.testing.assert_close(pooled[0], mean, rtol=1e-5, atol=1e-6)
    regions = number_chain(chain).domains[0].regions()
    for block, name in enumerate(POOLED_REGIONS, start=1):
        members = [i for i, r in enumerate(regions) if (r.startswith("FR") if name == "FR" else r == name)]
        assert members, name
        torch.testing.assert_close(pooled[block], residues[members].mean(dim=0), rtol=1e-4, atol=1e-5)
    # The CDR3 block moves with a CDR3 mutation far more than the framework block does.
    cdr3 = number_chain(chain).domains[0].cdrs()["CDR3"]
    mutant = chain.replace(cdr3, cdr3[:2] + ("W" if cdr3[2] != "W" else "A") + cdr3[3:])
    with torch.inference_mode():
        moved = (encoder([mutant])[0].reshape(5, WIDTH) - pooled).norm(dim=1)
    assert moved[4] > moved[1]


def test_a_chain_the_numbering_cannot_read_gets_its_mean_and_zero_regions(tiny_encoders):
    encoder = tiny_encoders["tiny"].with_pooling("regions")
    junk = JUNK[:100]
    with torch.inference_mode():
        pooled = encoder([junk])[0].reshape(5, WIDTH)
        mean = tiny_encoders["tiny"]([junk])[0]
    torch.testing.assert_close(pooled[0], mean, rtol=1e-5, atol=1e-6)
    assert not pooled[1:].any()


def test_windows_average_regions_as_they_average_the_mean(tiny_encoders):
    """A chain longer than the encoder's window (tiny: 126 residues) is pooled over its windows."""
    chain = TRASTUZUMAB_VH + IGG1_CH1  # 220 residues: two overlapping windows
    mean_encoder = tiny_encoders["tiny"]
    encoder = mean_encoder.with_pooling("regions")
    assert len(encoder.window.windows(len(chain))) > 1
    with torch.inference_mode():
        pooled = encoder([chain, TRASTUZUMAB_VL])
        mean = mean_encoder([chain, TRASTUZUMAB_VL])
    torch.testing.assert_close(pooled[:, :WIDTH], mean, rtol=1e-5, atol=1e-6)
    assert pooled[0, WIDTH:].abs().sum() > 0


def test_a_region_pooled_model_reads_five_blocks_cached_and_uncached_alike(tiny_encoders):
    frame = synthetic_frame(n=6)
    frame.loc[0, "heavy"], frame.loc[0, "light"] = TRASTUZUMAB_VH + IGG1_CH1, TRASTUZUMAB_VL
    config = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16, pooling="regions",
                         fusion="interaction")
    model = build_model(config, tiny_encoders).eval()
    assert model.head.antibody_dim == 5 * WIDTH and model.antigen_dim == WIDTH  # the antigen keeps the mean
    assert model.antigen_encoder is tiny_encoders["tiny"] and model.antibody_encoder is not model.antigen_encoder
    antibody, antigen = make_caches(model, None)
    cached = embed_pairs(frame, antibody, antigen).batch(np.arange(len(frame)))
    with torch.inference_mode():
        direct = model.embed(PairSequences(list(frame.heavy), list(frame.light), list(frame.antigen)))
    torch.testing.assert_close(cached.heavy, direct.heavy, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached.antigen, direct.antigen, rtol=1e-4, atol=1e-5)
    assert cached.heavy[0, WIDTH:].abs().sum() > 0  # row 0's trastuzumab VH has regions
    with pytest.raises(ValueError, match="pooling"):
        build_model(dataclasses.replace(config, pooling="cdr"), tiny_encoders)


def test_a_region_pooled_run_trains_and_its_checkpoint_rebuilds(tmp_path, tiny_encoders):
    from abag.inference import load_trained_model, predict_frame
    from abag.training.config import TrainConfig
    from abag.training.run import train

    frame = synthetic_frame(n=48)
    frame.loc[:5, "heavy"] = TRASTUZUMAB_VH
    config = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16, pooling="regions",
                         n_members=1)
    result = train(frame, tmp_path / "run", config, TrainConfig(epochs=1, progress=False, split="random",
                                                                 cache_dir=str(tmp_path / "cache")),
                   encoders=tiny_encoders, log=lambda line: None)
    model, state = load_trained_model(result.best_checkpoint)
    assert state["config"]["model"]["pooling"] == "regions" and model.head.antibody_dim == 5 * WIDTH
    again = predict_frame(model, frame.head(8), cache_dir=tmp_path / "cache", coverage=None)["pkd_pred"]
    first = predict_frame(result.model, frame.head(8), coverage=None)["pkd_pred"]
    np.testing.assert_allclose(again.to_numpy(), first.to_numpy(), rtol=1e-5)


def test_models_on_one_encoder_share_its_region_pooled_view(tiny_encoders):
    """A fold ensemble's members are built on one encoder and must hold one encoder object: the region-pooled view
    is made once per encoder (before, each model made its own and `abag train --folds K --pooling regions` stopped
    when the members were assembled). A precision set on the encoder reaches the view."""
    from abag.model.ensemble import FoldEnsemble
    from abag.policy import BF16

    base = tiny_encoders["tiny"]
    config = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16, pooling="regions")
    members = [build_model(config, tiny_encoders) for _ in range(2)]
    assert members[0].antibody_encoder is members[1].antibody_encoder is base.with_pooling("regions")
    assert base.with_pooling("regions").with_pooling("mean") is base and base.with_pooling("mean") is base
    ensemble = FoldEnsemble.from_members(members)
    assert ensemble.antibody_encoder is members[0].antibody_encoder
    try:
        base.use_precision(BF16)
        assert base.with_pooling("regions").precision is BF16
    finally:
        base.use_precision(None)
    assert base.with_pooling("regions")._precision is None
