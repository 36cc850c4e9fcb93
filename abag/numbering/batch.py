"""Numbering many chains: each distinct sequence once, a cache per distinct chain, native threads when it pays.

`number_chains(sequences, cache=...)` returns one `NumberedChain` per input, in input order. Repeated sequences and
sequences already in `cache` (a plain mapping the caller keeps and passes again) are not numbered again; a
`NumberingDiskCache` adds a folder that survives the process. New chains are numbered in batches by the library's
own native threads (it releases the GIL), `workers` of them when there are at least `PARALLEL_MIN_CHAINS`.

A cache must be used with one `species` setting: its key is the sequence alone.

May import: anarcism (through abag.numbering.chains), abag.numbering.chains, abag.numbering.disk_cache.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field

from abag.numbering.chains import (
    CHAIN_TYPES,
    SPECIES,
    NumberedChain,
    chain_from_result,
    number_chain,
    numbering_library,
    sequence_problem,
)
from abag.numbering.disk_cache import NumberingDiskCache

__all__ = ["NumberedChains", "number_chains", "default_workers", "PARALLEL_MIN_CHAINS", "BATCH_SIZE"]

PARALLEL_MIN_CHAINS = 64  # below this, starting threads costs more than it saves
BATCH_SIZE = 2048  # chains handed to the library at once (bounds memory; the disk cache is written per batch)


@dataclass
class NumberedChains:
    """One `NumberedChain` per input sequence (input order), and where each distinct chain came from."""

    chains: list[NumberedChain]
    n_distinct: int  # distinct sequences in the input
    n_numbered: int  # distinct sequences numbered by this call
    n_from_cache: int  # distinct sequences taken from the in-memory or disk cache
    seconds: float  # wall time spent numbering (not in the caches)
    failures: dict[str, str] = field(default_factory=dict)  # sequence -> reason, for every distinct failure

    def __len__(self) -> int:
        return len(self.chains)

    def __iter__(self) -> Iterator[NumberedChain]:
        return iter(self.chains)

    def __getitem__(self, index: int) -> NumberedChain:
        return self.chains[index]


def default_workers() -> int:
    """The CPU cores this process may use (at most 8)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def number_chains(sequences: Iterable[str | None], *, cache: MutableMapping[str, NumberedChain] | None = None,
                  workers: int | None = None, species: Sequence[str] = SPECIES,
                  disk_cache: NumberingDiskCache | None = None) -> NumberedChains:
    """Number every sequence (None or a non-string counts as empty), each distinct one once, reusing `cache`.

    Empty and unreadable sequences come back with `failure` set. `workers=None` uses every core when there are
    at least PARALLEL_MIN_CHAINS new chains; `workers=1` numbers on the calling thread only.
    """
    if disk_cache is not None and tuple(species) != disk_cache.species:
        raise ValueError(f"the disk cache holds numbering for species {disk_cache.species}, not {tuple(species)}")
    texts = [_text(s) for s in sequences]
    cache = {} if cache is None else cache
    distinct = list(dict.fromkeys(texts))
    missing = [s for s in distinct if s not in cache]
    from_disk = disk_cache.get_many(missing) if disk_cache is not None and missing else {}
    cache.update(from_disk)
    new = [s for s in missing if s not in from_disk]
    n_threads = workers if workers is not None else (default_workers() if len(new) >= PARALLEL_MIN_CHAINS else 1)
    start = time.perf_counter()
    for offset in range(0, len(new), BATCH_SIZE):
        numbered = _number_batch(new[offset: offset + BATCH_SIZE], max(1, n_threads), species)
        cache.update((c.sequence, c) for c in numbered)
        if disk_cache is not None:
            disk_cache.put_many(numbered)
    seconds = time.perf_counter() - start
    failures = {s: cache[s].failure or "no domain" for s in distinct if not cache[s].ok}
    return NumberedChains([cache[s] for s in texts], len(distinct), len(new), len(distinct) - len(new), seconds,
                          failures)


def _number_batch(batch: list[str], workers: int, species: Sequence[str]) -> list[NumberedChain]:
    """Number a batch with the library's threads; sequences it cannot read are set aside first."""
    out: dict[str, NumberedChain] = {}
    readable = []
    for sequence in batch:
        problem = sequence_problem(sequence)
        if problem:
            out[sequence] = NumberedChain(sequence, (), problem)
        else:
            readable.append(sequence)
    if readable:
        library = numbering_library()
        try:
            results = library.number_sequences([(str(i), s.upper()) for i, s in enumerate(readable)],
                                               workers=workers, allowed_chains=list(CHAIN_TYPES),
                                               allowed_species=list(species))
            out.update((s, chain_from_result(s, r)) for s, r in zip(readable, results))
        except library.AnarcismError:  # one record spoiled the batch: number one by one to find it
            out.update((s, number_chain(s, species=species)) for s in readable)
    return [out[s] for s in batch]
