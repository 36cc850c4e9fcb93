"""Variable domains cut out by IMGT numbering: what the encoders see of a heavy or light chain.

`variable_domains(chains, kind)` numbers each distinct chain once and returns, per chain, the span of its first
domain of that kind (`Domain.start:end`; heavy: an H domain, light: K or L). Leading residues (signal peptides,
tags) and everything after framework 4 (constant domains, linkers, a second domain) are cut. A chain without such
a domain (one the numbering cannot read, or a light chain given as heavy) is returned whole; reading a table with
`check_chains` (the default of `abag train` and `predict`) reports those rows first, so none of them passes
unnoticed.

Numbered chains are kept for the life of the process in `SHARED_NUMBERING` (the data checks use the same cache,
so a chain checked when the table is read is not numbered again when it is encoded), and on disk when a
`NumberingDiskCache` is given.

`residue_regions(chains)` labels each residue of a variable domain with its pooled region (`POOLED_REGIONS`:
the frameworks together, then each CDR), for region pooling of a language model's residue vectors
(`ModelConfig.pooling="regions"`). A domain cut by `variable_domains` is entered in the cache under its own
sequence (its numbering shifted to start at 0), so labelling it numbers nothing again.

May import: numpy, abag.numbering.batch, abag.numbering.chains, abag.numbering.disk_cache.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from abag.numbering.batch import number_chains
from abag.numbering.chains import NumberedChain
from abag.numbering.disk_cache import NumberingDiskCache

__all__ = ["SHARED_NUMBERING", "NUMBERING_MAX_CHAINS", "POOLED_REGIONS", "variable_domains", "domain_of_chain",
           "residue_regions", "distinct_chains", "numbered_by_default"]

POOLED_REGIONS = ("FR", "CDR1", "CDR2", "CDR3")
"""The regions `residue_regions` labels 0, 1, 2, 3: the four frameworks together, then CDR1, CDR2 and CDR3."""

_POOLED_INDEX = {"FR1": 0, "FR2": 0, "FR3": 0, "FR4": 0, "CDR1": 1, "CDR2": 2, "CDR3": 3}

SHARED_NUMBERING: dict[str, NumberedChain] = {}
"""Every chain numbered in this process, by sequence (about 1 kB each)."""

NUMBERING_MAX_CHAINS = 20_000
"""Distinct antibody chains up to which `abag train` numbers by default (the chain checks, and the model defaults
that need numbering: `abag.model.config.LARGE_TABLE_DEFAULTS`). Numbering runs at about 60 chains per core-second
(bench/numbering_choice.md): 20,000 chains take about 3 minutes on two cores, once (cached); 150,000 would take
20."""


def distinct_chains(*columns: Iterable[object]) -> int:
    """How many distinct non-empty chains the columns hold together (what the size rule counts)."""
    return len({c for column in columns for c in column if isinstance(c, str) and c})


def numbered_by_default(n_chains: int) -> bool:
    """The size rule: a table with `n_chains` distinct antibody chains is numbered by default (the chain check and
    the model defaults that need numbering) when it has at most `NUMBERING_MAX_CHAINS`."""
    return n_chains <= NUMBERING_MAX_CHAINS


def domain_of_chain(chain: NumberedChain, kind: str) -> str:
    """The chain's first `kind` ('heavy' or 'light') domain as it appears in the input; the whole chain if none."""
    domain = chain.domain_of(kind) if chain.ok else None
    return chain.sequence if domain is None else chain.sequence[domain.start:domain.end]


def variable_domains(chains: Sequence[str], kind: str, *, disk_cache: NumberingDiskCache | None = None,
                     workers: int | None = None) -> list[str]:
    """Each chain's variable domain of `kind` ('heavy' or 'light'), numbered with IMGT; "" stays ""."""
    if kind not in ("heavy", "light"):
        raise ValueError(f"kind must be 'heavy' or 'light', got {kind!r}")
    texts = [c if isinstance(c, str) else "" for c in chains]
    wanted = [c for c in dict.fromkeys(texts) if c]
    numbered = number_chains(wanted, cache=SHARED_NUMBERING, disk_cache=disk_cache, workers=workers)
    cut = {chain.sequence: domain_of_chain(chain, kind) for chain in numbered}
    for chain in numbered:
        _remember_cut(chain, kind, cut[chain.sequence])
    return [cut[c] if c else c for c in texts]


def _remember_cut(chain: NumberedChain, kind: str, domain_text: str) -> None:
    """Enter the cut domain in the cache as its own numbered chain (so it is not numbered again)."""
    domain = chain.domain_of(kind) if chain.ok else None
    if domain is None or domain_text in SHARED_NUMBERING:
        return
    shifted = dataclasses.replace(domain, start=0, end=domain.end - domain.start)
    SHARED_NUMBERING[domain_text] = NumberedChain(domain_text, (shifted,))


def region_labels(chain: NumberedChain) -> np.ndarray:
    """Each residue's index into `POOLED_REGIONS` from the chain's first domain; -1 outside it (or unnumbered)."""
    labels = np.full(len(chain.sequence), -1, dtype=np.int8)
    if not chain.ok:
        return labels
    domain = chain.domains[0]
    if len(domain.residues) == domain.end - domain.start:  # every residue of the span numbered (the usual case)
        labels[domain.start:domain.end] = [_POOLED_INDEX[r] for r in domain.regions()]
    return labels


def residue_regions(chains: Sequence[str], *, workers: int | None = None) -> list[np.ndarray]:
    """`region_labels` of each chain (numbered once per process, `SHARED_NUMBERING`)."""
    numbered = number_chains(list(chains), cache=SHARED_NUMBERING, workers=workers)
    return [region_labels(chain) for chain in numbered]
