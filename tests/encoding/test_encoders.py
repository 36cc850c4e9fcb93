"""Encoders: residue tokenizer vs the model's own tokenizer, windowing, pooling, batching, loading errors."""

from __future__ import annotations

import contextlib
import json
import time

import numpy as np
import pytest
import torch
from conftest import random_sequence

from abag.encoding.batching import fixed_size_batches
from abag.encoding.hub_encoders import OFFLINE_HINT, hub_offline
from abag.encoding.loader import load_encoder, load_tiny_encoder
from abag.encoding.sequence_encoder import (
    EncodedBatch,
    SequenceEncoder,
    WindowSpec,
    autocast_context,
)
from abag.errors import EncoderUnavailableError
from abag.policy import BF16, FP16, FP32, choose_precision


def hf_tiny_tokenizer():
    from transformers import EsmTokenizer

    from abag.encoding.loader import ESM_VOCAB

    return EsmTokenizer(vocab_file=str(ESM_VOCAB))


@pytest.fixture(scope="module")
def antiberty():
    pytest.importorskip("antiberty", reason="antiberty==0.1.3 (pip install 'abag[offline]') not installed")
    from abag.encoding.loader import load_antiberty_encoder

    return load_antiberty_encoder()


def chains_of_many_lengths(seed: int = 0, n: int = 12) -> list[str]:
    rng = np.random.default_rng(seed)
    return [random_sequence(rng, int(k)) for k in rng.integers(1, 60, n)]


# ----------------------------------------------------------------------------- residue tokenizer

def assert_matches_hf(residue_tokenizer, hf_tokenizer, chains, space_separated):
    texts = [" ".join(c) if space_separated else c for c in chains]
    expected = hf_tokenizer(texts, padding=True, return_tensors="np")
    ids, attention, residues = residue_tokenizer.encode(chains)
    np.testing.assert_array_equal(ids.numpy(), expected["input_ids"])
    np.testing.assert_array_equal(attention.numpy(), expected["attention_mask"])
    assert residues.sum(1).tolist() == [len(c) for c in chains]  # residue tokens only, no special tokens


def test_residue_tokenizer_matches_the_tiny_hf_tokenizer(tiny_encoders):
    assert_matches_hf(tiny_encoders["tiny"].tokenizer, hf_tiny_tokenizer(), chains_of_many_lengths(), False)
    assert_matches_hf(tiny_encoders["tiny"].tokenizer, hf_tiny_tokenizer(), ["ACDEFGHIKLMNPQRSTVWY"], False)


def test_residue_tokenizer_matches_the_antiberty_hf_tokenizer(antiberty):
    from transformers import BertTokenizer

    from abag.encoding.loader import antiberty_folder

    hf = BertTokenizer.from_pretrained(str(antiberty_folder()), do_lower_case=False)
    assert_matches_hf(antiberty.tokenizer, hf, chains_of_many_lengths(1), True)


def test_residue_tokenizer_rejects_non_standard_residues(tiny_encoders):
    with pytest.raises(ValueError, match="non-standard residue"):
        tiny_encoders["tiny"].tokenizer.encode(["ACDXB"])


# ----------------------------------------------------------------------------- windows

@pytest.mark.parametrize("length, stride", [(126, 63), (10, 3), (10, 10), (7, 1), (510, 255), (1022, 511)])
def test_windows_cover_every_residue_and_the_last_is_flush(length, stride):
    spec = WindowSpec(length, stride)
    for n in list(range(1, 3 * length + 5)) + [5 * length + 1]:
        windows = spec.windows(n)
        coverage = np.zeros(n, dtype=int)
        for s, e in windows:
            coverage[s:e] += 1
        assert (coverage >= 1).all(), (n, windows)
        assert windows[-1][1] == n and windows[0][0] == 0
        if n <= length:
            assert windows == [(0, n)]
        else:
            assert all(e - s == length for s, e in windows)
            starts = [s for s, _ in windows]
            assert starts == sorted(set(starts)) and all(b - a <= stride for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("length, stride", [(0, 1), (10, 0), (10, 11)])
def test_invalid_windows_are_refused(length, stride):
    with pytest.raises(ValueError):
        WindowSpec(length, stride)


def test_windowed_pooling_is_the_coverage_weighted_mean_of_window_states():
    encoder = load_tiny_encoder(max_residues=20)  # window 20, stride 10
    chain = random_sequence(np.random.default_rng(5), 47)
    pooled = encoder([chain])[0]
    spans = encoder.window.windows(len(chain))
    assert len(spans) > 2 and spans[-1] == (27, 47)
    total, coverage = torch.zeros(len(chain), encoder.hidden_size), torch.zeros(len(chain))
    with torch.inference_mode():
        for s, e in spans:
            states, residues = encoder._run([chain[s:e]], torch.device("cpu"))
            total[s:e] += states[0][residues[0]]
            coverage[s:e] += 1
    expected = (total / coverage.unsqueeze(1)).mean(0)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)


