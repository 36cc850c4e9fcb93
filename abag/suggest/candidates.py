"""Candidate variants: enumerated from a parent, named by their mutations, cleaned of duplicates and of rows
already measured.

- `single_mutants(parent, positions)`: every substitution to the other 19 standard residues at each
  chosen position (`parse_positions("H31,H50-H58,L94")`, 1-based; a bare number is a heavy-chain position).
- `combine_helpful(parent, measured, max_order)`: combinations of 2 to `max_order` mutations (at distinct
  positions) among those already seen to help. A mutation helps when the variants carrying it measured a
  higher mean pKd than the parent (its measured mean, when the parent is among the measured rows) or,
  without a measured parent, than the measured variants without it.
- `mutation_names(parent, frame)`: each row's mutations relative to the parent, as "H:S31A;L:N94Y".

Imports numpy, pandas, abag.policy and abag.suggest.config.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from abag.policy import AMINO_ACIDS
from abag.suggest.config import SuggestError

__all__ = ["Mutation", "MAX_ENUMERATED", "parse_positions", "single_mutants", "mutations_of", "mutation_names",
           "helpful_mutations", "combine_helpful", "clean_candidates"]

MAX_ENUMERATED = 200_000
"""More enumerated candidates than this is an error (choose fewer positions or a lower max order)."""
_CHAINS = {"H": "heavy", "L": "light"}
_TOKEN = re.compile(r"^([HL]?)(\d+)(?:-([HL]?)(\d+))?$")
KEY = ["heavy", "light", "antigen"]


@dataclass(frozen=True, order=True)
class Mutation:
    """One substitution: chain ("heavy"/"light"), 1-based position, parent residue, new residue."""

    chain: str
    position: int
    parent: str
    residue: str

    def __str__(self) -> str:
        return f"{self.chain[0].upper()}:{self.parent}{self.position}{self.residue}"


def parse_positions(text: str) -> list[tuple[str, int]]:
    """"H31,H50-H58,L94,100" -> [("heavy", 31), ("heavy", 50), ..., ("light", 94), ("heavy", 100)]."""
    positions: list[tuple[str, int]] = []
    for token in (t.strip().upper() for t in str(text).split(",")):
        match = _TOKEN.match(token)
        if not token or not match or (match.group(3) and match.group(3) != (match.group(1) or "H")):
            raise SuggestError(f"cannot read position {token!r} in {text!r}: write H31, L94, H50-H58 or 100 "
                               f"(a bare number is a heavy-chain position), separated by commas")
        chain = _CHAINS[match.group(1) or "H"]
        first, last = int(match.group(2)), int(match.group(4) or match.group(2))
        if first < 1 or last < first:
            raise SuggestError(f"position range {token!r} must run from 1 upwards, first to last")
        positions.extend((chain, p) for p in range(first, last + 1))
    return list(dict.fromkeys(positions))


def _parent_chain(parent, chain: str) -> str:
    value = parent.get(chain, "") if hasattr(parent, "get") else parent[chain]
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def single_mutants(parent, positions: list[tuple[str, int]]) -> pd.DataFrame:
    """Every single substitution of `parent` (heavy, light, antigen) at `positions`, with a `mutations` column."""
    rows = []
    for chain, position in positions:
        sequence = _parent_chain(parent, chain)
        if position > len(sequence):
            what = f"has {len(sequence)} residues" if sequence else "is absent"
            raise SuggestError(f"position {chain[0].upper()}{position}: the parent's {chain} chain {what}")
        wild = sequence[position - 1]
        for residue in AMINO_ACIDS:
            if residue != wild:
                rows.append(_apply(parent, [Mutation(chain, position, wild, residue)]))
    return pd.DataFrame(rows, columns=[*KEY, "mutations"])


def _apply(parent, mutations) -> dict:
    chains = {c: list(_parent_chain(parent, c)) for c in _CHAINS.values()}
    for m in mutations:
        chains[m.chain][m.position - 1] = m.residue
    return {"heavy": "".join(chains["heavy"]), "light": "".join(chains["light"]),
            "antigen": _parent_chain(parent, "antigen"), "mutations": ";".join(str(m) for m in sorted(mutations))}


def mutations_of(parent, heavy: str, light: str) -> list[Mutation] | None:
    """The substitutions turning `parent` into (heavy, light); None when a chain's length differs."""
    found = []
    for chain, sequence in (("heavy", heavy), ("light", light or "")):
        reference = _parent_chain(parent, chain)
        if len(reference) != len(sequence):
            return None
        found.extend(Mutation(chain, i + 1, a, b) for i, (a, b) in enumerate(zip(reference, sequence)) if a != b)
    return found


