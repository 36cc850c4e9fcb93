"""One chain numbered in IMGT: its variable domains (`Domain`), or why it could not be numbered (`NumberedChain`).

The numbering comes from `anarcism` (an ANARCI-compatible IMGT numbering library; see bench/numbering_choice.md
for why this one). A chain can hold several domains: an scFv (VH + linker + VL) comes back with two, never cut to
the first. A sequence the library cannot read comes back with `failure` set to the reason, never as a guess.

`SPECIES` restricts the germline models the library may align to. ANARCI's own default is human and mouse; with
every species anarcism's rhesus kappa model wins some human light chains by a bit and shifts their CDR1 by one
residue, so abag keeps ANARCI's default. Other species' antibodies still number (frameworks are conserved).

May import: anarcism (on first use), abag.errors, abag.numbering.imgt.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from abag.errors import AbagError
from abag.numbering.imgt import CDR_NAMES, REGION_NAMES, position_label, region_of

__all__ = ["SPECIES", "CHAIN_TYPES", "CHAIN_NAMES", "Domain", "NumberedChain", "NumberingUnavailableError",
           "number_chain", "numbering_library", "library_version", "sequence_problem"]

SPECIES: tuple[str, ...] = ("human", "mouse")
CHAIN_TYPES: tuple[str, ...] = ("H", "K", "L")
CHAIN_NAMES = {"H": "heavy", "K": "kappa light", "L": "lambda light"}
_RESIDUE_LETTERS = frozenset("ACDEFGHIKLMNPQRSTVWYX")  # what the library reads (X: any residue)


class NumberingUnavailableError(AbagError):
    """The numbering library (`anarcism`) is not installed or cannot start."""

    exit_code = 2


def numbering_library() -> ModuleType:
    """The `anarcism` module, imported on first use; NumberingUnavailableError when it is missing."""
    try:
        return importlib.import_module("anarcism")
    except ImportError as error:
        raise NumberingUnavailableError(
            f"antibody numbering needs the 'anarcism' package (pip install anarcism): {error}") from error


def library_version() -> str:
    """'anarcism <version>': part of every on-disk cache key, so an upgrade renumbers."""
    return f"anarcism {numbering_library().__version__}"


@dataclass(frozen=True)
class Domain:
    """One variable domain: chain type (H, K, L), its span `sequence[start:end]` and its IMGT positions.

    `numbers` holds the IMGT position number of each residue of `residues` (one byte each); `insertions` lists
    (offset in `residues`, insertion code) for the few residues that have one.
    """

    chain_type: str
    start: int
    end: int
    residues: str
    numbers: bytes
    insertions: tuple[tuple[int, str], ...] = ()

    def positions(self) -> list[tuple[int, str, str]]:
        """(IMGT position number, insertion code or '', residue) for each residue, in sequence order."""
        codes = dict(self.insertions)
        return [(n, codes.get(i, ""), aa) for i, (n, aa) in enumerate(zip(self.numbers, self.residues))]

    def labels(self) -> list[str]:
        """Each residue's IMGT position as written ('111A')."""
        return [position_label(n, code) for n, code, _ in self.positions()]

    def regions(self) -> list[str]:
        """Each residue's IMGT region (FR1, CDR1, FR2, CDR2, FR3, CDR3, FR4)."""
        return [region_of(n) for n in self.numbers]

    def region_sequences(self) -> dict[str, str]:
        """The residues of each IMGT region, all seven in domain order ('' where the domain lacks one)."""
        parts: dict[str, list[str]] = {name: [] for name in REGION_NAMES}
        for region, residue in zip(self.regions(), self.residues):
            parts[region].append(residue)
        return {name: "".join(chars) for name, chars in parts.items()}

    def cdrs(self) -> dict[str, str]:
        """CDR1, CDR2 and CDR3 residues (IMGT definition)."""
        regions = self.region_sequences()
        return {name: regions[name] for name in CDR_NAMES}

    @property
    def is_heavy(self) -> bool:
        """True for a heavy-chain (or VHH) domain."""
        return self.chain_type == "H"

    def describe(self) -> str:
        """'heavy (residues 1-120)': for messages, 1-based and inclusive."""
        return f"{CHAIN_NAMES.get(self.chain_type, self.chain_type)} (residues {self.start + 1}-{self.end})"


@dataclass(frozen=True)
class NumberedChain:
    """A chain and its variable domains in sequence order; `failure` says why there are none ('' when numbered)."""

    sequence: str
    domains: tuple[Domain, ...] = ()
    failure: str = ""

    @property
    def ok(self) -> bool:
        """True when at least one variable domain was numbered."""
        return not self.failure and bool(self.domains)

    @property
    def chain_types(self) -> tuple[str, ...]:
        """The chain type of each domain ('H', 'K', 'L'), in sequence order."""
        return tuple(d.chain_type for d in self.domains)

    @property
    def is_multi_domain(self) -> bool:
        """True when the chain holds more than one variable domain (an scFv, a tandem VHH)."""
        return len(self.domains) > 1

    def domain_of(self, kind: str) -> Domain | None:
        """The first domain of this kind ('heavy': H, 'light': K or L), or None."""
        wanted = {"heavy": ("H",), "light": ("K", "L")}[kind]
        return next((d for d in self.domains if d.chain_type in wanted), None)


def sequence_problem(sequence: str) -> str:
    """Why the library cannot read this text at all ('' when it can): empty, or characters that are not residues."""
    if not sequence:
        return "empty sequence"
    bad = sorted(set(sequence.upper()) - _RESIDUE_LETTERS)
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        return f"contains {shown}: not one of the 20 residue letters or X"
    return ""


def chain_from_result(sequence: str, result: Any) -> NumberedChain:
    """Turn the library's result for `sequence` into a `NumberedChain` (no domain: a failure with its reason)."""
    domains = tuple(_domain(d) for d in sorted(result.domains, key=lambda d: d.start))
    if not domains:
        return NumberedChain(sequence, (), "no antibody variable domain found (not an antibody chain, or too "
                                           "far from every heavy, kappa and lambda germline)")
    return NumberedChain(sequence, domains)


def _domain(raw: Any) -> Domain:
    residues = [r for r in raw.numbering if r.amino_acid != "-"]
    start = residues[0].sequence_index if residues else raw.start
    end = residues[-1].sequence_index + 1 if residues else raw.end
    return Domain(
        chain_type=str(raw.chain_type),
        start=int(start),
        end=int(end),
        residues="".join(r.amino_acid for r in residues),
        numbers=bytes(int(r.position) for r in residues),
        insertions=tuple((i, r.insertion_code.strip()) for i, r in enumerate(residues) if r.insertion_code.strip()),
    )


def number_chain(sequence: str, *, species: Sequence[str] = SPECIES) -> NumberedChain:
    """Number one chain in IMGT; a chain the library cannot read gets `failure` set, nothing is raised."""
    problem = sequence_problem(sequence)
    if problem:
        return NumberedChain(sequence, (), problem)
    library = numbering_library()
    try:
        result = library.number_sequence(sequence.upper(), allowed_chains=list(CHAIN_TYPES),
                                         allowed_species=list(species))
    except library.AnarcismError as error:
        return NumberedChain(sequence, (), f"the numbering library rejected it: {error}")
    return chain_from_result(sequence, result)
