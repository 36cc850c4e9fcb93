"""Aligned one-hot over IMGT positions: loops of different length align, unseen positions are counted."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numbering_sequences import (
    JUNK,
    PERTUZUMAB_VL,
    TRASTUZUMAB_VH,
    TRASTUZUMAB_VH_LONG_CDR3,
    TRASTUZUMAB_VL,
    VHH,
)

from abag.numbering import AlignedOneHotEncoder, number_chain, number_chains


def _fitted():
    heavy = list(number_chains([TRASTUZUMAB_VH, TRASTUZUMAB_VH_LONG_CDR3]))
    light = list(number_chains([TRASTUZUMAB_VL, TRASTUZUMAB_VL]))
    return AlignedOneHotEncoder().fit(heavy, light), heavy, light


def test_hcdr3_length_variants_agree_everywhere_outside_the_cdr3_block():
    encoder, heavy, light = _fitted()
    rows = encoder.transform(heavy, light).matrix.toarray()
    cdr3 = encoder.columns("heavy", ["CDR3"])
    outside = np.setdiff1d(np.arange(encoder.n_features), cdr3)
    assert np.array_equal(rows[0, outside], rows[1, outside])
    assert not np.array_equal(rows[0, cdr3], rows[1, cdr3])
    # a position-wise comparison of the raw strings would not agree: the long variant shifts everything after CDR3
    assert TRASTUZUMAB_VH[110:] != TRASTUZUMAB_VH_LONG_CDR3[110:len(TRASTUZUMAB_VH)]


def test_each_learned_position_holds_exactly_one_residue_or_gap():
    encoder, heavy, light = _fitted()
    features = encoder.transform(heavy, light)
    assert isinstance(features.matrix, sp.csr_matrix) and features.matrix.shape == (2, encoder.n_features)
    per_position = features.matrix.toarray().reshape(2, -1, 21).sum(axis=2)
    assert (per_position == 1).all()
    gaps = features.matrix.toarray().reshape(2, -1, 21)[:, :, 20].sum(axis=1)
    assert gaps[0] == gaps[1] + 2  # the short CDR3 has a gap where the long one has its two extra residues
    names = encoder.feature_names()
    assert len(names) == encoder.n_features and names[0] == "H1_A" and names[-1].endswith("_-")
    assert any(n.startswith("H111A_") for n in names) and any(n.startswith("L27_") for n in names)


def test_positions_never_seen_in_training_are_ignored_and_counted():
    short, long_ = number_chain(TRASTUZUMAB_VH), number_chain(TRASTUZUMAB_VH_LONG_CDR3)
    light = number_chain(TRASTUZUMAB_VL)
    encoder = AlignedOneHotEncoder().fit([short], [light])
    features = encoder.transform([long_, short], [light, light])
    expected = len(set(long_.domains[0].labels()) - set(short.domains[0].labels()))
    assert expected > 0 and features.unseen.tolist() == [expected, 0] and features.n_unseen == expected
    assert features.matrix.shape[1] == encoder.n_features


def test_missing_and_unnumbered_chains_give_zeros_and_are_flagged():
    encoder = AlignedOneHotEncoder().fit([number_chain(TRASTUZUMAB_VH)], [number_chain(PERTUZUMAB_VL)])
    heavy = [number_chain(VHH), number_chain(JUNK), number_chain(TRASTUZUMAB_VL)]
    light = [None, number_chain(TRASTUZUMAB_VL), number_chain(TRASTUZUMAB_VL)]
    features = encoder.transform(heavy, light)
    dense = features.matrix.toarray()
    light_block, heavy_block = encoder.columns("light"), encoder.columns("heavy")
    assert dense[0, light_block].sum() == 0 and dense[0, heavy_block].sum() > 0
    assert dense[1, heavy_block].sum() == 0 and dense[2, heavy_block].sum() == 0
    assert features.missing_heavy.tolist() == [False, True, True]  # a light chain has no heavy domain to read
    assert features.missing_light.tolist() == [False, False, False]


def test_transform_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="not fitted"):
        AlignedOneHotEncoder().transform([], [])


def test_an_x_residue_sets_no_column_and_is_not_a_gap():
    x_variant = TRASTUZUMAB_VH[:5] + "X" + TRASTUZUMAB_VH[6:]
    encoder = AlignedOneHotEncoder().fit([number_chain(TRASTUZUMAB_VH)], [None])
    dense = encoder.transform([number_chain(x_variant)], [None]).matrix.toarray().reshape(-1, 21)
    assert dense[5].sum() == 0 and dense.sum() == len(dense) - 1
