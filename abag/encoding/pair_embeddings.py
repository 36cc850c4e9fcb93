"""Datasets of complexes as index arrays into per-chain embedding tables (the cached training path).

When the model's `ModelConfig` asks for it (see `abag.encoding.features.InputSpec`), antibody chains are
trimmed to their variable domains before encoding. The caches returned by `make_caches` carry the model's
`InputSpec`; `embed_pairs` reads it from them, and `AbAgModel.embed` (the uncached path) applies the same
spec, so both paths give the same numbers. A head that ignores the antigen (`InputSpec.uses_antigen` False)
gets a (n_antigens, 0) antigen table: its antigen chains are never encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from abag.encoding.batches import PairEmbeddings, PairSequences
from abag.encoding.embedding_cache import EmbeddingCache, InMemoryEmbeddings
from abag.encoding.features import InputSpec
from abag.numbering.disk_cache import NumberingDiskCache


def numbering_cache(cache_dir: str | Path) -> NumberingDiskCache:
    """The numbered chains kept beside the embeddings of `cache_dir` (its `numbering/` folder)."""
    return NumberingDiskCache(Path(cache_dir) / "numbering")


@dataclass
class EmbeddedPairs:
    """Unique antibody chains and antigens as float32 matrices, and each row's indices into them."""

    antibody: np.ndarray      # (n_antibody_chains, d_antibody)
    antigen: np.ndarray       # (n_antigens, d_antigen), or (n_antigens, 0) when the head ignores the antigen
    heavy_index: np.ndarray   # (n_rows,)
    light_index: np.ndarray   # (n_rows,); -1 where there is no light chain
    antigen_index: np.ndarray  # (n_rows,)

    def __len__(self) -> int:
        return len(self.heavy_index)

    def subset(self, rows: np.ndarray) -> "EmbeddedPairs":
        """The given rows (sharing the embedding tables)."""
        return replace(self, heavy_index=self.heavy_index[rows], light_index=self.light_index[rows],
                       antigen_index=self.antigen_index[rows])

    def batch(self, rows: np.ndarray) -> PairEmbeddings:
        light_index = self.light_index[rows]
        return PairEmbeddings(
            heavy=torch.from_numpy(self.antibody[self.heavy_index[rows]]),
            light=torch.from_numpy(self.antibody[np.maximum(light_index, 0)]),
            light_present=torch.from_numpy(light_index >= 0),
            antigen=torch.from_numpy(self.antigen[self.antigen_index[rows]]),
        )


class SpecCache:
    """An embedding cache plus the model's `InputSpec` (what `embed_pairs` feeds it)."""

    def __init__(self, cache, spec: InputSpec):
        self.cache = cache
        self.spec = spec

    @property
    def stats(self):
        return self.cache.stats

    @property
    def encoder(self):
        return self.cache.encoder

    def embed(self, chains):
        return self.cache.embed(chains)

    def __getattr__(self, name):  # anything else (folder, key, ...) is the wrapped cache's
        if name == "cache":
            raise AttributeError(name)
        return getattr(self.cache, name)


def make_caches(model, cache_dir: str | Path | None, token_budget: int = 8192, progress: bool = True):
    """One cache per distinct encoder object of `model` (an `abag.model.AbAgModel`; shared when antibody and
    antigen use the same encoder). The antigen cache is None when the model has no antigen encoder.

    The caches carry the model's `InputSpec`, so `embed_pairs` trims chains as the model expects; with a
    `cache_dir`, IMGT numbering is kept there too (`numbering/`).
    """
    spec = InputSpec.from_config(model.config, None if cache_dir is None else numbering_cache(cache_dir))

    def cache_for(encoder):
        if cache_dir is None:
            return SpecCache(InMemoryEmbeddings(encoder, token_budget), spec)
        return SpecCache(EmbeddingCache(encoder, cache_dir, token_budget, progress), spec)

    antibody_cache = cache_for(model.antibody_encoder)
    antigen_encoder = getattr(model, "antigen_encoder", None)
    if antigen_encoder is None:  # a head that ignores the antigen has no antigen encoder: no antigen cache
        return antibody_cache, None
    same = antigen_encoder is model.antibody_encoder
    return antibody_cache, (antibody_cache if same else cache_for(antigen_encoder))


def embed_pairs(frame: pd.DataFrame, antibody_cache, antigen_cache) -> EmbeddedPairs:
    """Look up (or encode once) every distinct chain of `frame` and index the rows into the tables.

    Caches from `make_caches` carry the model's `InputSpec` (trimming, whether the antigen is read); plain
    caches mean "no trimming, antigen read".
    """
    spec = getattr(antibody_cache, "spec", None) or InputSpec()
    # Work per distinct chain (pd.factorize) and keep per-row data as index arrays only: no per-row strings.
    heavy_codes, heavy = _distinct_inputs(frame["heavy"], "heavy", spec)
    light_codes, light = _distinct_inputs(frame["light"], "light", spec)
    antibody_chains = list(dict.fromkeys(heavy + [c for c in light if c]))
    antibody = antibody_cache.embed(antibody_chains)
    position = {c: i for i, c in enumerate(antibody_chains)}

    antigen_codes, antigens = pd.factorize(frame["antigen"], use_na_sentinel=False)
    antigen = _antigen_table(list(antigens), antigen_cache, spec)
    return EmbeddedPairs(
        antibody=antibody,
        antigen=antigen,
        heavy_index=np.array([position[c] for c in heavy], dtype=np.int64)[heavy_codes],
        light_index=np.array([position[c] if c else -1 for c in light], dtype=np.int64)[light_codes],
        antigen_index=antigen_codes.astype(np.int64),
    )


def _distinct_inputs(column: pd.Series, kind: str, spec: InputSpec) -> tuple[np.ndarray, list[str]]:
    """(each row's code, the encoder input of each distinct chain): trimmed once per chain, "" stays ""."""
    codes, chains = pd.factorize(column, use_na_sentinel=False)
    return codes, spec.encoder_inputs([c if c else "" for c in chains], kind)


def _antigen_table(antigens: list[str], antigen_cache, spec: InputSpec) -> np.ndarray:
    """(n_antigens, d) combined antigen vectors; (n_antigens, 0) without encoding when the head ignores them."""
    if not spec.uses_antigen:
        return np.zeros((len(antigens), 0), dtype=np.float32)
    chains = list(dict.fromkeys(c for a in antigens for c in a.split("|")))
    chain_table = antigen_cache.embed(chains)
    chain_position = {c: i for i, c in enumerate(chains)}
    return np.stack([combine_chain_rows(chain_table, [chain_position[c] for c in a.split("|")],
                                        [len(c) for c in a.split("|")]) for a in antigens]).astype(np.float32)


def combine_chain_rows(table: np.ndarray, rows: list[int], lengths: list[int]) -> np.ndarray:
    """Residue-weighted mean of chain embeddings (numpy twin of `model.combine_chains`)."""
    weights = np.asarray(lengths, dtype=np.float64)
    return (table[rows] * weights[:, None]).sum(0) / weights.sum()


def sequences_batch(frame: pd.DataFrame, rows: np.ndarray) -> PairSequences:
    """The rows of `frame` as a `PairSequences` batch (the uncached path)."""
    part = frame.iloc[rows]
    return PairSequences(list(part["heavy"]), list(part["light"]), list(part["antigen"]))
