"""How `abag suggest` sees variants: residue codes at the positions where they differ, one-hot features, Hamming.

Variants of one parent have chains of equal length, so residue i of one variant faces residue i of every
other. `encode_variants` keeps only the positions (heavy, light and antigen) at which the given rows differ,
and one-hot encodes the residues seen there: the features of the one-hot models, and the positions of the
diversity rule's Hamming distance.

When a chain's length differs between rows (insertions or deletions), positions no longer face each other:
the features fall back to the k-mer composition (k = 1, 2) of the antibody chains, and the distance to the
Hamming distance after padding each chain at its end, which is an upper bound of the edit distance.
`VariantEncoding.note` says which was used. Imports numpy, pandas, abag.policy and abag.evaluation.baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from abag.encoding.kmers import kmer_composition
from abag.policy import UNKNOWN_RESIDUE, residue_codes

__all__ = ["CHAIN_COLUMNS", "VariantEncoding", "encode_variants", "hamming_from", "pairwise_hamming"]

CHAIN_COLUMNS = ("heavy", "light", "antigen")
_PAD = UNKNOWN_RESIDUE + 1  # the code of a residue beyond a chain's end (only when lengths differ)
_CHAIN_LETTER = {"heavy": "H", "light": "L", "antigen": "A"}


@dataclass(frozen=True)
class VariantEncoding:
    """Rows of a variant table as residue codes at their varying positions, and model features."""

    codes: np.ndarray             # (n, p) uint8 residue codes at the p varying positions
    positions: tuple[str, ...]    # p labels such as "H52" (chain letter, 1-based position)
    features: np.ndarray          # (n, f) float64: one-hot of `codes`, or k-mer composition when unaligned
    aligned: bool                 # every chain has one length across rows
    note: str                     # what the features and the distance are, in one sentence

    @property
    def feature_kind(self) -> str:
        return "one-hot" if self.aligned else "k-mer composition"


def _chain_codes(sequences: pd.Series) -> tuple[np.ndarray, np.ndarray, bool]:
    """(codes of the distinct chains (u, L), index of each row's chain, whether all have one length)."""
    values = sequences.fillna("").astype(str).to_numpy()
    distinct, inverse = np.unique(values, return_inverse=True)
    lengths = np.fromiter((len(s) for s in distinct), dtype=np.int64, count=len(distinct))
    width = int(lengths.max()) if len(distinct) else 0
    codes = np.full((len(distinct), width), _PAD, dtype=np.uint8)
    for i, sequence in enumerate(distinct):
        codes[i, : len(sequence)] = residue_codes(sequence)
    return codes, inverse.reshape(-1), bool(len(set(lengths.tolist())) <= 1)


def encode_variants(frame: pd.DataFrame) -> VariantEncoding:
    """Codes, position labels and features of every row of `frame` (columns heavy, light, antigen)."""
    blocks, labels, aligned = [], [], True
    for column in CHAIN_COLUMNS:
        if column not in frame or frame[column].nunique(dropna=False) <= 1:
            continue
        codes, inverse, same_length = _chain_codes(frame[column])
        aligned &= same_length
        varying = np.flatnonzero((codes != codes[:1]).any(axis=0))
        blocks.append(codes[inverse][:, varying])
        labels.extend(f"{_CHAIN_LETTER[column]}{j + 1}" for j in varying)
    codes = np.hstack(blocks) if blocks else np.zeros((len(frame), 0), dtype=np.uint8)
    if aligned:
        features = _one_hot(codes)
        note = (f"one-hot of the residues at the {codes.shape[1]} positions where the variants differ; "
                f"distance = Hamming distance over those positions")
    else:
        antibody = (frame["heavy"].astype(str) + "|" + frame.get("light", pd.Series("", index=frame.index))
                    .fillna("").astype(str)).tolist()
        features = np.hstack([kmer_composition(antibody, 1), kmer_composition(antibody, 2)])
        note = ("chains differ in length, so positions do not face each other: features = k-mer (k = 1, 2) "
                "composition of the antibody chains; distance = Hamming distance after padding chains at the "
                "end (an upper bound of the edit distance)")
    return VariantEncoding(codes, tuple(labels), np.asarray(features, dtype=np.float64), aligned, note)


def _one_hot(codes: np.ndarray) -> np.ndarray:
    """One column per (position, residue seen there); a position with k residues gives k columns."""
    columns = []
    for j in range(codes.shape[1]):
        for value in np.unique(codes[:, j]):
            columns.append(codes[:, j] == value)
    if not columns:
        return np.zeros((len(codes), 0))
    return np.column_stack(columns).astype(np.float64)


def hamming_from(codes: np.ndarray, row: int) -> np.ndarray:
    """Hamming distance of every row of `codes` to row `row` (int64)."""
    return (codes != codes[row]).sum(axis=1).astype(np.int64)


def pairwise_hamming(codes: np.ndarray) -> np.ndarray:
    """(n, n) Hamming distances between the rows of `codes` (for reports and tests; n should be small)."""
    return (codes[:, None, :] != codes[None, :, :]).sum(axis=2)
