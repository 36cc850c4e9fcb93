"""Banded local alignment of the sequence clustering: the identity of a candidate pair of chains.

A banded Smith-Waterman (match +5, mismatch -1, gap open -10, extend -1) runs over many pairs at once in
numpy; the band covers the diagonals on which the two chains share seeds, plus 16 residues of drift.
Identity = identical residues in the best local alignment / max(shorter length, 30); the definition and
its calibration are in `abag.identity.clustering`.

Imports numpy and `abag.identity.seed_search` only.
"""

from __future__ import annotations

import numpy as np

from abag.identity.seed_search import SEED_PATTERNS, chain_seeds

__all__ = ["SeedBands", "alignment_identity"]

# Alignment scoring. Positive drift down to ~17 % identity keeps a 40 % pair
# aligned end to end (estimates within ~0.01 of the true identity at 40 %);
# random pairs drift at -0.7 per residue.
_MATCH, _MISMATCH, _GAP_OPEN, _GAP_EXTEND = 5, -1, 10, 1
_BAND_HALF_WIDTHS = (24, 48, 96, 192, 384)
_BAND_MARGIN = 16  # residues of indel drift allowed beyond the seed diagonals
# Alignment cells carry score * _KEY_SCALE + identities so that one integer
# max picks the best score and, among ties, the path with more identities.
_KEY_SCALE = 1 << 14  # identities < 16384; 5 * 16383 * 16384 still fits int32
_NEG = -(1 << 30)
_SHORT_OUTSIDE, _LONG_OUTSIDE = 254, 255  # padding codes that never match
_ALIGN_BATCH = 512
# A chain shorter than this is scored as if it had this length, so a short
# peptide needs >= 12 identical residues (a chance 7-residue match is not enough).
_MIN_DENOMINATOR = 30


def _drop_isolated(diagonals: np.ndarray) -> np.ndarray:
    """Sorted diagonals without lone ones (chance seed hits), if any are clustered."""
    gap = np.diff(diagonals)
    near_previous = np.concatenate([[False], gap <= _BAND_MARGIN])
    near_next = np.concatenate([gap <= _BAND_MARGIN, [False]])
    clustered = near_previous | near_next
    return diagonals[clustered] if clustered.any() else diagonals


class SeedBands:
    """Alignment bands from the diagonals of shared seeds (per-chain seeds cached)."""

    def __init__(self, encoded: list[np.ndarray]):
        self.encoded = encoded
        self.cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def seeds(self, chain: int, n_patterns: int) -> tuple[np.ndarray, np.ndarray]:
        key = (chain, n_patterns)
        if key not in self.cache:
            self.cache[key] = chain_seeds(self.encoded[chain], SEED_PATTERNS[:n_patterns])
        return self.cache[key]

    def band(self, short: int, long: int) -> tuple[int, int]:
        """Band (center diagonal, half-width) covering the diagonals of shared seeds.

        Diagonal = long position - short position. A pair with a large
        insertion or deletion (an engineered core, a loop deleted) shares seeds
        on several diagonals; the band widens to cover them all, in steps of
        _BAND_HALF_WIDTHS so that pairs can be batched. Contiguous seeds alone
        usually suffice and are 4x cheaper; all patterns are the fallback.
        """
        diagonals = self._shared_diagonals(short, long, 1)
        if len(diagonals) < 3:
            diagonals = self._shared_diagonals(short, long, len(SEED_PATTERNS))
        if not len(diagonals):
            return 0, _BAND_HALF_WIDTHS[0]
        diagonals = _drop_isolated(np.sort(diagonals))
        low, high = diagonals[0], diagonals[-1]
        needed = (high - low) / 2 + _BAND_MARGIN
        fitting = [w for w in _BAND_HALF_WIDTHS if w >= needed]
        return int(round((low + high) / 2)), fitting[0] if fitting else _BAND_HALF_WIDTHS[-1]

    def _shared_diagonals(self, short: int, long: int, n_patterns: int) -> np.ndarray:
        short_features, short_positions = self.seeds(short, n_patterns)
        long_features, long_positions = self.seeds(long, n_patterns)
        if len(long_features) == 0:
            return long_features
        where = np.minimum(np.searchsorted(long_features, short_features), len(long_features) - 1)
        hit = long_features[where] == short_features
        return long_positions[where[hit]] - short_positions[hit]


def _banded_long_codes(longs: list[np.ndarray], centers: np.ndarray, n_rows: int, width: int) -> np.ndarray:
    """long_band[p, i + t] = residue of long chain p in band column t of DP row i."""
    longest = max(len(s) for s in longs)
    padded = np.full((len(longs), longest), _LONG_OUTSIDE, np.uint8)
    for p, chain in enumerate(longs):
        padded[p, : len(chain)] = chain
    index = centers[:, None] - width // 2 + np.arange(n_rows + width)[None, :]
    inside = (index >= 0) & (index < np.array([len(s) for s in longs])[:, None])
    gathered = np.take_along_axis(padded, np.clip(index, 0, longest - 1), axis=1)
    return np.where(inside, gathered, _LONG_OUTSIDE).astype(np.uint8)


