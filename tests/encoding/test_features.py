"""What the encoders see: variable-domain trimming and its use in the model (cached and on-the-fly paths must
agree; checkpoints must rebuild)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import synthetic_frame

from abag.encoding.batches import PairSequences
from abag.encoding.features import InputSpec, variable_domain
from abag.encoding.pair_embeddings import embed_pairs, make_caches
from abag.inference import load_trained_model, predict_frame
from abag.model.config import ModelConfig
from abag.model.network import build_model
from abag.model.wide import WidePart
from abag.training.config import TrainConfig
from abag.training.run import train

# A real Fab heavy chain (variable domain + CH1 start) and a kappa light chain with its constant domain.
VH = ("EVQLVESGGGLVQPGGSLRLSCAASGFTFSSYAMSWVRQAPGKGLEWVSAISGSGGSTYYADSVKGRFTISRDNSKNTLYLQMNSLRAEDTAVYYCAK"
      "DRGYSSGWYFDYWGQGTLVTVSS")
CH1 = "ASTKGPSVFPLAPSSKSTSGGTAALGCLVKDYFPEPVTVSWNSGALTSGVHTFPAVLQSSGLYSLSSVVTVPSSSLGTQTYICNVNHKPSNTKVDKKVEPKSC"
VL = "DIQMTQSPSSLSASVGDRVTITCRASQSISSYLNWYQQKPGKAPKLLIYAASSLQSGVPSRFSGSGSGTDFTLTISSLQPEDFATYYCQQSYSTPLTFGQGTKVEIK"
CL = "RTVAAPSVFIFPPSDEQLKSGTASVVCLLNNFYPREAKVQWKVDNALQSGNSQESVTEQDSKDSTYSLSSTLTLSKADYEKHKVYACEVTHQGLSSPVTKSFNRGEC"
TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=32)
RICH = dataclasses.replace(TINY, trim_antibody="imgt", n_members=2)


def test_variable_domain_cuts_fab_chains_after_framework_4():
    assert variable_domain(VH + CH1, "heavy") == VH
    assert variable_domain(VL + CL, "light") == VL
    assert variable_domain(VH, "heavy") == VH          # already a variable domain: unchanged
    assert variable_domain(VL, "light") == VL
    assert variable_domain("", "light") == ""
    no_motif = "A" * 200
    assert variable_domain(no_motif, "heavy") == no_motif
    early = "WGQG" + "A" * 200                      # a motif outside residues 80-140 does not count
    assert variable_domain(early, "heavy") == early
    with pytest.raises(ValueError, match="heavy"):
        variable_domain(VH, "antigen")


def test_input_spec_from_config():
    assert InputSpec.from_config(TINY) == InputSpec("imgt", uses_antigen=False)  # the default trims by numbering
    spec = InputSpec.from_config(dataclasses.replace(RICH, fusion="interaction"))
    assert spec == InputSpec("imgt", uses_antigen=True)
    assert spec.encoder_input(VH + CH1, "heavy") == VH and spec.encoder_input(VH + CH1, "antigen") == VH + CH1
    with pytest.raises(ValueError, match="trim_antibody"):
        InputSpec("fr4")


TAG = "MGSSHHHHHHSSG"  # an N-terminal His tag: not part of the variable domain


def test_imgt_trimming_cuts_tags_and_constant_domains_motif_only_the_end():
    imgt, motif, whole = InputSpec("imgt"), InputSpec("motif"), InputSpec("none")
    assert imgt.encoder_inputs([TAG + VH + CH1, VL + CL, ""], "heavy")[0] == VH
    assert imgt.encoder_inputs([TAG + VH + CH1, VL + CL, ""], "light")[1:] == [VL, ""]
    assert motif.encoder_input(TAG + VH + CH1, "heavy") == TAG + VH    # the motif rule keeps the tag
    assert whole.encoder_input(TAG + VH + CH1, "heavy") == TAG + VH + CH1
    # No domain of the asked kind (a light chain as heavy, a non-antibody): encoded whole, as the data checks
    # reported when the table was read.
    assert imgt.encoder_input(VL + CL, "heavy") == VL + CL
    assert imgt.encoder_input("ACDEFGHIKLMNPQRSTVWY" * 3, "heavy") == "ACDEFGHIKLMNPQRSTVWY" * 3


def test_saved_boolean_trimming_reads_as_the_motif_rule():
    assert ModelConfig(trim_antibody=True).trim_antibody == "motif"
    assert ModelConfig.from_dict({"trim_antibody": False}).trim_antibody == "none"
    assert ModelConfig.from_dict({}).trim_antibody == "none"          # before the field existed: whole chains
    assert InputSpec(True) == InputSpec("motif")


def test_cached_and_uncached_inputs_agree_with_trimming(tiny_encoders):
    frame = synthetic_frame(n=12)
    frame.loc[0, "heavy"] = VH + CH1
    frame.loc[0, "light"] = VL + CL
    frame.loc[1, "antigen"] = frame.antigen[1] + "|" + frame.antigen[2][:30]  # a two-chain antigen
    model = build_model(dataclasses.replace(RICH, fusion="interaction", wide="kmer_ridge"), tiny_encoders).eval()
    antibody, antigen = make_caches(model, None)
    cached = embed_pairs(frame, antibody, antigen).batch(np.arange(len(frame)))
    direct = model.embed(PairSequences(list(frame.heavy), list(frame.light), list(frame.antigen)))
    width = tiny_encoders["tiny"].hidden_size
    # The antibody side pools by the model's config (regions: five vectors side by side), the antigen by its mean.
    assert model.antibody_encoder.hidden_size == (5 if model.config.pooling == "regions" else 1) * width
    assert cached.heavy.shape == (12, model.antibody_encoder.hidden_size) and cached.antigen.shape == (12, width)
    for name in ("heavy", "light", "antigen"):
        a, b = getattr(cached, name), getattr(direct, name)
        present = cached.light_present if name == "light" else torch.ones(12, dtype=torch.bool)
        torch.testing.assert_close(a[present], b[present], rtol=1e-4, atol=1e-5)
    # Trimming happened: row 0's heavy chain is encoded as its variable domain only.
    only_fv = model.antibody_encoder([VH])[0]
    torch.testing.assert_close(cached.heavy[0], only_fv, rtol=1e-4, atol=1e-5)
    model.set_wide(WidePart.fit(frame))  # the sequence path computes the wide offsets itself
    cached = dataclasses.replace(cached, offset=torch.from_numpy(model.wide_offsets(frame)))
    with torch.no_grad():
        pkd_cached, _ = model(cached)
        pkd_direct, _ = model(PairSequences(list(frame.heavy), list(frame.light), list(frame.antigen)))
    torch.testing.assert_close(pkd_cached, pkd_direct, rtol=1e-4, atol=1e-4)
    assert float(pkd_cached.min()) >= 4.0 and float(pkd_cached.max()) <= 14.0


def test_training_with_trimming_cached_and_uncached_agree_and_checkpoint_rebuilds(tmp_path, tiny_encoders):
    frame = synthetic_frame(n=64)
    config = dict(epochs=2, progress=False, cache_dir=str(tmp_path / "cache"), split="random")
    cached = train(frame, tmp_path / "cached", RICH, TrainConfig(**config), encoders=tiny_encoders,
                   log=lambda line: None)
    uncached = train(frame, tmp_path / "uncached", RICH, TrainConfig(**config, embedding_cache=False),
                     encoders=tiny_encoders, log=lambda line: None)
    np.testing.assert_allclose(cached.history["train_loss"], uncached.history["train_loss"], rtol=1e-4)
    model, state = load_trained_model(cached.best_checkpoint)
    assert model.config.trim_antibody == "imgt" and model.config.n_members == 2
    assert state["config"]["model"]["trim_antibody"] == "imgt"
    out = predict_frame(model, frame.head(8), cache_dir=tmp_path / "cache")
    assert out["pkd_pred"].between(4.0, 14.0).all()


def test_old_checkpoint_configs_without_new_fields_still_build(tiny_encoders):
    legacy = {k: v for k, v in dataclasses.asdict(TINY).items() if k not in ("trim_antibody", "pooling")}
    config = ModelConfig.from_dict(legacy)
    assert InputSpec.from_config(config) == InputSpec(False, uses_antigen=False)
    assert ModelConfig.from_dict(dataclasses.asdict(RICH)) == RICH
    assert build_model(config, tiny_encoders).head.no_light.shape == (32,)


def test_checkpoint_written_before_the_new_fields_predicts_and_resumes_as_v27(tmp_path, tiny_encoders):
    """A v2.7 checkpoint has none of the new ModelConfig keys: loading must rebuild the v2.7 architecture
    (antigen-aware interaction head, one member), not today's defaults, for predict and for --resume."""
    from abag.checkpoint import load_checkpoint, save_checkpoint
    from abag.model.config import LEGACY_FIELD_VALUES

    frame = synthetic_frame(n=48)
    v27 = dataclasses.replace(TINY, **LEGACY_FIELD_VALUES)
    config = dict(progress=False, cache_dir=str(tmp_path / "cache"), split="random")
    first = train(frame, tmp_path / "run", v27, TrainConfig(epochs=1, **config), encoders=tiny_encoders,
                  log=lambda line: None)
    for name in ("best.pt", "last.pt"):
        path = first.best_checkpoint.with_name(name)
        state = load_checkpoint(path)
        for key in LEGACY_FIELD_VALUES:
            state["config"]["model"].pop(key)
        save_checkpoint(state, path)

    model, _ = load_trained_model(first.best_checkpoint)
    assert model.config.fusion == "interaction" and model.config.n_members == 1
    assert model.config.trim_antibody == "none"
    before = predict_frame(first.model, frame.head(6), cache_dir=tmp_path / "cache")["pkd_pred"]
    after = predict_frame(model, frame.head(6), cache_dir=tmp_path / "cache")["pkd_pred"]
    np.testing.assert_allclose(after.to_numpy(), before.to_numpy(), rtol=1e-5)

    resumed = train(frame, tmp_path / "run", ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny"),
                    TrainConfig(epochs=2, **config), resume=True, encoders=tiny_encoders, log=lambda line: None)
    assert resumed.model.config.fusion == "interaction" and resumed.model.config.n_members == 1
    assert len(resumed.history) == 2
