"""Train/validation/test splits that keep similar antigens apart.

A random split puts near-identical complexes (the same antigen, often the
same antibody family) on both sides and flatters every metric. abag's default
split therefore clusters antigens by sequence identity and sends whole
clusters to train, validation or test, so that test antigens are unseen.

Similarity definition
---------------------
Two chains ``a`` and ``b`` are *similar* when

    identity(a, b) = identical aligned residues / min(len(a), len(b)) >= identity

where the alignment is a banded local alignment (match +5, mismatch -2, gap
open -10, extend -1; the band is +-32 diagonals around the diagonal on which
the two chains share seeds). Dividing by the *shorter* chain is the CD-HIT
convention: it makes a fragment (a domain cut from a full spike, a peptide of
a protein) 100 % identical to its parent. The default threshold is 40 %
(``DEFAULT_IDENTITY``). Clusters are single-linkage: connected components of
the "similar" graph, so two members of a cluster may be less than 40 %
identical to each other. For leakage control that errs on the safe side.

How pairs are found (``cluster_sequences``)
-------------------------------------------
1. Exact duplicates collapse to one chain (identical sequences always share a
   cluster).
2. Seed prefilter: every chain becomes its set of weight-5 seeds (a contiguous
   5-mer and two spaced patterns, which stay sensitive when substitutions are
   dense). Low-complexity seeds (at most two distinct residues: His tags, GS
   linkers) are ignored. One sparse matrix product counts shared seeds for
   all pairs. A pair is a *candidate* when it shares more seeds than chance
   explains (Poisson model with the data's amino-acid composition, threshold
   chosen so that about ``_CHANCE_CANDIDATES`` random pairs pass per call).
3. Candidates sharing at least half of the shorter chain's seeds are linked
   without alignment: random substitutions leave half the 5-residue seeds
   intact only above ~87 % identity (0.87**5 = 0.5), substrings share all.
4. The remaining candidates are aligned in numpy batches, strongest first,
   skipping pairs already in the same cluster.
5. Union-find over the accepted links gives the clusters.

Honest limits
-------------
* Identity is exact for the alignment it scores, but the alignment is banded
  and local: large insertions (> 32 residues) or domain shuffles make it an
  underestimate, so such pairs may stay apart.
* The seed prefilter is the sensitivity bottleneck near the threshold: a
  40 %-identical pair keeps only ~1 % of its 5-residue seeds, i.e. ~3 shared
  seeds per 100 residues. Long homologues are found reliably; short (< ~80 aa)
  chains at 40-50 % identity are often missed. Exact and near-exact copies,
  point mutants and fragments are found at any length >= 7 aa.
* Chains shorter than the seed span (7 aa) only cluster with exact duplicates.
* Speed (2-core CPU): ~10,000 distinct chains of 50-1,500 aa cluster in
  roughly 10-20 s (see tests/test_splits.py, which prints the time).

Multi-chain antigens (``"A|B"``) are clustered chain by chain; two antigens
are linked when any of their chains are similar (union-find), so a shared
chain (e.g. beta-2-microglobulin in MHC complexes) puts them in one cluster.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.stats import poisson

SPLIT_METHODS = ("antigen", "random", "stratified", "group")
DEFAULT_IDENTITY = 0.4
PARTS = ("train", "val", "test")

_AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
_UNKNOWN = 20  # any residue outside the 20 standard ones; never matches
_OUTSIDE = 21  # padding outside a chain; never matches
_SEED_PATTERNS = ("11111", "1101011", "1011101")
_SEED_WEIGHT = 5
_DIRECT_LINK_FRACTION = 0.5
_CHANCE_CANDIDATES = 1000.0
_MIN_SHARED_SEEDS = 2
_BLOCK_ROWS = 1000

# Alignment scoring. Positive drift down to ~29 % identity keeps a 40 % pair
# aligned end to end; random pairs drift at -1.65 per residue.
_MATCH, _MISMATCH, _GAP_OPEN, _GAP_EXTEND = 5, -1, 10, 1
_BAND_HALF_WIDTH = 32
# Alignment cells carry score * _KEY_SCALE + identities so that one integer
# max picks the best score and, among ties, the path with more identities.
_KEY_SCALE = 1 << 12
_NEG = -(1 << 30)
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


def _encode(sequence: str) -> np.ndarray:
    lookup = np.full(256, _UNKNOWN, dtype=np.uint8)
    lookup[np.frombuffer(_AMINO_ACIDS.encode(), dtype=np.uint8)] = np.arange(20)
    raw = np.frombuffer(sequence.upper().encode("ascii", "replace"), dtype=np.uint8)
    return lookup[raw]


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


@functools.lru_cache(maxsize=1)
def _low_complexity_seeds() -> np.ndarray:
    """True for seed codes with at most two distinct residues (His tags, GS linkers)."""
    codes = np.arange(20**_SEED_WEIGHT)
    digits = [(codes // 20**k) % 20 for k in range(_SEED_WEIGHT)]
    distinct = np.ones(len(codes), dtype=np.int8)
    for k in range(1, _SEED_WEIGHT):
        repeated = np.zeros(len(codes), dtype=bool)
        for earlier in range(k):
            repeated |= digits[k] == digits[earlier]
        distinct += ~repeated
    return distinct <= 2


def _pattern_features(codes: np.ndarray, chain_of: np.ndarray, pattern: str) -> np.ndarray:
    """Seed code of `pattern` starting at every position; -1 where invalid."""
    picks = [i for i, c in enumerate(pattern) if c == "1"]
    span, n = len(pattern), len(codes)
    feature = np.full(n, -1, dtype=np.int64)
    n_windows = n - span + 1
    if n_windows <= 0:
        return feature
    code = np.zeros(n_windows, dtype=np.int64)
    standard = np.ones(n_windows, dtype=bool)
    for p in picks:  # Horner: base-20 number of the picked residues
        residue = codes[p : p + n_windows]
        code = code * 20 + residue
        standard &= residue < 20
    valid = standard & (chain_of[:n_windows] == chain_of[span - 1 :])
    valid[valid] = ~_low_complexity_seeds()[code[valid]]
    feature[:n_windows] = np.where(valid, code, -1)
    return feature


@dataclass
class _Seeds:
    """Seed occurrences of all chains (ordered by chain), and counts per chain."""

    row: np.ndarray  # chain of each occurrence
    feature: np.ndarray  # seed id (pattern k uses ids k*20**5 ...)
    position: np.ndarray  # start of the seed in its chain
    starts: np.ndarray  # occurrences of chain c are starts[c]:starts[c+1]
    n_distinct: np.ndarray  # distinct seeds per chain
    _sorted: dict

    def sorted_seeds(self, chain: int) -> tuple[np.ndarray, np.ndarray]:
        """Distinct seeds of a chain, sorted, with their first positions (cached)."""
        if chain not in self._sorted:
            part = slice(self.starts[chain], self.starts[chain + 1])
            features, first = np.unique(self.feature[part], return_index=True)
            self._sorted[chain] = features, self.position[part][first]
        return self._sorted[chain]


def _collect_seeds(encoded: list[np.ndarray]) -> _Seeds:
    lengths = np.array([len(c) for c in encoded])
    chain_starts = np.concatenate([[0], np.cumsum(lengths)])
    codes = np.concatenate(encoded)
    chain_of = np.repeat(np.arange(len(encoded)), lengths)
    n_codes = 20**_SEED_WEIGHT
    # Column k holds pattern k; row-major flattening keeps occurrences in chain order.
    table = np.stack([_pattern_features(codes, chain_of, p) for p in _SEED_PATTERNS], axis=1)
    table += (np.arange(len(_SEED_PATTERNS)) * n_codes)[None, :] * (table >= 0)
    flat = table.ravel()
    valid = np.flatnonzero(flat >= 0)
    start = valid // len(_SEED_PATTERNS)
    rows, features = chain_of[start], flat[valid]
    positions = start - chain_starts[rows]
    occurrence_starts = np.searchsorted(rows, np.arange(len(encoded) + 1))
    n_distinct = _distinct_per_chain(rows, features, len(encoded))
    return _Seeds(rows, features, positions, occurrence_starts, n_distinct, {})


def _distinct_per_chain(rows: np.ndarray, features: np.ndarray, n_chains: int) -> np.ndarray:
    key = np.unique(rows.astype(np.int64) * (len(_SEED_PATTERNS) * 20**_SEED_WEIGHT) + features)
    return np.bincount(key // (len(_SEED_PATTERNS) * 20**_SEED_WEIGHT), minlength=n_chains)


def _shared_seed_matrix(seeds: _Seeds, n_chains: int) -> sparse.csr_matrix:
    """Chains x seeds presence matrix, restricted to seeds found in >= 2 chains.

    Seeds seen in one chain cannot be shared; dropping them shrinks the matrix
    product several-fold.
    """
    matrix = sparse.csr_matrix(
        (np.ones(len(seeds.row), np.int32), (seeds.row, seeds.feature)),
        shape=(n_chains, len(_SEED_PATTERNS) * 20**_SEED_WEIGHT),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1  # presence, not multiplicity
    in_chains = np.bincount(matrix.indices, minlength=matrix.shape[1])
    return matrix[:, np.flatnonzero(in_chains >= 2)].tocsr()


def _chance_seed_match(encoded: list[np.ndarray]) -> float:
    """Probability that two random seeds are equal, given the composition."""
    codes = np.concatenate(encoded)
    codes = codes[codes < 20]
    if len(codes) == 0:
        return 20.0**-_SEED_WEIGHT
    freq = np.bincount(codes, minlength=20) / len(codes)
    return float(np.sum(freq**2) ** _SEED_WEIGHT)


def _candidate_pairs(seeds: _Seeds, n_chains: int, chance: float):
    """Pairs (i < j) sharing more seeds than chance explains, strongest first."""
    matrix = _shared_seed_matrix(seeds, n_chains)
    n_seeds = seeds.n_distinct.astype(np.float64)
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
    fraction = shared / np.minimum(n_seeds[i], n_seeds[j])
    order = np.lexsort((j, i, -fraction))  # strongest first, deterministic ties
    return i[order], j[order], fraction[order]


def _band_center(seeds: _Seeds, short: int, long: int) -> int:
    """Median diagonal (long position - short position) of shared seeds."""
    short_features, short_positions = seeds.sorted_seeds(short)
    long_features, long_positions = seeds.sorted_seeds(long)
    if len(long_features) == 0:
        return 0
    where = np.minimum(np.searchsorted(long_features, short_features), len(long_features) - 1)
    hit = long_features[where] == short_features
    if not hit.any():
        return 0
    return int(np.median(long_positions[where[hit]] - short_positions[hit]))


def _align_batch(shorts: list[np.ndarray], longs: list[np.ndarray], centers: np.ndarray) -> np.ndarray:
    """Identical residues in the best banded local alignment of each pair.

    Row i of the DP walks the short chain; column t of the band is position
    i + center - w + t of the long chain. Horizontal gaps use the prefix-max
    trick so that each row is a handful of vectorised numpy operations.
    """
    n_pairs, w = len(shorts), _BAND_HALF_WIDTH
    width = 2 * w + 1
    n_rows = max(len(s) for s in shorts)
    long_len = max(len(s) for s in longs)
    short_codes = np.full((n_pairs, n_rows), _OUTSIDE + 1, np.uint8)  # never equals _OUTSIDE
    long_codes = np.full((n_pairs, long_len + 2), _OUTSIDE, np.uint8)  # one pad cell each side
    for p, (s, l) in enumerate(zip(shorts, longs)):
        short_codes[p, : len(s)] = s
        long_codes[p, 1 : len(l) + 1] = l
    band = np.arange(width)
    column0 = centers[:, None] - w + band[None, :] + 1  # +1: the left pad cell
    S = _KEY_SCALE
    match_key, mismatch_key = _MATCH * S + 1, _MISMATCH * S
    open_key, extend_key = _GAP_OPEN * S, _GAP_EXTEND * S
    ramp = extend_key * band
    h_prev = np.zeros((n_pairs, width), np.int32)
    f_prev = np.full((n_pairs, width), _NEG, np.int32)
    best = np.zeros(n_pairs, np.int32)
    neg_column = np.full((n_pairs, 1), _NEG, np.int32)
    for i in range(n_rows):
        columns = np.clip(column0 + i, 0, long_len + 1)
        long_here = np.take_along_axis(long_codes, columns, axis=1)
        short_here = short_codes[:, i : i + 1]
        is_match = (long_here == short_here) & (short_here < 20)
        diagonal = h_prev + np.where(is_match, match_key, mismatch_key).astype(np.int32)
        # Vertical gap: cell (i-1, j) sits one band column to the right.
        vertical = np.maximum(h_prev[:, 1:] - open_key, f_prev[:, 1:] - extend_key)
        vertical = np.concatenate([vertical, neg_column], axis=1)
        no_horizontal = np.maximum(np.maximum(diagonal, vertical), 0)
        running = np.maximum.accumulate(no_horizontal + ramp, axis=1)
        horizontal = np.concatenate([neg_column, running[:, :-1]], axis=1) - open_key - ramp + extend_key
        h_prev = np.maximum(no_horizontal, horizontal)
        f_prev = vertical
        np.maximum(best, h_prev.max(axis=1), out=best)
    return best % S


def _alignment_identity(encoded: list[np.ndarray], seeds: _Seeds, pairs: np.ndarray) -> np.ndarray:
    """Identity (identical aligned residues / shorter length) for each pair."""
    lengths = np.array([len(encoded[a]) for a in pairs[:, 0]]), np.array([len(encoded[b]) for b in pairs[:, 1]])
    swap = lengths[0] > lengths[1]
    short = np.where(swap, pairs[:, 1], pairs[:, 0])
    long = np.where(swap, pairs[:, 0], pairs[:, 1])
    short_len = np.minimum(*lengths)
    identity = np.zeros(len(pairs))
    order = np.argsort(short_len, kind="stable")  # similar lengths share a batch
    for start in range(0, len(order), _ALIGN_BATCH):
        batch = order[start : start + _ALIGN_BATCH]
        centers = np.array([_band_center(seeds, short[p], long[p]) for p in batch])
        identities = _align_batch([encoded[short[p]] for p in batch], [encoded[long[p]] for p in batch], centers)
        identity[batch] = identities / np.maximum(short_len[batch], _MIN_DENOMINATOR)
    return identity


def _pick_round(union: _UnionFind, i: np.ndarray, j: np.ndarray, pending: np.ndarray, per_cluster: int):
    """Pending candidates to align now, and those still pending afterwards.

    Candidates between clusters that are already joined are dropped. A cluster
    takes part in at most `per_cluster` alignments per round, because once it
    is joined most of its other candidates become redundant.
    """
    roots = union.roots()
    ri, rj = roots[i[pending]], roots[j[pending]]
    open_ = ri != rj
    pending, ri, rj = pending[open_], ri[open_], rj[open_]
    used: dict[int, int] = {}
    picked = np.zeros(len(pending), dtype=bool)
    n_picked = 0
    for k, (a, b) in enumerate(zip(ri.tolist(), rj.tolist())):
        if used.get(a, 0) < per_cluster and used.get(b, 0) < per_cluster:
            used[a] = used.get(a, 0) + 1
            used[b] = used.get(b, 0) + 1
            picked[k] = True
            n_picked += 1
            if n_picked >= _ALIGN_CHUNK:
                break
    return pending[picked], pending[~picked]


def _link_by_alignment(encoded, seeds, union, i, j, identity) -> None:
    """Align candidates strongest first and join the pairs that pass."""
    pending = np.arange(len(i))
    per_cluster = 1
    while len(pending):
        now, pending = _pick_round(union, i, j, pending, per_cluster)
        if not len(now):
            break
        pairs = np.stack([i[now], j[now]], axis=1)
        for (a, b), value in zip(pairs, _alignment_identity(encoded, seeds, pairs)):
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
    if sum(len(c) for c in encoded) >= len(_SEED_PATTERNS[-1]):
        seeds = _collect_seeds(encoded)
        i, j, fraction = _candidate_pairs(seeds, len(encoded), _chance_seed_match(encoded))
        direct = fraction >= max(_DIRECT_LINK_FRACTION, identity)
        for a, b in zip(i[direct], j[direct]):
            union.union(a, b)
        _link_by_alignment(encoded, seeds, union, i[~direct], j[~direct], identity)
    return _first_appearance_ids(union.roots()[inverse])


def _first_appearance_ids(labels: np.ndarray) -> np.ndarray:
    """Relabel arbitrary labels to 0..k-1 in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse.ravel()]


