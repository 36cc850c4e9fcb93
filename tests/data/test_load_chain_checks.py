"""Loading with `check_chains`: a column that does not hold the chain it claims is reported with its row; chains
the numbering cannot read are named in a warning, never dropped; `abag check` numbers chains by default."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "numbering"))
from numbering_sequences import SCFV, TRASTUZUMAB_VH, TRASTUZUMAB_VL  # noqa: E402

from abag.cli import main  # noqa: E402
from abag.data import DataValidationError, load_pairs, prepare_pairs  # noqa: E402

ANTIGEN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ"
JUNK_HEAVY = "ACDEFGHIKLMNPQRSTVWY" * 4


def _frame(rows):
    return pd.DataFrame([{"heavy": h, "light": lt, "antigen": ANTIGEN, "pkd": 8.0} for h, lt in rows])


def test_a_light_chain_in_heavy_is_reported_with_its_row_and_column():
    frame = _frame([(TRASTUZUMAB_VH, TRASTUZUMAB_VL), (TRASTUZUMAB_VL, "")])
    with pytest.raises(DataValidationError) as error:
        prepare_pairs(frame, check_chains=True)
    problems = error.value.problems
    assert [(p.row, p.column) for p in problems] == [(2, "heavy")]
    assert "light chain, not a heavy chain" in problems[0].reason


def test_swapped_chains_and_an_scfv_are_rejected_and_listed_not_dropped_silently():
    frame = _frame([(TRASTUZUMAB_VH, TRASTUZUMAB_VL), (TRASTUZUMAB_VL, TRASTUZUMAB_VH), (SCFV, "")])
    out, report = prepare_pairs(frame, check_chains=True, drop_invalid=True)
    assert list(out["source_row"]) == [1]
    reasons = {p.row: p.reason for p in report.rejected}
    assert "swapped" in reasons[2] and "variable domains" in reasons[3]


def test_a_chain_the_numbering_cannot_read_is_kept_and_named_in_a_warning():
    out, report = prepare_pairs(_frame([(TRASTUZUMAB_VH, ""), (JUNK_HEAVY, "")]), check_chains=True)
    assert len(out) == 2
    assert any("could not be numbered" in w and "rows 2" in w for w in report.warnings)


def test_without_check_chains_the_same_table_loads_as_before():
    out, _ = prepare_pairs(_frame([(TRASTUZUMAB_VL, "")]))
    assert len(out) == 1


def test_abag_check_numbers_chains_by_default_and_can_skip_it(tmp_path, capsys):
    path = tmp_path / "pairs.csv"
    _frame([(TRASTUZUMAB_VH, TRASTUZUMAB_VL), (TRASTUZUMAB_VL, "")]).to_csv(path, index=False)
    assert main(["check", "--data", str(path)]) == 2
    assert "row 2, column 'heavy'" in capsys.readouterr().out
    assert main(["check", "--data", str(path), "--no-check-chains"]) == 0


def test_load_pairs_passes_check_chains_through(tmp_path):
    path = tmp_path / "pairs.csv"
    _frame([(TRASTUZUMAB_VL, "")]).to_csv(path, index=False)
    with pytest.raises(DataValidationError):
        load_pairs(path, check_chains=True)
