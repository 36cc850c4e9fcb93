"""Sequence-identity clustering of antigens: which antigens count as "the same" for a leak-free split.

Two chains are similar when their banded local alignment (`abag.identity.banded_alignment`) has identical
residues ≥ `DEFAULT_IDENTITY` (40 %) of max(the shorter length, 30): the CD-HIT convention, so a fragment (an RBD
of a spike) is identical to its parent. Candidate pairs come from shared seeds (`abag.identity.seed_search`);
near-identical candidates link without alignment, the rest are aligned strongest first; union-find gives
single-linkage clusters. A multi-chain antigen ("A|B") links to another when any of their chains are similar.
Sensitivity, limits and speed are measured in the tests and bench/RESULTS.md.
A seed held by more than `COMMON_SEED_LIMIT` chains (a domain thousands of antigens share: an Fc, a tag, a
carrier protein) pairs each holder only with the seed's few shortest holders, so a family costs pairs in
proportion to its size, not its square.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from abag.identity.banded_alignment import SeedBands, alignment_identity
from abag.identity.seed_search import candidate_pairs, encode_chain

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
