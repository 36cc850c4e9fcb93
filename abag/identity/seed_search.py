"""Seed prefilter of the sequence clustering: which chain pairs share more k-mer seeds than chance explains.

Every chain becomes its set of weight-6 seeds (contiguous 6-mers and three spaced patterns); seeds that
start in a low-complexity stretch are ignored; one sparse matrix product counts the seeds every pair of
chains shares, and a Poisson model of chance matches (the data's own amino-acid composition) keeps the
pairs worth a closer look. `abag.identity.clustering` explains how these candidates become clusters.

Imports numpy, scipy and `abag.policy` only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import sparse
from scipy.stats import poisson

from abag.policy import residue_codes

__all__ = ["SEED_PATTERNS", "COMMON_SEED_LIMIT", "COMMON_SEED_HUBS", "encode_chain", "chain_seeds",
           "pattern_seed_codes", "seed_hash", "distinct_sorted", "candidate_pairs"]

# Seeds: four weight-6 patterns (contiguous and spaced). Weight 5 was tried
# first: with 10k chains its 3.2M codes are so crowded that most random pairs
# share a seed, and the pair matrix gets too large.
SEED_PATTERNS = ("111111", "11011011", "1110001011", "1011000111")
_SEED_WEIGHT = 6
_CODES_PER_PATTERN = 20**_SEED_WEIGHT
_HASH_BITS = 24
_HASH_BUCKETS = 1 << _HASH_BITS
_HASH_MULTIPLIER = 2654435761  # Knuth's multiplicative hash
_CHANCE_CANDIDATES = 1000.0
_MIN_SHARED_SEEDS = 1
_BLOCK_ROWS = 2000
# A seed held by more chains than this is *common* (a domain thousands of antigens share: an Fc, a tag, a carrier
# protein): its holders are not all paired with each other, which would make clustering quadratic in the family's
# size, but each with the `COMMON_SEED_HUBS` shortest holders (ties by index) of that seed, its hubs. Single
# linkage needs connectivity, not every pair: two holders linked through a shared domain are, as a rule, both
# linked to its shortest holder (identity divides by the shorter chain, so the shortest holder of a shared stretch
# scores at least what the longer partner did), and near-identical members all are. Seeds held by at most this
# many chains pair all their holders, as before. No real set has such a seed (SAAINT-DB: 162 holders at most).
COMMON_SEED_LIMIT = 256
COMMON_SEED_HUBS = 8


def encode_chain(sequence: str) -> np.ndarray:
    """Residue codes 0-19 of one chain (any case); anything else becomes `abag.policy.UNKNOWN_RESIDUE`."""
    return residue_codes(sequence.upper())


def _low_complexity_starts(codes: np.ndarray) -> np.ndarray:
    """True where the 8 residues from here on hold at most two residue types.

    Seeds starting there (His tags, GS linkers, poly-Q) are ignored: they are
    shared by unrelated constructs and say nothing about the antigen.
    """
    bits = np.left_shift(np.uint32(1), codes.astype(np.uint32))
    window = bits
    for step in (1, 2, 4):  # OR over 2, 4, then 8 consecutive residues
        window = window[:-step] | window[step:]
    low = np.zeros(len(codes), dtype=bool)
    low[: len(window)] = _popcount32(window) <= 2
    return low


def _popcount32(x: np.ndarray) -> np.ndarray:
    """Set bits per uint32 (SWAR; np.bitwise_count needs numpy >= 2)."""
    x = x - ((x >> 1) & np.uint32(0x55555555))
    x = (x & np.uint32(0x33333333)) + ((x >> 2) & np.uint32(0x33333333))
    x = (x + (x >> 4)) & np.uint32(0x0F0F0F0F)
    return (x * np.uint32(0x01010101)) >> 24


def _pattern_codes(codes: np.ndarray, chain_of: np.ndarray, skip: np.ndarray, pattern: str) -> np.ndarray:
    """Seed code of `pattern` starting at every position of the concatenation; -1 where invalid."""
    picks = [i for i, c in enumerate(pattern) if c == "1"]
    span, n = len(pattern), len(codes)
    result = np.full(n, -1, dtype=np.int64)
    n_windows = n - span + 1
    if n_windows <= 0:
        return result
    code = np.zeros(n_windows, dtype=np.int64)
    standard = np.ones(n_windows, dtype=bool)
    for p in picks:  # Horner: base-20 number of the picked residues
        residue = codes[p : p + n_windows]
        code = code * 20 + residue
        standard &= residue < 20
    valid = standard & (chain_of[:n_windows] == chain_of[span - 1 :]) & ~skip[:n_windows]
    result[:n_windows] = np.where(valid, code, -1)
    return result


def chain_seeds(encoded: np.ndarray, patterns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Seed ids of one chain, sorted, with their positions."""
    chain_of = np.zeros(len(encoded), dtype=np.int64)
    skip = _low_complexity_starts(encoded)
    features, positions = [], []
    for k, pattern in enumerate(patterns):
        code = _pattern_codes(encoded, chain_of, skip, pattern)
        valid = np.flatnonzero(code >= 0)
        features.append(code[valid] + k * _CODES_PER_PATTERN)
        positions.append(valid)
    features, positions = np.concatenate(features), np.concatenate(positions)
    order = np.argsort(features, kind="stable")
    return features[order], positions[order]


