"""On-disk cache of pooled chain embeddings, so frozen encoders see each distinct chain once.

Layout: `ROOT/<key-hash>/key.json` (encoder name and revision, pooling, window settings) and
`ROOT/<key-hash>/shard-*.safetensors`, each holding one float32 `embeddings` matrix and, in its metadata,
the cache format, the key hash, the SHA-1 of every chain it covers (one per row) and a CRC-32 of the matrix.

- A shard is written to a temporary file, fsynced and renamed, so a killed process never leaves half an
  entry. A shard that cannot be read (truncated, garbage, wrong metadata, another encoder's key, failed
  checksum, non-finite values) is deleted with a warning and its chains are encoded again: never a crash.
- Reading is bounded in memory: shard headers are parsed once per process, and only the rows a dataset
  needs are copied out of a read-only memory map into one float32 matrix. Nothing holds the embeddings as
  Python objects, and a shard's checksum is verified once per process, streaming through the page cache.
- Missing chains are sorted by length and encoded in token-budget batches (see `abag.batching`), with a
  progress bar in sequences/s (and tokens/s); under `torch.distributed`, process 0 decides what is missing
  and every process encodes its own share, then all read the completed cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from . import distributed
from .encoders import EncodedBatch, SequenceEncoder

log = logging.getLogger(__name__)
CHAINS_PER_SHARD = 4096
FORMAT = "abag-embeddings/2"
MAX_HEADER_BYTES = 64 << 20
MAX_ATTEMPTS = 3


def default_cache_dir() -> Path:
    """`$ABAG_CACHE_DIR`, else `~/.cache/abag/embeddings` (read at call time, not import time)."""
    return Path(os.environ.get("ABAG_CACHE_DIR") or Path.home() / ".cache" / "abag" / "embeddings")


def chain_digest(chain: str) -> str:
    return hashlib.sha1(chain.encode("ascii")).hexdigest()


def key_digest(key: dict[str, object]) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class CacheStats:
    """What `embed` calls did: how many distinct chains came from disk and how many were encoded.

    `encoded` counts this process's share only (under torch.distributed each process encodes part).
    `tokens`, `padded_tokens` and `encode_seconds` describe that encoding work: padding share is
    `1 - tokens / padded_tokens`, throughput `encoded / encode_seconds` sequences/s.
    """

    requested: int = 0
    reused: int = 0
    encoded: int = 0
    corrupt_shards: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    encode_seconds: float = 0.0

    @property
    def padding_fraction(self) -> float:
        return 0.0 if self.padded_tokens == 0 else 1.0 - self.tokens / self.padded_tokens


@dataclass
class _Shard:
    """A parsed, validated shard header: where its matrix lies in the file and which chains it holds."""

    path: Path
    digests: list[str] = field(repr=False)
    offset: int
    rows: int
    crc32: int


class CorruptShardError(ValueError):
    """A shard file that is not a complete, consistent cache entry of this key."""


class EmbeddingCache:
    """Pooled embeddings of one encoder, keyed by the encoder's `cache_key` and the chain sequence."""

    def __init__(self, encoder: SequenceEncoder, root: str | Path | None = None, token_budget: int = 8192,
                 progress: bool = True):
        if encoder.is_trainable:
            raise ValueError("an embedding cache is only valid for a frozen encoder; use --no-embedding-cache "
                             "when fine-tuning encoder layers")
        self.encoder = encoder
        self.key = encoder.cache_key
        self.key_hash = key_digest(self.key)
        self.folder = Path(root if root is not None else default_cache_dir()) / self.key_hash
        self.token_budget = token_budget
        self.progress = progress
        self.stats = CacheStats()
        self._index: dict[str, tuple[str, int]] = {}   # chain digest -> (shard file name, row)
        self._shards: dict[str, _Shard] = {}           # shard file name -> parsed header
        self._indexed: tuple[str, ...] | None = None   # shard names the index was built from
        self._verified: set[str] = set()               # shards whose checksum this process has checked

    @property
    def hidden_size(self) -> int:
        return self.encoder.hidden_size

    def embed(self, chains: Sequence[str]) -> np.ndarray:
        """Embeddings (len(chains), hidden) float32 for the chains, encoding only those not on disk yet."""
        chains = list(chains)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_key()
        unique = list(dict.fromkeys(chains))
        digests = [chain_digest(c) for c in unique]
        self.stats.requested += len(unique)
        rank, world = distributed.rank(), distributed.world_size()
        missing_total = 0
        for _attempt in range(MAX_ATTEMPTS):
            # Process 0 decides what is missing, so every process splits the same list the same way even
            # when another process has already started writing shards.
            distributed.barrier()
            self._reindex()
            missing = distributed.broadcast_object([i for i, d in enumerate(digests) if d not in self._index])
            missing_total += len(missing)
            share = [unique[i] for i in missing[rank::world]]
            self._encode_and_store(share)
            distributed.barrier()
            self._reindex()
            table, corrupt = self._gather(digests)
            # Every process must agree on whether to go round again (collectives are counted).
            if not any(distributed.all_gather_objects(bool(corrupt))):
                break
        else:
            raise RuntimeError(f"embedding cache {self.folder}: shards keep failing their checks after "
                               f"{MAX_ATTEMPTS} attempts (disk problem?); use --no-embedding-cache or another "
                               "--embedding-cache folder")
        self.stats.reused += max(0, len(unique) - missing_total)
        if len(chains) == len(unique):
            return table
        position = {c: i for i, c in enumerate(unique)}
        return table[[position[c] for c in chains]]

    # ------------------------------------------------------------------------------------------- index

    def _write_key(self) -> None:
        path = self.folder / "key.json"
        if not path.exists():
            atomic_write_bytes(path, json.dumps(self.key, indent=2, sort_keys=True).encode())

    def _reindex(self) -> None:
        """Map chain digest -> (shard, row) over the valid shards on disk; shards are parsed once each."""
        names = tuple(sorted(p.name for p in self.folder.glob("shard-*.safetensors")))
        if names == self._indexed:
            return
        for name in names:
            if name in self._shards:
                continue
            try:
                self._shards[name] = read_shard_header(self.folder / name, self.hidden_size, self.key_hash)
            except FileNotFoundError:
                continue  # deleted by another process meanwhile
            except (OSError, CorruptShardError) as exc:
                self._discard(name, exc)
        present = set(names)
        for name in [n for n in self._shards if n not in present]:
            del self._shards[name]
        self._index = {}
        for name in sorted(self._shards):
            for row, digest in enumerate(self._shards[name].digests):
                self._index[digest] = (name, row)
        self._indexed = tuple(sorted(self._shards))

    def _discard(self, name: str, reason: Exception) -> None:
        log.warning("embedding cache: ignoring unreadable shard %s (%s); its chains will be re-encoded", name, reason)
        self.stats.corrupt_shards += 1
        self._shards.pop(name, None)
        self._verified.discard(name)
        self._indexed = None
        (self.folder / name).unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------- encode

    def _encode_and_store(self, chains: list[str]) -> None:
        if not chains:
            return
        # Sorted by length: each shard's token-budget batches are then packed with little padding.
        chains = sorted(chains, key=len)
        bar = tqdm(total=len(chains), desc=f"encoding ({self.encoder.name})", unit="seq", leave=False,
                   disable=not self.progress, dynamic_ncols=True)
        started = time.perf_counter()
        done, tokens, slots = 0.0, 0, 0

        def advance(batch: EncodedBatch) -> None:
            nonlocal done, tokens, slots
            done += batch.chains
            tokens += batch.tokens
            slots += batch.padded_tokens
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(f"{tokens / elapsed:,.0f} tok/s, padding {1 - tokens / max(slots, 1):.1%}",
                                refresh=False)
            step = min(len(chains), int(done + 1e-6)) - bar.n
            if step > 0:
                bar.update(step)  # redraws (rate-limited by tqdm) with seq/s and the postfix above

        try:
            for start in range(0, len(chains), CHAINS_PER_SHARD):
                part = chains[start:start + CHAINS_PER_SHARD]
                with torch.inference_mode():
                    vectors = self.encoder(part, token_budget=self.token_budget, progress=advance)
                self._write_shard(part, vectors.float().cpu().numpy())
                self.stats.encoded += len(part)
            if bar.n < len(chains):
                bar.update(len(chains) - bar.n)
            bar.refresh()
        finally:
            bar.close()
        seconds = time.perf_counter() - started
        self.stats.tokens += tokens
        self.stats.padded_tokens += slots
        self.stats.encode_seconds += seconds
        log.info("embedding cache: encoded %d chains with %s in %.1fs (%.1f seq/s, %.0f tokens/s, padding %.1f%%)",
                 len(chains), self.encoder.name, seconds, len(chains) / max(seconds, 1e-9),
                 tokens / max(seconds, 1e-9), 100 * (1 - tokens / max(slots, 1)))

    def _write_shard(self, chains: list[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        final = self.folder / f"shard-{uuid.uuid4().hex}.safetensors"
        temporary = final.with_suffix(".tmp")
        metadata = {
            "format": FORMAT,
            "key": self.key_hash,
            "chains": json.dumps([chain_digest(c) for c in chains]),
            "crc32": str(zlib.crc32(vectors)),
        }
        try:
            save_file({"embeddings": vectors}, str(temporary), metadata=metadata)
            with open(temporary, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------- read

    def _gather(self, digests: list[str]) -> tuple[np.ndarray, list[str]]:
        """(table of the digests' rows, names of shards found corrupt and deleted while reading)."""
        table = np.empty((len(digests), self.hidden_size), dtype=np.float32)
        by_shard: dict[str, tuple[list[int], list[int]]] = {}
        for out_row, digest in enumerate(digests):
            name, row = self._index[digest]
            out_rows, rows = by_shard.setdefault(name, ([], []))
            out_rows.append(out_row)
            rows.append(row)
        corrupt = []
        for name, (out_rows, rows) in by_shard.items():
            try:
                self._copy_rows(self._shards[name], np.asarray(out_rows), np.asarray(rows), table)
            except (OSError, ValueError) as exc:  # CorruptShardError is a ValueError
                self._discard(name, exc)
                corrupt.append(name)
        return table, corrupt

    def _copy_rows(self, shard: _Shard, out_rows: np.ndarray, rows: np.ndarray, table: np.ndarray) -> None:
        """Copy `rows` of a shard into `table[out_rows]` through a read-only memory map (only those pages)."""
        matrix = np.memmap(shard.path, dtype="<f4", mode="r", offset=shard.offset,
                           shape=(shard.rows, self.hidden_size))
        try:
            if shard.path.name not in self._verified:
                if zlib.crc32(matrix) != shard.crc32:
                    raise CorruptShardError("checksum mismatch")
                self._verified.add(shard.path.name)
            order = np.argsort(rows, kind="stable")  # read in file order
            values = matrix[rows[order]]
        finally:
            del matrix
        if not np.isfinite(values).all():
            raise CorruptShardError("non-finite values")
        table[out_rows[order]] = values


def read_shard_header(path: Path, hidden_size: int, key_hash: str) -> _Shard:
    """Parse and check a safetensors shard header without reading its data; CorruptShardError if wrong."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise CorruptShardError("truncated header")
        n = int.from_bytes(head, "little")
        if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
            raise CorruptShardError("bad header length")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptShardError(f"header is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise CorruptShardError("header is not a JSON object")
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        raise CorruptShardError(f"format {metadata.get('format')!r}, expected {FORMAT!r}")
    if metadata.get("key") != key_hash:
        raise CorruptShardError("written for another encoder key")
    tensor = header.get("embeddings")
    if not isinstance(tensor, dict) or tensor.get("dtype") != "F32":
        raise CorruptShardError("no float32 'embeddings' tensor")
    shape, offsets = tensor.get("shape"), tensor.get("data_offsets")
    if not (isinstance(shape, list) and len(shape) == 2 and shape[1] == hidden_size):
        raise CorruptShardError(f"embeddings shape {shape}, expected (rows, {hidden_size})")
    rows = int(shape[0])
    if not (isinstance(offsets, list) and len(offsets) == 2 and offsets[1] - offsets[0] == rows * hidden_size * 4):
        raise CorruptShardError("data offsets do not match the shape")
    if 8 + n + offsets[1] != size:
        raise CorruptShardError(f"file is {size} bytes, header describes {8 + n + offsets[1]}")
    try:
        digests = json.loads(metadata["chains"])
        crc32 = int(metadata["crc32"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptShardError(f"bad metadata ({exc.__class__.__name__})") from None
    if not isinstance(digests, list) or len(digests) != rows:
        raise CorruptShardError("row count does not match its chain list")
    if not all(isinstance(d, str) and len(d) == 40 for d in digests):
        raise CorruptShardError("chain list is not a list of SHA-1 digests")
    return _Shard(path, digests, 8 + n + offsets[0], rows, crc32)


class InMemoryEmbeddings:
    """Same interface as `EmbeddingCache` without touching disk (used for a throwaway cache)."""

    def __init__(self, encoder: SequenceEncoder, token_budget: int = 8192, progress: bool = False):
        self.encoder = encoder
        self.token_budget = token_budget
        self.progress = progress
        self.stats = CacheStats()

    def embed(self, chains: Sequence[str]) -> np.ndarray:
        chains = list(chains)
        unique = list(dict.fromkeys(chains))
        bar = tqdm(total=len(unique), desc=f"encoding ({self.encoder.name})", unit="seq", leave=False,
                   disable=not self.progress or not unique, dynamic_ncols=True)
        done = 0.0

        def advance(batch: EncodedBatch) -> None:
            nonlocal done
            done += batch.chains
            self.stats.tokens += batch.tokens
            self.stats.padded_tokens += batch.padded_tokens
            step = min(len(unique), int(done + 1e-6)) - bar.n
            if step > 0:
                bar.update(step)

        started = time.perf_counter()
        try:
            with torch.inference_mode():
                vectors = self.encoder(unique, token_budget=self.token_budget, progress=advance).float().cpu().numpy()
            if bar.n < len(unique):
                bar.update(len(unique) - bar.n)
            bar.refresh()
        finally:
            bar.close()
        self.stats.encode_seconds += time.perf_counter() - started
        self.stats.requested += len(unique)
        self.stats.encoded += len(unique)
        if len(chains) == len(unique):
            return vectors
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
