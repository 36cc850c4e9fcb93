"""Train/validation/test splits that keep similar antigens apart.

A random split puts near-identical complexes (the same antigen, often the
same antibody family) on both sides and flatters every metric. abag's default
split therefore clusters antigens by sequence identity and sends whole
clusters to train, validation or test, so that test antigens are unseen.

Similarity definition
---------------------
Two chains ``a`` and ``b`` are *similar* when

    identity(a, b) = identical residues in their best local alignment
                     / max(min(len(a), len(b)), 30)   >=   identity

The alignment is a banded Smith-Waterman (match +5, mismatch -1, gap open
-10, extend -1) whose band covers the diagonals on which the chains share
seeds, plus 16 residues of drift. Dividing by the *shorter* chain is the
CD-HIT convention: a fragment (an RBD cut from a full spike, a domain of a
multi-domain protein) is 100 % identical to its parent. The floor of 30
residues keeps a short peptide from joining a protein on a chance match of a
few residues (it needs >= 12 identical aligned residues; exact copies of
>= 8 residues still link, see step 3). Default threshold: 40 %
(``DEFAULT_IDENTITY``). Clusters are single-linkage (connected components of
the "similar" graph), so two members of a cluster may be less than 40 %
identical to each other; for leakage control that errs on the safe side.

How pairs are found (``cluster_sequences``)
-------------------------------------------
1. Exact duplicates collapse to one chain (identical sequences always share a
   cluster).
2. Seed prefilter: every chain becomes its set of weight-6 seeds (contiguous
   6-mers and three spaced patterns, which stay sensitive when substitutions
   are dense); seeds starting in a low-complexity stretch (<= 2 residue types
   in 8: His tags, GS linkers) are ignored. One sparse matrix product counts
   shared seeds for all pairs. A pair becomes a *candidate* when it shares
   more seeds than chance explains (Poisson model with the data's amino-acid
   composition; threshold set so that ~1,000 random pairs pass per call).
3. Candidates sharing >= 3 seeds and >= half of the shorter chain's seeds
   are linked without alignment: random substitutions leave half of the
   6-residue seeds intact only above ~89 % identity (0.89**6 = 0.5), and a
   substring shares all of them.
4. The other candidates are aligned (batched numpy DP), strongest first,
   skipping pairs whose clusters were joined meanwhile.
5. Union-find over the accepted links gives the clusters.

Calibration and limits (measured on synthetic pairs; see tests)
---------------------------------------------------------------
* Given the right band, the identity is that of a real alignment: pairs made
  at 30/40/50/70 % identity (random substitutions plus short indels) score
  0.29/0.40/0.50/0.70 on average. Near the threshold, about half of the pairs
  made at exactly 40 % fall on either side.
* The seed prefilter is the sensitivity bottleneck: a 40 %-identical pair keeps
  only 0.4**6 = 0.4 % of its seeds. Pairs at 40 % are found in ~20-50 % of
  cases below 200 aa and always from ~400 aa; at 50 %, from ~100 aa almost
  always. Point mutants, near-identical variants and fragments (>= 8 aa exact,
  >= 50 aa with mutations) are found at any length.
* Pairs sharing seeds only on widely spread diagonals get a band of at most
  +-384; rearranged domains (circular permutations) are underestimated.
* Against exhaustive (unbanded) local alignment of all 160k chain pairs of
  saaintdb_dev.csv, one cross-cluster pair reaches 40 % (0.445, two
  hydrophobic membrane-protein chains).
* Speed (2-core CPU, numpy/scipy only): 10,000 distinct chains of 50-1,500 aa
  in 2,000 families cluster in ~12-16 s CPU time; saaintdb_dev's 565 antigen
  chains take ~0.5 s. Cost grows with the square of the number of *near-
  identical* chains (2,000 point mutants of one 220-aa domain: ~5 s).

Multi-chain antigens (``"A|B"``) are clustered chain by chain; two antigens
are linked when any of their chains are similar (union-find), so a shared
chain (e.g. beta-2-microglobulin in MHC complexes) puts them in one cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.stats import poisson

from .policy import RESIDUE_CODE, UNKNOWN_RESIDUE

SPLIT_METHODS = ("antigen", "random", "stratified", "group")
DEFAULT_IDENTITY = 0.4
PARTS = ("train", "val", "test")

_UNKNOWN = UNKNOWN_RESIDUE  # any residue outside the 20 standard ones; never matches

# Seeds: four weight-6 patterns (contiguous and spaced). Weight 5 was tried
# first: with 10k chains its 3.2M codes are so crowded that most random pairs
# share a seed, and the pair matrix gets too large.
_SEED_PATTERNS = ("111111", "11011011", "1110001011", "1011000111")
_SEED_WEIGHT = 6
_CODES_PER_PATTERN = 20**_SEED_WEIGHT
_HASH_BUCKETS = 1 << 24
_HASH_MULTIPLIER = 2654435761  # Knuth's multiplicative hash
_DIRECT_LINK_FRACTION = 0.5
_MIN_DIRECT_SHARED = 3  # an exact 8-residue match; one shared 6-mer can be chance
_CHANCE_CANDIDATES = 1000.0
_MIN_SHARED_SEEDS = 1
_BLOCK_ROWS = 2000

# Alignment scoring. Positive drift down to ~17 % identity keeps a 40 % pair
# aligned end to end (estimates within ~0.01 of the true identity at 40 %);
# random pairs drift at -0.7 per residue.
_MATCH, _MISMATCH, _GAP_OPEN, _GAP_EXTEND = 5, -1, 10, 1
_BAND_HALF_WIDTHS = (24, 48, 96, 192, 384)
_BAND_MARGIN = 16  # residues of indel drift allowed beyond the seed diagonals
# Alignment cells carry score * _KEY_SCALE + identities so that one integer
# max picks the best score and, among ties, the path with more identities.
_KEY_SCALE = 1 << 14  # identities < 16384; 5 * 16383 * 16384 still fits int32
_NEG = -(1 << 30)
_SHORT_OUTSIDE, _LONG_OUTSIDE = 254, 255  # padding codes that never match
_ALIGN_CHUNK = 4096
_ALIGN_BATCH = 512
# A chain shorter than this is scored as if it had this length, so a short
# peptide needs >= 12 identical residues (a chance 7-residue match is not enough).
_MIN_DENOMINATOR = 30


# --------------------------------------------------------------------------
# Split result
# --------------------------------------------------------------------------


@dataclass
class SplitResult:
    """Which part each row belongs to, and how that was decided."""

    method: str
    assignment: np.ndarray
    groups: np.ndarray | None
    description: str

    def indices(self, part: str) -> np.ndarray:
        """Positional row indices of `part` ("train", "val" or "test")."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; expected one of {PARTS}")
        return np.flatnonzero(self.assignment == part)

    def sizes(self) -> dict[str, int]:
        """Number of rows per part."""
        return {part: int(np.sum(self.assignment == part)) for part in PARTS}


