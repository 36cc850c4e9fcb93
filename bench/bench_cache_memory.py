"""Peak memory of encoding 169k distinct chains (tiny encoder) into the embedding cache and building the
pair tables for 500k pairs. Usage: python bench_cache_memory.py CACHE_DIR [cold|warm] [n_pairs] [n_chains]."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pandas as pd
import torch

from abag.encoding.loader import load_tiny_encoder
from abag.encoding.pair_embeddings import make_caches
from abag.model.config import ModelConfig
from abag.model.network import build_model

PAGE = os.sysconf("SC_PAGE_SIZE")
AMINO = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Peak:
    """Samples RSS every 10 ms in a thread; `peak` is the highest value seen since `reset`."""

    def __init__(self):
        self.peak = rss()
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, rss())
            time.sleep(0.01)

    def reset(self):
        self.peak = rss()


def sequences(rng, n, low, high):
    lengths = rng.integers(low, high, n)
    return [AMINO[rng.integers(0, 20, k)].tobytes().decode() for k in lengths]


def old_embed_pairs(frame, antibody_cache, antigen_cache):
    from abag.encoding.features import InputSpec
    from abag.encoding.pair_embeddings import (
        EmbeddedPairs,
        _antigen_table,
        _with_features,
    )

    spec = getattr(antibody_cache, "spec", None) or InputSpec()
    heavy = [spec.encoder_input(c, "heavy") for c in frame["heavy"]]
    light = [spec.encoder_input(c, "light") if c else "" for c in frame["light"]]
    antibody_chains = list(dict.fromkeys(heavy + [c for c in light if c]))
    antibody = _with_features(antibody_cache.embed(antibody_chains), antibody_chains, spec)
    position = {c: i for i, c in enumerate(antibody_chains)}
    antigens = list(dict.fromkeys(frame["antigen"]))
    antigen = _antigen_table(antigens, antigen_cache, spec)
    antigen_position = {a: i for i, a in enumerate(antigens)}
    return EmbeddedPairs(antibody=antibody, antigen=antigen,
                         heavy_index=np.array([position[c] for c in heavy], dtype=np.int64),
                         light_index=np.array([position[c] if c else -1 for c in light], dtype=np.int64),
                         antigen_index=np.array([antigen_position[a] for a in frame["antigen"]], dtype=np.int64))


def main():
    cache_dir, phase = sys.argv[1], sys.argv[2]
    n_pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 500_000
    n_chains = int(sys.argv[4]) if len(sys.argv) > 4 else 169_000
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    rng = np.random.default_rng(0)
    # Antibody a has heavy chain a and light chain a, except every 9th (a single-domain antibody), so the
    # distinct chains are 17/9 * n_heavy + n_antigens = n_chains.
    n_antigens = n_chains // 20
    n_heavy = round((n_chains - n_antigens) * 9 / 17)
    heavy = sequences(rng, n_heavy, 110, 130)
    light = sequences(rng, n_heavy, 100, 115)
    if os.environ.get("FAB"):  # whole Fab chains (variable + constant domain), trimmed to Fv before encoding
        heavy = [h[:100] + "WGQGTLVTVSS" + h[100:] + c for h, c in zip(heavy, sequences(rng, n_heavy, 100, 110))]
        light = [c[:95] + "FGGGTKLEIK" + c[95:] + k for c, k in zip(light, sequences(rng, n_heavy, 100, 107))]
    antigen = sequences(rng, n_antigens, 80, 400)
    antibody = np.concatenate([np.arange(n_heavy), rng.integers(0, n_heavy, n_pairs - n_heavy)])  # each at least once
    frame = pd.DataFrame({
        "heavy": [heavy[i] for i in antibody],
        "light": [light[i] if i % 9 else "" for i in antibody],
        "antigen": [antigen[i] for i in np.concatenate([np.arange(n_antigens),
                                                        rng.integers(0, n_antigens, n_pairs - n_antigens)])],
    })
    encoder = load_tiny_encoder()
    model = build_model(ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", fusion="interaction"),
                        {"tiny": encoder})
    if os.environ.get("TRACE"):
        import tracemalloc

        tracemalloc.start()
    distinct = len(set(frame["heavy"]) | set(c for c in frame["light"] if c) | set(frame["antigen"]))
    if os.environ.get("OLD_PAIRS"):  # the per-row version of embed_pairs, for comparison
        global embed_pairs
        embed_pairs = old_embed_pairs
    if os.environ.get("ONE_PART"):  # every chain in one encoder call (how InMemoryEmbeddings used to encode)
        from abag.encoding import embedding_cache as ec

        ec.CHAINS_PER_SHARD = 10**9
    meter = Peak()
    if os.environ.get("PHASES"):  # RSS peak inside each cache phase
        from abag.encoding import embedding_cache as ec

        def timed(name, fn):
            def wrapper(*args, **kwargs):
                start, meter.peak = rss(), rss()
                try:
                    return fn(*args, **kwargs)
                finally:
                    print(f"  {name}: start {start / 2**20:.0f} MiB, peak {meter.peak / 2**20:.0f}, end {rss() / 2**20:.0f}")
            return wrapper

        for name in ("_encode_share", "_reindex", "_gather"):
            setattr(ec.EmbeddingCache, name, timed(name, getattr(ec.EmbeddingCache, name)))
    before = rss()
    started = time.perf_counter()
    antibody_cache, antigen_cache = make_caches(model, None if cache_dir == "memory" else cache_dir,
                                                progress=False)
    embedded = embed_pairs(frame, antibody_cache, antigen_cache)
    seconds = time.perf_counter() - started
    after = rss()
    arrays = sum(a.nbytes for a in (embedded.antibody, embedded.antigen, embedded.heavy_index,
                                    embedded.light_index, embedded.antigen_index))
    per_row_copy = n_pairs * 3 * encoder.hidden_size * 4
    stats = antibody_cache.stats
    if os.environ.get("TRACE"):
        import tracemalloc

        current, peak = tracemalloc.get_traced_memory()
        print(f"tracemalloc: retained {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB; top retained:")
        for stat in tracemalloc.take_snapshot().statistics("lineno")[:12]:
            print("  ", stat)
    print(f"{phase}: {n_pairs} pairs, {distinct} distinct chains, encoded {stats.encoded}, reused {stats.reused}, "
          f"{seconds:.1f}s; RSS before {before / 2**20:.0f} MiB, peak +{(meter.peak - before) / 2**20:.0f} MiB, "
          f"after +{(after - before) / 2**20:.0f} MiB; EmbeddedPairs arrays {arrays / 2**20:.1f} MiB "
          f"(tables {embedded.antibody.shape} + {embedded.antigen.shape}); per-row copies would be "
          f"{per_row_copy / 2**20:.0f} MiB at hidden {encoder.hidden_size}")


if __name__ == "__main__":
    main()