def split_chains(antigen: str) -> list[str]:
    """Chains of a possibly multi-chain antigen string ("A|B")."""
    return [chain.strip() for chain in str(antigen).split("|") if chain.strip()]


def cluster_antigens(antigens: Sequence[str], identity: float = DEFAULT_IDENTITY) -> np.ndarray:
    """Cluster id per antigen; multi-chain antigens ("A|B") are handled chain-wise.

    Two antigens are linked when any chain of one is similar to any chain of
    the other; clusters are the connected components (union-find) of that
    graph. Antigens without any chain (empty strings) share one cluster.
    """
    antigens = ["" if a is None or (isinstance(a, float) and np.isnan(a)) else str(a) for a in antigens]
    if not antigens:
        return np.empty(0, dtype=np.int64)
    unique, inverse = np.unique(np.array(antigens, dtype=object), return_inverse=True)
    chains_per_antigen = [split_chains(a) for a in unique]
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
    """Whole groups to parts, greedily filling the part furthest below target."""
    labels, inverse = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inverse.ravel(), minlength=len(labels))
    targets = fractions * len(groups)
    part_of_group = np.full(len(labels), -1)
    filled = np.zeros(3)
    for g in np.random.default_rng(seed).permutation(len(labels)):
        deficit = np.where(fractions > 0, targets - filled, -np.inf)
        part = int(np.argmax(deficit))
        part_of_group[g] = part
        filled[part] += sizes[g]
    _ensure_parts_nonempty(part_of_group, sizes, fractions)
    return np.array(PARTS)[part_of_group[inverse.ravel()]]


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


