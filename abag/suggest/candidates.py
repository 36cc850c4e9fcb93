"""Candidate variants: enumerated from a parent, named by their mutations, cleaned of duplicates and of rows
already measured.

- `single_mutants(parent, positions)`: every substitution to the other 19 standard residues at each
  chosen position. `parse_positions(text, parent)` reads positions in IMGT numbering of the parent's variable
  domains (`abag.numbering`): "H105-H117" (CDR-H3), "H111A" (insertion codes), "L27-L38", region names
  "H:CDR3", "L:FR2" or "CDR-H3"; a bare number is a heavy-chain position. With the prefix "seq:" the list counts
  residues along each chain from 1 instead ("seq:H31,H50-H58", the meaning before 2.8).
- `combine_helpful(parent, measured, max_order)`: combinations of 2 to `max_order` mutations (at distinct
  positions) among those already seen to help. A mutation helps when the variants carrying it measured a
  higher mean pKd than the parent (its measured mean, when the parent is among the measured rows) or,
  without a measured parent, than the measured variants without it.
- `mutation_names(parent, frame)`: each row's mutations relative to the parent, as "H:S31A;L:N94Y", with the
  IMGT position where the residue lies in the parent's numbered variable domain (else its place in the chain).
- `parent_from_measured(measured)`: the parent of a set of measured variants (the one closest to their
  consensus), for when no parent is given.

Imports numpy, pandas, abag.numbering, abag.policy and abag.suggest.config.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from abag.numbering import REGION_NAMES, Domain, number_chain, position_key, region_of
from abag.policy import AMINO_ACIDS
from abag.suggest.config import SuggestError

__all__ = ["Mutation", "MAX_ENUMERATED", "SEQUENCE_PREFIX", "parse_positions", "single_mutants", "mutations_of",
           "mutation_names", "helpful_mutations", "combine_helpful", "clean_candidates", "parent_from_measured"]

MAX_ENUMERATED = 200_000
"""More enumerated candidates than this is an error (choose fewer positions or a lower max order)."""
_CHAINS = {"H": "heavy", "L": "light"}
_TOKEN = re.compile(r"^([HL]?)(\d+)(?:-([HL]?)(\d+))?$")
_IMGT_TOKEN = re.compile(r"^([HL]?)(\d+)([A-Z]?)(?:-([HL]?)(\d+)([A-Z]?))?$")
_REGION_TOKEN = re.compile(r"^([HL]):?(CDR[123]|FR[1-4])$|^(CDR|FR)-?([HL])([1-4])$")
SEQUENCE_PREFIX = "seq:"
"""Before a --positions list: count residues along each chain from 1 instead of IMGT numbering."""
KEY = ["heavy", "light", "antigen"]


@dataclass(frozen=True, order=True)
class Mutation:
    """One substitution: chain ("heavy"/"light"), 1-based position in the chain, parent residue, new residue, and
    the IMGT position label ("111A") when the residue lies in the parent's numbered domain ("" otherwise)."""

    chain: str
    position: int
    parent: str
    residue: str
    label: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.chain[0].upper()}:{self.parent}{self.label or self.position}{self.residue}"


_POSITIONS_HELP = ("IMGT positions of the parent's variable domains such as H105-H117 (CDR-H3), H111A, L27-L38, "
                   "region names such as H:CDR3 or L:FR2, or a bare number for a heavy-chain position, separated "
                   "by commas; or seq:H31,H50-H58 to count residues along each chain from 1")


def parse_positions(text: str, parent=None) -> list[tuple[str, int]]:
    """The positions to mutate, as (chain, 1-based place in the parent's chain), in the order given.

    IMGT numbering (the default) numbers the parent's chains (`abag.numbering`), so `parent` is needed:
    "H105-H117" is every residue numbered 105 to 117 (insertions such as 111A included), "H111A" one residue,
    "H:CDR3" / "CDR-H3" / "L:FR2" a region; a position the parent lacks is an error naming it. With the prefix
    "seq:" the numbers count residues along each chain from 1 ("seq:H31,H50-H58,L94,100"), no parent needed.
    """
    text = str(text).strip()
    if text.lower().startswith(SEQUENCE_PREFIX):
        return _sequence_positions(text[len(SEQUENCE_PREFIX):], text)
    if parent is None:
        raise SuggestError(f"positions {text!r} are IMGT positions of the parent: give the parent (or write "
                           f"{SEQUENCE_PREFIX}{text} to count residues along the sequence)")
    positions: list[tuple[str, int]] = []
    for token in (t.strip().upper() for t in text.split(",")):
        positions.extend(_imgt_positions(parent, token, text))
    return list(dict.fromkeys(positions))


