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

May import: abag.numbering.batch, abag.numbering.chains, abag.numbering.disk_cache.
"""

from __future__ import annotations

from collections.abc import Sequence

from abag.numbering.batch import number_chains
from abag.numbering.chains import NumberedChain
from abag.numbering.disk_cache import NumberingDiskCache

__all__ = ["SHARED_NUMBERING", "NUMBERING_MAX_CHAINS", "variable_domains", "domain_of_chain"]

SHARED_NUMBERING: dict[str, NumberedChain] = {}
"""Every chain numbered in this process, by sequence (about 1 kB each)."""

NUMBERING_MAX_CHAINS = 20_000
"""Distinct antibody chains up to which `abag train` numbers by default (checks and IMGT trimming). Numbering
runs at about 60 chains per core-second (bench/numbering_choice.md): 20,000 chains take about 3 minutes on two
cores, once (cached); 150,000 would take 20."""


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
    return [cut[c] if c else c for c in texts]
