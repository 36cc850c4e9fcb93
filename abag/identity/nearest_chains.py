"""Nearest reference chain of each query chain, in time and memory that grow with the data, not its square.

`nearest_chain_identity(references, queries)` gives, per query chain, the clustering's identity (banded local
alignment, `abag.identity.banded_alignment`) to its best reference chain. Exact copies score 1 without alignment. For the
rest, candidates come from shared seeds (`abag.identity.seed_search`: weight-6 spaced seeds, low-complexity stretches
ignored), as in the clustering, with limits that bound the work. A query chain looks up the seeds it shares with
at most `COMMON_SEED_LIMIT` reference chains, plus its `RAREST_SEEDS` rarest shared seeds whatever their counts;
such a common seed is expanded to `COMMON_SEED_HOLDERS` of its holders (a hash-ordered choice). Seeds nearly
every chain holds (an antibody framework, a tag, a conserved motif) then cost nothing, while the old all-seed
product held one entry per seed-sharing reference (~10^8 per block of queries at 500k antibody pairs); a query
costs at most (rare seeds looked up) x `COMMON_SEED_LIMIT` + `RAREST_SEEDS` x `COMMON_SEED_HOLDERS` entries. Rare
seeds are the informative ones: a close variant shares nearly all of them and a distant homolog those of its
conserved stretches, which few unrelated chains hold; where a family has thousands of near-identical members (a
variant library), the holders sampled are close ones, though not always the closest (the identity reported is
then a lower bound: a fifth of the Phillips CR9114/CR6261 heavy-chain variants against the rest all score above
0.85, and on a 5k/1k subset at most 0.07 below the exhaustive search). Candidates are ranked by the share of the
smaller seed set they share (the query's set counts the seeds looked up and those no reference holds); the
`CANDIDATES` best are aligned (only the best when it shares at least half). On SAAINT-DB chains (a quarter held
out against the rest) the identities equal the unbounded search's.

Reference seeds are collected only where their hash matches a query seed (a bitmap), so memory follows the
queries' seeds plus the reference chains themselves. Limits: a chain too short for a seed (< 10 residues) is
found only as an exact copy, and a query sharing no seed with any reference scores 0 (below about 40 %
identity for chains under 200 residues). Imports numpy, scipy and abag's seed_search and banded_alignment.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import sparse

from abag.identity.banded_alignment import SeedBands, alignment_identity
from abag.identity.seed_search import (
    distinct_sorted,
    encode_chain,
    pattern_seed_codes,
    seed_hash,
)

__all__ = ["COMMON_SEED_LIMIT", "COMMON_SEED_HOLDERS", "RAREST_SEEDS", "CANDIDATES", "nearest_chain_identity"]

COMMON_SEED_LIMIT = 256  # a seed held by more reference chains than this is not looked up, unless it is ...
RAREST_SEEDS = 32        # ... among the query chain's rarest (so every chain has some); then only
COMMON_SEED_HOLDERS = 32  # this many of its holders are (in a family that large, they are close members)
CANDIDATES = 4           # reference chains aligned per query chain (the best by shared-seed share)
_SURE_FRACTION = 0.5     # the best candidate shares >= half the query's seeds: align only it
_BLOCK_QUERIES = 4000    # query chains per sparse product
_FILTER_BITS = 26        # hash bitmap of the query seeds: 64 MiB of booleans


def nearest_chain_identity(reference_chains: Sequence[str], query_chains: Sequence[str]) -> np.ndarray:
    """Best identity (see module docstring) of each query chain to any reference chain; 0 when none is near."""
    queries = [str(c) for c in query_chains]
    references = list(dict.fromkeys(str(c) for c in reference_chains))
    known = set(references)
    best = {c: 1.0 if c in known else 0.0 for c in queries}  # exact copies need no alignment
    pending = [c for c in best if c not in known]
    if pending and references:
        for chain, value in zip(pending, _aligned_identity(references, pending)):
            best[chain] = float(value)
    return np.array([best[c] for c in queries], dtype=np.float64)


def _bucket(seeds: np.ndarray) -> np.ndarray:
    return seed_hash(seeds, _FILTER_BITS)


def _seed_entries(encoded: list[np.ndarray], wanted: np.ndarray | None = None):
    """Distinct (seed, chain) entries of `encoded`, sorted by seed then chain, and every chain's seed count
    (positions with a valid seed, all patterns); with `wanted` (a bitmap over seed hashes) only the entries
    of seeds whose hash is set."""
    n = max(len(encoded), 1)
    seeds, chains = [], []
    totals = np.zeros(len(encoded), np.float64)
    for code, chain in pattern_seed_codes(encoded):
        totals += np.bincount(chain, minlength=len(encoded))
        if wanted is not None:
            keep = wanted[_bucket(code)]
            code, chain = code[keep], chain[keep]
        key = distinct_sorted(code * n + chain)
        seeds.append(key // n)
        chains.append(key % n)
    empty = np.zeros(0, np.int64)
    return (np.concatenate(seeds), np.concatenate(chains), totals) if seeds else (empty, empty, totals)


def _informative(query_chain: np.ndarray, column: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mask of the query entries to look up: seeds held by at most `COMMON_SEED_LIMIT` reference chains, and
    each query chain's `RAREST_SEEDS` rarest seeds whatever their counts (ties by column)."""
    order = np.lexsort((column, counts[column], query_chain))
    chain_sorted = query_chain[order]
    rank = np.arange(len(order)) - np.searchsorted(chain_sorted, chain_sorted)
    keep = counts[column] <= COMMON_SEED_LIMIT
    keep[order[rank < RAREST_SEEDS]] = True
    return keep


