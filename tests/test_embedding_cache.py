"""The on-disk embedding cache: keys, reuse across runs, corruption recovery, equality with direct encoding."""

from __future__ import annotations

import json
import logging
import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from abag import ModelConfig, TrainConfig, train
from abag.embedding_cache import (CHAINS_PER_SHARD, FORMAT, EmbeddingCache, InMemoryEmbeddings, chain_digest,
                                  key_digest)
from abag.encoders import WindowSpec, load_tiny_encoder
from abag.model import build_model
from abag.pair_embeddings import embed_pairs, make_caches, sequences_batch

from conftest import random_sequence, synthetic_frame


def some_chains(n: int = 40, seed: int = 0, low: int = 5, high: int = 300) -> list[str]:
    rng = np.random.default_rng(seed)
    return [random_sequence(rng, int(k)) for k in rng.integers(low, high, n)]


def shards(cache: EmbeddingCache) -> list:
    return sorted(cache.folder.glob("shard-*.safetensors"))


@pytest.fixture(scope="module")
def encoder():
    return load_tiny_encoder()


# ----------------------------------------------------------------------------- equality with direct encoding

def test_cached_embeddings_equal_direct_encoding_with_duplicates(tmp_path, encoder):
    chains = some_chains(30)
    request = chains + chains[:7] + [chains[3]]  # duplicates, in any order
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    table = cache.embed(request)
    assert table.dtype == np.float32 and table.shape == (len(request), encoder.hidden_size)
    np.testing.assert_allclose(table, encoder(request).numpy(), atol=1e-5)
    assert (cache.stats.requested, cache.stats.encoded, cache.stats.reused) == (30, 30, 0)
    assert len(shards(cache)) == 1 and len(load_file(str(shards(cache)[0]))["embeddings"]) == 30  # once each
    # Served from disk: identical numbers, and still equal to direct encoding.
    again = EmbeddingCache(encoder, tmp_path, progress=False)
    np.testing.assert_array_equal(again.embed(request), table)
    assert again.stats.encoded == 0 and again.stats.reused == 30


def test_in_memory_embeddings_match_and_handle_duplicates(encoder):
    chains = some_chains(12, seed=1)
    memory = InMemoryEmbeddings(encoder)
    out = memory.embed(chains + chains[:2])
    np.testing.assert_allclose(out, encoder(chains + chains[:2]).numpy(), atol=1e-5)
    assert memory.stats.encoded == 12 and memory.stats.tokens > 0
    assert memory.embed([]).shape == (0, encoder.hidden_size)


