"""On-disk cache of pooled chain embeddings, so frozen encoders see each distinct chain once.

Layout: `ROOT/<key-hash>/key.json` (every field of the encoder's `cache_key`, read at each `embed`, so a
changed setting such as the precision files vectors under another key) and `ROOT/<key-hash>/shard-*.safetensors`:
one float32 `embeddings` matrix each, with the format, key hash, chain SHA-1s (one per row) and a CRC-32.

- Encoder output is checked before anything is written: NaN/Inf raises `NonFiniteEmbeddingError`.
- Shards are written to a temporary file named after its writer, fsynced and renamed; leftovers of killed
  processes are removed by `remove_stale_temporaries`, never a live process's file on this host.
- An unreadable shard (truncated, garbage, wrong metadata or key, bad checksum, non-finite values) is
  deleted with a warning and its chains are encoded again. Reads copy only the rows needed out of a
  read-only memory map into one float32 matrix with one row per distinct chain.
- Missing chains are sorted by length and encoded `CHAINS_PER_SHARD` at a time in token-budget batches;
  under `torch.distributed` process 0 decides what is missing, each process encodes its share, and a
  failure on one process is reported to all, so none waits forever at a barrier.

Imports from abag: `distributed`, `encoders` (types only), `errors`, `outputs` (atomic writes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
import uuid
import zlib
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from abag import distributed
from abag.encoding.sequence_encoder import EncodedBatch, SequenceEncoder
from abag.errors import EmbeddingCacheError, NonFiniteEmbeddingError
from abag.outputs import write_atomic

log = logging.getLogger(__name__)
CHAINS_PER_SHARD = 4096
FORMAT = "abag-embeddings/2"
MAX_HEADER_BYTES = 64 << 20
MAX_ATTEMPTS = 3
STALE_TEMPORARY_SECONDS = 3600      # any temporary file this old is a leftover: a shard write takes seconds
DEAD_WRITER_GRACE_SECONDS = 300     # a file of a process that no longer runs on this host, once this old


def default_cache_dir() -> Path:
    """`$ABAG_CACHE_DIR`, else `~/.cache/abag/embeddings` (read at call time, not import time)."""
    return Path(os.environ.get("ABAG_CACHE_DIR") or Path.home() / ".cache" / "abag" / "embeddings")


def chain_digest(chain: str) -> str:
    return hashlib.sha1(chain.encode("ascii")).hexdigest()


def key_digest(key: dict[str, object]) -> str:
    """16 hex digits over every field of `key` (a new or changed field gives another digest)."""
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def encoder_cache_key(encoder: SequenceEncoder) -> dict[str, object]:
    """The encoder's current `cache_key` as a plain dict, whether `cache_key` is a property or a method."""
    key = encoder.cache_key
    return dict(key() if callable(key) else key)


@dataclass
class CacheStats:
    """What `embed` calls did: distinct chains requested, read from disk (`reused`) and encoded by this
    process (its share under torch.distributed); `tokens`, `padded_tokens`, `encode_seconds` describe that
    encoding (padding share `1 - tokens / padded_tokens`, throughput `encoded / encode_seconds` seq/s)."""

    requested: int = 0
    reused: int = 0
    encoded: int = 0
    corrupt_shards: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    encode_seconds: float = 0.0
    stale_temporaries_removed: int = 0

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


def check_finite(encoder: SequenceEncoder, chains: Sequence[str], vectors: np.ndarray) -> None:
    """Raise `NonFiniteEmbeddingError` (encoder, count, first chain, what to do) if a row of `vectors` is not finite."""
    bad = ~np.isfinite(vectors).all(axis=1)
    if not bad.any():
        return
    first = chains[int(np.argmax(bad))]
    precision = getattr(getattr(encoder, "precision", None), "name", getattr(encoder, "precision", None))
    running = f" running in {precision}" if precision else ""
    raise NonFiniteEmbeddingError(
        f"encoder {encoder.name!r}{running} returned NaN or Inf embeddings for {int(bad.sum())} of {len(chains)} "
        f"chains (first: {first[:30]}{'…' if len(first) > 30 else ''}, {len(first)} residues); nothing of them "
        "was written to the embedding cache. Under fp16 mixed precision this is an overflow: rerun with "
        "--no-mixed-precision (TrainConfig(mixed_precision=False)), or on a GPU with bf16 (A100, H100)")