def _sequence_positions(body: str, text: str) -> list[tuple[str, int]]:
    """"H31,H50-H58,L94,100" (residues counted along each chain) -> [("heavy", 31), ..., ("heavy", 100)]."""
    positions: list[tuple[str, int]] = []
    for token in (t.strip().upper() for t in body.split(",")):
        match = _TOKEN.match(token)
        if not token or not match or (match.group(3) and match.group(3) != (match.group(1) or "H")):
            raise SuggestError(f"cannot read position {token!r} in {text!r}: after {SEQUENCE_PREFIX} write H31, L94, "
                               f"H50-H58 or 100 (a bare number is a heavy-chain position), separated by commas")
        chain = _CHAINS[match.group(1) or "H"]
        first, last = int(match.group(2)), int(match.group(4) or match.group(2))
        if first < 1 or last < first:
            raise SuggestError(f"position range {token!r} must run from 1 upwards, first to last")
        positions.extend((chain, p) for p in range(first, last + 1))
    return list(dict.fromkeys(positions))


@functools.lru_cache(maxsize=256)
def _numbered_domain(sequence: str, chain: str) -> tuple[Domain | None, str]:
    """The parent chain's first variable domain of its kind (None, and why, when it has none)."""
    if not sequence:
        return None, "is absent"
    numbered = number_chain(sequence)
    domain = numbered.domain_of(chain) if numbered.ok else None
    if domain is None:
        reason = numbered.failure or f"holds no {chain} variable domain"
        return None, f"cannot be numbered in IMGT ({reason})"
    return domain, ""


def _imgt_residues(parent, chain: str) -> list[tuple[tuple[int, int], str, str, int]]:
    """(sort key, IMGT label, region, 1-based place in the chain) of each numbered residue of the parent's chain."""
    domain, _ = _numbered_domain(_parent_chain(parent, chain), chain)
    if domain is None:
        return []
    return [(position_key(number, code), f"{number}{code}", region, domain.start + i + 1)
            for i, ((number, code, _), region) in enumerate(zip(domain.positions(), domain.regions()))]


def _imgt_positions(parent, token: str, text: str) -> list[tuple[str, int]]:
    """The parent's residues one IMGT token names (a position, a range or a region), as (chain, place)."""
    region = _REGION_TOKEN.match(token)
    match = None if region else _IMGT_TOKEN.match(token)
    if not token or not (region or match) or (match and match.group(4) and
                                               match.group(4) != (match.group(1) or "H")):
        raise SuggestError(f"cannot read position {token!r} in {text!r}: write {_POSITIONS_HELP}")
    letter = (region.group(1) or region.group(4)) if region else (match.group(1) or "H")
    chain = _CHAINS[letter]
    domain, problem = _numbered_domain(_parent_chain(parent, chain), chain)
    if domain is None:
        raise SuggestError(f"position {token}: the parent's {chain} chain {problem}; give positions along the "
                           f"sequence instead, e.g. {SEQUENCE_PREFIX}H31,H50-H58")
    residues = _imgt_residues(parent, chain)
    if region:
        name = region.group(2) or f"{region.group(3)}{region.group(5)}"
        if name not in REGION_NAMES:
            raise SuggestError(f"position {token}: IMGT has no region {name} (regions: {', '.join(REGION_NAMES)})")
        chosen = [place for _, _, where, place in residues if where == name]
        if not chosen:
            raise SuggestError(f"position {token}: the parent's {chain} chain has no {name} residue")
        return [(chain, place) for place in chosen]
    first = (int(match.group(2)), match.group(3))
    last = (int(match.group(5)), match.group(6)) if match.group(5) else first
    for number, _ in (first, last):
        if not 1 <= number <= 128:
            raise SuggestError(f"position {token}: IMGT positions run from 1 to 128")
    low, high = position_key(*first), position_key(*last)
    if high < low:
        raise SuggestError(f"position range {token!r} must run first to last in IMGT order")
    chosen = [place for key, _, _, place in residues if low <= key <= high]
    if not chosen:
        label = "".join(map(str, first)) + ("" if last == first else "-" + "".join(map(str, last)))
        what = "position" if last == first else "position in"
        near = _region_labels(residues, first[0])
        raise SuggestError(f"position {token}: the parent's {chain} chain has no IMGT {what} {label}"
                           + (f" (its {near})" if near else ""))
    return [(chain, place) for place in chosen]


def _region_labels(residues, number: int) -> str:
    """'CDR3 is numbered 105, 106, …, 117': the parent's labels in the region of IMGT position `number`."""
    try:
        region = region_of(number)
    except ValueError:
        return ""
    labels = [label for _, label, where, _ in residues if where == region]
    if not labels:
        return f"{region} is empty"
    shown = ", ".join(labels) if len(labels) <= 16 else f"{', '.join(labels[:3])}, …, {labels[-1]}"
    return f"{region} is numbered {shown}"