def _part_summary(assignment: np.ndarray) -> str:
    counts = [int(np.sum(assignment == p)) for p in PARTS]
    total = max(sum(counts), 1)
    shares = "/".join(f"{100 * c / total:.0f}" for c in counts)
    return f"{'/'.join(map(str, counts))} rows ({shares}%) train/val/test"


def _group_summary(assignment: np.ndarray, groups: np.ndarray) -> str:
    per_part = [len(np.unique(groups[assignment == p])) for p in PARTS]
    return f"{len(np.unique(groups))} clusters: {'/'.join(map(str, per_part))} train/val/test"


def _groups_from_column(df: pd.DataFrame, group_column: str | None) -> np.ndarray:
    if group_column is None:
        raise ValueError("method 'group' needs group_column (e.g. group_column='pdb_id')")
    if group_column not in df.columns:
        raise ValueError(f"group column {group_column!r} not in table; available columns: {list(df.columns)}")
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
    quantile bins; leaky), "group" (whole values of `df[group_column]`).
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
    groups = cluster_antigens(df["antigen"].tolist(), identity)
    _require_groups(groups, int(np.sum(parts > 0)), f"antigen clustering at {identity:.0%} identity")
    assignment = _assign_groups(groups, parts, seed)
    description = (
        f"antigen-cluster split ({identity:.0%} identity, {_group_summary(assignment, groups)}; "
        f"{_part_summary(assignment)}; seed {seed})"
    )
    return SplitResult("antigen", assignment, groups, description)