def encoded_parts(encoder: SequenceEncoder, chains: Sequence[str], token_budget: int, stats: CacheStats,
                  show_progress: bool) -> Iterator[tuple[np.ndarray, list[str], np.ndarray]]:
    """Encode `chains` sorted by length, `CHAINS_PER_SHARD` at a time: yields (positions in `chains`, those
    chains, their finite float32 vectors). Updates `stats` (a part counts as encoded once the caller resumes)."""
    order = np.argsort(np.fromiter((len(c) for c in chains), dtype=np.int64, count=len(chains)), kind="stable")
    bar = tqdm(total=len(chains), desc=f"encoding ({encoder.name})", unit="seq", leave=False,
               disable=not show_progress or not len(chains), dynamic_ncols=True)
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
            positions = order[start:start + CHAINS_PER_SHARD]
            part = [chains[i] for i in positions]
            with torch.inference_mode():
                vectors = encoder(part, token_budget=token_budget, progress=advance).float().cpu().numpy()
            check_finite(encoder, part, vectors)
            yield positions, part, vectors
            stats.encoded += len(part)
        if bar.n < len(chains):
            bar.update(len(chains) - bar.n)
        bar.refresh()
    finally:
        bar.close()
        seconds = time.perf_counter() - started
        stats.tokens += tokens
        stats.padded_tokens += slots
        stats.encode_seconds += seconds
    if len(chains):
        log.info("embedding cache: encoded %d chains with %s in %.1fs (%.1f seq/s, %.0f tokens/s, padding %.1f%%)",
                 len(chains), encoder.name, seconds, len(chains) / max(seconds, 1e-9),
                 tokens / max(seconds, 1e-9), 100 * (1 - tokens / max(slots, 1)))


