"""How familiar an antigen is to a trained model, and how much the additive head may trust its antigen terms.

The additive head (`ModelConfig(fusion="additive")`) predicts μ + a(antibody) + w·(g(antigen) + i(antibody,
antigen)). `w`, the *antigen weight*, comes from here: the sequence identity of the query antigen to its
nearest training antigen, mapped through a ramp (`antigen_weight_from_identity`):

    identity <= 0.40 (the antigen-split threshold, `abag.clustering.DEFAULT_IDENTITY`)  ->  w = 0
    0.40 .. 0.90                                                                         ->  linear
    identity >= 0.90 (point mutants, close variants, fragments of a training antigen)   ->  w = 1

so an antigen from an unseen cluster gets the antibody-only prediction, whose quality branch dropout
protects during training, and a variant of a training antigen gets the full antigen-aware one.

Identity is the clustering's: identical residues in the best banded local alignment / max(shorter length,
30) (`abag.banded_alignment`). A multi-chain antigen ("A|B") scores the residue-weighted mean of its chains'
best identities, so a complex whose only familiar chain is a small shared one (beta-2-microglobulin) stays
mostly novel. Search per query chain: exact copies score 1 without alignment; the rest share seeds with
the training chains (`abag.seed_search.chain_seeds`: weight-6 spaced seeds, low-complexity stretches
ignored), one sparse product counts shared seeds, and the `_CANDIDATES` best training chains by shared
fraction are aligned. Limits: chains too short for a seed (< 10 residues) are found only as exact copies,
and a pair sharing no seed (below about 40 % identity for chains under 200 residues) scores 0, which the
ramp maps to 0 anyway.

`NoveltyReference` holds the deduplicated training chains and the ramp; `to_state()` is plain data for a
checkpoint, so predicting needs no training table. Imports numpy, scipy and abag's clustering modules
(`seed_search`, `banded_alignment`, `clustering`) only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import sparse

from .banded_alignment import SeedBands, alignment_identity
from .clustering import DEFAULT_IDENTITY
from .seed_search import SEED_PATTERNS, chain_seeds, encode_chain

__all__ = [
    "NOVELTY_RAMP",
    "NoveltyReference",
    "antigen_chains",
    "antigen_weight_from_identity",
    "nearest_chain_identity",
    "nearest_identity",
]

NOVELTY_RAMP: tuple[float, float] = (DEFAULT_IDENTITY, 0.9)
"""(identity with weight 0, identity with weight 1): the split threshold, and point-mutant level."""

STATE_VERSION = 1
_CANDIDATES = 4          # training chains aligned per query chain (the best by shared-seed fraction)
_SURE_FRACTION = 0.5     # >= half the shorter chain's seeds shared: only the best candidate is aligned
_BLOCK_QUERIES = 2000    # query chains per sparse product (bounds memory)


def antigen_chains(antigen: str) -> list[str]:
    """The chains of an antigen string ("A|B"), empty pieces dropped."""
    return [chain for chain in str(antigen).split("|") if chain]


def antigen_weight_from_identity(identity: np.ndarray | float, low: float = NOVELTY_RAMP[0],
                                 high: float = NOVELTY_RAMP[1]) -> np.ndarray:
    """The ramp: 0 at or below `low`, 1 at or above `high`, linear in between."""
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"novelty ramp needs 0 <= low < high <= 1, got low={low}, high={high}")
    return np.clip((np.asarray(identity, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique's hash path is slow on many small int64 arrays)."""
    values = np.sort(values)
    return values[np.concatenate([[True], values[1:] != values[:-1]])] if len(values) else values


def _seed_sets(encoded: list[np.ndarray]) -> list[np.ndarray]:
    """Distinct seed ids (all patterns) of every chain, sorted."""
    return [_distinct(chain_seeds(codes, SEED_PATTERNS)[0]) for codes in encoded]


def _presence(seed_sets: list[np.ndarray], columns: np.ndarray) -> sparse.csr_matrix:
    """Chains x `columns` (sorted seed ids) 0/1 matrix; seeds outside `columns` are left out."""
    rows = np.repeat(np.arange(len(seed_sets)), [len(s) for s in seed_sets])
    seeds = np.concatenate(seed_sets) if seed_sets else np.zeros(0, np.int64)
    where = np.searchsorted(columns, seeds)
    inside = where < len(columns)
    inside[inside] = columns[where[inside]] == seeds[inside]
    return sparse.csr_matrix((np.ones(int(inside.sum()), np.int32), (rows[inside], where[inside])),
                             shape=(len(seed_sets), max(len(columns), 1)))


def _top_candidates(shared: sparse.coo_matrix, query_seeds: np.ndarray, reference_seeds: np.ndarray):
    """(query, reference) pairs to align: per query the `_CANDIDATES` best references by shared fraction."""
    q, r, count = shared.row, shared.col, shared.data.astype(np.float64)
    fraction = count / np.maximum(np.minimum(query_seeds[q], reference_seeds[r]), 1)
    order = np.lexsort((r, -count, -fraction, q))
    q, r, fraction = q[order], r[order], fraction[order]
    first = np.searchsorted(q, q)  # index of each query's best candidate (q is sorted)
    rank = np.arange(len(q)) - first
    keep = (rank < _CANDIDATES) & ~((rank > 0) & (fraction[first] >= _SURE_FRACTION))
    return q[keep], r[keep]


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


