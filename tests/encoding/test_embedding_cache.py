"""The on-disk embedding cache: keys, reuse across runs, corruption recovery, equality with direct encoding,
non-finite encoder output, leftover temporary files, bounded encoding."""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_sequence, synthetic_frame, write_csv
from safetensors.numpy import load_file, save_file

from abag.encoding import embedding_cache
from abag.encoding.embedding_cache import (
    CHAINS_PER_SHARD,
    DEAD_WRITER_GRACE_SECONDS,
    FORMAT,
    STALE_TEMPORARY_SECONDS,
    EmbeddingCache,
    InMemoryEmbeddings,
    chain_digest,
    encoder_cache_key,
    key_digest,
    temporary_path,
)
from abag.encoding.loader import load_tiny_encoder
from abag.encoding.pair_embeddings import embed_pairs, make_caches, sequences_batch
from abag.encoding.sequence_encoder import WindowSpec
from abag.errors import AbagError, NonFiniteEmbeddingError
from abag.model.config import ModelConfig
from abag.model.network import build_model
from abag.training.config import TrainConfig
from abag.training.run import train


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
    assert json.loads((first.folder / "key.json").read_text()) == encoder_cache_key(encoder)


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
    with caplog.at_level(logging.WARNING, logger="abag.encoding.embedding_cache"):
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
    monkeypatch.setattr("abag.encoding.embedding_cache.CHAINS_PER_SHARD", 7)
    chains = some_chains(20, seed=9)
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    table = cache.embed(chains)
    files = shards(cache)
    assert len(files) == 3   # 7 + 7 + 6
    rows = {}
    for path in files:
        meta = load_meta(path)
        assert meta["format"] == FORMAT and meta["key"] == key_digest(encoder_cache_key(encoder))
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
    model_config = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16,
                               fusion="interaction")   # a head that uses the antigen: every chain is encoded
    logs = {}
    for name in ("cold", "warm"):
        lines: list[str] = []
        train(frame, tmp_path / name, model_config, config, encoders={"tiny": encoder}, log=lines.append)
        logs[name] = next(line for line in lines if line.startswith("embedding cache"))
    n_chains = len(set(frame["heavy"]) | set(c for c in frame["light"] if c) | set(frame["antigen"]))
    assert f"{n_chains} chains encoded, 0 reused" in logs["cold"] and "nothing to encode" not in logs["cold"]
    assert f"0 chains encoded, {n_chains} reused" in logs["warm"] and "nothing to encode" in logs["warm"]


# ----------------------------------------------------------------------------- every cache_key field counts

KEY_FIELDS = sorted(encoder_cache_key(load_tiny_encoder()))


def patch_cache_key(monkeypatch, encoder_type, keys: dict) -> None:
    """Make `cache_key` of each encoder in `keys` (by id) return that dict; others keep their own key."""
    original = encoder_type.cache_key
    monkeypatch.setattr(encoder_type, "cache_key", property(
        lambda self: keys.get(id(self)) or (original.fget(self) if isinstance(original, property) else original(self))))


@pytest.mark.parametrize("field", KEY_FIELDS + ["a_field_added_later"])
def test_encoders_differing_in_one_cache_key_field_never_share_entries(tmp_path, monkeypatch, field):
    first, second = load_tiny_encoder(), load_tiny_encoder()   # identical weights: only the key tells them apart
    base = encoder_cache_key(first)
    other = {**base, field: f"not {base.get(field)}"}
    patch_cache_key(monkeypatch, type(first), {id(first): base, id(second): other})
    chains = some_chains(6, seed=20)
    EmbeddingCache(first, tmp_path, progress=False).embed(chains)
    cache = EmbeddingCache(second, tmp_path, progress=False)
    cache.embed(chains)
    assert cache.stats.encoded == 6 and cache.stats.reused == 0
    assert cache.folder != EmbeddingCache(first, tmp_path).folder
    assert json.loads((cache.folder / "key.json").read_text()) == other
    again = EmbeddingCache(first, tmp_path, progress=False)
    again.embed(chains)
    assert again.stats.encoded == 0 and again.stats.reused == 6


def test_the_key_is_read_when_embedding_so_a_later_precision_change_moves_the_entries(tmp_path, monkeypatch):
    encoder = load_tiny_encoder()
    keys = {id(encoder): {**encoder_cache_key(encoder), "precision": "fp32"}}
    patch_cache_key(monkeypatch, type(encoder), keys)
    chains = some_chains(5, seed=21)
    cache = EmbeddingCache(encoder, tmp_path, progress=False)   # built before the encoder's precision is set
    cache.embed(chains)
    fp32_folder = cache.folder
    keys[id(encoder)] = {**keys[id(encoder)], "precision": "bf16"}
    cache.embed(chains)
    assert cache.stats.encoded == 10 and cache.folder != fp32_folder
    assert json.loads((cache.folder / "key.json").read_text())["precision"] == "bf16"
    assert len(list(fp32_folder.glob("shard-*"))) == 1 and len(shards(cache)) == 1


