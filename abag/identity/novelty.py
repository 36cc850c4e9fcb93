"""How familiar an antigen is to a trained model, and how much the familiar-antigen correction may count.

The familiar-antigen correction (`abag.posthoc.familiar_correction`) weighs its antigen-aware terms by `w`, the
*antigen weight*, from here: the sequence identity of the query antigen to its nearest training antigen, mapped
through a ramp (`antigen_weight_from_identity`):

    identity <= 0.40 (the antigen-split threshold, `abag.identity.clustering.DEFAULT_IDENTITY`)  ->  w = 0
    0.40 .. 0.90                                                                         ->  linear
    identity >= 0.90 (point mutants, close variants, fragments of a training antigen)   ->  w = 1

so an antigen from an unseen cluster gets the network's antibody-only prediction, and a variant of a training
antigen the full antigen-aware one.

Identity is the clustering's: identical residues in the best banded local alignment / max(shorter length,
30) (`abag.identity.banded_alignment`). A multi-chain antigen ("A|B") scores the residue-weighted mean of its chains'
best identities, so a complex whose only familiar chain is a small shared one (beta-2-microglobulin) stays
mostly novel. The search for each query chain's nearest training chain (exact copies, then rare shared
seeds and banded alignment of the best candidates, in bounded time and memory) is `abag.identity.nearest_chains`.

`NoveltyReference` holds the deduplicated training chains and the ramp; `to_state()` is plain data for a
checkpoint, so predicting needs no training table. Imports numpy and abag's `clustering` (the threshold) and
`nearest_chains` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from abag.identity.clustering import DEFAULT_IDENTITY
from abag.identity.nearest_chains import nearest_chain_identity

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


def antigen_chains(antigen: str) -> list[str]:
    """The chains of an antigen string ("A|B"), empty pieces dropped."""
    return [chain for chain in str(antigen).split("|") if chain]


def antigen_weight_from_identity(identity: np.ndarray | float, low: float = NOVELTY_RAMP[0],
                                 high: float = NOVELTY_RAMP[1]) -> np.ndarray:
    """The ramp: 0 at or below `low`, 1 at or above `high`, linear in between."""
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"novelty ramp needs 0 <= low < high <= 1, got low={low}, high={high}")
    return np.clip((np.asarray(identity, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


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
        chains = sorted({c for a in dict.fromkeys(antigens) for c in antigen_chains(a)})  # rows repeat antigens
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
