"""On-disk cache of pooled chain embeddings, so frozen encoders see each distinct chain once.

Layout: `ROOT/<key-hash>/key.json` (encoder name and revision, pooling, window settings) and
`ROOT/<key-hash>/shard-*.safetensors`, each holding an `embeddings` matrix and, in its metadata, the
SHA-1 of every chain it covers. A shard is written to a temporary file and renamed, so a killed process
never leaves half an entry; a shard that cannot be read is deleted and its chains are encoded again.
Only the rows a dataset needs are gathered into one float32 matrix; nothing holds all entries as objects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from . import distributed
from .encoders import SequenceEncoder

log = logging.getLogger(__name__)
CHAINS_PER_SHARD = 4096


def default_cache_dir() -> Path:
    """`$ABAG_CACHE_DIR`, else `~/.cache/abag/embeddings` (read at call time, not import time)."""
    return Path(os.environ.get("ABAG_CACHE_DIR") or Path.home() / ".cache" / "abag" / "embeddings")


def chain_digest(chain: str) -> str:
    return hashlib.sha1(chain.encode("ascii")).hexdigest()


def key_digest(key: dict[str, object]) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class CacheStats:
    """What one `embed` call did: how many chains came from disk and how many were encoded."""

    requested: int = 0
    reused: int = 0
    encoded: int = 0
    corrupt_shards: int = 0


class EmbeddingCache:
    """Pooled embeddings of one encoder, keyed by the encoder's `cache_key` and the chain sequence."""

    def __init__(self, encoder: SequenceEncoder, root: str | Path | None = None, token_budget: int = 8192,
                 progress: bool = True):
        if encoder.is_trainable:
            raise ValueError("an embedding cache is only valid for a frozen encoder; use --no-embedding-cache "
                             "when fine-tuning encoder layers")
        self.encoder = encoder
        self.key = encoder.cache_key
        self.folder = Path(root if root is not None else default_cache_dir()) / key_digest(self.key)
        self.token_budget = token_budget
        self.progress = progress
        self.stats = CacheStats()
        self._index: dict[str, tuple[Path, int]] = {}

    def embed(self, chains: Sequence[str]) -> np.ndarray:
        """Embeddings (len(chains), hidden) for the chains, encoding only those not on disk yet."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_key()
        unique = list(dict.fromkeys(chains))
        digests = [chain_digest(c) for c in unique]
        self._reindex()
        missing = [c for c, d in zip(unique, digests) if d not in self._index]
        self.stats.requested += len(unique)
        self.stats.reused += len(unique) - len(missing)
        # Each process encodes its own share of what is missing; all then read the completed cache.
        rank, world = distributed.rank(), distributed.world_size()
        share = missing[rank::world]
        self._encode_and_store(share)
        self.stats.encoded += len(share)
        distributed.barrier()
        self._reindex()
        table = self._gather(digests)
        position = {d: i for i, d in enumerate(digests)}
        return table[[position[chain_digest(c)] for c in chains]] if len(chains) != len(unique) else table

    def _write_key(self) -> None:
        path = self.folder / "key.json"
        if not path.exists():
            atomic_write_bytes(path, json.dumps(self.key, indent=2, sort_keys=True).encode())

    def _reindex(self) -> None:
        self._index = {}
        for shard in sorted(self.folder.glob("shard-*.safetensors")):
            try:
                with safe_open(str(shard), framework="pt") as f:
                    digests = json.loads(f.metadata()["chains"])
                    rows = f.get_slice("embeddings").get_shape()[0]
                if rows != len(digests):
                    raise ValueError("row count does not match its chain list")
            except Exception as exc:  # a truncated or foreign file: recompute rather than crash
                log.warning("embedding cache: ignoring unreadable shard %s (%s); its chains will be re-encoded",
                            shard.name, exc)
                self.stats.corrupt_shards += 1
                shard.unlink(missing_ok=True)
                continue
            for row, digest in enumerate(digests):
                self._index[digest] = (shard, row)

    def _encode_and_store(self, chains: list[str]) -> None:
        if not chains:
            return
        bar = tqdm(total=len(chains), desc=f"encoding ({self.encoder.name})", unit="seq",
                   disable=not self.progress, leave=False)
        # Sort by length so each shard's encoder batches are tightly packed.
        chains = sorted(chains, key=len)
        for start in range(0, len(chains), CHAINS_PER_SHARD):
            part = chains[start:start + CHAINS_PER_SHARD]
            with torch.inference_mode():
                vectors = self.encoder(part, token_budget=self.token_budget,
                                       progress=None).float().cpu().contiguous()
            self._write_shard(part, vectors)
            bar.update(len(part))
        bar.close()

    def _write_shard(self, chains: list[str], vectors: torch.Tensor) -> None:
        final = self.folder / f"shard-{uuid.uuid4().hex}.safetensors"
        temporary = final.with_suffix(".tmp")
        metadata = {"chains": json.dumps([chain_digest(c) for c in chains])}
        try:
            save_file({"embeddings": vectors}, str(temporary), metadata=metadata)
            os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)

    def _gather(self, digests: list[str]) -> np.ndarray:
        table = np.empty((len(digests), self.encoder.hidden_size), dtype=np.float32)
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for out_row, digest in enumerate(digests):
            shard, row = self._index[digest]
            by_shard.setdefault(shard, []).append((out_row, row))
        for shard, pairs in by_shard.items():
            with safe_open(str(shard), framework="np") as f:
                matrix = f.get_tensor("embeddings")
            out_rows, rows = zip(*pairs)
            table[list(out_rows)] = matrix[list(rows)]
        return table


class InMemoryEmbeddings:
    """Same interface as `EmbeddingCache` without touching disk (used for a throwaway cache)."""

    def __init__(self, encoder: SequenceEncoder, token_budget: int = 8192):
        self.encoder = encoder
        self.token_budget = token_budget
        self.stats = CacheStats()

    def embed(self, chains: Sequence[str]) -> np.ndarray:
        unique = list(dict.fromkeys(chains))
        with torch.inference_mode():
            vectors = self.encoder(unique, token_budget=self.token_budget).float().cpu().numpy()
        self.stats.requested += len(unique)
        self.stats.encoded += len(unique)
        position = {c: i for i, c in enumerate(unique)}
        return vectors[[position[c] for c in chains]]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