def _imgt_label(parent, chain: str, place: int) -> str:
    """The IMGT label of the parent's residue at `place` (1-based) of `chain`; "" outside its numbered domain."""
    labels = _label_table(_parent_chain(parent, chain), chain)
    return labels.get(place, "")


@functools.lru_cache(maxsize=256)
def _label_table(sequence: str, chain: str) -> dict[int, str]:
    domain, _ = _numbered_domain(sequence, chain)
    if domain is None:
        return {}
    return {domain.start + i + 1: label for i, label in enumerate(domain.labels())}


def _parent_chain(parent, chain: str) -> str:
    value = parent.get(chain, "") if hasattr(parent, "get") else parent[chain]
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def single_mutants(parent, positions: str | list[tuple[str, int]]) -> pd.DataFrame:
    """Every single substitution of `parent` (heavy, light, antigen) at `positions`, with a `mutations` column.

    `positions`: a `parse_positions` text ("H105-H117", "H:CDR3", "seq:H31-H35") or its (chain, place) list.
    """
    if isinstance(positions, str):
        positions = parse_positions(positions, parent)
    rows = []
    for chain, position in positions:
        sequence = _parent_chain(parent, chain)
        if position > len(sequence):
            what = f"has {len(sequence)} residues" if sequence else "is absent"
            raise SuggestError(f"position {SEQUENCE_PREFIX}{chain[0].upper()}{position}: the parent's {chain} "
                               f"chain {what}")
        wild = sequence[position - 1]
        label = _imgt_label(parent, chain, position)
        for residue in AMINO_ACIDS:
            if residue != wild:
                rows.append(_apply(parent, [Mutation(chain, position, wild, residue, label)]))
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
        found.extend(Mutation(chain, i + 1, a, b, _imgt_label(parent, chain, i + 1))
                     for i, (a, b) in enumerate(zip(reference, sequence)) if a != b)
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


def parent_from_measured(measured: pd.DataFrame, max_share: float = 0.1) -> tuple[pd.Series, str]:
    """The parent of measured variants when none is given: the measured variant closest to their consensus.

    Only the variants of the most common antigen and chain lengths count (a scan of point mutants keeps both).
    The consensus is the most common residue at each position of the heavy and light chains; the parent is the
    measured variant with the fewest differences from it (the first in the table on a tie), which is the parent
    itself whenever it was measured. A SuggestError when the measured rows are not variants of one antibody
    (half of them differ from that variant at more than `max_share` of their residues).
    Returns the parent (heavy, light, antigen) and one sentence saying how it was chosen.
    """
    if measured is None or len(measured) == 0:
        raise SuggestError("no measured variants to take a parent from: give the parent")
    table = measured.reset_index(drop=True)
    light = table["light"].fillna("").astype(str)
    shape = pd.DataFrame({"antigen": table["antigen"], "heavy": table["heavy"].str.len(), "light": light.str.len()})
    key = shape.astype(str).agg("\x00".join, axis=1)
    common = key.value_counts(sort=True).index[0]  # ties: value_counts keeps the first seen first
    rows = np.flatnonzero(key.to_numpy() == common)
    chains = (table["heavy"].iloc[rows] + light.iloc[rows]).tolist()
    residues = np.array([list(c) for c in chains]) if chains[0] else np.zeros((len(rows), 0), dtype="<U1")
    consensus = np.array([pd.Series(column).mode().iloc[0] for column in residues.T], dtype="<U1")
    differences = (residues != consensus).sum(axis=1)
    best = int(np.argmin(differences))
    index = rows[best]
    parent_residues = residues[best]
    spread = np.median((residues != parent_residues).sum(axis=1)) if len(rows) else 0
    if residues.shape[1] and spread > max_share * residues.shape[1]:
        raise SuggestError(f"the measured rows are not variants of one antibody: half of them differ at more than "
                           f"{spread:.0f} of {residues.shape[1]} residues from the closest one to their consensus; "
                           f"give the parent")
    row = table.iloc[index]
    name = f"row {int(row['source_row'])}" if "source_row" in table and pd.notna(row["source_row"]) else \
        f"row {index + 1}"
    others = len(table) - len(rows)
    sentence = (f"parent: the measured variant closest to the consensus of {len(rows)} measured variants "
                f"({name}, {int(differences[best])} residue(s) from the consensus; heavy chain "
                f"{str(row['heavy'])[:12]}…)")
    if others:
        sentence += f"; {others} measured row(s) of another antigen or other chain lengths are not its variants"
    parent = pd.Series({"heavy": row["heavy"], "light": light.iloc[index], "antigen": row["antigen"]})
    return parent, sentence