def _aligned_identity(references: list[str], queries: list[str]) -> np.ndarray:
    """Best aligned identity of each query chain among its seed-sharing reference chains."""
    encoded = [encode_chain(c) for c in references] + [encode_chain(c) for c in queries]
    seeds = _seed_sets(encoded)
    n_ref = len(references)
    reference_seeds, query_seeds = seeds[:n_ref], seeds[n_ref:]
    columns = np.intersect1d(_distinct(np.concatenate(reference_seeds)), _distinct(np.concatenate(query_seeds)),
                             assume_unique=True)
    best = np.zeros(len(queries))
    if not len(columns):
        return best
    reference_matrix = _presence(reference_seeds, columns).T.tocsr()
    n_reference_seeds = np.array([len(s) for s in reference_seeds], dtype=np.float64)
    n_query_seeds = np.array([len(s) for s in query_seeds], dtype=np.float64)
    bands = SeedBands(encoded)
    for start in range(0, len(queries), _BLOCK_QUERIES):
        block = slice(start, start + _BLOCK_QUERIES)
        shared = (_presence(query_seeds[block], columns) @ reference_matrix).tocoo()
        q, r = _top_candidates(shared, n_query_seeds[block], n_reference_seeds)
        if not len(q):
            continue
        identity = alignment_identity(encoded, bands, np.stack([n_ref + start + q, r], axis=1))
        np.maximum.at(best, start + q, identity)
    return best


def nearest_identity(training_antigens: Sequence[str], query_antigens: Sequence[str]) -> np.ndarray:
    """Per query antigen, its identity to the nearest training antigen (chain-wise, residue-weighted)."""
    reference = [c for a in dict.fromkeys(training_antigens) for c in antigen_chains(a)]
    return _antigen_identity(reference, query_antigens)


def _antigen_identity(reference_chains: Sequence[str], query_antigens: Sequence[str]) -> np.ndarray:
    queries = [str(a) for a in query_antigens]
    unique = list(dict.fromkeys(queries))
    chains_of = [antigen_chains(a) for a in unique]
    flat = [c for chains in chains_of for c in chains]
    chain_identity = dict(zip(flat, nearest_chain_identity(reference_chains, flat)))
    per_antigen = {}
    for antigen, chains in zip(unique, chains_of):
        lengths = np.array([len(c) for c in chains], dtype=np.float64)
        values = np.array([chain_identity[c] for c in chains])
        per_antigen[antigen] = float(values @ lengths / lengths.sum()) if len(chains) else 0.0
    return np.array([per_antigen[a] for a in queries], dtype=np.float64)


@dataclass
class NoveltyReference:
    """The training antigens a model has seen (deduplicated chains) and the identity → weight ramp."""

    chains: tuple[str, ...]
    low: float = NOVELTY_RAMP[0]
    high: float = NOVELTY_RAMP[1]
    _memo: dict[str, float] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.chains = tuple(self.chains)
        antigen_weight_from_identity(0.0, self.low, self.high)  # validates the ramp

    @classmethod
    def from_antigens(cls, antigens: Sequence[str], low: float = NOVELTY_RAMP[0],
                      high: float = NOVELTY_RAMP[1]) -> "NoveltyReference":
        """The reference for a model trained on `antigens` (the training rows' antigen column)."""
        chains = sorted({c for a in antigens for c in antigen_chains(a)})
        return cls(tuple(chains), low, high)

    def identity(self, antigens: Sequence[str]) -> np.ndarray:
        """Identity of each antigen to the nearest training antigen (memoised per distinct antigen)."""
        antigens = [str(a) for a in antigens]
        new = [a for a in dict.fromkeys(antigens) if a not in self._memo]
        if new:
            self._memo.update(zip(new, _antigen_identity(self.chains, new)))
        return np.array([self._memo[a] for a in antigens], dtype=np.float64)

    def weights(self, antigens: Sequence[str]) -> np.ndarray:
        """The antigen weight (float32, in [0, 1]) of each antigen: `identity` through the ramp."""
        return antigen_weight_from_identity(self.identity(antigens), self.low, self.high).astype(np.float32)

    def to_state(self) -> dict[str, Any]:
        """Plain data for a checkpoint (loads with `torch.load(weights_only=True)`)."""
        return {"version": STATE_VERSION, "chains": list(self.chains), "low": float(self.low),
                "high": float(self.high)}

    @classmethod
    def from_state(cls, state: Any) -> "NoveltyReference":
        """Inverse of `to_state`; a malformed entry raises ValueError saying what is wrong."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"'novelty' is not a version-{STATE_VERSION} novelty reference")
        chains = state.get("chains")
        if not isinstance(chains, list) or not all(isinstance(c, str) and c for c in chains):
            raise ValueError("'novelty' chains are not a list of sequences")
        try:
            return cls(tuple(chains), float(state["low"]), float(state["high"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"'novelty' ramp is unusable ({exc})") from None
