"""What the encoders see: variable-domain trimming, and whether the head reads the antigen at all.

Heavy and light chains are cut to their variable domains before encoding (`ModelConfig.trim_antibody`), so that
whole Fab chains (variable + constant domain, common in structure-derived tables) are encoded like the variable
domains antibody language models were trained on:

* "imgt" (the default): the domain IMGT numbering finds (`abag.numbering.variable_domains`: leading tags and
  everything after framework 4 are cut); a chain the numbering cannot read is encoded whole, and reading the table
  with chain checks (the default of `abag train` and `predict`) names those rows first;
* "motif": cut after the framework-4 motif (`variable_domain`: heavy/VHH `WGxG` + 7 residues, light `FGxG` + 6,
  motif searched at residues 80-140; no motif there: kept whole), the rule of models trained before numbering;
* "none": whole chains (v2.7).

`InputSpec` bundles trimming with whether the head reads the antigen, which is what the cached
(`abag.encoding.pair_embeddings`) and on-the-fly (`AbAgModel.embed`) paths both follow. Both are functions of the
sequences alone, so both paths give the same numbers. Imports the standard library and `abag.numbering`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from abag.numbering.disk_cache import NumberingDiskCache
from abag.numbering.domains import variable_domains

__all__ = [
    "InputSpec",
    "TRIMS",
    "ANTIGEN_FREE_FUSIONS",
    "FV_MOTIFS",
    "variable_domain",
    "trim_antibody_chains",
]

# Fusions whose head never reads the antigen (`abag.model.FUSIONS` lists them all).
ANTIGEN_FREE_FUSIONS = ("antibody_only",)

TRIMS = ("imgt", "motif", "none")
"""`ModelConfig.trim_antibody` values: IMGT numbering's domain, the framework-4 motif rule, or whole chains."""

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
    """`variable_domain` applied to lists of heavy and light chains (each distinct chain cut once)."""
    heavy_domains = {h: variable_domain(h, "heavy") for h in dict.fromkeys(heavy)}
    light_domains = {c: variable_domain(c, "light") for c in dict.fromkeys(light)}
    return [heavy_domains[h] for h in heavy], [light_domains[c] for c in light]


def legacy_trim(value: object) -> str:
    """A saved `trim_antibody` as today's value: True (the motif rule before numbering) -> "motif", False ->
    "none"; strings unchanged."""
    if isinstance(value, bool):
        return "motif" if value else "none"
    return str(value)


@dataclass(frozen=True)
class InputSpec:
    """What the model feeds its encoders and head besides the raw chains (from `ModelConfig`).

    trim_antibody: "imgt", "motif" or "none" (`TRIMS`; see the module docstring).
    uses_antigen: False when the head ignores the antigen (`fusion="antibody_only"`); the antigen is then
    never encoded and the head gets a (rows, 0) antigen table.
    numbering_cache: where "imgt" keeps numbered chains between runs (None: this process only).
    """

    trim_antibody: str = "none"
    uses_antigen: bool = True
    numbering_cache: NumberingDiskCache | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trim_antibody", legacy_trim(self.trim_antibody))
        if self.trim_antibody not in TRIMS:
            raise ValueError(f"trim_antibody must be one of {TRIMS}, got {self.trim_antibody!r}")

    @classmethod
    def from_config(cls, config, numbering_cache: NumberingDiskCache | None = None) -> "InputSpec":
        return cls(getattr(config, "trim_antibody", "none"),
                   getattr(config, "fusion", "interaction") not in ANTIGEN_FREE_FUSIONS, numbering_cache)

    def encoder_inputs(self, chains: Sequence[str], kind: str) -> list[str]:
        """The sequences the encoder sees for heavy/light/antigen chains of one kind ("" stays "")."""
        if kind not in FV_MOTIFS or self.trim_antibody == "none":
            return list(chains)
        if self.trim_antibody == "motif":
            return [variable_domain(c, kind) if c else c for c in chains]
        return variable_domains(chains, kind, disk_cache=self.numbering_cache)

    def encoder_input(self, chain: str, kind: str) -> str:
        """The sequence the encoder sees for one heavy/light/antigen chain."""
        return self.encoder_inputs([chain], kind)[0]