def test_token_lengths_count_windows_and_special_tokens(tiny_encoders):
    encoder = tiny_encoders["tiny"]
    lengths = encoder.token_lengths(["ACD", "W" * 126, "W" * 127])
    assert lengths == [5, 128, 128, 128]


# ----------------------------------------------------------------------------- forward: batching, progress

def test_batching_never_changes_the_embeddings(tiny_encoders):
    encoder = tiny_encoders["tiny"]
    chains = chains_of_many_lengths(2, 20) + ["M" * 300]
    default = encoder(chains)
    one_by_one = encoder(chains, batches=lambda lengths: fixed_size_batches(len(lengths), 1))
    unsorted = encoder(chains, batches=lambda lengths: fixed_size_batches(len(lengths), 7))
    small_budget = encoder(chains, token_budget=64)
    for other in (one_by_one, unsorted, small_budget):
        torch.testing.assert_close(default, other, atol=1e-5, rtol=1e-5)


def test_progress_reports_every_batch_with_chains_tokens_and_padding(tiny_encoders):
    encoder = tiny_encoders["tiny"]
    chains = chains_of_many_lengths(3, 30) + ["K" * 400]  # the long one is split into windows
    reports: list[EncodedBatch] = []
    encoder(chains, token_budget=256, progress=reports.append)
    assert len(reports) > 3
    assert sum(r.chains for r in reports) == pytest.approx(len(chains))
    assert sum(r.tokens for r in reports) == sum(encoder.token_lengths(chains))
    assert all(r.padded_tokens >= r.tokens and r.padded_tokens <= max(256, 128) for r in reports)


def test_frozen_encoding_runs_in_inference_mode_and_returns_a_normal_tensor(tiny_encoders):
    out = tiny_encoders["tiny"](["ACDEFG"])
    assert not out.is_inference() and not out.requires_grad
    assert out.dtype == torch.float32
    assert tiny_encoders["tiny"]([]).shape == (0, 32)


