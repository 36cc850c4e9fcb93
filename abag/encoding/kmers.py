"""k-mer composition of protein sequences: the explicit sequence features behind the k-mer ridge.

Frequencies of every k-mer over the 20 standard residues (unknown residues break k-mers), per sequence,
dense or sparse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.preprocessing import normalize

from abag.policy import RESIDUE_CODE, UNKNOWN_RESIDUE


# --------------------------------------------------------------------------- features
def _clean(seq: Any) -> str:
    """Upper-case string; None/NaN -> ''."""
    return "" if seq is None or (isinstance(seq, float) and np.isnan(seq)) else str(seq).upper()


def _encode(sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Residue codes (0-19, UNKNOWN_RESIDUE = not a standard residue) of all sequences joined by '|',
    and the sequence index of each position."""
    seqs = [_clean(s) for s in sequences]
    joined = "|".join(seqs).encode("ascii", errors="replace")
    codes = RESIDUE_CODE[np.frombuffer(joined, dtype=np.uint8)]
    owner = np.repeat(np.arange(len(seqs)), [len(s) + 1 for s in seqs])[: codes.size]
    return codes, owner


def _kmer_frequencies(codes: np.ndarray, owner: np.ndarray, n: int, k: int, sparse_output: bool) -> Any:
    """k-mer frequencies of ``n`` sequences from their joined residue codes (see :func:`kmer_composition`)."""
    if codes.size >= k:
        windows = np.lib.stride_tricks.sliding_window_view(codes, k)
        valid = np.all(windows != UNKNOWN_RESIDUE, axis=1)
        columns = sum(windows[valid, j].astype(np.int64) * 20 ** (k - 1 - j) for j in range(k))
        rows = owner[: windows.shape[0]][valid]
    else:
        columns = rows = np.zeros(0, dtype=np.int64)
    if sparse_output:
        counts = sparse.csr_matrix((np.ones(rows.size), (rows, columns)), shape=(n, 20**k))
        return normalize(counts, norm="l1") if n else counts
    freqs = np.bincount(rows * 20**k + columns, minlength=n * 20**k).reshape(n, 20**k).astype(float)
    totals = freqs.sum(axis=1, keepdims=True)
    return np.divide(freqs, totals, out=freqs, where=totals > 0)


def kmer_composition(sequences: Sequence[str], k: int, *, sparse_output: bool = False) -> Any:
    """Normalised k-mer frequencies over the 20 standard amino acids (20**k columns).

    k-mers spanning a '|' chain separator or a non-standard residue are skipped;
    each row sums to 1, or is all zeros when a sequence has no valid k-mer ('' / None).
    Returns a dense ndarray, or a CSR matrix when ``sparse_output``.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    codes, owner = _encode(sequences)
    return _kmer_frequencies(codes, owner, len(sequences), k, sparse_output)
