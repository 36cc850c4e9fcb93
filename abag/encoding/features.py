"""Sequence features beside the language-model embeddings: variable-domain trimming and k-mer composition.

Two things the head can use besides pooled embeddings (both switched by `ModelConfig` options):

* `variable_domain(chain, kind)` cuts a heavy or light chain after its framework-4 motif (heavy/VHH
  `WGxG` + 7 residues, light `FGxG` + 6 residues; motif searched at residues 80-140), so that whole Fab
  chains (variable + constant domain, common in structure-derived tables) are encoded like the variable
  domains antibody language models were trained on. Chains without the motif are kept whole.
* `composition_features(heavy, light, antigen, ks)` are per-chain k-mer compositions plus a
  light-chain flag and log chain lengths (the inputs of the k-mer ridge baseline), scaled by fixed
  constants so that no data statistics are needed: a k-mer frequency f becomes
  `sqrt(f * 20**k) - 1` (variance-stabilised, about zero-mean for natural proteins).

`InputSpec` bundles these options with whether the head reads the antigen at all, which is what the
cached (`abag.pair_embeddings`) and on-the-fly (`AbAgModel.embed`) paths both follow.

Everything here is a pure function of the sequences, so cached and on-the-fly paths give the same numbers.
Imports numpy and `abag.baselines` (k-mer counting) only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from abag.encoding.kmers import kmer_composition

__all__ = [
    "InputSpec",
    "ANTIGEN_FREE_FUSIONS",
    "FV_MOTIFS",
    "variable_domain",
    "trim_antibody_chains",
    "composition_dim",
    "composition_features",
]

# Fusions whose head never reads the antigen (`abag.model.FUSIONS` lists them all).
ANTIGEN_FREE_FUSIONS = ("antibody_only",)

# (motif, residues kept after the motif's first residue): heavy WGQGTLVTVSS, light FGGGTKLEIK.
FV_MOTIFS = {"heavy": (re.compile(r"WG.G"), 11), "light": (re.compile(r"FG.G"), 10)}
_MOTIF_WINDOW = (80, 140)
N_SCALARS = 4  # light-chain flag, log1p residues of heavy, light, antigen


def variable_domain(chain: str, kind: str) -> str:
    """The variable domain of a heavy ("heavy", also VHH) or light ("light") chain.

    Cut after the first framework-4 motif that starts within residues 80-140; chains with no motif
    there (already short, unusual constructs) are returned unchanged. "" stays "".
    """
    if kind not in FV_MOTIFS:
        raise ValueError(f"kind must be 'heavy' or 'light', got {kind!r}")
    if not chain:
        return chain
    motif, keep = FV_MOTIFS[kind]
    lo, hi = _MOTIF_WINDOW
    match = motif.search(chain, lo, hi + len("WGxG"))
    if match is None or match.start() > hi:
        return chain
    return chain[: match.start() + keep]


def trim_antibody_chains(heavy: Sequence[str], light: Sequence[str]) -> tuple[list[str], list[str]]:
    """`variable_domain` applied to lists of heavy and light chains."""
    return [variable_domain(h, "heavy") for h in heavy], [variable_domain(c, "light") for c in light]


def composition_dim(ks: Sequence[int]) -> int:
    """Width of `composition_features(..., ks)`."""
    return 3 * sum(20**k for k in ks) + N_SCALARS


def _scaled_composition(sequences: Sequence[str], k: int) -> np.ndarray:
    freqs = kmer_composition(list(sequences), k)
    scaled = np.sqrt(freqs * 20**k) - 1.0
    empty = freqs.sum(axis=1) == 0
    scaled[empty] = 0.0  # a missing chain (no light chain) reads as "average", its flag says it is missing
    return scaled


def composition_features(heavy: Sequence[str], light: Sequence[str], antigen: Sequence[str],
                         ks: Sequence[int] = (1, 2)) -> np.ndarray:
    """(n, composition_dim(ks)) float32: [heavy | light | antigen] scaled k-mer compositions for each k,
    then light-present flag and log1p(residues)/5 of heavy, light and antigen (antigen chains joined
    by '|' count together)."""
    if not ks:
        return np.zeros((len(heavy), N_SCALARS), dtype=np.float32)[:, :0]
    blocks = []
    for chains in (heavy, light, antigen):
        blocks.extend(_scaled_composition(chains, k) for k in ks)
    lengths = np.array([[len(h), len(l_), len(a.replace("|", ""))] for h, l_, a in zip(heavy, light, antigen)],
                       dtype=np.float64).reshape(len(heavy), 3)
    light_present = (lengths[:, 1:2] > 0).astype(np.float64)
    blocks += [light_present, np.log1p(lengths) / 5.0]
    return np.hstack(blocks).astype(np.float32)


def chain_feature_dim(composition_k: int) -> int:
    """Per-chain feature width for k-mers 1..composition_k plus one log-length column (0 when off)."""
    return sum(20**k for k in range(1, composition_k + 1)) + 1 if composition_k > 0 else 0


def chain_features(chains: Sequence[str], composition_k: int) -> np.ndarray:
    """(n, chain_feature_dim) float32 per single chain: scaled k-mer compositions (k = 1..composition_k)
    and log1p(length)/5. An empty chain gives zeros."""
    if composition_k <= 0:
        return np.zeros((len(chains), 0), dtype=np.float32)
    blocks = [_scaled_composition(chains, k) for k in range(1, composition_k + 1)]
    blocks.append(np.log1p(np.array([len(c) for c in chains], dtype=np.float64)).reshape(-1, 1) / 5.0)
    return np.hstack(blocks).astype(np.float32)


@dataclass(frozen=True)
class InputSpec:
    """What the model feeds its encoders and head besides the raw chains (from `ModelConfig`).

    trim_antibody: encode heavy/light chains as their variable domains (`variable_domain`).
    composition_k: append `chain_features(chain, composition_k)` to every chain's pooled embedding
    (antigen chains are then combined residue-weighted, like the embeddings).
    uses_antigen: False when the head ignores the antigen (`fusion="antibody_only"`); the antigen is then
    never encoded and the head gets a (rows, 0) antigen table.
    """

    trim_antibody: bool = False
    composition_k: int = 0
    uses_antigen: bool = True

    @classmethod
    def from_config(cls, config) -> "InputSpec":
        return cls(bool(getattr(config, "trim_antibody", False)), int(getattr(config, "composition_k", 0) or 0),
                   getattr(config, "fusion", "interaction") not in ANTIGEN_FREE_FUSIONS)

    @property
    def feature_dim(self) -> int:
        return chain_feature_dim(self.composition_k)

    def encoder_input(self, chain: str, kind: str) -> str:
        """The sequence the encoder sees for a heavy/light/antigen chain."""
        if self.trim_antibody and kind in FV_MOTIFS:
            return variable_domain(chain, kind)
        return chain

    def features(self, chains: Sequence[str]) -> np.ndarray:
        return chain_features(chains, self.composition_k)
