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


def test_abag_train_and_predict_check_chains_by_default(tmp_path, capsys, monkeypatch):
    """The default of train/predict: a light chain in `heavy` stops the run naming its row; --no-check-chains
    skips the check (the row then reaches training)."""
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "pairs.csv"
    _frame([(TRASTUZUMAB_VH, TRASTUZUMAB_VL), (TRASTUZUMAB_VL, "")]).to_csv(path, index=False)
    for command in (["train", "--out", str(tmp_path / "run"), "--encoder", "tiny"], ["predict", "--out",
                                                                                      str(tmp_path / "p.csv")]):
        assert main([*command, "--data", str(path), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "row 2" in err and "'heavy'" in err and "light chain, not a heavy chain" in err
        assert "Traceback" not in err


def test_the_automatic_check_skips_large_tables_with_a_warning(monkeypatch):
    """ChainCheck("auto") numbers up to NUMBERING_MAX_CHAINS distinct chains; above, the table loads unchecked and
    a warning says so (never silently)."""
    import abag.data.pipeline as pipeline
    import abag.numbering.domains as domains
    from abag.data import ChainCheck

    frame = _frame([(TRASTUZUMAB_VH, TRASTUZUMAB_VL), (TRASTUZUMAB_VL, "")])
    with pytest.raises(DataValidationError):
        prepare_pairs(frame, check_chains=ChainCheck("auto"))
    monkeypatch.setattr(domains, "NUMBERING_MAX_CHAINS", 1)
    monkeypatch.setattr(pipeline, "NUMBERING_MAX_CHAINS", 1)
    out, report = prepare_pairs(frame, check_chains=ChainCheck("auto"))
    assert len(out) == 2
    assert any("not checked" in w and "2 distinct chains" in w for w in report.warnings)
    with pytest.raises(DataValidationError):
        prepare_pairs(frame, check_chains=ChainCheck("always"))
