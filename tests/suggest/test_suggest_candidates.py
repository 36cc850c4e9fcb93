"""Candidate enumeration for `abag suggest`: positions, single mutants, combinations of helpful mutations, cleaning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import random_sequence

from abag.suggest import (
    SuggestError,
    combine_helpful,
    mutation_names,
    parse_positions,
    single_mutants,
)
from abag.suggest.candidates import (
    MAX_ENUMERATED,
    Mutation,
    clean_candidates,
    helpful_mutations,
    mutations_of,
)

RNG = np.random.default_rng(7)
PARENT = pd.Series({"heavy": random_sequence(RNG, 40), "light": random_sequence(RNG, 30),
                    "antigen": random_sequence(RNG, 20)})


def variant(*mutations: tuple[str, int, str]) -> dict:
    chains = {"heavy": list(PARENT["heavy"]), "light": list(PARENT["light"])}
    for chain, position, residue in mutations:
        chains[chain][position - 1] = residue
    return {"heavy": "".join(chains["heavy"]), "light": "".join(chains["light"]), "antigen": PARENT["antigen"]}


def other(chain: str, position: int, k: int = 0) -> str:
    """The k-th residue that differs from the parent's at this position."""
    return [a for a in "ACDEFGHIKLMNPQRSTVWY" if a != PARENT[chain][position - 1]][k]


def test_sequence_positions_accept_chains_ranges_and_bare_heavy_numbers():
    """seq: counts residues along each chain from 1 (the only meaning before 2.8); no numbering, no parent."""
    assert parse_positions("seq:H3, L2-L4,7,h3") == [("heavy", 3), ("light", 2), ("light", 3), ("light", 4),
                                                     ("heavy", 7)]
    assert parse_positions("SEQ:H5-7") == [("heavy", 5), ("heavy", 6), ("heavy", 7)]


@pytest.mark.parametrize("text", ["X5", "H", "H5-L7", "H7-H5", "0", "H5,,H6", "5a"])
def test_unreadable_positions_are_named_in_the_error(text):
    with pytest.raises(SuggestError, match="position"):
        parse_positions("seq:" + text)
    with pytest.raises(SuggestError, match="position"):
        parse_positions(text, EXAMPLE)


# The first antibody of the packaged example (numbered by anarcism): CDR-H3 SRWGGDG, kappa CDR-L1 QGIRNC.
EXAMPLE = __import__("abag").datasets.example_pairs().iloc[0][["heavy", "light", "antigen"]]


def imgt(chain: str) -> list[str]:
    from abag.numbering import number_chain

    return number_chain(EXAMPLE[chain]).domain_of(chain).labels()


def test_positions_are_imgt_numbers_of_the_parents_domains():
    heavy = imgt("heavy")
    cdr3 = [i + 1 for i, label in enumerate(heavy) if 105 <= int(label.rstrip("AB")) <= 117]
    assert "".join(EXAMPLE["heavy"][i - 1] for i in cdr3) == "SRWGGDG"  # IMGT CDR-H3
    assert parse_positions("H105-H117", EXAMPLE) == [("heavy", i) for i in cdr3]
    assert parse_positions("H:CDR3", EXAMPLE) == parse_positions("cdr-h3", EXAMPLE) == parse_positions("105-117",
                                                                                                       EXAMPLE)
    light_cdr1 = [("light", i + 1) for i, label in enumerate(imgt("light")) if 27 <= int(label) <= 38]
    assert parse_positions("L27-L38", EXAMPLE) == parse_positions("L:CDR1", EXAMPLE) == light_cdr1
    assert len(light_cdr1) == 6  # QGIRNC
    # A single number is that IMGT position, wherever it falls along the sequence.
    place = heavy.index("118") + 1
    assert parse_positions("H118", EXAMPLE) == [("heavy", place)] and EXAMPLE["heavy"][place - 1] == "W"
    mutants = single_mutants(EXAMPLE, "H118")
    assert len(mutants) == 19 and set(mutants["mutations"].str[:6]) == {"H:W118"}  # named by IMGT position