def test_cached_pairs_equal_on_the_fly_encoding_with_multi_chain_antigens(tmp_path, encoder):
    frame = synthetic_frame(n=30, n_antigens=5)
    rng = np.random.default_rng(7)
    extra = random_sequence(rng, 200)
    frame.loc[frame.index % 3 == 0, "antigen"] = frame["antigen"] + "|" + extra   # two-chain antigens
    frame.loc[frame.index % 5 == 0, "antigen"] = extra + "|" + random_sequence(rng, 20) + "|" + extra[:50]
    model = build_model(ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny"), {"tiny": encoder})
    cached = embed_pairs(frame, *make_caches(model, tmp_path, progress=False)).batch(np.arange(len(frame)))
    with torch.no_grad():
        direct = model.embed(sequences_batch(frame, np.arange(len(frame))))
    for name in ("heavy", "light", "light_present", "antigen"):
        torch.testing.assert_close(getattr(cached, name), getattr(direct, name), atol=1e-5, rtol=1e-5)


def test_empty_request(tmp_path, encoder):
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    assert cache.embed([]).shape == (0, encoder.hidden_size)
    assert cache.stats.encoded == 0


# ----------------------------------------------------------------------------- keys and reuse

def test_same_key_reuses_across_runs_and_only_new_chains_are_encoded(tmp_path, encoder):
    chains = some_chains(25, seed=2)
    first = EmbeddingCache(load_tiny_encoder(), tmp_path, progress=False)   # a separately loaded, equal encoder
    table = first.embed(chains[:20])
    second = EmbeddingCache(encoder, tmp_path, progress=False)
    both = second.embed(chains)
    assert second.stats.encoded == 5 and second.stats.reused == 20
    np.testing.assert_array_equal(both[:20], table)
    third = EmbeddingCache(encoder, tmp_path, progress=False)
    third.embed(chains[::-1])
    assert third.stats.encoded == 0 and third.stats.reused == 25
    assert json.loads((first.folder / "key.json").read_text()) == encoder.cache_key


@pytest.mark.parametrize("other", [
    lambda: load_tiny_encoder(seed=1),
    lambda: load_tiny_encoder(hidden_size=48),
    lambda: load_tiny_encoder(max_residues=64),
])
def test_a_different_encoder_or_window_never_reuses_an_entry(tmp_path, encoder, other):
    chains = some_chains(10, seed=3)
    EmbeddingCache(encoder, tmp_path, progress=False).embed(chains)
    different = other()
    cache = EmbeddingCache(different, tmp_path, progress=False)
    table = cache.embed(chains)
    assert cache.stats.encoded == 10 and cache.stats.reused == 0
    assert cache.folder != EmbeddingCache(encoder, tmp_path).folder
    np.testing.assert_allclose(table, different(chains).numpy(), atol=1e-5)


def test_changing_the_window_stride_of_a_loaded_encoder_changes_the_key(tmp_path):
    encoder = load_tiny_encoder()
    chains = some_chains(6, seed=4, low=130, high=300)   # longer than one window
    EmbeddingCache(encoder, tmp_path, progress=False).embed(chains)
    encoder.window = WindowSpec(encoder.window.length, 20)
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    table = cache.embed(chains)
    assert cache.stats.encoded == 6
    np.testing.assert_allclose(table, encoder(chains).numpy(), atol=1e-5)


def test_a_trainable_encoder_cannot_be_cached(tmp_path):
    encoder = load_tiny_encoder()
    encoder.freeze(1)
    with pytest.raises(ValueError, match="--no-embedding-cache"):
        EmbeddingCache(encoder, tmp_path)


# ----------------------------------------------------------------------------- corruption

def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def flip_data_bytes(path):
    data = bytearray(path.read_bytes())
    data[-17:-9] = b"\x00" * 8  # inside the matrix: only the checksum can notice
    path.write_bytes(bytes(data))


def empty_file(path):
    path.write_bytes(b"")


def rewrite(path, mutate_metadata=None, matrix=None):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        metadata = json.loads(f.read(n))["__metadata__"]
    tensors = load_file(str(path))
    if matrix is not None:
        tensors["embeddings"] = matrix(tensors["embeddings"])
    if mutate_metadata is not None:
        mutate_metadata(metadata)
    path.unlink()
    save_file(tensors, str(path), metadata=metadata)


def wrong_chain_count(path):
    rewrite(path, lambda m: m.update(chains=json.dumps(json.loads(m["chains"])[:-1])))


def foreign_key(path):
    rewrite(path, lambda m: m.update(key=key_digest({"encoder": "someone else"})))


def old_format(path):
    rewrite(path, lambda m: m.update(format="abag-embeddings/1"))


def missing_metadata(path):
    rewrite(path, lambda m: m.clear())


def wrong_width(path):
    rewrite(path, matrix=lambda x: np.ascontiguousarray(x[:, :16]))


def nan_values_with_a_matching_checksum(path):
    import zlib

    def poison(x):
        x = x.copy()
        x[0, 0] = np.nan
        return x

    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        metadata = json.loads(f.read(n))["__metadata__"]
    poisoned = poison(load_file(str(path))["embeddings"])
    metadata["crc32"] = str(zlib.crc32(poisoned))
    path.unlink()
    save_file({"embeddings": poisoned}, str(path), metadata=metadata)


@pytest.mark.parametrize("damage", [truncate, garbage, flip_data_bytes, empty_file, wrong_chain_count,
                                    foreign_key, old_format, missing_metadata, wrong_width,
                                    nan_values_with_a_matching_checksum])
def test_a_corrupt_entry_is_recomputed_not_fatal(tmp_path, encoder, damage, caplog):
    chains = some_chains(20, seed=5)
    fresh = EmbeddingCache(encoder, tmp_path, progress=False).embed(chains)
    (shard,) = shards(EmbeddingCache(encoder, tmp_path))
    damage(shard)
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    with caplog.at_level(logging.WARNING, logger="abag.embedding_cache"):
        table = cache.embed(chains)
    np.testing.assert_allclose(table, fresh, atol=1e-6)
    assert cache.stats.corrupt_shards == 1 and cache.stats.encoded == 20
    assert "re-encoded" in caplog.text
    assert not shard.exists() and len(shards(cache)) == 1
    # And the repaired cache is good again.
    again = EmbeddingCache(encoder, tmp_path, progress=False)
    np.testing.assert_array_equal(again.embed(chains), table)
    assert again.stats.encoded == 0 and again.stats.corrupt_shards == 0


def test_only_the_chains_of_a_damaged_shard_are_re_encoded(tmp_path, encoder):
    first, second = some_chains(8, seed=6), some_chains(9, seed=7)
    EmbeddingCache(encoder, tmp_path, progress=False).embed(first)
    EmbeddingCache(encoder, tmp_path, progress=False).embed(second)
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    digests = {chain_digest(c) for c in second}
    (victim,) = [p for p in shards(cache) if set(json.loads(load_meta(p)["chains"])) == digests]
    garbage(victim)
    table = cache.embed(first + second)
    assert cache.stats.encoded == 9 and cache.stats.reused == 8 and cache.stats.corrupt_shards == 1
    np.testing.assert_allclose(table, encoder(first + second).numpy(), atol=1e-5)


def load_meta(path) -> dict:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]


