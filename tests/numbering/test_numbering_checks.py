"""Column checks: a light chain in `heavy`, swapped chains, an scFv in one cell, and unreadable chains, by row."""

from __future__ import annotations

from numbering_sequences import (
    JUNK,
    PERTUZUMAB_VL,
    SCFV,
    TRASTUZUMAB_VH,
    TRASTUZUMAB_VL,
    VHH,
)

from abag.data.chain_checks import check_chain_columns
from abag.data.report import RowProblem


def test_correct_columns_and_a_vhh_without_light_chain_raise_no_problem():
    assert check_chain_columns([TRASTUZUMAB_VH, VHH], [TRASTUZUMAB_VL, ""]) == []


def test_a_light_chain_given_as_heavy_is_reported_with_its_row_and_column():
    problems = check_chain_columns([TRASTUZUMAB_VH, PERTUZUMAB_VL, VHH], [TRASTUZUMAB_VL, None, ""],
                                   heavy_column="VH", light_column="VL", rows=[7, 8, 9])
    assert len(problems) == 1
    problem = problems[0]
    assert isinstance(problem, RowProblem) and (problem.row, problem.column) == (8, "VH")
    assert "kappa light chain, not a heavy chain" in problem.reason and problem.value == PERTUZUMAB_VL[:39] + "…"


def test_a_heavy_chain_in_the_light_column_is_reported():
    problems = check_chain_columns([VHH], [TRASTUZUMAB_VH])
    assert [(p.row, p.column) for p in problems] == [(1, "light")] and "heavy chain" in problems[0].reason


def test_swapped_chains_are_one_problem_that_says_so():
    problems = check_chain_columns([TRASTUZUMAB_VH, TRASTUZUMAB_VL], [TRASTUZUMAB_VL, TRASTUZUMAB_VH])
    assert [(p.row, p.column) for p in problems] == [(2, "heavy")] and "swapped" in problems[0].reason


def test_an_scfv_in_one_cell_is_reported_not_cut_to_its_vh():
    problems = check_chain_columns([SCFV, TRASTUZUMAB_VH], ["", SCFV])
    assert [(p.row, p.column) for p in problems] == [(1, "heavy"), (2, "light")]
    assert all("2 variable domains" in p.reason and "scFv" in p.reason for p in problems)


def test_a_chain_that_cannot_be_numbered_is_reported_not_dropped():
    problems = check_chain_columns([JUNK, "EVQ*LV", TRASTUZUMAB_VH], [TRASTUZUMAB_VL, TRASTUZUMAB_VL, JUNK])
    assert [(p.row, p.column) for p in problems] == [(1, "heavy"), (2, "heavy"), (3, "light")]
    assert all(p.reason.startswith("cannot be numbered") for p in problems)
    assert "'*'" in problems[1].reason