def test_a_cache_key_method_works_like_the_property(tmp_path, monkeypatch):
    encoder = load_tiny_encoder()
    key = encoder_cache_key(encoder)
    monkeypatch.setattr(type(encoder), "cache_key", lambda self: {**key, "style": "method"})
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    cache.embed(some_chains(3, seed=22))
    assert json.loads((cache.folder / "key.json").read_text()) == {**key, "style": "method"}


# ----------------------------------------------------------------------------- non-finite encoder output

def nan_on_tryptophan(encoder):
    """Poison the encoder's embedding of W: every chain containing W comes out NaN, the others stay finite."""
    ids, _, residues = encoder.tokenizer.encode(["W"])
    with torch.no_grad():
        encoder.model.embeddings.word_embeddings.weight[int(ids[residues][0])] = float("nan")
    return encoder


def chains_with_and_without_w(n_clean=9, n_bad=3):
    clean = [c.replace("W", "A") for c in some_chains(n_clean, seed=23, low=20, high=60)]
    bad = [c[:10] + "W" + c[10:] for c in some_chains(n_bad, seed=24, low=40, high=60)]
    return clean, bad


def assert_nothing_written(cache):
    assert shards(cache) == [] and not [p for p in cache.folder.iterdir() if p.name.endswith(".tmp")]
    assert cache.stats.corrupt_shards == 0


def test_nan_encoder_output_is_an_encoder_error_and_no_shard_is_written(tmp_path, caplog):
    encoder = nan_on_tryptophan(load_tiny_encoder())
    clean, bad = chains_with_and_without_w()
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    with caplog.at_level(logging.WARNING, logger="abag.encoding.embedding_cache"):
        with pytest.raises(NonFiniteEmbeddingError) as caught:
            cache.embed(clean + bad)
    message = str(caught.value)
    assert "'tiny'" in message and f"{len(bad)} of {len(clean + bad)} chains" in message
    assert any(f"first: {c[:30]}…" in message for c in bad)
    assert isinstance(caught.value, AbagError) and caught.value.exit_code != 1   # not an "internal error"
    assert_nothing_written(cache)
    assert "unreadable shard" not in caplog.text and "disk problem" not in message   # not taken for a disk fault
    # The clean chains alone are fine.
    np.testing.assert_allclose(cache.embed(clean), load_tiny_encoder()(clean).numpy(), atol=1e-5)


@pytest.mark.parametrize("make", [lambda e, root: InMemoryEmbeddings(e), lambda e, root: EmbeddingCache(e, root)])
def test_the_cache_checks_encoder_output_itself_before_storing_it(tmp_path, monkeypatch, make):
    """Whatever the encoder checks, the cache never stores non-finite vectors, and says what to do."""
    encoder = load_tiny_encoder()
    real_forward = type(encoder).forward

    def inf_for_long_chains(self, chains, *args, **kwargs):
        out = real_forward(self, chains, *args, **kwargs)
        out[torch.tensor([len(c) > 50 for c in chains])] = float("inf")
        return out

    monkeypatch.setattr(type(encoder), "forward", inf_for_long_chains)
    chains = some_chains(10, seed=31, low=20, high=45) + some_chains(2, seed=32, low=60, high=80)
    cache = make(encoder, tmp_path)
    with pytest.raises(NonFiniteEmbeddingError, match="2 of 12 chains") as caught:
        cache.embed(chains)
    assert "'tiny'" in str(caught.value) and "--no-mixed-precision" in str(caught.value)
    assert any(f"first: {c[:30]}…" in str(caught.value) for c in chains[-2:])
    if isinstance(cache, EmbeddingCache):
        assert_nothing_written(cache)