def test_stray_temporary_files_are_ignored(tmp_path, encoder):
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    cache.folder.mkdir(parents=True)
    (cache.folder / "shard-deadbeef.tmp").write_bytes(b"half a shard")
    chains = some_chains(5, seed=8)
    np.testing.assert_allclose(cache.embed(chains), encoder(chains).numpy(), atol=1e-5)
    assert cache.stats.corrupt_shards == 0


# ----------------------------------------------------------------------------- layout and bounded reads

def test_shards_are_plain_safetensors_with_one_row_per_chain(tmp_path, encoder, monkeypatch):
    monkeypatch.setattr("abag.embedding_cache.CHAINS_PER_SHARD", 7)
    chains = some_chains(20, seed=9)
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    table = cache.embed(chains)
    files = shards(cache)
    assert len(files) == 3   # 7 + 7 + 6
    rows = {}
    for path in files:
        meta = load_meta(path)
        assert meta["format"] == FORMAT and meta["key"] == key_digest(encoder.cache_key)
        matrix = load_file(str(path))["embeddings"]
        for digest, row in zip(json.loads(meta["chains"]), matrix):
            rows[digest] = row
    for chain, row in zip(chains, table):
        np.testing.assert_array_equal(rows[chain_digest(chain)], row)
    assert CHAINS_PER_SHARD >= 1024


def test_gather_copies_only_the_requested_rows_out_of_a_memory_map(tmp_path, encoder, monkeypatch):
    chains = some_chains(50, seed=10)
    full = EmbeddingCache(encoder, tmp_path, progress=False).embed(chains)
    loads, maps = [], []
    real_memmap = np.memmap

    def spy_memmap(*args, **kwargs):
        maps.append(kwargs.get("mode"))
        return real_memmap(*args, **kwargs)

    monkeypatch.setattr("safetensors.numpy.load_file", lambda *a, **k: loads.append(a) or {})
    monkeypatch.setattr("safetensors.safe_open", lambda *a, **k: loads.append(a))
    monkeypatch.setattr(np, "memmap", spy_memmap)
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    subset = [chains[40], chains[2], chains[40]]
    table = cache.embed(subset)
    np.testing.assert_array_equal(table, full[[40, 2, 40]])
    assert loads == [] and maps == ["r"] and cache.stats.encoded == 0
    assert type(table) is np.ndarray and table.flags.writeable  # a plain in-memory matrix, not a view of the file


# ----------------------------------------------------------------------------- progress and training logs

def test_encoding_progress_bar_shows_sequences_per_second(tmp_path, encoder, capsys):
    cache = EmbeddingCache(encoder, tmp_path, progress=True)
    cache.embed(some_chains(30, seed=11))
    err = capsys.readouterr().err
    assert "encoding (tiny)" in err and "seq/s" in err and "tok/s" in err and "30/30" in err
    assert cache.stats.tokens > 0 and 0 <= cache.stats.padding_fraction < 1 and cache.stats.encode_seconds > 0


def test_a_warm_rerun_encodes_nothing_and_says_so(tmp_path, encoder):
    frame = synthetic_frame(n=40)
    config = TrainConfig(epochs=1, progress=False, cache_dir=str(tmp_path / "cache"), split="random")
    model_config = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16)
    logs = {}
    for name in ("cold", "warm"):
        lines: list[str] = []
        train(frame, tmp_path / name, model_config, config, encoders={"tiny": encoder}, log=lines.append)
        logs[name] = next(line for line in lines if line.startswith("embedding cache"))
    n_chains = len(set(frame["heavy"]) | set(c for c in frame["light"] if c) | set(frame["antigen"]))
    assert f"{n_chains} chains encoded, 0 reused" in logs["cold"] and "nothing to encode" not in logs["cold"]
    assert f"0 chains encoded, {n_chains} reused" in logs["warm"] and "nothing to encode" in logs["warm"]
