"""What the encoders see: variable-domain trimming, and whether the head reads the antigen at all.

`variable_domain(chain, kind)` cuts a heavy or light chain after its framework-4 motif (heavy/VHH `WGxG` + 7
residues, light `FGxG` + 6 residues; motif searched at residues 80-140), so that whole Fab chains (variable +
constant domain, common in structure-derived tables) are encoded like the variable domains antibody language
models were trained on. Chains without the motif are kept whole (`ModelConfig.trim_antibody`).

`InputSpec` bundles trimming with whether the head reads the antigen, which is what the cached
(`abag.encoding.pair_embeddings`) and on-the-fly (`AbAgModel.embed`) paths both follow. Everything here is a
pure function of the sequences, so both paths give the same numbers. Imports only the standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "InputSpec",
    "ANTIGEN_FREE_FUSIONS",
    "FV_MOTIFS",
    "variable_domain",
    "trim_antibody_chains",
]

# Fusions whose head never reads the antigen (`abag.model.FUSIONS` lists them all).
ANTIGEN_FREE_FUSIONS = ("antibody_only",)

# (motif, residues kept after the motif's first residue): heavy WGQGTLVTVSS, light FGGGTKLEIK.
FV_MOTIFS = {"heavy": (re.compile(r"WG.G"), 11), "light": (re.compile(r"FG.G"), 10)}
_MOTIF_WINDOW = (80, 140)


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


@dataclass(frozen=True)
class InputSpec:
    """What the model feeds its encoders and head besides the raw chains (from `ModelConfig`).

    trim_antibody: encode heavy/light chains as their variable domains (`variable_domain`).
    uses_antigen: False when the head ignores the antigen (`fusion="antibody_only"`); the antigen is then
    never encoded and the head gets a (rows, 0) antigen table.
    """

    trim_antibody: bool = False
    uses_antigen: bool = True

    @classmethod
    def from_config(cls, config) -> "InputSpec":
        return cls(bool(getattr(config, "trim_antibody", False)),
                   getattr(config, "fusion", "interaction") not in ANTIGEN_FREE_FUSIONS)

    def encoder_input(self, chain: str, kind: str) -> str:
        """The sequence the encoder sees for a heavy/light/antigen chain."""
        if self.trim_antibody and kind in FV_MOTIFS:
            return variable_domain(chain, kind)
        return chain