def pattern_seed_codes(encoded: list[np.ndarray], patterns: Sequence[str] = SEED_PATTERNS):
    """Per pattern, (seed ids, chain index) of every valid seed of every chain, computed on their concatenation.

    Seed ids are offset per pattern as in `chain_seeds`; a seed never spans two chains.
    """
    if not encoded:
        return
    lengths = np.array([len(c) for c in encoded])
    codes = np.concatenate(encoded)
    chain_of = np.repeat(np.arange(len(encoded)), lengths)
    skip = _low_complexity_starts(codes)
    for k, pattern in enumerate(patterns):
        code = _pattern_codes(codes, chain_of, skip, pattern)
        valid = np.flatnonzero(code >= 0)
        yield code[valid] + k * _CODES_PER_PATTERN, chain_of[valid]


def seed_hash(seeds: np.ndarray, bits: int) -> np.ndarray:
    """A `bits`-bit multiplicative hash of seed ids (for counting or marking seeds in a flat array)."""
    return (seeds * _HASH_MULTIPLIER) & ((1 << bits) - 1)


def distinct_sorted(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: numpy's hash `unique` is several times slower on these)."""
    keys = np.sort(keys)
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys


def _pattern_columns(code: np.ndarray, chain_of: np.ndarray, n_chains: int):
    """Rows, compact columns of seeds present in >= 2 chains; distinct seeds per chain.

    A hashed count first drops most seeds that occur once (they cannot be
    shared), so only the rest is sorted; sorting all of them dominated run time.
    """
    valid = code >= 0
    code, rows = code[valid], chain_of[valid]
    occurrences = np.bincount(rows, minlength=n_chains)
    bucket = seed_hash(code, _HASH_BITS)
    maybe_repeated = np.bincount(bucket, minlength=_HASH_BUCKETS)[bucket] >= 2
    row_bits = max(int(n_chains).bit_length(), 1)
    keys = distinct_sorted((code[maybe_repeated] << row_bits) | rows[maybe_repeated])
    key_code, key_row = keys >> row_bits, keys & ((1 << row_bits) - 1)
    # Repeats of a seed inside one chain count once.
    repeats = np.bincount(rows[maybe_repeated], minlength=n_chains) - np.bincount(key_row, minlength=n_chains)
    new_group = np.concatenate([[True], key_code[1:] != key_code[:-1]]) if len(keys) else np.empty(0, bool)
    group = np.cumsum(new_group) - 1
    shared = np.bincount(group)[group] >= 2 if len(keys) else new_group
    columns = np.unique(group[shared], return_inverse=True)[1].ravel() if shared.any() else group[shared]
    return key_row[shared], columns, occurrences - repeats


def _shared_seed_matrix(encoded: list[np.ndarray]) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Chains x shared-seeds presence matrix, and the number of distinct seeds per chain."""
    lengths = np.array([len(c) for c in encoded])
    codes = np.concatenate(encoded)
    chain_of = np.repeat(np.arange(len(encoded)), lengths)
    skip = _low_complexity_starts(codes)
    all_rows, all_columns, n_distinct, offset = [], [], np.zeros(len(encoded), np.int64), 0
    for pattern in SEED_PATTERNS:
        code = _pattern_codes(codes, chain_of, skip, pattern)
        rows, columns, distinct = _pattern_columns(code, chain_of, len(encoded))
        all_rows.append(rows)
        all_columns.append(columns + offset)
        offset += int(columns.max(initial=-1)) + 1
        n_distinct += distinct
    matrix = sparse.csr_matrix(
        (np.ones(sum(len(r) for r in all_rows), np.int32), (np.concatenate(all_rows), np.concatenate(all_columns))),
        shape=(len(encoded), max(offset, 1)),
    )
    return matrix, n_distinct


def _chance_seed_match(encoded: list[np.ndarray]) -> float:
    """Probability that two random seeds are equal, given the composition."""
    codes = np.concatenate(encoded)
    codes = codes[codes < 20]
    if len(codes) == 0:
        return 20.0**-_SEED_WEIGHT
    freq = np.bincount(codes, minlength=20) / len(codes)
    return float(np.sum(freq**2) ** _SEED_WEIGHT)


def candidate_pairs(encoded: list[np.ndarray]):
    """Pairs (i < j) sharing more seeds than chance explains, strongest first.

    Returns i, j, the number of shared seeds and their fraction of the
    smaller seed set. Pairs are looked for through seeds held by at most
    `COMMON_SEED_LIMIT` chains, and between every chain and the hubs of the
    common seeds it holds (see `COMMON_SEED_HUBS`); a pair with a hub counts
    all its shared seeds, any other pair only those below the limit.
    """
    n_chains = len(encoded)
    matrix, n_distinct = _shared_seed_matrix(encoded)
    n_seeds = n_distinct.astype(np.float64)
    chance = _chance_seed_match(encoded)
    n_pairs = max(n_chains * (n_chains - 1) / 2, 1.0)
    p_threshold = min(1e-2, _CHANCE_CANDIDATES / n_pairs)
    found = []
    for i, j, shared in _shared_counts(matrix, np.array([len(c) for c in encoded])):
        keep = shared >= _MIN_SHARED_SEEDS
        i, j, shared = i[keep], j[keep], shared[keep]
        # Only same-pattern seeds can match, hence the division by the pattern count.
        expected = n_seeds[i] * n_seeds[j] * chance / len(SEED_PATTERNS)
        significant = poisson.sf(shared - 1, expected) <= p_threshold
        found.append((i[significant], j[significant], shared[significant]))
    i, j, shared = (np.concatenate([f[k] for f in found]) if found else np.zeros(0, np.int64) for k in range(3))
    fraction = shared / np.maximum(np.minimum(n_seeds[i], n_seeds[j]), 1)
    order = np.lexsort((j, i, -fraction))  # strongest first, deterministic ties
    return i[order], j[order], shared[order], fraction[order]


def _shared_counts(matrix: sparse.csr_matrix, lengths: np.ndarray):
    """Blocks of (i, j, shared seeds) with i < j for every pair sharing a seed held by at most `COMMON_SEED_LIMIT`
    chains, or a common seed of which one of the two is a hub; the count is of those seeds."""
    n_chains = matrix.shape[0]
    holders = np.bincount(matrix.indices, minlength=matrix.shape[1])
    common = holders > COMMON_SEED_LIMIT
    rare = matrix[:, np.flatnonzero(~common)].tocsr() if common.any() else matrix
    rare_t = rare.T.tocsr()
    if common.any():
        # The common seeds' holders: hubs (per seed, the COMMON_SEED_HUBS shortest) and the others.
        held = matrix[:, np.flatnonzero(common)].tocsr()
        hub = _hub_entries(held, lengths)
        held_hub_t, held_other_t = hub.T.tocsr(), (held - hub).T.tocsr()
    for start in range(0, n_chains, _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        block = rare[rows] @ rare_t
        if common.any():  # common seeds held by both, one of them a hub of it (each seed counted once)
            block = block + held[rows] @ held_hub_t + hub[rows] @ held_other_t
        block = block.tocoo()
        i, j = block.row.astype(np.int64) + start, block.col.astype(np.int64)
        keep = j > i
        yield i[keep], j[keep], block.data[keep]


def _hub_entries(held: sparse.csr_matrix, lengths: np.ndarray) -> sparse.csr_matrix:
    """The entries of `held` (chains x common seeds) whose chain is among the `COMMON_SEED_HUBS` shortest holders
    of the seed (ties by chain index)."""
    by_length = np.lexsort((np.arange(len(lengths)), lengths))
    columns = held[by_length].tocsc()  # rows in length order: each column's first entries are its hubs
    columns.sort_indices()
    first = np.minimum(np.diff(columns.indptr), COMMON_SEED_HUBS)
    column = np.repeat(np.arange(held.shape[1]), first)
    position = np.repeat(columns.indptr[:-1], first) + np.arange(len(column)) - np.repeat(np.cumsum(first) - first,
                                                                                         first)
    chain = by_length[columns.indices[position]]
    return sparse.csr_matrix((np.ones(len(chain), held.dtype), (chain, column)), shape=held.shape)