def test_insertion_codes_and_positions_the_parent_lacks():
    long_cdr3 = __import__("abag").datasets.example_pairs()["heavy"].iloc[2]
    parent = pd.Series({"heavy": long_cdr3, "light": "", "antigen": "ACDEFGHIK"})
    labels = imgt_of(long_cdr3)
    assert "111A" in labels and "112A" in labels
    (place,) = [i + 1 for i, label in enumerate(labels) if label == "111A"]
    assert parse_positions("H111A", parent) == [("heavy", place)]
    span = parse_positions("H111-H112", parent)
    assert [labels[i - 1] for _, i in span] == ["111", "111A", "111B", "112B", "112A", "112"]
    assert single_mutants(parent, "H111A")["mutations"].str.startswith(f"H:{long_cdr3[place - 1]}111A").all()
    # The short CDR3 of the first example antibody has no 111A, and a kappa CDR1 of 6 residues skips 32-34.
    with pytest.raises(SuggestError, match=r"position H111A: the parent's heavy chain has no IMGT position 111A "
                                           r"\(its CDR3 is numbered 105, .*117\)"):
        parse_positions("H105,H111A", EXAMPLE)
    with pytest.raises(SuggestError, match=r"position L32-L34: the parent's light chain has no IMGT position in "
                                           r"32-34"):
        parse_positions("L32-L34", EXAMPLE)
    with pytest.raises(SuggestError, match="IMGT positions run from 1 to 128"):
        parse_positions("H129", EXAMPLE)
    with pytest.raises(SuggestError, match="light chain is absent"):
        parse_positions("L:CDR1", parent)


def imgt_of(sequence: str) -> list[str]:
    from abag.numbering import number_chain

    return number_chain(sequence).domain_of("heavy").labels()


def test_a_parent_that_cannot_be_numbered_needs_sequence_positions():
    with pytest.raises(SuggestError, match=r"position H3: the parent's heavy chain cannot be numbered in IMGT "
                                           r"\(.*\); give positions along the sequence instead, e\.g\. seq:H31"):
        parse_positions("H3", PARENT)
    with pytest.raises(SuggestError, match="give the parent .* seq:H3"):
        parse_positions("H3")


def test_single_mutants_are_all_19_substitutions_at_each_position():
    mutants = single_mutants(PARENT, [("heavy", 3), ("light", 10)])
    assert len(mutants) == 2 * 19 and not mutants.duplicated(["heavy", "light"]).any()
    for _, row in mutants.iterrows():
        found = mutations_of(PARENT, row["heavy"], row["light"])
        assert len(found) == 1 and str(found[0]) == row["mutations"]
    assert set(mutants["mutations"].str[:4]) == {f"H:{PARENT['heavy'][2]}3", f"L:{PARENT['light'][9]}1"}


def test_a_position_beyond_the_chain_is_a_clear_error():
    with pytest.raises(SuggestError, match=r"position seq:H41: the parent's heavy chain has 40 residues"):
        single_mutants(PARENT, [("heavy", 41)])
    with pytest.raises(SuggestError, match="light chain is absent"):
        single_mutants(PARENT.drop("light").rename({}), [("light", 1)])


def test_mutation_names_relative_to_the_parent():
    frame = pd.DataFrame([variant(), variant(("heavy", 2, other("heavy", 2)), ("light", 5, other("light", 5)))])
    frame.loc[2] = {"heavy": PARENT["heavy"] + "A", "light": PARENT["light"], "antigen": PARENT["antigen"]}
    names = mutation_names(PARENT, frame)
    assert names[0] == "" and names[1] == f"H:{PARENT['heavy'][1]}2{other('heavy', 2)};" \
                                          f"L:{PARENT['light'][4]}5{other('light', 5)}"
    assert pd.isna(names[2])


def _measured_singles() -> pd.DataFrame:
    """The parent at 8.0 and four single mutants: two better, one worse, one equal."""
    rows = [variant() | {"pkd": 8.0}]
    for (position, pkd) in ((3, 8.5), (6, 8.3), (9, 7.1), (12, 8.0)):
        rows.append(variant(("heavy", position, other("heavy", position))) | {"pkd": pkd})
    return pd.DataFrame(rows)


def test_helpful_mutations_are_those_measured_above_the_parent():
    helpful = helpful_mutations(PARENT, _measured_singles())
    assert [(m.chain, m.position) for m in helpful] == [("heavy", 3), ("heavy", 6)]