# --------------------------------------------------------------------------
# Sequence clustering
# --------------------------------------------------------------------------


_RESIDUE_CODE = RESIDUE_CODE


def _encode(sequence: str) -> np.ndarray:
    """Residue codes 0-19; anything else becomes _UNKNOWN."""
    return _RESIDUE_CODE[np.frombuffer(sequence.upper().encode("ascii", "replace"), dtype=np.uint8)]


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return int(x)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def join_components(self, a: np.ndarray, b: np.ndarray) -> None:
        """Join many pairs at once (connected components of the pairs plus current sets)."""
        n = len(self.parent)
        current = np.arange(n)
        graph = sparse.coo_matrix(
            (np.ones(len(a) + n), (np.concatenate([a, current]), np.concatenate([b, self.roots()]))), shape=(n, n)
        )
        _, label = connected_components(graph, directed=False)
        first = np.full(label.max() + 1, n)
        np.minimum.at(first, label, current)
        self.parent = first[label]

    def roots(self) -> np.ndarray:
        """Root of every element (vectorised full path compression)."""
        parent = self.parent
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        self.parent = parent
        return parent.copy()


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


def _chain_seeds(encoded: np.ndarray, patterns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
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


def _distinct_sorted(keys: np.ndarray) -> np.ndarray:
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
    bucket = (code * _HASH_MULTIPLIER) & (_HASH_BUCKETS - 1)
    maybe_repeated = np.bincount(bucket, minlength=_HASH_BUCKETS)[bucket] >= 2
    row_bits = max(int(n_chains).bit_length(), 1)
    keys = _distinct_sorted((code[maybe_repeated] << row_bits) | rows[maybe_repeated])
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
    for pattern in _SEED_PATTERNS:
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


def _candidate_pairs(encoded: list[np.ndarray]):
    """Pairs (i < j) sharing more seeds than chance explains, strongest first.

    Returns i, j, the number of shared seeds and their fraction of the
    smaller seed set.
    """
    n_chains = len(encoded)
    matrix, n_distinct = _shared_seed_matrix(encoded)
    n_seeds = n_distinct.astype(np.float64)
    chance = _chance_seed_match(encoded)
    n_pairs = max(n_chains * (n_chains - 1) / 2, 1.0)
    p_threshold = min(1e-2, _CHANCE_CANDIDATES / n_pairs)
    transposed = matrix.T.tocsr()
    found = []
    for start in range(0, n_chains, _BLOCK_ROWS):
        block = (matrix[start : start + _BLOCK_ROWS] @ transposed).tocoo()
        i = block.row + start
        keep = (block.col > i) & (block.data >= _MIN_SHARED_SEEDS)
        i, j, shared = i[keep], block.col[keep], block.data[keep]
        # Only same-pattern seeds can match, hence the division by the pattern count.
        expected = n_seeds[i] * n_seeds[j] * chance / len(_SEED_PATTERNS)
        significant = poisson.sf(shared - 1, expected) <= p_threshold
        found.append((i[significant], j[significant], shared[significant]))
    i, j, shared = (np.concatenate([f[k] for f in found]) for k in range(3))
    fraction = shared / np.maximum(np.minimum(n_seeds[i], n_seeds[j]), 1)
    order = np.lexsort((j, i, -fraction))  # strongest first, deterministic ties
    return i[order], j[order], shared[order], fraction[order]


def _drop_isolated(diagonals: np.ndarray) -> np.ndarray:
    """Sorted diagonals without lone ones (chance seed hits), if any are clustered."""
    gap = np.diff(diagonals)
    near_previous = np.concatenate([[False], gap <= _BAND_MARGIN])
    near_next = np.concatenate([gap <= _BAND_MARGIN, [False]])
    clustered = near_previous | near_next
    return diagonals[clustered] if clustered.any() else diagonals


class _Bands:
    """Alignment bands from the diagonals of shared seeds (per-chain seeds cached)."""

    def __init__(self, encoded: list[np.ndarray]):
        self.encoded = encoded
        self.cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def seeds(self, chain: int, n_patterns: int) -> tuple[np.ndarray, np.ndarray]:
        key = (chain, n_patterns)
        if key not in self.cache:
            self.cache[key] = _chain_seeds(self.encoded[chain], _SEED_PATTERNS[:n_patterns])
        return self.cache[key]

    def band(self, short: int, long: int) -> tuple[int, int]:
        """Band (center diagonal, half-width) covering the diagonals of shared seeds.

        Diagonal = long position - short position. A pair with a large
        insertion or deletion (an engineered core, a loop deleted) shares seeds
        on several diagonals; the band widens to cover them all, in steps of
        _BAND_HALF_WIDTHS so that pairs can be batched. Contiguous seeds alone
        usually suffice and are 4x cheaper; all patterns are the fallback.
        """
        diagonals = self._shared_diagonals(short, long, 1)
        if len(diagonals) < 3:
            diagonals = self._shared_diagonals(short, long, len(_SEED_PATTERNS))
        if not len(diagonals):
            return 0, _BAND_HALF_WIDTHS[0]
        diagonals = _drop_isolated(np.sort(diagonals))
        low, high = diagonals[0], diagonals[-1]
        needed = (high - low) / 2 + _BAND_MARGIN
        fitting = [w for w in _BAND_HALF_WIDTHS if w >= needed]
        return int(round((low + high) / 2)), fitting[0] if fitting else _BAND_HALF_WIDTHS[-1]

    def _shared_diagonals(self, short: int, long: int, n_patterns: int) -> np.ndarray:
        short_features, short_positions = self.seeds(short, n_patterns)
        long_features, long_positions = self.seeds(long, n_patterns)
        if len(long_features) == 0:
            return long_features
        where = np.minimum(np.searchsorted(long_features, short_features), len(long_features) - 1)
        hit = long_features[where] == short_features
        return long_positions[where[hit]] - short_positions[hit]


def _banded_long_codes(longs: list[np.ndarray], centers: np.ndarray, n_rows: int, width: int) -> np.ndarray:
    """long_band[p, i + t] = residue of long chain p in band column t of DP row i."""
    longest = max(len(s) for s in longs)
    padded = np.full((len(longs), longest), _LONG_OUTSIDE, np.uint8)
    for p, chain in enumerate(longs):
        padded[p, : len(chain)] = chain
    index = centers[:, None] - width // 2 + np.arange(n_rows + width)[None, :]
    inside = (index >= 0) & (index < np.array([len(s) for s in longs])[:, None])
    gathered = np.take_along_axis(padded, np.clip(index, 0, longest - 1), axis=1)
    return np.where(inside, gathered, _LONG_OUTSIDE).astype(np.uint8)


def _short_codes(shorts: list[np.ndarray], n_rows: int) -> np.ndarray:
    codes = np.full((len(shorts), n_rows), _SHORT_OUTSIDE, np.uint8)
    for p, chain in enumerate(shorts):
        codes[p, : len(chain)] = np.where(chain < 20, chain, _SHORT_OUTSIDE)  # unknown never matches
    return codes


def _align_batch(shorts: list[np.ndarray], longs: list[np.ndarray], centers: np.ndarray, half_width: int) -> np.ndarray:
    """Identical residues in the best banded local alignment of each pair.

    Row i of the DP walks the short chain; band column t is position
    i + center - w + t of the long chain. Horizontal gaps use the prefix-max
    trick, so a row is a few in-place numpy operations over all pairs.
    """
    width = 2 * half_width + 1
    n_rows = max(len(s) for s in shorts)
    long_band = _banded_long_codes(longs, np.asarray(centers), n_rows, width)
    short_codes = _short_codes(shorts, n_rows)
    i32 = np.int32
    scale = _KEY_SCALE
    match_bonus = i32((_MATCH - _MISMATCH) * scale + 1)  # +1: count the identity
    mismatch, gap_open, gap_extend = i32(_MISMATCH * scale), i32(_GAP_OPEN * scale), i32(_GAP_EXTEND * scale)
    ramp = (gap_extend * np.arange(width)).astype(i32)
    horizontal_offset = (gap_extend - gap_open - ramp[1:]).astype(i32)
    shape = (len(shorts), width)
    h, h_next = np.zeros(shape, i32), np.zeros(shape, i32)
    f, f_next = np.full(shape, _NEG, i32), np.full(shape, _NEG, i32)  # last column stays _NEG
    diagonal, running, scratch = np.empty(shape, i32), np.empty(shape, i32), np.empty(shape, i32)
    horizontal = np.full(shape, _NEG, i32)  # first column stays _NEG
    best = np.zeros(shape, i32)
    for i in range(n_rows):
        is_match = long_band[:, i : i + width] == short_codes[:, i : i + 1]
        np.multiply(is_match, match_bonus, out=diagonal)
        diagonal += h
        diagonal += mismatch
        # Vertical gap: cell (i-1, j) sits one band column to the right.
        np.subtract(h[:, 1:], gap_open, out=scratch[:, 1:])
        np.subtract(f[:, 1:], gap_extend, out=f_next[:, :-1])
        np.maximum(f_next[:, :-1], scratch[:, 1:], out=f_next[:, :-1])
        np.maximum(diagonal, f_next, out=diagonal)
        np.maximum(diagonal, 0, out=diagonal)  # local alignment may start anywhere
        np.add(diagonal, ramp, out=running)
        np.maximum.accumulate(running, axis=1, out=running)
        np.add(running[:, :-1], horizontal_offset, out=horizontal[:, 1:])
        np.maximum(diagonal, horizontal, out=h_next)
        np.maximum(best, h_next, out=best)
        h, h_next, f, f_next = h_next, h, f_next, f
    return best.max(axis=1) % scale


def _alignment_identity(encoded: list[np.ndarray], band_finder: _Bands, pairs: np.ndarray) -> np.ndarray:
    """Identity (identical aligned residues / shorter length, floored) for each pair."""
    lengths = np.array([[len(encoded[a]), len(encoded[b])] for a, b in pairs]).reshape(-1, 2)
    swap = lengths[:, 0] > lengths[:, 1]
    short = np.where(swap, pairs[:, 1], pairs[:, 0])
    long = np.where(swap, pairs[:, 0], pairs[:, 1])
    short_len = lengths.min(axis=1)
    identity = np.zeros(len(pairs))
    bands = np.array([band_finder.band(s, l) for s, l in zip(short, long)]).reshape(-1, 2)
    # Batch pairs of equal band width and similar length.
    order = np.lexsort((short_len, bands[:, 1]))
    for start in range(0, len(order), _ALIGN_BATCH):
        batch = order[start : start + _ALIGN_BATCH]
        for half_width in np.unique(bands[batch, 1]):
            same = batch[bands[batch, 1] == half_width]
            # Chains beyond _KEY_SCALE - 1 residues are cut (identity can only go down).
            shorts = [encoded[short[p]][: _KEY_SCALE - 1] for p in same]
            identities = _align_batch(shorts, [encoded[long[p]] for p in same], bands[same, 0], int(half_width))
            identity[same] = identities / np.maximum(short_len[same], _MIN_DENOMINATOR)
    return identity


def _pick_round(union: _UnionFind, i: np.ndarray, j: np.ndarray, pending: np.ndarray, per_cluster: int):
    """Pending candidates to align now, and those still pending afterwards.

    Candidates between clusters that are already joined are dropped. A cluster
    takes part in at most `per_cluster` alignments per round, because once it
    is joined most of its other candidates become redundant.
    """
    roots = union.roots()
    ri, rj = roots[i[pending]], roots[j[pending]]
    still_apart = ri != rj
    pending, ri, rj = pending[still_apart], ri[still_apart], rj[still_apart]
    used: dict[int, int] = {}
    picked = np.zeros(len(pending), dtype=bool)
    n_picked = 0
    # Bounded scan: past a point every cluster is usually saturated this round.
    for k, (a, b) in enumerate(zip(ri[: 20 * _ALIGN_CHUNK].tolist(), rj[: 20 * _ALIGN_CHUNK].tolist())):
        if used.get(a, 0) < per_cluster and used.get(b, 0) < per_cluster:
            used[a] = used.get(a, 0) + 1
            used[b] = used.get(b, 0) + 1
            picked[k] = True
            n_picked += 1
            if n_picked >= _ALIGN_CHUNK:
                break
    return pending[picked], pending[~picked]


def _link_by_alignment(encoded, union, i, j, identity) -> None:
    """Align candidates strongest first and join the pairs that pass."""
    band_finder = _Bands(encoded)
    pending = np.arange(len(i))
    per_cluster = 1
    while len(pending):
        now, pending = _pick_round(union, i, j, pending, per_cluster)
        if not len(now):
            break
        pairs = np.stack([i[now], j[now]], axis=1)
        for (a, b), value in zip(pairs, _alignment_identity(encoded, band_finder, pairs)):
            if value >= identity:
                union.union(a, b)
        per_cluster *= 2  # hubs with many partners still finish in few rounds


def cluster_sequences(sequences: Sequence[str], identity: float = DEFAULT_IDENTITY, *, seed: int = 0) -> np.ndarray:
    """Cluster id per input sequence; sequences >= `identity` similar share a cluster.

    Similarity is defined in the module docstring. Ids are 0..n_clusters-1 in
    order of first appearance. The result is deterministic; `seed` is accepted
    for API stability and does not change it.
    """
    del seed  # clustering has no random step
    if not 0.0 < identity <= 1.0:
        raise ValueError(f"identity must be in (0, 1], got {identity}")
    sequences = [str(s) for s in sequences]
    if not sequences:
        return np.empty(0, dtype=np.int64)
    unique, inverse = np.unique(np.array(sequences, dtype=object), return_inverse=True)
    encoded = [_encode(s) for s in unique]
    union = _UnionFind(len(unique))
    if len(unique) > 1:
        i, j, shared, fraction = _candidate_pairs(encoded)
        direct = (fraction >= max(_DIRECT_LINK_FRACTION, identity)) & (shared >= _MIN_DIRECT_SHARED)
        union.join_components(i[direct], j[direct])
        _link_by_alignment(encoded, union, i[~direct], j[~direct], identity)
    return _first_appearance_ids(union.roots()[inverse.ravel()])


def _first_appearance_ids(labels: np.ndarray) -> np.ndarray:
    """Relabel arbitrary labels to 0..k-1 in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse.ravel()]


def _split_chains(antigen: str) -> list[str]:
    """Chains of a possibly multi-chain antigen string ("A|B")."""
    return [chain.strip() for chain in str(antigen).split("|") if chain.strip()]


def cluster_antigens(antigens: Sequence[str], identity: float = DEFAULT_IDENTITY) -> np.ndarray:
    """Cluster id per antigen; multi-chain antigens ("A|B") are handled chain-wise.

    Two antigens are linked when any chain of one is similar to any chain of
    the other; clusters are the connected components (union-find) of that
    graph. Antigens without any chain (empty strings) share one cluster.
    """
    antigens = ["" if pd.isna(a) else str(a) for a in antigens]
    if not antigens:
        return np.empty(0, dtype=np.int64)
    unique, inverse = np.unique(np.array(antigens, dtype=object), return_inverse=True)
    chains_per_antigen = [_split_chains(a) for a in unique]
    all_chains = [c for chains in chains_per_antigen for c in chains]
    chain_cluster = cluster_sequences(all_chains, identity) if all_chains else np.empty(0, np.int64)
    # Bipartite graph antigen <-> chain cluster; its components are the antigen clusters.
    antigen_of_chain = np.repeat(np.arange(len(unique)), [len(c) for c in chains_per_antigen])
    n_antigens, n_chain_clusters = len(unique), int(chain_cluster.max(initial=-1)) + 1
    graph = sparse.coo_matrix(
        (np.ones(len(all_chains)), (antigen_of_chain, n_antigens + chain_cluster)),
        shape=(n_antigens + n_chain_clusters,) * 2,
    )
    _, component = connected_components(graph, directed=False)
    return _first_appearance_ids(component[:n_antigens][inverse.ravel()])


# --------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(fractions, dtype=float)
    if values.shape != (3,) or np.any(values < 0) or values.sum() <= 0:
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {fractions}")
    if not np.isclose(values.sum(), 1.0, atol=1e-3):
        raise ValueError(f"fractions must sum to 1, got {fractions} (sum {values.sum():.3f})")
    return values / values.sum()


def _assign_groups(groups: np.ndarray, fractions: np.ndarray, seed: int) -> np.ndarray:
    """Whole groups to parts, approximately at the requested row fractions.

    Groups are placed largest first (seeded order among equal sizes), each to
    a random part among those with room for it (probability proportional to
    the room left), else to the part with the most room. Largest-first keeps a
    dominant cluster (e.g. SARS-CoV-2 spike, half of SAAINT-DB) out of the
    small parts; the random choice makes the seed matter for all other groups.
    """
    labels, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.ravel()
    sizes = np.bincount(inverse, minlength=len(labels))
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(labels))
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    room = np.where(fractions > 0, fractions * len(groups), -np.inf)
    part_of_group = np.empty(len(labels), dtype=int)
    for g in order:
        fits = np.flatnonzero(room >= sizes[g])
        if len(fits):
            part = int(rng.choice(fits, p=room[fits] / room[fits].sum()))
        else:
            part = int(np.argmax(room))
        part_of_group[g] = part
        room[part] -= sizes[g]
    _ensure_parts_nonempty(part_of_group, sizes, fractions)
    return np.array(PARTS)[part_of_group[inverse]]


def _ensure_parts_nonempty(part_of_group: np.ndarray, sizes: np.ndarray, fractions: np.ndarray) -> None:
    """Move the smallest group of the richest part into each empty wanted part."""
    for part in np.flatnonzero(fractions > 0):
        if np.any(part_of_group == part):
            continue
        groups_per_part = np.bincount(part_of_group, minlength=3)
        donor = int(np.argmax(groups_per_part))
        if groups_per_part[donor] < 2:
            return  # too few groups; the caller checked this already
        candidates = np.flatnonzero(part_of_group == donor)
        part_of_group[candidates[np.argmin(sizes[candidates])]] = part


def _fill_counts(n: int, fractions: np.ndarray) -> np.ndarray:
    """Rows per part: largest remainder, at least one per wanted part if possible."""
    raw = fractions * n
    counts = np.floor(raw).astype(int)
    for part in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[part] += 1
    wanted = fractions > 0
    if n >= wanted.sum():
        for part in np.flatnonzero(wanted & (counts == 0)):
            counts[np.argmax(counts)] -= 1
            counts[part] += 1
    return counts


def _assign_rows(rows: np.ndarray, fractions: np.ndarray, rng: np.random.Generator, assignment: np.ndarray) -> None:
    shuffled = rng.permutation(rows)
    bounds = np.cumsum(_fill_counts(len(rows), fractions))[:-1]
    for part, chunk in zip(PARTS, np.split(shuffled, bounds)):
        assignment[chunk] = part


def _pkd_strata(pkd: np.ndarray, n_bins: int) -> tuple[np.ndarray, int]:
    """Quantile bin per row (NaN pKd gets its own stratum), and bins used."""
    labeled = ~np.isnan(pkd)
    strata = np.full(len(pkd), -1)
    # Each bin needs a row for train, val and test; shrink bins for tiny data.
    bins = int(max(1, min(n_bins, labeled.sum() // 3)))
    if labeled.any():
        ranks = pd.Series(pkd[labeled]).rank(method="first").to_numpy()
        strata[labeled] = pd.qcut(ranks, bins, labels=False, duplicates="drop")
    return strata, bins


def _row_summary(assignment: np.ndarray) -> str:
    counts = [int(np.sum(assignment == p)) for p in PARTS]
    shares = "/".join(f"{100 * c / max(sum(counts), 1):.0f}" for c in counts)
    return f"{'/'.join(map(str, counts))} rows = {shares}%"


def _group_summary(assignment: np.ndarray, groups: np.ndarray, noun: str) -> str:
    per_part = [len(np.unique(groups[assignment == p])) for p in PARTS]
    per_part_text = "/".join(map(str, per_part))
    return f"train/val/test = {per_part_text} of {len(np.unique(groups))} {noun}, {_row_summary(assignment)}"


def _require_column(df: pd.DataFrame, column: str, role: str = "column") -> None:
    if column not in df.columns:
        raise ValueError(f"{role} {column!r} not in table; available columns: {list(df.columns)}")


def _groups_from_column(df: pd.DataFrame, group_column: str | None) -> np.ndarray:
    if group_column is None:
        raise ValueError("method 'group' needs group_column (e.g. group_column='pdb_id')")
    _require_column(df, group_column, "group column")
    codes, _ = pd.factorize(df[group_column], use_na_sentinel=True)
    return codes  # missing values share group -1


def _require_groups(groups: np.ndarray, needed: int, what: str) -> None:
    n_groups = len(np.unique(groups))
    if n_groups < needed:
        raise ValueError(
            f"{what} gives only {n_groups} group(s) but {needed} are needed to keep every part separate; "
            "use --split random (leaky: similar antigens on both sides) or --split group with a finer column"
        )


def split_pairs(
    df: pd.DataFrame,
    method: str = "antigen",
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    group_column: str | None = None,
    identity: float = DEFAULT_IDENTITY,
    n_bins: int = 5,
) -> SplitResult:
    """Assign every row (also rows with NaN pKd) to train, val or test.

    method: "antigen" (default; whole antigen clusters per part, unseen test
    antigens), "random" (rows; leaky), "stratified" (rows, random within pKd
    quantile bins; leaky), "group" (whole values of `df[group_column]`;
    missing values form one group). `group_column` is used by "group" only.
    Indices are positional. Deterministic for a given seed.
    """
    if method not in SPLIT_METHODS:
        raise ValueError(f"unknown split method {method!r}; choose one of {SPLIT_METHODS}")
    parts = _check_fractions(fractions)
    if method == "antigen":
        return _antigen_split(df, parts, seed, identity)
    if method == "group":
        return _group_split(df, parts, seed, group_column)
    if method == "random":
        return _random_split(df, parts, seed)
    return _stratified_split(df, parts, seed, n_bins)


def _antigen_split(df, parts, seed, identity) -> SplitResult:
    _require_column(df, "antigen")
    groups = cluster_antigens(df["antigen"].tolist(), identity)
    _require_groups(groups, int(np.sum(parts > 0)), f"antigen clustering at {identity:.0%} identity")
    assignment = _assign_groups(groups, parts, seed)
    summary = _group_summary(assignment, groups, "clusters")
    description = f"antigen-cluster split ({identity:.0%} identity; {summary}; seed {seed})"
    return SplitResult("antigen", assignment, groups, description)


def _group_split(df, parts, seed, group_column) -> SplitResult:
    groups = _groups_from_column(df, group_column)
    _require_groups(groups, int(np.sum(parts > 0)), f"column {group_column!r}")
    assignment = _assign_groups(groups, parts, seed)
    summary = _group_summary(assignment, groups, "groups")
    description = f"group split by column {group_column!r} ({summary}; seed {seed})"
    return SplitResult("group", assignment, groups, description)


def _random_split(df, parts, seed) -> SplitResult:
    assignment = np.empty(len(df), dtype="<U5")
    _assign_rows(np.arange(len(df)), parts, np.random.default_rng(seed), assignment)
    description = (
        f"random row split (train/val/test = {_row_summary(assignment)}; seed {seed}; similar antigens on both sides)"
    )
    return SplitResult("random", assignment, None, description)


def _stratified_split(df, parts, seed, n_bins) -> SplitResult:
    _require_column(df, "pkd")
    strata, bins = _pkd_strata(df["pkd"].to_numpy(dtype=float), n_bins)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(df), dtype="<U5")
    for stratum in np.unique(strata):
        _assign_rows(np.flatnonzero(strata == stratum), parts, rng, assignment)
    description = (
        f"stratified random row split ({bins} pKd quantile bins; train/val/test = {_row_summary(assignment)}; "
        f"seed {seed}; similar antigens on both sides)"
    )
    return SplitResult("stratified", assignment, None, description)


# --------------------------------------------------------------------------
# Cross-validation
# --------------------------------------------------------------------------


def group_kfold(groups: Sequence, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) per fold; every group sits whole in one test fold.

    Groups go largest first (seeded order among equal sizes) to the fold with
    the fewest rows, which balances folds even with one dominant group.
    """
    groups = np.asarray(groups)
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    labels, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.ravel()
    if len(labels) < k:
        raise ValueError(f"only {len(labels)} group(s) for {k} folds; lower k or use a finer grouping")
    sizes = np.bincount(inverse, minlength=len(labels))
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    fold_of_group = np.empty(len(labels), dtype=int)
    fold_rows = np.zeros(k)
    for g in order:
        fold = int(np.argmin(fold_rows))
        fold_of_group[g] = fold
        fold_rows[fold] += sizes[g]
    fold_of_row = fold_of_group[inverse]
    all_rows = np.arange(len(groups))
    return [(all_rows[fold_of_row != f], all_rows[fold_of_row == f]) for f in range(k)]


def cluster_kfold(
    df: pd.DataFrame,
    k: int = 5,
    *,
    seed: int = 0,
    identity: float = DEFAULT_IDENTITY,
    group_column: str | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) per fold, whole antigen clusters (or column groups) per fold."""
    if group_column is not None:
        groups = _groups_from_column(df, group_column)
    else:
        _require_column(df, "antigen")
        groups = cluster_antigens(df["antigen"].tolist(), identity)
    return group_kfold(groups, k, seed)