class EmbeddingCache:
    """Pooled embeddings of one encoder, keyed by every field of the encoder's `cache_key` and the chain."""

    def __init__(self, encoder: SequenceEncoder, root: str | Path | None = None, token_budget: int = 8192,
                 progress: bool = True):
        if encoder.is_trainable:
            raise ValueError("an embedding cache is only valid for a frozen encoder; use --no-embedding-cache "
                             "when fine-tuning encoder layers")
        self.encoder = encoder
        self.root = Path(root if root is not None else default_cache_dir())
        self.token_budget = token_budget
        self.progress = progress
        self.stats = CacheStats()
        self._folder: Path | None = None               # the key folder (named by its hash) of the state below
        self._index: dict[str, tuple[str, int]] = {}   # chain digest -> (shard file name, row)
        self._shards: dict[str, _Shard] = {}           # shard file name -> parsed header
        self._indexed: tuple[str, ...] | None = None   # shard names the index was built from
        self._verified: set[str] = set()               # shards whose checksum this process has checked

    @property
    def key(self) -> dict[str, object]:
        """The encoder's cache key now (read at every call: a changed encoder setting moves the folder)."""
        return encoder_cache_key(self.encoder)

    @property
    def folder(self) -> Path:
        return self.root / key_digest(self.key)

    @property
    def hidden_size(self) -> int:
        return self.encoder.hidden_size

    def embed(self, chains: Sequence[str]) -> np.ndarray:
        """Embeddings (len(chains), hidden) float32 for the chains, encoding only those not on disk yet."""
        chains = list(chains)
        self._open()
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
            self._encode_share([unique[i] for i in missing[rank::world]])
            self._reindex()
            table, corrupt = self._gather(digests)
            # Every process must agree on whether to go round again (collectives are counted).
            if not any(distributed.all_gather_objects(bool(corrupt))):
                break
        else:
            raise EmbeddingCacheError(
                f"embedding cache {self._folder}: shards keep failing their checks after {MAX_ATTEMPTS} attempts "
                "(disk problem?); use --no-embedding-cache or another --embedding-cache folder")
        self.stats.reused += max(0, len(unique) - missing_total)
        if len(chains) == len(unique):
            return table
        position = {c: i for i, c in enumerate(unique)}
        return table[[position[c] for c in chains]]

    def _open(self) -> None:
        """Create the current key's folder and key.json; on a new folder, reset the index and tidy it."""
        key = self.key
        folder = self.root / key_digest(key)
        folder.mkdir(parents=True, exist_ok=True)
        if folder != self._folder:
            self._folder, self._index, self._shards, self._indexed, self._verified = folder, {}, {}, None, set()
            self._tidy()
        if not (folder / "key.json").exists():
            write_atomic(folder / "key.json", lambda f: f.write(json.dumps(key, indent=2, sort_keys=True)))

    def _tidy(self) -> None:
        self.stats.stale_temporaries_removed += len(remove_stale_temporaries(self._folder))
    def _reindex(self) -> None:
        """Map chain digest -> (shard, row) over the valid shards on disk; shards are parsed once each."""
        names = tuple(sorted(p.name for p in self._folder.glob("shard-*.safetensors")))
        if names == self._indexed:
            return
        for name in names:
            if name in self._shards:
                continue
            try:
                self._shards[name] = read_shard_header(self._folder / name, self.hidden_size, self._folder.name)
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
        (self._folder / name).unlink(missing_ok=True)

    def _encode_share(self, share: list[str]) -> None:
        """Encode and store this process's share; then learn whether any process failed (a collective that
        also stands for the barrier before reading), so a failure on one process stops all of them."""
        failure: Exception | None = None
        try:
            with closing(encoded_parts(self.encoder, share, self.token_budget, self.stats, self.progress)) as parts:
                for _positions, part, vectors in parts:
                    self._write_shard(part, vectors)
                    self._tidy()
        except Exception as exc:  # reported to the other processes below, then re-raised here
            failure = exc
        reports = distributed.all_gather_objects(None if failure is None else (type(failure).__name__, str(failure)))
        if failure is not None:
            raise failure
        failed = [(process, report) for process, report in enumerate(reports) if report is not None]
        if failed:
            process, (kind, message) = failed[0]
            error = NonFiniteEmbeddingError if kind == NonFiniteEmbeddingError.__name__ else EmbeddingCacheError
            raise error(f"process {process} failed while encoding its share of the embedding cache ({kind}): {message}")

    def _write_shard(self, chains: list[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        final = self._folder / f"shard-{uuid.uuid4().hex}.safetensors"
        temporary = temporary_path(final)
        metadata = {
            "format": FORMAT,
            "key": self._folder.name,
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


@dataclass
class InMemoryEmbeddings:
    """Same interface as `EmbeddingCache` without touching disk (used for a throwaway cache)."""

    encoder: SequenceEncoder
    token_budget: int = 8192
    progress: bool = False
    stats: CacheStats = field(default_factory=CacheStats)

    def embed(self, chains: Sequence[str]) -> np.ndarray:
        """Embeddings (len(chains), hidden) float32, each distinct chain encoded once (in bounded parts)."""
        chains = list(chains)
        unique = list(dict.fromkeys(chains))
        self.stats.requested += len(unique)
        vectors = np.empty((len(unique), self.encoder.hidden_size), dtype=np.float32)
        with closing(encoded_parts(self.encoder, unique, self.token_budget, self.stats, self.progress)) as parts:
            for positions, _part, part_vectors in parts:
                vectors[positions] = part_vectors
        if len(chains) == len(unique):
            return vectors
        position = {c: i for i, c in enumerate(unique)}
        return vectors[[position[c] for c in chains]]


# ----------------------------------------------------------------------------------- temporary files

_WRITER = re.compile(r"\.(\d+)@([A-Za-z0-9._-]+)\.tmp$")   # ".<pid>@<host>.tmp" at the end of a temporary name


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "unknown-host"


def temporary_path(path: Path) -> Path:
    """A hidden temporary name beside `path` that names its writer: `.NAME.<random>.<pid>@<host>.tmp`."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.{os.getpid()}@{_host()}.tmp")


def _process_running(pid: int) -> bool | None:
    """Whether process `pid` runs on this host; None where that cannot be asked safely (not POSIX)."""
    if os.name != "posix":
        return None  # os.kill(pid, 0) would terminate the process on Windows
    if pid <= 0:
        return False  # os.kill(0, ...) would signal this process's whole group
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return None


def _is_stale(name: str, age: float, host: str) -> bool:
    writer = _WRITER.search(name)
    if writer is not None and writer[2] == host:
        running = _process_running(int(writer[1]))
        if running is True:
            return False  # a live process on this host may still be writing it: never touched
        if running is False:
            return age >= DEAD_WRITER_GRACE_SECONDS
    return age >= STALE_TEMPORARY_SECONDS  # another host's, or an old-style name without its writer


def remove_stale_temporaries(folder: Path, now: float | None = None) -> list[Path]:
    """Delete and return the temporary shard/key files in `folder` left by killed writers: those of a process
    on this host that no longer runs (once `DEAD_WRITER_GRACE_SECONDS` old), and any other older than
    `STALE_TEMPORARY_SECONDS`, except a live process's on this host (it may still rename it)."""
    now = time.time() if now is None else now
    host, removed = _host(), []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not (entry.name.endswith(".tmp") and entry.name.lstrip(".").startswith(("shard-", "key.json"))):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if entry.is_file(follow_symlinks=False) and _is_stale(entry.name, age, host):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except FileNotFoundError:
            continue  # renamed into place or removed by its writer or another process meanwhile
        except OSError as exc:
            log.warning("embedding cache: cannot remove stale temporary file %s (%s)", entry.path, exc)
    if removed:
        log.info("embedding cache: removed %d temporary file(s) left by killed processes in %s", len(removed), folder)
    return removed