def _short_codes(shorts: list[np.ndarray], n_rows: int) -> np.ndarray:
    codes = np.full((len(shorts), n_rows), _SHORT_OUTSIDE, np.uint8)
    for p, chain in enumerate(shorts):
        codes[p, : len(chain)] = np.where(chain < 20, chain, _SHORT_OUTSIDE)  # unknown never matches
    return codes


def _align_batch(shorts: list[np.ndarray], longs: list[np.ndarray], centers: np.ndarray, half_width: int) -> np.ndarray:
    """Identical residues in the best banded local alignment of each pair.

    Row i of the DP walks the short chain; band column t is position
    i + center - w + t of the long chain. Horizontal gaps use the prefix-max
    trick, so a row is a few in-place numpy operations over all pairs.
    """
    width = 2 * half_width + 1
    n_rows = max(len(s) for s in shorts)
    long_band = _banded_long_codes(longs, np.asarray(centers), n_rows, width)
    short_codes = _short_codes(shorts, n_rows)
    i32 = np.int32
    scale = _KEY_SCALE
    match_bonus = i32((_MATCH - _MISMATCH) * scale + 1)  # +1: count the identity
    mismatch, gap_open, gap_extend = i32(_MISMATCH * scale), i32(_GAP_OPEN * scale), i32(_GAP_EXTEND * scale)
    ramp = (gap_extend * np.arange(width)).astype(i32)
    horizontal_offset = (gap_extend - gap_open - ramp[1:]).astype(i32)
    shape = (len(shorts), width)
    h, h_next = np.zeros(shape, i32), np.zeros(shape, i32)
    f, f_next = np.full(shape, _NEG, i32), np.full(shape, _NEG, i32)  # last column stays _NEG
    diagonal, running, scratch = np.empty(shape, i32), np.empty(shape, i32), np.empty(shape, i32)
    horizontal = np.full(shape, _NEG, i32)  # first column stays _NEG
    best = np.zeros(shape, i32)
    for i in range(n_rows):
        is_match = long_band[:, i : i + width] == short_codes[:, i : i + 1]
        np.multiply(is_match, match_bonus, out=diagonal)
        diagonal += h
        diagonal += mismatch
        # Vertical gap: cell (i-1, j) sits one band column to the right.
        np.subtract(h[:, 1:], gap_open, out=scratch[:, 1:])
        np.subtract(f[:, 1:], gap_extend, out=f_next[:, :-1])
        np.maximum(f_next[:, :-1], scratch[:, 1:], out=f_next[:, :-1])
        np.maximum(diagonal, f_next, out=diagonal)
        np.maximum(diagonal, 0, out=diagonal)  # local alignment may start anywhere
        np.add(diagonal, ramp, out=running)
        np.maximum.accumulate(running, axis=1, out=running)
        np.add(running[:, :-1], horizontal_offset, out=horizontal[:, 1:])
        np.maximum(diagonal, horizontal, out=h_next)
        np.maximum(best, h_next, out=best)
        h, h_next, f, f_next = h_next, h, f_next, f
    return best.max(axis=1) % scale


def alignment_identity(encoded: list[np.ndarray], band_finder: SeedBands, pairs: np.ndarray) -> np.ndarray:
    """Identity (identical aligned residues / shorter length, floored) for each pair."""
    lengths = np.array([[len(encoded[a]), len(encoded[b])] for a, b in pairs]).reshape(-1, 2)
    swap = lengths[:, 0] > lengths[:, 1]
    short = np.where(swap, pairs[:, 1], pairs[:, 0])
    long = np.where(swap, pairs[:, 0], pairs[:, 1])
    short_len = lengths.min(axis=1)
    identity = np.zeros(len(pairs))
    bands = np.array([band_finder.band(s, l) for s, l in zip(short, long)]).reshape(-1, 2)
    # Batch pairs of equal band width and similar length.
    order = np.lexsort((short_len, bands[:, 1]))
    for start in range(0, len(order), _ALIGN_BATCH):
        batch = order[start : start + _ALIGN_BATCH]
        for half_width in np.unique(bands[batch, 1]):
            same = batch[bands[batch, 1] == half_width]
            # Chains beyond _KEY_SCALE - 1 residues are cut (identity can only go down).
            shorts = [encoded[short[p]][: _KEY_SCALE - 1] for p in same]
            identities = _align_batch(shorts, [encoded[long[p]] for p in same], bands[same, 0], int(half_width))
            identity[same] = identities / np.maximum(short_len[same], _MIN_DENOMINATOR)
    return identity