def test_fine_tuned_layers_get_gradients_through_pooling():
    encoder = load_tiny_encoder()
    encoder.freeze(1)
    out = encoder(["ACDEFGHIK", "W" * 150])
    out.sum().backward()
    grads = [p.grad for p in encoder.model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


def test_antiberty_uses_sdpa_attention_and_510_residue_windows(antiberty):
    assert antiberty.attention_implementation == "sdpa"
    assert antiberty.window == WindowSpec(510, 255)
    assert antiberty.tokenizer.n_special == 2


def test_tiny_uses_sdpa_attention_and_cpu_stays_fp32(tiny_encoders):
    assert tiny_encoders["tiny"].attention_implementation == "sdpa"
    with autocast_context(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")  # fp32 on CPU; bf16/fp16 only on CUDA


def test_cache_key_names_everything_that_changes_an_embedding():
    base = load_tiny_encoder().cache_key
    assert load_tiny_encoder(seed=1).cache_key != base
    assert load_tiny_encoder(hidden_size=48).cache_key != base
    assert load_tiny_encoder(max_residues=60).cache_key != base
    assert load_tiny_encoder().cache_key == base
    assert {"encoder", "revision", "pooling", "window_length", "window_stride", "precision"} <= set(base)


# ----------------------------------------------------------------------------- precision

class AutocastRecorder:
    """Stands in for `torch.autocast` and records how it was asked to run (no GPU needed)."""

    def __init__(self):
        self.calls: list[tuple[str, torch.dtype | None, bool]] = []

    def __call__(self, device_type, dtype=None, enabled=True, **_):
        self.calls.append((device_type, dtype, enabled))
        return contextlib.nullcontext()


@pytest.fixture
def mocked_ampere(monkeypatch):
    """A CUDA device of compute capability 8.0 (A100) as far as `choose_precision` can tell."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    recorder = AutocastRecorder()
    monkeypatch.setattr(torch, "autocast", recorder)
    return recorder


def test_mixed_precision_off_means_no_autocast_on_a_cuda_device(mocked_ampere):
    cuda = torch.device("cuda:0")
    encoder = load_tiny_encoder()
    with encoder.autocast(cuda):  # the default on an Ampere GPU: bf16
        pass
    encoder.use_precision(choose_precision(cuda, mixed_precision=False))
    with encoder.autocast(cuda):
        pass
    assert mocked_ampere.calls == [("cuda", torch.bfloat16, True), ("cuda", None, False)]
    assert encoder.precision is FP32 and encoder.cache_key["precision"] == "fp32"


def test_the_default_precision_follows_the_device_the_encoder_sits_on(mocked_ampere, monkeypatch):
    encoder = load_tiny_encoder()
    assert encoder.precision is FP32 and encoder.cache_key["precision"] == "fp32"  # on the CPU
    monkeypatch.setattr(SequenceEncoder, "device", property(lambda self: torch.device("cuda:0")))
    assert encoder.precision is BF16 and encoder.cache_key["precision"] == "bf16"
    assert encoder.use_precision(FP32).cache_key["precision"] == "fp32"  # an explicit choice wins
    assert encoder.use_precision(None).precision is BF16


def test_cache_key_differs_between_fp32_and_bf16():
    fp32, bf16, fp16 = (load_tiny_encoder().use_precision(p).cache_key for p in (FP32, BF16, FP16))
    assert len({json.dumps(k, sort_keys=True) for k in (fp32, bf16, fp16)}) == 3
    assert {k: v for k, v in fp32.items() if k != "precision"} == {k: v for k, v in bf16.items() if k != "precision"}


def test_the_precision_reaches_the_model_forward():
    """bf16 on the CPU is real autocast, so the model itself can report what it ran under."""
    encoder = load_tiny_encoder()
    seen = []
    encoder.model.register_forward_hook(
        lambda module, args, output: seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))))
    chains = chains_of_many_lengths(6, 5)
    full = encoder.use_precision(FP32)(chains)
    assert seen and all(not enabled for enabled, _ in seen)
    seen.clear()
    half = encoder.use_precision(BF16)(chains)
    assert seen and all(entry == (True, torch.bfloat16) for entry in seen)
    assert half.dtype == torch.float32 and not torch.equal(full, half)  # pooled in fp32, computed in bf16
    torch.testing.assert_close(full, half, atol=0.1, rtol=0.1)


def test_use_precision_takes_a_policy_precision_only():
    with pytest.raises(TypeError, match="Precision"):
        load_tiny_encoder().use_precision("bf16")


# ----------------------------------------------------------------------------- loading errors

def test_unknown_encoder_is_refused_with_the_choices():
    started = time.perf_counter()
    with pytest.raises(EncoderUnavailableError, match="unknown encoder 'nope'.*antiberty"):
        load_encoder("nope")
    assert time.perf_counter() - started < 1


def test_offline_hub_fails_quickly_with_the_offline_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()
    started = time.perf_counter()
    with pytest.raises(EncoderUnavailableError) as error:
        load_encoder("abag-tests/no-such-model-in-any-cache")
    assert time.perf_counter() - started < 20  # no network retries
    message = str(error.value)
    assert "abag-tests/no-such-model-in-any-cache" in message and OFFLINE_HINT in message
    assert "HF_HUB_OFFLINE" in message


def test_hub_offline_reads_the_environment_at_call_time(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not hub_offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "true")
    assert hub_offline()
