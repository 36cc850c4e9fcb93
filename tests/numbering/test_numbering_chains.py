"""One chain numbered in IMGT: chain type, the variable domain's span, positions, regions, and failures."""

from __future__ import annotations

import pytest
from numbering_sequences import (
    IGG1_CH1,
    JUNK,
    KAPPA_CONSTANT,
    LINKER,
    TRASTUZUMAB_VH,
    TRASTUZUMAB_VH_LONG_CDR3,
    TRASTUZUMAB_VL,
    VHH,
)

from abag.numbering import REGION_NAMES, number_chain, position_key, region_of


def test_trastuzumab_heavy_and_light_get_their_chain_type_span_and_imgt_cdrs():
    heavy, light = number_chain(TRASTUZUMAB_VH), number_chain(TRASTUZUMAB_VL)
    assert heavy.ok and heavy.chain_types == ("H",) and light.chain_types == ("K",)
    vh = heavy.domains[0]
    assert (vh.start, vh.end) == (0, len(TRASTUZUMAB_VH)) and vh.residues == TRASTUZUMAB_VH
    # the IMGT CDRs of trastuzumab (IMGT/mAb-DB)
    assert vh.cdrs() == {"CDR1": "GFNIKDTY", "CDR2": "IYPTNGYT", "CDR3": "SRWGGDGFYAMDY"}
    assert light.domains[0].cdrs() == {"CDR1": "QDVNTA", "CDR2": "SAS", "CDR3": "QQHYTTPPT"}
    numbers = [n for n, _, _ in vh.positions()]
    assert numbers[0] == 1 and numbers[-1] == 128 and 104 in numbers and 23 in numbers  # the two cysteines
    assert {n: aa for n, code, aa in vh.positions() if not code}[104] == "C"


def test_a_fab_chain_is_cut_to_its_variable_domain():
    heavy = number_chain(TRASTUZUMAB_VH + IGG1_CH1)
    light = number_chain(TRASTUZUMAB_VL + KAPPA_CONSTANT)
    assert (heavy.domains[0].start, heavy.domains[0].end) == (0, len(TRASTUZUMAB_VH))
    assert light.domains[0].start == 0 and abs(light.domains[0].end - len(TRASTUZUMAB_VL)) <= 1
    assert len(heavy.domains) == 1 and len(light.domains) == 1


@pytest.mark.parametrize("order", ["VH-VL", "VL-VH"])
def test_an_scfv_is_two_domains_not_its_first(order):
    first, second = (TRASTUZUMAB_VH, TRASTUZUMAB_VL) if order == "VH-VL" else (TRASTUZUMAB_VL, TRASTUZUMAB_VH)
    chain = number_chain(first + LINKER + second)
    assert chain.ok and chain.is_multi_domain
    assert chain.chain_types == (("H", "K") if order == "VH-VL" else ("K", "H"))
    one, two = chain.domains
    assert one.residues == first and two.residues == second
    assert two.start == len(first) + len(LINKER) and two.end == len(chain.sequence)
    assert chain.domain_of("heavy").chain_type == "H" and chain.domain_of("light").chain_type == "K"


def test_a_vhh_is_one_heavy_domain():
    chain = number_chain(VHH)
    assert chain.chain_types == ("H",) and chain.domains[0].residues == VHH
    assert chain.domains[0].cdrs()["CDR3"].endswith("FEY")


@pytest.mark.parametrize("text, words", [("", "empty"), ("EVQLV*ESG", "'*'"), ("EVQLVBSG", "'B'"),
                                         (JUNK, "no antibody variable domain")])
def test_what_cannot_be_numbered_says_why(text, words):
    chain = number_chain(text)
    assert not chain.ok and chain.domains == () and words in chain.failure


def test_lower_case_numbers_like_upper_case_and_keeps_the_input():
    lower, upper = number_chain(TRASTUZUMAB_VH.lower()), number_chain(TRASTUZUMAB_VH)
    assert lower.sequence == TRASTUZUMAB_VH.lower() and lower.domains == upper.domains


def test_positions_come_in_imgt_order_and_insertions_fill_the_middle_of_a_long_cdr3():
    domain = number_chain(TRASTUZUMAB_VH_LONG_CDR3).domains[0]
    keys = [position_key(n, code) for n, code, _ in domain.positions()]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    labels = domain.labels()
    assert "111A" in labels and "112A" in labels  # IMGT grows CDR3 symmetrically around 111/112
    assert domain.cdrs()["CDR3"] == "SRWGGDGFYYYAMDY"
    assert position_key(111) < position_key(111, "A") < position_key(112, "A") < position_key(112)
    assert position_key(32, "A") < position_key(33, "B") < position_key(33, "A") < position_key(33)


def test_regions_follow_the_imgt_boundaries_and_tile_the_domain():
    assert [region_of(n) for n in (1, 26, 27, 38, 39, 55, 56, 65, 66, 104, 105, 117, 118, 128)] == [
        "FR1", "FR1", "CDR1", "CDR1", "FR2", "FR2", "CDR2", "CDR2", "FR3", "FR3", "CDR3", "CDR3", "FR4", "FR4"]
    with pytest.raises(ValueError):
        region_of(129)
    domain = number_chain(TRASTUZUMAB_VH_LONG_CDR3).domains[0]
    parts = domain.region_sequences()
    assert list(parts) == list(REGION_NAMES) and "".join(parts.values()) == domain.residues


def test_our_regions_match_the_library_s_own_annotation():
    import anarcism

    raw = anarcism.number_sequence(TRASTUZUMAB_VH_LONG_CDR3, allowed_species=["human", "mouse"]).domains[0]
    ours = number_chain(TRASTUZUMAB_VH_LONG_CDR3).domains[0].regions()
    assert ours == [r.region for r in raw.numbering if r.amino_acid != "-"]