def test_the_cli_reports_nan_encoder_output_in_one_line_not_as_an_internal_error(tmp_path, monkeypatch, capsys):
    from abag.cli import main
    from abag.encoding import loader as encoders

    monkeypatch.setitem(encoders.LOCAL_ENCODERS, "tiny", lambda: nan_on_tryptophan(load_tiny_encoder()))
    frame = synthetic_frame(n=40)
    frame["heavy"] = frame["heavy"].str[:20] + "W" + frame["heavy"].str[20:]
    write_csv(frame, tmp_path / "pairs.csv")
    code = main(["train", "--data", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "run"), "--encoder", "tiny",
                 "--epochs", "1", "--split", "random", "--quiet", "--embedding-cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == NonFiniteEmbeddingError.exit_code and code != 1, err
    (line,) = [line for line in err.splitlines() if line.startswith("abag:")]
    assert line.startswith("abag: error: encoder 'tiny'") and "NaN" in line and "Traceback" not in err
    assert "internal error" not in err and "disk problem" not in err
    assert not list((tmp_path / "cache").rglob("shard-*.safetensors"))


def fake_two_processes(monkeypatch, peer_report):
    """This process is rank 0 of 2; the peer's report from encoding is `peer_report`. Returns the gathered objects."""
    gathered = []

    def all_gather_objects(obj):
        gathered.append(obj)
        return [obj, False if isinstance(obj, bool) else peer_report]

    monkeypatch.setattr(embedding_cache.distributed, "rank", lambda: 0)
    monkeypatch.setattr(embedding_cache.distributed, "world_size", lambda: 2)
    monkeypatch.setattr(embedding_cache.distributed, "barrier", lambda: None)
    monkeypatch.setattr(embedding_cache.distributed, "broadcast_object", lambda obj: obj)
    monkeypatch.setattr(embedding_cache.distributed, "all_gather_objects", all_gather_objects)
    return gathered


def test_a_peer_process_nan_failure_stops_this_process_instead_of_hanging(tmp_path, encoder, monkeypatch):
    fake_two_processes(monkeypatch, ("NonFiniteEmbeddingError", "encoder 'tiny' returned NaN or Inf embeddings ..."))
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    with pytest.raises(NonFiniteEmbeddingError, match="process 1 failed .* encoder 'tiny' returned NaN"):
        cache.embed(some_chains(8, seed=25))
    assert cache.stats.encoded == 4 and len(shards(cache)) == 1   # this process's own share is stored and valid


def test_a_nan_failure_here_is_reported_to_the_other_processes_before_raising(tmp_path, monkeypatch):
    gathered = fake_two_processes(monkeypatch, None)
    clean, bad = chains_with_and_without_w(0, 4)
    with pytest.raises(NonFiniteEmbeddingError):
        EmbeddingCache(nan_on_tryptophan(load_tiny_encoder()), tmp_path, progress=False).embed(bad)
    (report,) = [g for g in gathered if isinstance(g, tuple)]
    assert report[0] == "NonFiniteEmbeddingError" and "NaN" in report[1]


# ----------------------------------------------------------------------------- leftover temporary files

def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def leftover(folder, name: str, age_seconds: float):
    path = folder / name
    path.write_bytes(b"half a shard")
    os.utime(path, (time.time() - age_seconds, time.time() - age_seconds))
    return path


def writer_name(pid: int, host: str | None = None) -> str:
    name = temporary_path(Path("shard-0123.safetensors")).name
    written_by = f".{os.getpid()}@"
    prefix, suffix = name.split(written_by)
    host = host or suffix[: -len(".tmp")]
    return f"{prefix}.{pid}@{host}.tmp"


def test_leftover_temporary_files_of_killed_writers_are_removed_when_the_cache_opens(tmp_path, encoder):
    folder = EmbeddingCache(encoder, tmp_path).folder
    folder.mkdir(parents=True)
    dead = dead_pid()
    gone = [
        leftover(folder, writer_name(dead), DEAD_WRITER_GRACE_SECONDS + 60),          # killed writer on this host
        leftover(folder, writer_name(4242, "another-host"), STALE_TEMPORARY_SECONDS + 60),  # old, other host
        leftover(folder, "shard-deadbeef.tmp", STALE_TEMPORARY_SECONDS + 60),         # old-style name
        leftover(folder, ".key.json.0123abcd.tmp", STALE_TEMPORARY_SECONDS + 60),
    ]
    kept = [
        leftover(folder, writer_name(dead) + "x.tmp", 5),                             # dead writer, within grace
        leftover(folder, writer_name(os.getpid()), 3 * 24 * 3600),                    # live writer: never
        leftover(folder, writer_name(4242, "another-host"), 600),                     # other host, recent
        leftover(folder, "notes.tmp", STALE_TEMPORARY_SECONDS + 60),                  # not ours
    ]
    cache = EmbeddingCache(encoder, tmp_path, progress=False)
    chains = some_chains(4, seed=26)
    np.testing.assert_allclose(cache.embed(chains), encoder(chains).numpy(), atol=1e-5)
    assert [p.exists() for p in gone] == [False] * len(gone)
    assert [p.exists() for p in kept] == [True] * len(kept)
    assert cache.stats.stale_temporaries_removed == len(gone) and len(shards(cache)) == 1


def test_a_temporary_file_of_another_live_process_is_kept_until_that_process_is_gone(tmp_path, encoder,
                                                                                      monkeypatch):
    monkeypatch.setattr(embedding_cache, "CHAINS_PER_SHARD", 3)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cache = EmbeddingCache(encoder, tmp_path, progress=False)
        cache.embed(some_chains(2, seed=27))
        busy = leftover(cache.folder, writer_name(writer.pid), STALE_TEMPORARY_SECONDS * 24)  # e.g. another rank
        cache.embed(some_chains(3, seed=28))   # a shard write: the folder is tidied after it
        assert busy.exists()
    finally:
        writer.kill()
        writer.wait()
    cache.embed(some_chains(3, seed=29))       # the writer is gone: tidied after the next shard write
    assert not busy.exists() and cache.stats.stale_temporaries_removed == 1


def test_temporary_names_carry_their_writer_and_are_never_read_as_shards(tmp_path):
    temporary = temporary_path(tmp_path / "shard-abc.safetensors")
    assert temporary.name.startswith(".shard-abc.safetensors.") and temporary.name.endswith(".tmp")
    assert f".{os.getpid()}@" in temporary.name
    temporary.write_bytes(b"being written")
    assert list(tmp_path.glob("shard-*.safetensors")) == []


# ----------------------------------------------------------------------------- bounded encoding

@pytest.mark.parametrize("make", [lambda e, root: InMemoryEmbeddings(e), lambda e, root: EmbeddingCache(e, root)])
def test_encoding_runs_in_bounded_parts_of_chains_sorted_by_length(tmp_path, encoder, monkeypatch, make):
    monkeypatch.setattr(embedding_cache, "CHAINS_PER_SHARD", 7)
    calls = []
    real_forward = type(encoder).forward

    def spy(self, chains, *args, **kwargs):
        calls.append([len(c) for c in chains])
        return real_forward(self, chains, *args, **kwargs)

    monkeypatch.setattr(type(encoder), "forward", spy)
    chains = some_chains(30, seed=30)
    table = make(encoder, tmp_path).embed(chains + chains[:4])
    assert [len(c) for c in calls] == [7, 7, 7, 7, 2]
    assert [n for call in calls for n in call] == sorted(len(c) for c in chains)
    np.testing.assert_allclose(table, real_forward(encoder, chains + chains[:4]).numpy(), atol=1e-5)


def test_pair_tables_hold_one_row_per_distinct_chain_and_trim_each_chain_once(tmp_path, encoder, monkeypatch):
    from abag.encoding import features
    from abag.encoding.features import InputSpec
    from abag.encoding.pair_embeddings import SpecCache

    rng = np.random.default_rng(33)
    fabs = [random_sequence(rng, 100) + "WGQGTLVTVSS" + random_sequence(rng, 40) for _ in range(4)]  # Fv + constant
    lights = [random_sequence(rng, 90) + "FGGGTKLEIK" + random_sequence(rng, 30) for _ in range(3)] + [""]
    antigens = [random_sequence(rng, 50), random_sequence(rng, 70) + "|" + random_sequence(rng, 30)]
    picks = rng.integers(0, 4, 300)
    frame = synthetic_frame(n=300).assign(heavy=[fabs[i] for i in picks], light=[lights[i] for i in picks[::-1]],
                                          antigen=[antigens[i % 2] for i in range(300)])
    calls = []
    real = features.variable_domain
    monkeypatch.setattr(features, "variable_domain", lambda chain, kind: calls.append(chain) or real(chain, kind))
    cache = SpecCache(EmbeddingCache(encoder, tmp_path, progress=False), InputSpec(trim_antibody="motif"))
    embedded = embed_pairs(frame, cache, cache)
    assert len(calls) == 4 + 3          # each distinct heavy and non-empty light chain trimmed once, not per row
    assert embedded.antibody.shape == (7, encoder.hidden_size) and embedded.antigen.shape[0] == 2
    assert all(a.dtype == np.int64 and a.shape == (300,) for a in
               (embedded.heavy_index, embedded.light_index, embedded.antigen_index))
    batch = embedded.batch(np.arange(300))
    expected_heavy = encoder([real(h, "heavy") for h in frame["heavy"]])
    torch.testing.assert_close(batch.heavy, expected_heavy, atol=1e-5, rtol=1e-5)
    with_light = np.array(frame["light"] != "")
    assert (batch.light_present.numpy() == with_light).all()
    expected_light = encoder([real(c, "light") for c in frame["light"][with_light]])
    torch.testing.assert_close(batch.light[torch.from_numpy(with_light)], expected_light, atol=1e-5, rtol=1e-5)
    assert len(set(map(tuple, batch.antigen.numpy()))) == 2
