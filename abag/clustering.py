"""Sequence-identity clustering of antigens: which antigens count as "the same" for a leak-free split.

`cluster_antigens` gives every antigen a cluster id; `abag.splits` sends whole clusters to train,
validation or test, and `abag.crossval` to cross-validation folds. The seed prefilter lives in
`abag.seed_search` and the banded alignment in `abag.banded_alignment`; this module turns their
candidates and identities into clusters (union-find). Imports numpy, scipy, pandas and those two
modules only.

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
2. Seed prefilter (`abag.seed_search`): every chain becomes its set of weight-6 seeds (contiguous
   6-mers and three spaced patterns, which stay sensitive when substitutions
   are dense); seeds starting in a low-complexity stretch (<= 2 residue types
   in 8: His tags, GS linkers) are ignored. One sparse matrix product counts
   shared seeds for all pairs. A pair becomes a *candidate* when it shares
   more seeds than chance explains (Poisson model with the data's amino-acid
   composition; threshold set so that ~1,000 random pairs pass per call).
   A seed held by more than `seed_search.COMMON_SEED_LIMIT` (256) chains (a
   domain thousands of antigens share: an Fc, a tag, a carrier protein) does
   not pair all its holders, only each holder with the seed's 8 shortest
   holders (its hubs; `seed_search.COMMON_SEED_HUBS`), so a family costs pairs
   in proportion to its size, not its square.
3. Candidates sharing >= 3 seeds and >= half of the shorter chain's seeds
   are linked without alignment: random substitutions leave half of the
   6-residue seeds intact only above ~89 % identity (0.89**6 = 0.5), and a
   substring shares all of them.
4. The other candidates are aligned (`abag.banded_alignment`: batched numpy
   DP), strongest first, skipping pairs whose clusters were joined meanwhile.
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
  chains take ~0.5 s. Chains sharing a domain compare pairs in proportion to
  their number (bench/bench_scale.py --fc-fusions; the same clusters as
  pairing every holder on SAAINT-DB, SKEMPI and AlphaSeq antigens, also with
  the limit lowered to 8). Single linkage needs only connectivity: a member
  linked to another through the shared domain is linked to the domain's
  shortest holder too (identity divides by the shorter chain), and near-
  identical members all are. Not kept: a combinatorial variant library that
  is connected only through chains of close neighbours at a high threshold
  (6,000 Phillips CR9114/CR6261 heavy chains at 0.97: 2 clusters when every
  holder is paired, 2,721 with hubs; 0.4-0.9 unchanged).
* Scaling (antigens of 100-600 aa in families of 10, CPU time / peak memory
  above the input): 5k 3.2 s / 0.27 GB, 10k 6.1 s / 0.43 GB, 20k 10.1 s /
  0.73 GB, 40k 21.7 s / 1.45 GB. Memory is linear in residues (seed arrays).
  One term is quadratic: pairs sharing a single chance seed all pass through
  the sparse product (1.5M pairs at 20k, 5.9M at 40k; 1.1 s and 3.5 s), so
  beyond ~100k chains it dominates.

Multi-chain antigens (``"A|B"``) are clustered chain by chain; two antigens
are linked when any of their chains are similar (union-find), so a shared
chain (e.g. beta-2-microglobulin in MHC complexes) puts them in one cluster.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from .banded_alignment import SeedBands, alignment_identity
from .seed_search import candidate_pairs, encode_chain

__all__ = ["DEFAULT_IDENTITY", "cluster_sequences", "cluster_antigens", "split_antigen_chains"]

DEFAULT_IDENTITY = 0.4
_DIRECT_LINK_FRACTION = 0.5
_MIN_DIRECT_SHARED = 3  # an exact 8-residue match; one shared 6-mer can be chance
_ALIGN_CHUNK = 4096


class _UnionFind:
    """Disjoint sets of chains: joined one link at a time, or many pairs at once."""

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
    band_finder = SeedBands(encoded)
    pending = np.arange(len(i))
    per_cluster = 1
    while len(pending):
        now, pending = _pick_round(union, i, j, pending, per_cluster)
        if not len(now):
            break
        pairs = np.stack([i[now], j[now]], axis=1)
        for (a, b), value in zip(pairs, alignment_identity(encoded, band_finder, pairs)):
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
    encoded = [encode_chain(s) for s in unique]
    union = _UnionFind(len(unique))
    if len(unique) > 1:
        i, j, shared, fraction = candidate_pairs(encoded)
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


def split_antigen_chains(antigen: str) -> list[str]:
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
    chains_per_antigen = [split_antigen_chains(a) for a in unique]
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