def test_without_a_measured_parent_a_mutation_is_compared_with_the_variants_lacking_it():
    measured = _measured_singles().iloc[1:]  # no parent row: reference = the other variants' mean
    helpful = helpful_mutations(PARENT, measured)
    assert [(m.chain, m.position) for m in helpful] == [("heavy", 3), ("heavy", 6), ("heavy", 12)]


def test_combinations_of_helpful_mutations_up_to_the_max_order():
    measured = pd.concat([_measured_singles(), pd.DataFrame([variant(("heavy", 15, other("heavy", 15))) |
                                                             {"pkd": 8.9}])], ignore_index=True)
    pairs = combine_helpful(PARENT, measured, max_order=2)
    assert len(pairs) == 3  # 3 helpful mutations (H3, H6, H15): 3 pairs
    triples = combine_helpful(PARENT, measured, max_order=3)
    assert len(triples) == 4 and (triples["mutations"].str.count(";") + 1).tolist() == [2, 2, 2, 3]
    for _, row in triples.iterrows():
        assert {(m.chain, m.position) for m in mutations_of(PARENT, row["heavy"], row["light"])} <= \
            {("heavy", 3), ("heavy", 6), ("heavy", 15)}


def test_two_helpful_substitutions_at_one_position_are_never_combined():
    rows = [variant() | {"pkd": 8.0}, variant(("heavy", 3, other("heavy", 3, 0))) | {"pkd": 9.0},
            variant(("heavy", 3, other("heavy", 3, 1))) | {"pkd": 9.0},
            variant(("heavy", 6, other("heavy", 6))) | {"pkd": 9.0}]
    combined = combine_helpful(PARENT, pd.DataFrame(rows), max_order=3)
    assert len(combined) == 2 and not (combined["mutations"].str.count(";") >= 2).any()


def test_too_many_combinations_are_refused_before_they_are_built(monkeypatch):
    import abag.suggest.candidates as candidates

    monkeypatch.setattr(candidates, "MAX_ENUMERATED", 2)
    measured = pd.DataFrame([variant() | {"pkd": 8.0}] + [variant(("heavy", p, other("heavy", p))) | {"pkd": 9.0}
                                                         for p in (3, 6, 9)])
    with pytest.raises(SuggestError, match=r"give 4 combinations .* the limit is 2"):
        candidates.combine_helpful(PARENT, measured, max_order=3)
    assert MAX_ENUMERATED > 2


def test_cleaning_drops_repeats_and_measured_variants():
    a, b, c = variant(("heavy", 1, other("heavy", 1))), variant(("heavy", 2, other("heavy", 2))), variant()
    candidates = pd.DataFrame([a, b, a, c])
    cleaned, repeats, seen = clean_candidates(candidates, pd.DataFrame([c | {"pkd": 8.0}]))
    assert (repeats, seen, len(cleaned)) == (1, 1, 2)
    assert list(cleaned["heavy"]) == [a["heavy"], b["heavy"]]
    assert Mutation("heavy", 3, "A", "W") < Mutation("light", 1, "A", "W")


def test_the_parent_of_measured_variants_is_the_one_closest_to_their_consensus():
    from abag.suggest import parent_from_measured

    singles = _measured_singles()
    for measured in (singles, singles.iloc[::-1], singles.iloc[1:]):
        parent, sentence = parent_from_measured(measured)
        assert sentence.startswith("parent: the measured variant closest to the consensus")
        if len(measured) == len(singles):  # the parent was measured: it is the consensus itself
            assert (parent["heavy"], parent["light"]) == (PARENT["heavy"], PARENT["light"])
            assert "0 residue(s) from the consensus" in sentence
        else:  # not measured: a single mutant of it, never another antibody
            assert len(mutations_of(PARENT, parent["heavy"], parent["light"])) == 1
    # A row of another antigen or length is no variant of it; unrelated antibodies are refused.
    other_antibody = pd.DataFrame([{"heavy": random_sequence(RNG, 40), "light": random_sequence(RNG, 30),
                                    "antigen": PARENT["antigen"], "pkd": 7.0} for _ in range(3)])
    parent, sentence = parent_from_measured(pd.concat([singles, other_antibody.iloc[:1].assign(
        heavy=random_sequence(RNG, 45))], ignore_index=True))
    assert parent["heavy"] == PARENT["heavy"] and "1 measured row(s) of another antigen" in sentence
    with pytest.raises(SuggestError, match="not variants of one antibody"):
        parent_from_measured(other_antibody)
