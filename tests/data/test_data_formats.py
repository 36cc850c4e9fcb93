"""The inputs people have: FASTA and paired FASTA, Excel workbooks, AIRR rearrangement TSV, Kd typed into `pkd`,
label columns that predict does not need, and `abag.data.check`."""

from __future__ import annotations

import gzip
import math
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from abag.data import DataValidationError, load_pairs, prepare_pairs

HEAVY = "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMDYWGQGTLVTVSS"
HEAVY_2 = "EVQLVESGGGLVQPGRSLRLSCAASGFTFDDYAMHWVRQAPGKGLEWVSAITWNSGHIDYADSVEGRFTISRDNAKNSLYLQMNSLRAEDTAVYYCAKVSYLSTASSLDYWGQGTLVTVSS"
LIGHT = "DIQMTQSPSSLSASVGDRVTITCRASQDVNTAVAWYQQKPGKAPKLLIYSASFLYSGVPSRFSGSRSGTDFTLTISSLQPEDFATYYCQQHYTTPPTFGQGTKVEIK"
ANTIGEN = "MKTIIALSYIFCLVFAQDLPGNDNSTATLCLGHHAVPNGTLVKTITDDQIEVTNATELVQSSSTGKICNNPHRILDGIDCTLIDALLGDPHCDVFQNETWDLFVERSKAFSNCYPYDVPDYASLRSLVASSGTLEF"
ANTIGEN_2 = "GLFGAIAGFIEGGWTGMIDGWYGYHHQNEQGSGYAADQKSTQNAIDGITNKVNSVIEKMNTQFTAVGKEFNKLERRMENLNKKVDDGFIDIWTYNAELLVLLENERTLDF"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def reasons(excinfo: pytest.ExceptionInfo) -> str:
    return "\n".join(p.reason for p in excinfo.value.problems)


# --------------------------------------------------------------------------------------------
# FASTA and paired FASTA
# --------------------------------------------------------------------------------------------

PAIRED = f"""; two antibodies and their antigens
>ab1|heavy pkd=8.2 lab=A
{HEAVY[:60]}
{HEAVY[60:]}
>ab1|light
{LIGHT}*
>ab1|antigen
{ANTIGEN}
>ab2_H kd_nM=3.1
{HEAVY_2}

>ab2_L
{LIGHT}
>ab2_antigen
{ANTIGEN}
>ab2_antigen
{ANTIGEN_2}
"""


def test_paired_fasta_gives_one_row_per_antibody_with_header_fields(tmp_path):
    text = PAIRED.replace("kd_nM=3.1", "pkd=<6")
    df, report = load_pairs(write(tmp_path / "pairs.fasta", text))
    assert df["id"].tolist() == ["ab1", "ab2"] and df["source_row"].tolist() == [1, 2]
    assert df["heavy"].tolist() == [HEAVY, HEAVY_2] and df["light"].tolist() == [LIGHT, LIGHT]  # the '*' is a stop
    assert df["antigen"].tolist() == [ANTIGEN, f"{ANTIGEN}|{ANTIGEN_2}"]  # several antigen records: its chains
    assert df["pkd"].tolist() == [8.2, 6.0] and df["censored"].tolist() == [False, True]
    assert df["lab"].tolist() == ["A", ""]
    assert "FASTA, 7 record(s) grouped by ID into 2 antibody(ies)" in report.summary()


def test_the_issue_s_fasta_and_kd_fields(tmp_path):
    """'>ab0_heavy' used to give "missing required column 'heavy' (… columns found: '>ab0_heavy')"."""
    text = f">ab0_heavy kd_nM=10\n{HEAVY}\n>ab0_light\n{LIGHT}\n>ab0_antigen\n{ANTIGEN}\n"
    df, _ = load_pairs(write(tmp_path / "ab.fa", text))
    assert df["pkd"].tolist() == pytest.approx([8.0]) and df["id"].tolist() == ["ab0"]


def test_igfold_style_fasta_with_an_antigen_given_separately(tmp_path):
    path = write(tmp_path / "ab.fasta", f">H\n{HEAVY}\n>L\n{LIGHT}\n")
    with pytest.raises(DataValidationError, match="no antigen.*--antigen"):
        load_pairs(path, require_pkd=False)
    df, report = load_pairs(path, require_pkd=False, antigen=ANTIGEN)
    assert df[["heavy", "light", "antigen"]].values.tolist() == [[HEAVY, LIGHT, ANTIGEN]]
    antigen_file = write(tmp_path / "antigen.fasta", f">7KMG_A\n{ANTIGEN}\n>7KMG_B\n{ANTIGEN_2}\n")
    df, report = load_pairs(path, require_pkd=False, antigen=str(antigen_file))
    assert df["antigen"].tolist() == [f"{ANTIGEN}|{ANTIGEN_2}"] and "2 chain(s)" in report.input_note