def _group_split(df, parts, seed, group_column) -> SplitResult:
    groups = _groups_from_column(df, group_column)
    _require_groups(groups, int(np.sum(parts > 0)), f"column {group_column!r}")
    assignment = _assign_groups(groups, parts, seed)
    summary = _group_summary(assignment, groups).replace("clusters", "groups")
    description = f"group split by column {group_column!r} ({summary}; {_part_summary(assignment)}; seed {seed})"
    return SplitResult("group", assignment, groups, description)


def _random_split(df, parts, seed) -> SplitResult:
    assignment = np.empty(len(df), dtype="<U5")
    _assign_rows(np.arange(len(df)), parts, np.random.default_rng(seed), assignment)
    description = f"random row split (seed {seed}; {_part_summary(assignment)}; similar antigens on both sides)"
    return SplitResult("random", assignment, None, description)


def _stratified_split(df, parts, seed, n_bins) -> SplitResult:
    strata, bins = _pkd_strata(df["pkd"].to_numpy(dtype=float), n_bins)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(df), dtype="<U5")
    for stratum in np.unique(strata):
        _assign_rows(np.flatnonzero(strata == stratum), parts, rng, assignment)
    description = (
        f"stratified random row split ({bins} pKd quantile bins, seed {seed}; {_part_summary(assignment)}; "
        "similar antigens on both sides)"
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
        groups = cluster_antigens(df["antigen"].tolist(), identity)
    return group_kfold(groups, k, seed)