def _some_holders(column: np.ndarray, chain: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every holder of a seed held by at most `COMMON_SEED_LIMIT` reference chains, `COMMON_SEED_HOLDERS` of a
    commoner one: the same hash-ordered choice for every seed, so the chosen chains gather shared counts."""
    order = np.lexsort((_bucket(chain), column))
    column, chain = column[order], chain[order]
    rank = np.arange(len(column)) - np.searchsorted(column, column)
    keep = (counts[column] <= COMMON_SEED_LIMIT) | (rank < COMMON_SEED_HOLDERS)
    return column[keep], chain[keep]


def _top_candidates(shared: sparse.coo_matrix, query_seeds: np.ndarray,
                    reference_seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query, reference) pairs to align: per query the `CANDIDATES` references with the largest shared share
    of the smaller seed set (the looked-up seeds of the query; all of the reference's), ties by count."""
    q, r, count = shared.row, shared.col, shared.data.astype(np.float64)
    fraction = count / np.maximum(np.minimum(query_seeds[q], reference_seeds[r]), 1)
    order = np.lexsort((r, -count, -fraction, q))
    q, r, fraction = q[order], r[order], fraction[order]
    first = np.searchsorted(q, q)  # index of each query's best candidate (q is sorted)
    rank = np.arange(len(q)) - first
    keep = (rank < CANDIDATES) & ~((rank > 0) & (fraction[first] >= _SURE_FRACTION))
    return q[keep], r[keep]


def _aligned_identity(references: list[str], queries: list[str]) -> np.ndarray:
    """Best aligned identity of each query chain among the references found through its rarest seeds."""
    reference_codes = [encode_chain(c) for c in references]
    query_codes = [encode_chain(c) for c in queries]
    best = np.zeros(len(queries))
    query_seed, query_chain, _ = _seed_entries(query_codes)
    n_distinct = np.bincount(query_chain, minlength=len(queries))
    if not len(query_seed):
        return best
    wanted = np.zeros(1 << _FILTER_BITS, dtype=bool)
    wanted[_bucket(query_seed)] = True
    reference_seed, reference_chain, reference_seeds = _seed_entries(reference_codes, wanted)
    del wanted
    columns = np.intersect1d(distinct_sorted(query_seed), distinct_sorted(reference_seed), assume_unique=True)
    if not len(columns):
        return best
    reference_column = np.searchsorted(columns, reference_seed)
    inside = reference_column < len(columns)
    inside[inside] = columns[reference_column[inside]] == reference_seed[inside]
    reference_column, reference_chain = reference_column[inside], reference_chain[inside]
    counts = np.bincount(reference_column, minlength=len(columns))  # reference chains holding each seed
    reference_column, reference_chain = _some_holders(reference_column, reference_chain, counts)
    by_seed = sparse.csr_matrix((np.ones(len(reference_column), np.int32), (reference_column, reference_chain)),
                                shape=(len(columns), len(references)))
    query_column = np.searchsorted(columns, query_seed)
    inside = query_column < len(columns)
    inside[inside] = columns[query_column[inside]] == query_seed[inside]
    query_column, query_chain = query_column[inside], query_chain[inside]
    looked_up = _informative(query_chain, query_column, counts)
    # A query's seed count: all its distinct seeds but the common ones not looked up (their sharing is unknown).
    n_seeds = (n_distinct - np.bincount(query_chain[~looked_up], minlength=len(queries))).astype(np.float64)
    query_column, query_chain = query_column[looked_up], query_chain[looked_up]
    by_query = sparse.csr_matrix((np.ones(len(query_column), np.int32), (query_chain, query_column)),
                                 shape=(len(queries), len(columns)))
    encoded = reference_codes + query_codes
    bands = SeedBands(encoded)
    n_ref = len(references)
    for start in range(0, len(queries), _BLOCK_QUERIES):
        shared = (by_query[start:start + _BLOCK_QUERIES] @ by_seed).tocoo()
        q, r = _top_candidates(shared, n_seeds[start:start + _BLOCK_QUERIES], reference_seeds)
        if len(q):
            identity = alignment_identity(encoded, bands, np.stack([n_ref + start + q, r], axis=1))
            np.maximum.at(best, start + q, identity)
    return best
