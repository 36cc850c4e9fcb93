"""Aligned one-hot features: every IMGT position of VH and VL as 21 columns (20 residues and a gap), side by side.

`AlignedOneHotEncoder.fit(heavy, light)` learns the union of IMGT positions (number and insertion code, in IMGT
order) seen in the training chains, separately for the heavy and the light domain. `transform` then gives each
pair a fixed-width row: at each learned position, a 1 in the column of the residue there, or in the gap column
when the domain has no residue at that position. Because insertion codes absorb loop-length differences, two
variants whose HCDR3 differ in length get rows that agree everywhere outside the HCDR3 block.

`AlignedOneHotEncoder.on_grid()` instead uses a fixed grid of positions (`imgt_grid`: IMGT 1–128 and the CDR
insertion codes that occur in practice), so its width does not depend on the data: what a model that keeps its
coefficients in fixed-shape buffers needs (`abag.model.wide`).

Rules: a chain that is absent (None, e.g. no light chain) or has no domain of that side contributes zeros (and is
counted in `missing_heavy` / `missing_light` when a chain was given); a residue at a position never seen in
training is ignored and counted in `unseen`; an X residue sets no column. Rows are a `scipy.sparse` CSR matrix
with one stored value per learned position and chain (`dtype=np.uint8` stores a quarter of float32's values).
On a fixed grid, a residue at a position off the grid is likewise ignored and counted in `unseen`.

May import: numpy, scipy, abag.policy, abag.numbering.chains, abag.numbering.imgt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from abag.numbering.chains import Domain, NumberedChain
from abag.numbering.imgt import position_key, position_label, region_of
from abag.policy import AMINO_ACIDS, RESIDUE_CODE, UNKNOWN_RESIDUE

__all__ = ["AlignedOneHotEncoder", "OneHotFeatures", "ALPHABET", "SIDES", "GRID_INSERTIONS", "imgt_grid"]

ALPHABET = AMINO_ACIDS + "-"  # 21 columns per position; the last one is the gap
SIDES = ("heavy", "light")
_WIDTH = len(ALPHABET)
_GAP = len(AMINO_ACIDS)
_UNKNOWN = -1  # an X (or any non-standard residue): no column


GRID_INSERTIONS: dict[int, int] = {32: 5, 33: 5, 60: 5, 61: 5, 111: 10, 112: 10}
"""Insertion codes of the fixed grid (`imgt_grid`): at each IMGT number, how many (A, B, …). CDR1 and CDR2 grow at
32/33 and 60/61, CDR3 at 111/112. In the 1,286 numbered distinct chains of saaintdb_dev, every CDR1/CDR2
insertion stays within B and every CDR3 insertion within G but one chain's (an HCDR3 that runs to Y); framework
insertions (H4A, H23A, H67A–C, H122A, L45A) occur in a handful of chains and are left out."""


def imgt_grid(insertions: Mapping[int, int] = GRID_INSERTIONS) -> list[tuple[int, str]]:
    """IMGT positions 1–128 and, at each number of `insertions`, that many insertion codes, in IMGT order."""
    if any(not 1 <= number <= 128 or not 0 <= count <= 26 for number, count in insertions.items()):
        raise ValueError(f"insertions must map IMGT numbers 1-128 to 0-26 codes, got {dict(insertions)!r}")
    keys = [(number, "") for number in range(1, 129)]
    keys += [(number, chr(ord("A") + i)) for number, count in insertions.items() for i in range(count)]
    return sorted(keys, key=lambda k: position_key(*k))


@dataclass
class OneHotFeatures:
    """The one-hot rows of a transform and what they could not show, per row."""

    matrix: sp.csr_matrix  # (rows, n_features)
    unseen: np.ndarray  # residues at positions never seen in training (ignored), per row
    missing_heavy: np.ndarray  # True where a heavy chain was given but has no numbered heavy domain
    missing_light: np.ndarray  # True where a light chain was given but has no numbered light domain

    @property
    def n_unseen(self) -> int:
        """All residues ignored because their position was never seen in training."""
        return int(self.unseen.sum())


def _domain(chain: NumberedChain | None, side: str) -> tuple[Domain | None, bool]:
    """The domain a side reads from a chain, and whether a given chain had none."""
    if chain is None or not chain.sequence:
        return None, False
    domain = chain.domain_of(side) if chain.ok else None
    return domain, domain is None


def _keys(domain: Domain) -> list[tuple[int, str]]:
    codes = dict(domain.insertions)
    return [(n, codes.get(i, "")) for i, n in enumerate(domain.numbers)]


class AlignedOneHotEncoder:
    """Learns the IMGT positions of the training chains (`fit`), then one-hot encodes pairs on them (`transform`)."""

    def __init__(self) -> None:
        self.positions_: dict[str, list[tuple[int, str]]] = {}

    @classmethod
    def on_grid(cls, heavy: Sequence[tuple[int, str]] | None = None,
                light: Sequence[tuple[int, str]] | None = None) -> AlignedOneHotEncoder:
        """An encoder on fixed positions (default `imgt_grid()` for each side), ready to `transform` without `fit`:
        its columns depend on the grid alone. Residues at positions off the grid are ignored and counted."""
        encoder = cls()
        for side, keys in zip(SIDES, (heavy, light)):
            keys = imgt_grid() if keys is None else list(dict.fromkeys((int(n), str(c)) for n, c in keys))
            encoder.positions_[side] = sorted(keys, key=lambda k: position_key(*k))
        return encoder

    def fit(self, heavy: Sequence[NumberedChain | None],
            light: Sequence[NumberedChain | None]) -> AlignedOneHotEncoder:
        """Learn the union of positions of each side's domains in these chains."""
        for side, chains in zip(SIDES, (heavy, light)):
            seen: set[tuple[int, str]] = set()
            for chain in {id(c): c for c in chains}.values():
                domain, _ = _domain(chain, side)
                if domain is not None:
                    seen.update(_keys(domain))
            self.positions_[side] = sorted(seen, key=lambda k: position_key(*k))
        return self

    def _check_fitted(self) -> None:
        if not self.positions_:
            raise RuntimeError("AlignedOneHotEncoder is not fitted: call fit() first")

    @property
    def n_features(self) -> int:
        """Columns of a transform: 21 per learned heavy and light position."""
        self._check_fitted()
        return _WIDTH * sum(len(p) for p in self.positions_.values())

    def _offset(self, side: str) -> int:
        return 0 if side == "heavy" else _WIDTH * len(self.positions_["heavy"])

    def feature_names(self) -> list[str]:
        """'H111A_Y' for residue Y at heavy position 111A, 'L27_-' for a gap at light position 27."""
        self._check_fitted()
        return [f"{side[0].upper()}{position_label(*key)}_{letter}"
                for side in SIDES for key in self.positions_[side] for letter in ALPHABET]

    def columns(self, side: str, regions: Sequence[str] | None = None) -> np.ndarray:
        """Column indices of one side, optionally only of positions in these IMGT regions ('CDR3', 'FR1', …)."""
        self._check_fitted()
        keep = [i for i, (number, _) in enumerate(self.positions_[side])
                if regions is None or region_of(number) in regions]
        base = self._offset(side) + _WIDTH * np.asarray(keep, dtype=np.int64)
        return (base[:, None] + np.arange(_WIDTH)).ravel()

    def _chain_columns(self, domain: Domain, side: str, index: dict[tuple[int, str], int]) -> tuple[np.ndarray, int]:
        """Global column indices one domain sets, and how many of its residues sat at unseen positions."""
        codes = np.full(len(self.positions_[side]), _GAP, dtype=np.int64)
        unseen = 0
        residue_codes = RESIDUE_CODE[np.frombuffer(domain.residues.encode("ascii", "replace"), dtype=np.uint8)]
        for key, code in zip(_keys(domain), residue_codes):
            position = index.get(key)
            if position is None:
                unseen += 1
            else:  # UNKNOWN_RESIDUE is the gap's code too: an X must not read as a gap
                codes[position] = _UNKNOWN if code == UNKNOWN_RESIDUE else code
        present = codes != _UNKNOWN
        positions = np.flatnonzero(present)
        return (self._offset(side) + _WIDTH * positions + codes[present]).astype(np.int32), unseen

    def transform(self, heavy: Sequence[NumberedChain | None], light: Sequence[NumberedChain | None],
                  dtype: type = np.float32) -> OneHotFeatures:
        """One row per (heavy, light) pair, as a CSR matrix of `n_features` columns."""
        self._check_fitted()
        if len(heavy) != len(light):
            raise ValueError(f"heavy has {len(heavy)} rows but light has {len(light)}")
        n = len(heavy)
        per_side, unseen, missing = [], np.zeros(n, dtype=np.int64), {}
        for side, chains in zip(SIDES, (heavy, light)):
            index = {key: i for i, key in enumerate(self.positions_[side])}
            memo: dict[int, tuple[np.ndarray, int, bool]] = {}
            columns, flags = [], np.zeros(n, dtype=bool)
            for row, chain in enumerate(chains):
                if id(chain) not in memo:
                    domain, failed = _domain(chain, side)
                    cols, count = self._chain_columns(domain, side, index) if domain else (np.zeros(0, np.int32), 0)
                    memo[id(chain)] = (cols, count, failed)
                cols, count, failed = memo[id(chain)]
                columns.append(cols)
                unseen[row] += count
                flags[row] = failed
            per_side.append(columns)
            missing[side] = flags
        rows = [np.concatenate(pair) for pair in zip(*per_side)] if n else []
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        indices = np.concatenate(rows).astype(np.int32) if n else np.zeros(0, np.int32)
        matrix = sp.csr_matrix((np.ones(len(indices), dtype=dtype), indices, indptr), shape=(n, self.n_features))
        return OneHotFeatures(matrix, unseen, missing["heavy"], missing["light"])

    def fit_transform(self, heavy: Sequence[NumberedChain | None],
                      light: Sequence[NumberedChain | None]) -> OneHotFeatures:
        """`fit` then `transform` on the same chains."""
        return self.fit(heavy, light).transform(heavy, light)