def mutation_names(parent, frame: pd.DataFrame) -> pd.Series:
    """Per row of `frame`: its mutations relative to `parent` ("" for the parent, NA when lengths differ)."""
    names = []
    for heavy, light in zip(frame["heavy"], frame["light"].fillna("")):
        found = mutations_of(parent, heavy, light)
        names.append(pd.NA if found is None else ";".join(str(m) for m in found))
    return pd.Series(names, index=frame.index, dtype=object)


def helpful_mutations(parent, measured: pd.DataFrame) -> list[Mutation]:
    """Mutations of the measured variants whose carriers measured higher than the reference (module docstring)."""
    carried = [mutations_of(parent, h, l_) for h, l_ in zip(measured["heavy"], measured["light"].fillna(""))]
    pkd = measured["pkd"].to_numpy(dtype=np.float64)
    is_parent = np.array([m is not None and not m for m in carried])
    parent_pkd = float(pkd[is_parent].mean()) if is_parent.any() else None
    helpful = []
    for mutation in sorted({m for found in carried if found for m in found}):
        carrier = np.array([found is not None and mutation in found for found in carried])
        others = np.array([found is not None for found in carried]) & ~carrier
        reference = parent_pkd if parent_pkd is not None else (pkd[others].mean() if others.any() else None)
        if reference is not None and pkd[carrier].mean() > reference:
            helpful.append(mutation)
    return helpful


def _count_combinations(per_position: list[int], max_order: int) -> int:
    """Sets of 2..max_order mutations at distinct positions (elementary symmetric sums of the counts)."""
    e = [1] + [0] * max_order
    for c in per_position:
        for k in range(max_order, 0, -1):
            e[k] += e[k - 1] * c
    return sum(e[2:])


def combine_helpful(parent, measured: pd.DataFrame, max_order: int = 3) -> pd.DataFrame:
    """Combinations of 2..max_order helpful mutations at distinct positions, as variants of `parent`."""
    helpful = helpful_mutations(parent, measured)
    by_position: dict[tuple[str, int], list[Mutation]] = {}
    for m in helpful:
        by_position.setdefault((m.chain, m.position), []).append(m)
    count = _count_combinations([len(v) for v in by_position.values()], max_order)
    if count > MAX_ENUMERATED:
        raise SuggestError(f"{len(helpful)} helpful mutations at {len(by_position)} positions give {count:,} "
                           f"combinations of up to {max_order}; the limit is {MAX_ENUMERATED:,}: lower the "
                           f"maximum order")
    rows = []
    groups = list(by_position.values())
    for order in range(2, max_order + 1):
        for chosen in itertools.combinations(groups, order):
            rows.extend(_apply(parent, list(ms)) for ms in itertools.product(*chosen))
    return pd.DataFrame(rows, columns=[*KEY, "mutations"])


def clean_candidates(candidates: pd.DataFrame, measured: pd.DataFrame | None) -> tuple[pd.DataFrame, int, int]:
    """(candidates without repeats and without measured variants, n repeats dropped, n measured dropped)."""
    light = candidates["light"].fillna("")
    keys = candidates["heavy"] + "\x00" + light + "\x00" + candidates["antigen"]
    repeated = keys.duplicated().to_numpy()
    seen = np.zeros(len(candidates), dtype=bool)
    if measured is not None and len(measured):
        measured_keys = set(measured["heavy"] + "\x00" + measured["light"].fillna("") + "\x00" + measured["antigen"])
        seen = keys.isin(measured_keys).to_numpy() & ~repeated
    keep = ~repeated & ~seen
    return candidates[keep].reset_index(drop=True), int(repeated.sum()), int(seen.sum())