def test_an_antigen_only_id_is_shared_by_the_antibodies_without_their_own(tmp_path):
    text = f">HER2|antigen\n{ANTIGEN}\n>ab1|heavy\n{HEAVY}\n>ab1|light\n{LIGHT}\n>nb1|vhh\n{HEAVY_2}\n" \
           f">ab3|heavy\n{HEAVY}\n>ab3|antigen\n{ANTIGEN_2}\n"
    df, report = load_pairs(write(tmp_path / "s.fasta", text), require_pkd=False)
    assert df["id"].tolist() == ["ab1", "nb1", "ab3"]
    assert df["antigen"].tolist() == [ANTIGEN, ANTIGEN, ANTIGEN_2] and df["light"].tolist() == [LIGHT, "", ""]
    assert "antigen 'HER2'" in report.input_note and report.n_single_domain == 2


def test_gzipped_fasta(tmp_path):
    path = tmp_path / "pairs.fasta.gz"
    path.write_bytes(gzip.compress(PAIRED.replace("pkd=8.2", "kd_nM=1").encode()))
    df, _ = load_pairs(path)
    assert df["id"].tolist() == ["ab1", "ab2"] and df["pkd"].tolist() == pytest.approx([9, -math.log10(3.1e-9)])


MALFORMED = {
    "no role": (f">ab1\n{HEAVY}\n", "record 1 '>ab1' (line 1): no chain role"),
    "text before the first header": (f"{HEAVY}\n>ab1|heavy\n{HEAVY}\n", "line 1: sequence text before the first"),
    "empty record": (f">ab1|heavy\n>ab1|light\n{LIGHT}\n", "record 1 '>ab1|heavy' (line 1): no sequence"),
    "two heavy chains": (f">ab1|heavy\n{HEAVY}\n>ab1|heavy\n{HEAVY_2}\n>ab1|antigen\n{ANTIGEN}\n",
                         "antibody 'ab1' has 2 heavy chains: record 1 '>ab1|heavy' (line 1), record 2"),
    "light without heavy": (f">ab1|light\n{LIGHT}\n>ab1|antigen\n{ANTIGEN}\n",
                            "antibody 'ab1' has a light chain (record 1 '>ab1|light' (line 1)) but no heavy chain"),
    "two shared antigens": (f">ab1|heavy\n{HEAVY}\n>x|antigen\n{ANTIGEN}\n>y|antigen\n{ANTIGEN_2}\n",
                            "several IDs have antigen records only ('x' (record 2"),
    "conflicting fields": (f">ab1|heavy pkd=8\n{HEAVY}\n>ab1|light pkd=7\n{LIGHT}\n>ab1|antigen\n{ANTIGEN}\n",
                           "field 'pkd' is '8' in record 1 '>ab1|heavy pkd=8' (line 1) but '7' in record 2"),
    "a sequence in a field": (f">ab1|heavy light=ACDE\n{HEAVY}\n", "field 'light': sequences and IDs belong"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_fasta_names_the_record_and_the_reason(tmp_path, case):
    text, expected = MALFORMED[case]
    with pytest.raises(DataValidationError) as excinfo:
        load_pairs(write(tmp_path / "bad.fasta", text), require_pkd=False)
    assert expected in reasons(excinfo)


def test_an_invalid_residue_in_a_fasta_names_its_record(tmp_path):
    text = f">ab1|heavy pkd=8\n{HEAVY}\n>ab1|antigen\n{ANTIGEN}\n>ab2|heavy pkd=7\n{HEAVY[:10]}X{HEAVY[11:]}\n" \
           f">ab2|antigen\n{ANTIGEN}\n"
    path = write(tmp_path / "x.fasta", text)
    with pytest.raises(DataValidationError) as excinfo:
        load_pairs(path)
    assert [(p.row, p.column) for p in excinfo.value.problems] == [(2, "heavy")]
    assert excinfo.value.problems[0].reason.startswith("record 3 '>ab2|heavy pkd=7' (line 5): invalid character 'X'")
    df, report = load_pairs(path, drop_invalid=True)
    assert df["id"].tolist() == ["ab1"] and [p.row for p in report.rejected] == [2]


# --------------------------------------------------------------------------------------------
# Excel workbooks
# --------------------------------------------------------------------------------------------


def test_a_workbook_reads_its_table_sheet_like_the_csv_export(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.title = "About"
    book.active.append(["Measured by the lab, 2024"])
    sheet = book.create_sheet("Data")
    sheet.append(["heavy", "light", "antigen", "pKd", "censored", "n"])
    sheet.append([HEAVY, LIGHT, ANTIGEN, 8.25, False, 3])
    sheet.append([HEAVY_2, None, ANTIGEN_2, 6, True, None])
    sheet.append([HEAVY, LIGHT, ANTIGEN_2, "abc", None, 1])
    book.save(tmp_path / "pairs.xlsx")
    with pytest.raises(DataValidationError) as excinfo:
        load_pairs(tmp_path / "pairs.xlsx")
    assert [(p.row, p.column) for p in excinfo.value.problems] == [(3, "pKd")]
    assert excinfo.value.problems[0].reason == "sheet 'Data' row 4: pKd 'abc' is not a number"
    df, report = load_pairs(tmp_path / "pairs.xlsx", drop_invalid=True)
    assert df["pkd"].tolist() == [8.25, 6.0] and df["censored"].tolist() == [False, True]
    assert df["light"].tolist() == [LIGHT, ""] and df["n"].tolist() == ["3", ""]
    assert "Read as: sheet 'Data' of" in report.summary() and "(sheet 2 of 2: the first sheet with a heavy-chain" \
        in report.summary()


def test_a_pandas_written_workbook_loads_like_its_csv(tmp_path):
    pytest.importorskip("openpyxl")
    table = pd.DataFrame({"vh": [HEAVY, HEAVY_2], "vl": [LIGHT, ""], "antigen_sequence": [ANTIGEN, ANTIGEN],
                          "kd_nM": [1.5, 200.0]})
    table.to_excel(tmp_path / "t.xlsx", index=False, sheet_name="Sheet1")
    table.to_csv(tmp_path / "t.csv", index=False)
    from_book, report = load_pairs(tmp_path / "t.xlsx")
    from_csv, _ = load_pairs(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(from_book, from_csv)
    assert report.input_note.startswith("sheet 'Sheet1'")


def test_sheet_option_and_unknown_sheet(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    for title, pkd in (("train", 8.0), ("test", 7.0)):
        sheet = book.create_sheet(title)
        sheet.append(["heavy", "antigen", "pkd"])
        sheet.append([HEAVY, ANTIGEN, pkd])
    book.remove(book["Sheet"])
    book.save(tmp_path / "b.xlsx")
    assert load_pairs(tmp_path / "b.xlsx")[0]["pkd"].tolist() == [8.0]
    assert load_pairs(tmp_path / "b.xlsx", sheet="test")[0]["pkd"].tolist() == [7.0]
    with pytest.raises(DataValidationError, match="no sheet named 'valid' \\(sheets: 'train', 'test'\\)"):
        load_pairs(tmp_path / "b.xlsx", sheet="valid")


def test_without_openpyxl_the_message_says_what_to_install(tmp_path, monkeypatch):
    pytest.importorskip("openpyxl")
    pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], "pkd": [8.0]}).to_excel(tmp_path / "t.xlsx", index=False)
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # import openpyxl now raises ImportError
    with pytest.raises(DataValidationError, match='openpyxl: pip install "abag\\[xlsx\\]"'):
        load_pairs(tmp_path / "t.xlsx")


def test_old_xls_and_opendocument_say_how_to_save(tmp_path):
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    with pytest.raises(DataValidationError, match="old Excel .xls .*save it as .xlsx"):
        load_pairs(tmp_path / "old.xls")
    with zipfile.ZipFile(tmp_path / "t.ods", "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
    with pytest.raises(DataValidationError, match="OpenDocument spreadsheet .*save it as .xlsx"):
        load_pairs(tmp_path / "t.ods")


# --------------------------------------------------------------------------------------------
# AIRR rearrangements
# --------------------------------------------------------------------------------------------

AIRR_HEADER = ["sequence_id", "cell_id", "locus", "productive", "v_call", "sequence_alignment_aa", "sequence_aa",
               "pkd"]


def airr_file(tmp_path: Path, rows: list[list[str]], header: list[str] = AIRR_HEADER) -> Path:
    return write(tmp_path / "airr.tsv", "\n".join("\t".join(r) for r in [header, *rows]) + "\n")


def test_airr_chains_are_paired_by_cell(tmp_path):
    gapped = HEAVY[:26] + "...." + HEAVY[26:]
    path = airr_file(tmp_path, [
        ["h1", "c1", "IGH", "T", "IGHV3-23*01", gapped, "", "8.5"],
        ["k1", "c1", "IGK", "T", "IGKV1-39*01", "", LIGHT, ""],
        ["h2", "c2", "IGH", "T", "IGHV1-69*01", HEAVY_2, "", "7"],
        ["l2", "c2", "IGL", "F", "IGLV2-14*01", LIGHT + "*", "", ""],  # not productive: skipped
    ])
    df, report = load_pairs(path, antigen=ANTIGEN)
    assert df["cell_id"].tolist() == ["c1", "c2"] and df["heavy"].tolist() == [HEAVY, HEAVY_2]
    assert df["light"].tolist() == [LIGHT, ""] and df["pkd"].tolist() == [8.5, 7.0]
    assert df["source_row"].tolist() == [1, 3]  # the heavy chain's row in the AIRR file
    assert df["heavy_v_call"].tolist() == ["IGHV3-23*01", "IGHV1-69*01"] and df["light_locus"].tolist() == ["IGK", ""]
    assert df["antigen"].tolist() == [ANTIGEN, ANTIGEN]
    assert "1 non-productive row(s) skipped" in report.input_note and "paired by cell_id" in report.input_note


def test_airr_cells_that_cannot_be_paired_are_named_and_droppable(tmp_path):
    rows = [["h1", "c1", "IGH", "T", "", HEAVY, "", "8", ANTIGEN],
            ["h2", "c2", "IGH", "T", "", HEAVY, "", "8", ANTIGEN],
            ["h3", "c2", "IGH", "T", "", HEAVY_2, "", "8", ANTIGEN],
            ["b1", "c3", "TRB", "T", "", HEAVY, "", "8", ANTIGEN]]
    path = airr_file(tmp_path, rows, AIRR_HEADER + ["antigen"])
    with pytest.raises(DataValidationError) as excinfo:
        load_pairs(path)
    assert [(p.row, p.column) for p in excinfo.value.problems] == [(2, "cell_id"), (4, "locus")]
    assert "cell_id 'c2' has 2 heavy (IGH) and 0 light" in reasons(excinfo) and "locus 'TRB'" in reasons(excinfo)
    df, report = load_pairs(path, drop_invalid=True)
    assert df["cell_id"].tolist() == ["c1"] and [p.row for p in report.rejected] == [2, 4]
    assert report.n_rows_kept + len(report.rejected) == report.n_rows_read
    with pytest.raises(DataValidationError, match="its own antigen column 'antigen'"):
        load_pairs(path, antigen=ANTIGEN)


def test_kd_in_an_airr_pkd_column_names_the_airr_rows(tmp_path):
    path = airr_file(tmp_path, [["k1", "c1", "IGK", "T", "", LIGHT, "", ""],
                                ["h1", "c1", "IGH", "T", "", HEAVY, "", "12000"],
                                ["h2", "c2", "IGH", "T", "", HEAVY_2, "", "300"]])
    with pytest.raises(DataValidationError, match=r"\(rows 2, 3; e.g. '12000'\).*'kd_nM'"):
        load_pairs(path, antigen=ANTIGEN)


def test_airr_without_an_antigen_asks_for_one(tmp_path):
    path = airr_file(tmp_path, [["h1", "c1", "IGH", "T", "", HEAVY, "", "8"]])
    with pytest.raises(DataValidationError, match="--antigen"):
        load_pairs(path)


def test_airr_heavy_only_without_cells_is_single_domain(tmp_path):
    header = ["sequence_id", "locus", "sequence_aa"]
    df, _ = load_pairs(airr_file(tmp_path, [["n1", "IGH", HEAVY], ["n2", "IGH", HEAVY_2]], header),
                       require_pkd=False, antigen=ANTIGEN)
    assert df["heavy_sequence_id"].tolist() == ["n1", "n2"] and df["light"].tolist() == ["", ""]
    with pytest.raises(DataValidationError, match="no cell_id or clone_id column to pair it"):
        load_pairs(airr_file(tmp_path, [["n1", "IGH", HEAVY], ["k1", "IGK", LIGHT]], header),
                   require_pkd=False, antigen=ANTIGEN)


# --------------------------------------------------------------------------------------------
# Kd typed into pkd; label columns predict does not need
# --------------------------------------------------------------------------------------------


def pkd_table(values: list[str], **extra: list[str]) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"heavy": [HEAVY] * n, "antigen": [ANTIGEN] * n, "pkd": values, **extra})


def test_kd_in_nm_typed_into_pkd_stops_and_names_kd_nm():
    with pytest.raises(DataValidationError) as excinfo:
        prepare_pairs(pkd_table(["12000", "3.5", "250", "0.8", "45"]), drop_invalid=True)  # even when dropping
    (problem,) = excinfo.value.problems
    assert problem.row is None and problem.column == "pkd"
    assert "cannot be pKd" in problem.reason and "(rows 1, 3, 5; e.g. '12000')" in problem.reason
    assert "rename the column 'kd_nM'" in problem.reason


def test_kd_in_molar_typed_into_pkd_names_kd_m_and_a_unit_column_is_named():
    with pytest.raises(DataValidationError, match="rename the column 'kd_M'"):
        prepare_pairs(pkd_table(["1e-9", "3e-8", "5e-10"]))
    with pytest.raises(DataValidationError, match="unit column 'kd_unit'.*rename 'pkd' to 'kd'"):
        prepare_pairs(pkd_table(["12000", "300"], kd_unit=["nM", "pM"]))


def test_one_impossible_pkd_is_a_row_problem():
    with pytest.raises(DataValidationError) as excinfo:
        prepare_pairs(pkd_table(["8", "7.5", "12000", "9"]))
    assert [(p.row, p.column) for p in excinfo.value.problems] == [(3, "pkd")]
    assert "pKd '12000' cannot be a pKd" in excinfo.value.problems[0].reason
    df, report = prepare_pairs(pkd_table(["8", "7.5", "12000", "9"]), drop_invalid=True)
    assert df["pkd"].tolist() == [8.0, 7.5, 9.0] and [p.row for p in report.rejected] == [3]


def test_predict_ignores_a_kd_column_without_unit_and_says_so():
    table = pd.DataFrame({"heavy": [HEAVY, HEAVY_2], "antigen": [ANTIGEN] * 2, "kd": ["12", "300"]})
    with pytest.raises(DataValidationError, match="Kd column 'kd' has no unit"):
        prepare_pairs(table)  # training and evaluation need the labels
    df, report = prepare_pairs(table, require_pkd=False)
    assert df["kd"].tolist() == ["12", "300"] and df["pkd"].isna().all()
    assert list(report.ignored_columns) == ["kd"] and "pkd" not in report.column_map
    assert "column 'kd' ignored (no labels are needed here" in report.summary()


def test_predict_ignores_kd_typed_into_pkd():
    df, report = prepare_pairs(pkd_table(["12000", "300"]), require_pkd=False)
    assert df["pkd"].isna().all() and df["pkd_input"].tolist() == ["12000", "300"]
    assert "kd_nM" in report.ignored_columns["pkd"]


# --------------------------------------------------------------------------------------------
# abag.data.check
# --------------------------------------------------------------------------------------------


def test_check_file_summarises_rows_columns_and_verdict(tmp_path):
    from abag.data.check import check_file

    table = pkd_table(["8", "abc", "7"], note=["a", "b", "c"])
    table.to_csv(tmp_path / "t.csv", index=False)
    result = check_file(tmp_path / "t.csv")
    assert not result.ok and "3 row(s) read, 2 kept, 1 rejected" in result.text
    assert "rejected row 2, column 'pkd': pKd 'abc' is not a number" in result.text
    assert "Columns used: heavy <- 'heavy'" in result.text and "Other columns (kept unchanged in the outputs): 'note'" \
        in result.text
    assert result.text.endswith("fix them, or use --drop-invalid to go on without them (2 row(s) left for training "
                                "and evaluation).")
    predict = check_file(tmp_path / "t.csv", require_pkd=False)
    assert predict.ok and "column 'pkd' ignored" in predict.text and "can be used for prediction" in predict.text
    missing = check_file(tmp_path / "none.csv")
    assert not missing.ok and missing.report is None and "file not found" in missing.text
