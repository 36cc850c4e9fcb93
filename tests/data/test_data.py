"""Tests for abag.data: reading, column recognition, validation, censoring and replicates."""

from __future__ import annotations

import gzip
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abag.data import (
    MAX_CHAIN_LENGTH,
    MISSING_MARKERS,
    OUTPUT_COLUMNS,
    SHORT_CHAIN_RESIDUES,
    DataValidationError,
    LoadReport,
    RowProblem,
    load_pairs,
    prepare_pairs,
    read_table,
    write_rejected,
)

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path("/work/shared/data")
EXAMPLE = REPO / "data" / "example_pairs.csv"

HEAVY = "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMDYWGQGTLVTVSS"
LIGHT = "DIQMTQSPSSLSASVGDRVTITCRASQDVNTAVAWYQQKPGKAPKLLIYSASFLYSGVPSRFSGSRSGTDFTLTISSLQPEDFATYYCQQHYTTPPTFGQGTKVEIK"
ANTIGEN = "MKTIIALSYIFCLVFAQDLPGNDNSTATLCLGHHAVPNGTLVKTITDDQIEVTNATELVQSSSTGKICNNPHRILDGIDCTLIDALLGDPHCDVFQNETWDLFVERSKAFSNCYPYDVPDYASLRSLVASSGTLEF"
ANTIGEN_2 = "GLFGAIAGFIEGGWTGMIDGWYGYHHQNEQGSGYAADQKSTQNAIDGITNKVNSVIEKMNTQFTAVGKEFNKLERRMENLNKKVDDGFIDIWTYNAELLVLLENERTLDFHDSNVKNLYEKVKSQLKNNAKEIGNGCFEFYHKCDNECMESVRNGTYDYPKYSEESKLNREKIDG"


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def csv_text(rows: list[list[str]], newline: str = "\n", delimiter: str = ",") -> str:
    return "".join(delimiter.join(row) + newline for row in rows)


def basic_rows() -> list[list[str]]:
    return [
        ["heavy", "light", "antigen", "pkd", "note"],
        [HEAVY, LIGHT, ANTIGEN, "8.5", "first"],
        [HEAVY[:-1] + "A", "", ANTIGEN_2, "6.25", "second"],
        [HEAVY, LIGHT, ANTIGEN + "|" + ANTIGEN_2, "10", "third"],
    ]


def frame(**columns: list) -> pd.DataFrame:
    return pd.DataFrame(columns)


def problems_of(excinfo: pytest.ExceptionInfo) -> list[tuple[int | None, str | None]]:
    return [(p.row, p.column) for p in excinfo.value.problems]


# --------------------------------------------------------------------------------------------
# Canonical output
# --------------------------------------------------------------------------------------------


def test_canonical_file_gives_canonical_columns_types_and_row_numbers(tmp_path):
    df, report = load_pairs(write_text(tmp_path / "t.csv", csv_text(basic_rows())))
    assert list(df.columns) == [*OUTPUT_COLUMNS, "note"]
    assert list(df.index) == [0, 1, 2]
    assert df["pkd"].dtype == np.float64 and df["censored"].dtype == bool
    assert df["pkd"].tolist() == [8.5, 6.25, 10.0]
    assert df["source_row"].tolist() == [1, 2, 3]
    assert df["light"].tolist() == [LIGHT, "", LIGHT]
    assert df["antigen"][2] == ANTIGEN + "|" + ANTIGEN_2
    assert df["note"].tolist() == ["first", "second", "third"]
    assert (report.n_rows_read, report.n_rows_kept, report.rejected) == (3, 3, [])
    assert report.column_map == {"heavy": "heavy", "light": "light", "antigen": "antigen", "pkd": "pkd"}
    assert report.source.endswith("t.csv")


def test_dataframe_input_with_non_string_cells_is_not_mutated():
    df_in = pd.DataFrame(
        {"Heavy": [HEAVY, HEAVY.lower()], "light": [LIGHT, np.nan], "antigen": [ANTIGEN, ANTIGEN_2],
         "pkd": [7.5, 9], "censored": [False, True], "extra": [1, 2]}
    )
    before = df_in.copy()
    df, report = prepare_pairs(df_in)
    pd.testing.assert_frame_equal(df_in, before)
    assert df["heavy"].tolist() == [HEAVY, HEAVY]
    assert df["light"].tolist() == [LIGHT, ""]
    assert df["censored"].tolist() == [False, True]
    assert df["extra"].tolist() == [1, 2] and df["extra"].dtype == np.int64  # extras keep their dtype
    assert report.source == "<DataFrame>" and report.n_censored == 1


# --------------------------------------------------------------------------------------------
# Column recognition
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "heavy_name, light_name, antigen_name, pkd_name",
    [
        ("heavy_chain", "light_chain", "antigen_seq", "pKd"),
        ("VH", "VL", "Antigen_Sequence", "PKD"),
        ("  heavy_sequence ", " light_sequence", "antigen ", " pkd "),
        ("Heavy Chain", "Light-Chain", "ANTIGEN", "pkd"),
        ("\ufeffheavy", "light", "antigen", "pkd"),  # BOM left by a reader without utf-8-sig
    ],
)
def test_column_aliases_case_and_whitespace(heavy_name, light_name, antigen_name, pkd_name):
    df_in = pd.DataFrame({heavy_name: [HEAVY], light_name: [LIGHT], antigen_name: [ANTIGEN], pkd_name: ["7"]})
    df, report = prepare_pairs(df_in)
    assert df.loc[0, ["heavy", "light", "antigen", "pkd"]].tolist() == [HEAVY, LIGHT, ANTIGEN, 7.0]
    assert list(df.columns) == list(OUTPUT_COLUMNS)  # every alias was consumed
    assert report.column_map == {"heavy": heavy_name, "light": light_name, "antigen": antigen_name, "pkd": pkd_name}


def test_notebook_columns_antibody_sequence_without_light():
    df_in = pd.DataFrame({"antibody_sequence": [HEAVY], "antigen_sequence": [ANTIGEN], "pKd": ["8.1"]})
    df, report = prepare_pairs(df_in)
    assert df.loc[0, "heavy"] == HEAVY and df.loc[0, "light"] == "" and df.loc[0, "pkd"] == 8.1
    assert any("no light-chain column" in w for w in report.warnings)


def test_canonical_name_wins_over_alias_with_warning_and_alias_is_kept():
    df_in = pd.DataFrame({"vh": ["AAAA"], "heavy": [HEAVY], "antigen": [ANTIGEN], "pkd": ["7"]})
    df, report = prepare_pairs(df_in)
    assert df.loc[0, "heavy"] == HEAVY
    assert df.loc[0, "vh"] == "AAAA"
    assert any("'vh'" in w and "heavy" in w for w in report.warnings)


def test_two_aliases_without_canonical_name_are_ambiguous():
    df_in = pd.DataFrame({"vh": [HEAVY], "heavy_chain": [HEAVY], "antigen": [ANTIGEN], "pkd": ["7"]})
    with pytest.raises(DataValidationError, match="several columns could be 'heavy'"):
        prepare_pairs(df_in)


def test_missing_required_columns_lists_found_and_accepted_names():
    df_in = pd.DataFrame({"seq": [HEAVY], "target": [ANTIGEN], "affinity": ["7"]})
    with pytest.raises(DataValidationError) as excinfo:
        prepare_pairs(df_in)
    reasons = [p.reason for p in excinfo.value.problems]
    assert len(reasons) == 3 and all(p.row is None for p in excinfo.value.problems)
    assert "missing required column 'heavy'" in reasons[0]
    assert "vh" in reasons[0] and "antibody_sequence" in reasons[0]
    assert "'seq', 'target', 'affinity'" in reasons[0]
    assert "missing required column 'antigen'" in reasons[1]
    assert "missing required column 'pkd'" in reasons[2] and "kd_nM" in reasons[2]


def test_missing_pkd_column_is_fine_when_not_required():
    df, _ = prepare_pairs(pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN]}), require_pkd=False)
    assert math.isnan(df.loc[0, "pkd"]) and not df.loc[0, "censored"]


def test_replicate_column_is_renamed_only_when_flagging():
    df_in = pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], "pkd": ["7"], "replicate": ["r1"]})
    assert prepare_pairs(df_in)[0].loc[0, "replicate"] == "r1"
    flagged, _ = prepare_pairs(df_in, replicates="flag")
    assert flagged["replicate"].dtype == bool and not flagged.loc[0, "replicate"]
    assert flagged.loc[0, "replicate_input"] == "r1"


def test_output_name_clash_renames_user_column():
    df_in = pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], "pkd": ["7"], "source_row": ["x"]})
    df, report = prepare_pairs(df_in)
    assert df.loc[0, "source_row"] == 1 and df.loc[0, "source_row_input"] == "x"
    assert any("renamed" in w for w in report.warnings)


# --------------------------------------------------------------------------------------------
# Kd conversion
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kd, unit, expected",
    [
        ("1", "nM", 9.0), ("1", "uM", 6.0), ("1", "µM", 6.0), ("1", "μM", 6.0), ("100", "pM", 10.0),
        ("1e-9", "M", 9.0), ("1", "mM", 3.0), ("10", "fM", 14.0), ("2.5", "NM", -math.log10(2.5e-9)),
        (" 1 ", " nm ", 9.0),
    ],
)
@pytest.mark.parametrize("unit_column", ["kd_unit", "Unit"])
def test_kd_with_unit_column(kd, unit, expected, unit_column):
    df_in = pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], "Kd": [kd], unit_column: [unit]})
    df, report = prepare_pairs(df_in)
    assert df.loc[0, "pkd"] == pytest.approx(expected, abs=1e-12)
    assert report.column_map["pkd"] == "Kd (converted)" and report.column_map["kd_unit"] == unit_column
    assert "Kd" not in df.columns and unit_column not in df.columns


@pytest.mark.parametrize(
    "column, kd, expected",
    [
        ("kd_nM", "1", 9.0), ("Kd (nM)", "1", 9.0), ("Kd [nM]", "1", 9.0), ("KD nM", "1", 9.0),
        ("kd_M", "1e-9", 9.0), ("kd_pm", "100", 10.0), ("kd_uM", "1", 6.0), ("Kd (µM)", "1", 6.0),
        ("kd_mM", "1", 3.0), ("kd_fM", "1", 15.0), ("kd(nM)", "0.5", -math.log10(0.5e-9)),
    ],
)
def test_kd_with_unit_in_column_name(column, kd, expected):
    df, report = prepare_pairs(pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], column: [kd]}))
    assert df.loc[0, "pkd"] == pytest.approx(expected, abs=1e-12)
    assert report.column_map["pkd"] == f"{column} (converted)"


def test_kd_without_unit_is_a_file_level_problem():
    with pytest.raises(DataValidationError) as excinfo:
        prepare_pairs(pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], "kd": ["1"]}))
    [problem] = excinfo.value.problems
    assert problem.row is None and problem.column == "kd"
    assert "no unit" in problem.reason and "kd_unit" in problem.reason


def test_bad_kd_values_and_units_name_the_right_column():
    df_in = pd.DataFrame(
        {"heavy": [HEAVY] * 5, "antigen": [ANTIGEN] * 5,
         "kd": ["0", "-3", "abc", "5", "5"], "unit": ["nM", "nM", "nM", "parsec", ""]}
    )
    with pytest.raises(DataValidationError) as excinfo:
        prepare_pairs(df_in)
    problems = excinfo.value.problems
    assert [(p.row, p.column) for p in problems] == [(1, "kd"), (2, "kd"), (3, "kd"), (4, "unit"), (5, "unit")]
    assert "positive" in problems[0].reason and "positive" in problems[1].reason
    assert "not a number" in problems[2].reason
    assert "unknown Kd unit 'parsec'" in problems[3].reason and problems[3].value == "parsec"
    assert "missing Kd unit" in problems[4].reason


def test_pkd_column_preferred_over_kd_with_warning():
    df_in = pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], "pkd": ["7"], "kd_nM": ["1"]})
    df, report = prepare_pairs(df_in)
    assert df.loc[0, "pkd"] == 7.0
    assert df.loc[0, "kd_nM"] == "1"  # not consumed: kept for the user
    assert any("using the pKd column" in w for w in report.warnings)


def test_tiny_kd_does_not_underflow():
    df, _ = prepare_pairs(pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], "kd_M": ["1e-320"]}))
    assert df.loc[0, "pkd"] == pytest.approx(320.0)


# --------------------------------------------------------------------------------------------
# Censoring
# --------------------------------------------------------------------------------------------


def test_at_lower_bound_flags_accept_documented_values():
    flags = ["True", "false", "1", "0", "YES", "no", ""]
    df_in = pd.DataFrame({"heavy": [HEAVY] * 7, "antigen": [ANTIGEN] * 7, "pkd": ["6"] * 7, "at_lower_bound": flags})
    df, report = prepare_pairs(df_in)
    assert df["censored"].tolist() == [True, False, True, False, True, False, False]
    assert report.n_censored == 3 and report.column_map["censored"] == "at_lower_bound"
    assert "at_lower_bound" not in df.columns


def test_invalid_censored_flag_is_a_row_problem():
    df_in = pd.DataFrame(
        {"heavy": [HEAVY] * 2, "antigen": [ANTIGEN] * 2, "pkd": ["6", "7"], "censored": ["maybe", "true"]}
    )
    with pytest.raises(DataValidationError) as excinfo:
        prepare_pairs(df_in)
    assert problems_of(excinfo) == [(1, "censored")]
    assert "'maybe'" in excinfo.value.problems[0].reason


def test_qualifiers_mark_censoring():
    df_in = pd.DataFrame({"heavy": [HEAVY] * 3, "antigen": [ANTIGEN] * 3, "pkd": ["<6", "<= 5.5", "7"]})
    df, report = prepare_pairs(df_in)
    assert df["pkd"].tolist() == [6.0, 5.5, 7.0]
    assert df["censored"].tolist() == [True, True, False] and report.n_censored == 2


def test_kd_greater_than_is_censored_in_pkd():
    df_in = pd.DataFrame({"heavy": [HEAVY] * 2, "antigen": [ANTIGEN] * 2, "Kd (nM)": [">10000", "10"]})
    df, _ = prepare_pairs(df_in)
    assert df["pkd"].tolist() == pytest.approx([5.0, 8.0])
    assert df["censored"].tolist() == [True, False]


def test_right_censored_values_are_rejected():
    df_in = pd.DataFrame({"heavy": [HEAVY] * 2, "antigen": [ANTIGEN] * 2, "pkd": [">8", "7"]})
    with pytest.raises(DataValidationError, match="right-censored values are not supported"):
        prepare_pairs(df_in)
    kd_in = pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], "kd_nM": ["<1"]})
    with pytest.raises(DataValidationError, match="right-censored values are not supported"):
        prepare_pairs(kd_in)


def test_flag_false_contradicting_qualifier_is_a_problem():
    df_in = pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], "pkd": ["<6"], "censored": ["false"]})
    with pytest.raises(DataValidationError, match="censoring qualifier"):
        prepare_pairs(df_in)


# --------------------------------------------------------------------------------------------
# Normalisation and file formats
# --------------------------------------------------------------------------------------------


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    return df[list(OUTPUT_COLUMNS)].reset_index(drop=True)


def test_sequences_are_upper_cased_and_whitespace_removed():
    messy = " " + HEAVY[:10].lower() + " \t" + HEAVY[10:50] + "\n" + HEAVY[50:] + "\u00a0"
    df_in = pd.DataFrame({"heavy": [messy], "light": [LIGHT.lower()], "antigen": [" aaa | cc "], "pkd": [" 7.0 "]})
    df, _ = prepare_pairs(df_in)
    assert df.loc[0, ["heavy", "light", "antigen", "pkd"]].tolist() == [HEAVY, LIGHT, "AAA|CC", 7.0]


def test_unicode_upper_casing_does_not_invent_residues():
    # 'ß'.upper() == 'SS' and 'ﬀ'.upper() == 'FF': a naive upper() would accept these.
    df_in = pd.DataFrame({"heavy": ["AAßA", "AAﬀ"], "antigen": [ANTIGEN] * 2, "pkd": ["7", "7"]})
    with pytest.raises(DataValidationError) as excinfo:
        prepare_pairs(df_in)
    assert problems_of(excinfo) == [(1, "heavy"), (2, "heavy")]
    assert "'ß' at position 3" in excinfo.value.problems[0].reason


@pytest.mark.parametrize(
    "name, encoding, newline",
    [
        ("crlf.csv", "utf-8", "\r\n"),
        ("mac.csv", "utf-8", "\r"),
        ("bom.csv", "utf-8-sig", "\n"),
        ("utf16.csv", "utf-16", "\r\n"),  # BOM + native order, as Excel writes it
        ("utf16le.csv", "utf-16-le", "\n"),  # no BOM
        ("utf16be.csv", "utf-16-be", "\n"),
    ],
)
def test_encodings_and_line_ends_give_the_same_table(tmp_path, name, encoding, newline):
    reference, _ = load_pairs(write_text(tmp_path / "ref.csv", csv_text(basic_rows())))
    text = csv_text(basic_rows(), newline=newline)
    if encoding == "utf-16-be":
        data = "\ufeff".encode("utf-16-be") + text.encode("utf-16-be")  # BOM, big-endian
        (tmp_path / name).write_bytes(data)
    else:
        write_text(tmp_path / name, text, encoding)
    df, _ = load_pairs(tmp_path / name)
    pd.testing.assert_frame_equal(df, reference)


@pytest.mark.parametrize("name, delimiter", [("t.tsv", "\t"), ("t.tab", "\t"), ("t.csv", "\t"), ("t.csv", ";")])
def test_tab_and_semicolon_delimiters(tmp_path, name, delimiter):
    reference, _ = load_pairs(write_text(tmp_path / "ref.csv", csv_text(basic_rows())))
    df, _ = load_pairs(write_text(tmp_path / name, csv_text(basic_rows(), delimiter=delimiter)))
    pd.testing.assert_frame_equal(df, reference)


def test_gzip_file(tmp_path):
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(csv_text(basic_rows()).encode()))
    df, report = load_pairs(path)
    assert len(df) == 3 and report.n_rows_read == 3


@pytest.mark.parametrize("name", ["t.csv.bz2", "t.csv.xz", "t.zip"])
def test_other_compressions(tmp_path, name):
    import bz2
    import lzma
    import zipfile

    raw = csv_text(basic_rows()).encode()
    path = tmp_path / name
    if name.endswith(".bz2"):
        path.write_bytes(bz2.compress(raw))
    elif name.endswith(".xz"):
        path.write_bytes(lzma.compress(raw))
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("pairs.csv", raw)
    assert load_pairs(path)[0]["pkd"].tolist() == [8.5, 6.25, 10.0]


def test_zip_with_several_files_is_rejected(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "t.zip", "w") as archive:
        archive.writestr("a.csv", "heavy\n")
        archive.writestr("b.csv", "heavy\n")
    with pytest.raises(DataValidationError) as excinfo:
        read_table(tmp_path / "t.zip")
    assert file_problem(excinfo).reason == "a .zip file must hold exactly one table, found 2 files"


def test_empty_header_cells_get_names(tmp_path):
    table = read_table(write_text(tmp_path / "t.csv", "heavy,antigen,pkd,\nA,C,7,\n"))
    assert list(table.columns) == ["heavy", "antigen", "pkd", "Unnamed: 3"]


def test_read_table_keeps_everything_as_text(tmp_path):
    rows = [["heavy", "antigen", "pkd", "id", "flag"], [HEAVY, ANTIGEN, "7.50", "007", "NA"]]
    table = read_table(write_text(tmp_path / "t.csv", csv_text(rows)))
    assert table.loc[0, "pkd"] == "7.50" and table.loc[0, "id"] == "007" and table.loc[0, "flag"] == "NA"


def test_quoted_cells_with_commas_and_newlines(tmp_path):
    text = 'heavy,antigen,pkd,note\n"EVQL\nVESG",ANTIGEN,7,"a, ""quoted"" note\nover two lines"\nEVQL,MKT,8,x\n'
    df, _ = load_pairs(write_text(tmp_path / "t.csv", text))
    assert df["heavy"].tolist() == ["EVQLVESG", "EVQL"]
    assert df.loc[0, "note"] == 'a, "quoted" note\nover two lines'
    assert df["source_row"].tolist() == [1, 2]


def test_huge_fields_load(tmp_path):
    long_note = "x" * 300_000  # beyond the csv module's default 128 KiB field limit
    rows = [["heavy", "antigen", "pkd", "note"], ["A" * MAX_CHAIN_LENGTH, ANTIGEN, "7", long_note]]
    df, _ = load_pairs(write_text(tmp_path / "t.csv", csv_text(rows)))
    assert len(df.loc[0, "heavy"]) == MAX_CHAIN_LENGTH and df.loc[0, "note"] == long_note


def test_blank_lines_are_skipped_but_keep_row_numbers(tmp_path):
    text = f"heavy,antigen,pkd\n{HEAVY},{ANTIGEN},7\n\n,,\n{HEAVY}X,{ANTIGEN},8\n\n\n"
    with pytest.raises(DataValidationError) as excinfo:
        load_pairs(write_text(tmp_path / "t.csv", text))
    assert problems_of(excinfo) == [(4, "heavy")]  # rows 2 and 3 are blank, the bad row is row 4
    df, report = load_pairs(tmp_path / "t.csv", drop_invalid=True)
    assert df["source_row"].tolist() == [1]
    assert report.n_rows_read == 2 and report.n_rows_kept == 1
    assert any("2 blank row(s)" in w for w in report.warnings)


# --------------------------------------------------------------------------------------------
# Validation problems
# --------------------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_with_row_column_and_reason():
    df_in = pd.DataFrame(
        {
            "VH": [HEAVY, HEAVY[:11] + "X" + HEAVY[12:20] + "B*", "", HEAVY, HEAVY, HEAVY, HEAVY],
            "light": [LIGHT, LIGHT, LIGHT, "EVQ1", LIGHT, LIGHT, LIGHT],
            "antigen": [ANTIGEN, ANTIGEN, ANTIGEN, ANTIGEN, "AAA||CC", "AAA|", ANTIGEN],
            "pkd": ["7", "7", "", "7", "-Infinity", "inf", "abc"],
        }
    )
    with pytest.raises(DataValidationError) as excinfo:
        prepare_pairs(df_in)
    problems = excinfo.value.problems
    assert [(p.row, p.column) for p in problems] == [
        (2, "VH"), (3, "VH"), (3, "pkd"), (4, "light"), (5, "antigen"), (5, "pkd"), (6, "antigen"),
        (6, "pkd"), (7, "pkd"),
    ]
    reasons = [p.reason for p in problems]
    assert reasons[0] == (
        "invalid character 'X' at position 12 and 2 more invalid character(s) "
        "(allowed: the 20 standard amino acids)"
    )
    assert "missing sequence" in reasons[1]
    assert "missing pKd value" in reasons[2]
    assert "'1' at position 4" in reasons[3]
    assert reasons[4].startswith("empty chain 2 of 3")
    assert "not a finite number" in reasons[5] and "not a finite number" in reasons[7]
    assert reasons[6].startswith("empty chain 2 of 2")
    assert "'abc' is not a number" in reasons[8]
    message = str(excinfo.value)
    assert message.splitlines()[0] == "6 invalid row(s) in <DataFrame>:"
    assert "row 2, column 'VH': invalid character 'X' at position 12" in message


def test_invalid_character_inside_second_antigen_chain_names_the_chain():
    df_in = pd.DataFrame({"heavy": [HEAVY], "antigen": ["ACD|ACXD"], "pkd": ["7"]})
    with pytest.raises(DataValidationError, match=r"chain 2 of 2: invalid character 'X' at position 3 \("):
        prepare_pairs(df_in)


@pytest.mark.parametrize("bad_pkd, expected", [("7,5", "decimal separator"), ("1_0", "not a number"),
                                               ("-Infinity", "not a finite"), ("1e999", "not a finite")])
def test_numbers_python_would_accept_are_rejected(bad_pkd, expected):
    with pytest.raises(DataValidationError, match=expected):
        prepare_pairs(pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], "pkd": [bad_pkd]}))


def test_chain_length_limit():
    ok = pd.DataFrame({"heavy": ["A" * MAX_CHAIN_LENGTH], "antigen": [ANTIGEN], "pkd": ["7"]})
    assert len(prepare_pairs(ok)[0]) == 1
    too_long = pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN + "|" + "G" * (MAX_CHAIN_LENGTH + 1)], "pkd": ["7"]})
    with pytest.raises(DataValidationError, match="chain 2 of 2: sequence too long: 20,001 residues"):
        prepare_pairs(too_long)


def test_empty_pkd_is_nan_when_not_required_and_garbage_ignores_the_column():
    df_in = pd.DataFrame({"heavy": [HEAVY] * 2, "antigen": [ANTIGEN] * 2, "pkd": ["", "8"]})
    df, _ = prepare_pairs(df_in, require_pkd=False)
    assert math.isnan(df.loc[0, "pkd"]) and df.loc[1, "pkd"] == 8.0
    garbage = pd.DataFrame({"heavy": [HEAVY], "antigen": [ANTIGEN], "pkd": ["abc"]})
    with pytest.raises(DataValidationError):
        prepare_pairs(garbage)  # training needs the labels: garbage stops it
    df, report = prepare_pairs(garbage, require_pkd=False)  # prediction does not: the column is ignored
    assert math.isnan(df.loc[0, "pkd"]) and df.loc[0, "pkd_input"] == "abc"
    assert report.ignored_columns == {"pkd": "row 1: pKd 'abc' is not a number"}


def test_error_message_lists_twenty_problems_then_a_count():
    df_in = pd.DataFrame({"heavy": ["X"] * 25, "antigen": [ANTIGEN] * 25, "pkd": ["7"] * 25})
    with pytest.raises(DataValidationError) as excinfo:
        prepare_pairs(df_in, source="big.csv")
    lines = str(excinfo.value).splitlines()
    assert lines[0] == "25 invalid row(s) in big.csv:"
    assert len(lines) == 22 and lines[-1].strip() == "… and 5 more"
    assert len(excinfo.value.problems) == 25


def test_row_problem_str_and_value_truncation():
    problem = RowProblem(12, "heavy", "invalid character 'X' at position 12", "A" * 100)
    assert str(problem) == "row 12, column 'heavy': invalid character 'X' at position 12"
    assert len(problem.value) == 40 and problem.value.endswith("…")
    assert str(RowProblem(None, None, "the file is empty")) == "file: the file is empty"


def test_error_is_a_value_error_and_survives_pickling():
    err = DataValidationError([RowProblem(3, "pkd", "bad")], "x.csv")
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert copy.problems == err.problems and str(copy) == str(err)


# --------------------------------------------------------------------------------------------
# drop_invalid, empty tables, ranges
# --------------------------------------------------------------------------------------------


def test_drop_invalid_lists_every_rejected_row_once(tmp_path):
    df_in = pd.DataFrame(
        {"heavy": [HEAVY, "EVQLX", HEAVY, "B", HEAVY], "antigen": [ANTIGEN, ANTIGEN, "", "", ANTIGEN],
         "pkd": ["7", "8", "9", "zz", "10"]}
    )
    df, report = prepare_pairs(df_in, drop_invalid=True)
    assert df["source_row"].tolist() == [1, 5]
    assert [p.row for p in report.rejected] == [2, 3, 4]
    assert report.n_rows_kept + len(report.rejected) == report.n_rows_read == 5
    merged = report.rejected[2]  # row 4 has three problems, merged into one entry
    assert merged.column == "heavy" and "column 'antigen'" in merged.reason and "column 'pkd'" in merged.reason
    rejected = report.rejected_frame()
    assert list(rejected.columns) == ["row", "column", "reason", "value"]
    assert rejected["row"].tolist() == [2, 3, 4] and rejected["value"].tolist()[0] == "EVQLX"
    write_rejected(report, tmp_path / "rejected.csv")
    written = pd.read_csv(tmp_path / "rejected.csv")
    assert written["row"].tolist() == [2, 3, 4] and written["column"].tolist() == ["heavy", "antigen", "heavy"]
    assert "rejected row 2, column 'heavy'" in report.summary()


def test_drop_invalid_with_nothing_left_raises():
    df_in = pd.DataFrame({"heavy": ["X", "Z"], "antigen": [ANTIGEN] * 2, "pkd": ["7", "8"]})
    with pytest.raises(DataValidationError) as excinfo:
        prepare_pairs(df_in, drop_invalid=True)
    assert "no valid rows left" in excinfo.value.problems[0].reason
    assert problems_of(excinfo)[1:] == [(1, "heavy"), (2, "heavy")]


def test_header_only_table_has_no_data_rows(tmp_path):
    with pytest.raises(DataValidationError, match="no data rows"):
        load_pairs(write_text(tmp_path / "t.csv", "heavy,light,antigen,pkd\n"))


def test_out_of_range_pkd_is_kept_counted_and_warned():
    df_in = pd.DataFrame({"heavy": [HEAVY] * 4, "antigen": [ANTIGEN] * 4, "pkd": ["3.9", "4", "14", "14.2"]})
    df, report = prepare_pairs(df_in)
    assert len(df) == 4 and report.n_outside_model_range == 2
    assert any("2 row(s)" in w and "clamped to [4, 14]" in w for w in report.warnings)
    assert "pKd outside the model range [4, 14]: 2 row(s)" in report.summary()


# --------------------------------------------------------------------------------------------
# Replicates
# --------------------------------------------------------------------------------------------


def replicate_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "heavy": [HEAVY, HEAVY.lower(), HEAVY, "EVQL", "EVQL", "ACDE", "ACDE"],
            "light": [LIGHT, LIGHT, LIGHT, "", " ", "", ""],
            "antigen": [ANTIGEN] * 7,
            "pkd": ["7", "8", "<6", "<6", "<5", "9", "9"],
            "note": list("abcdefg"),
        }
    )


def test_replicates_keep_counts_groups():
    df, report = prepare_pairs(replicate_frame())
    assert len(df) == 7 and report.replicates == "keep"
    assert (report.n_replicate_groups, report.n_replicate_rows) == (3, 7)


def test_replicates_flag_adds_a_column():
    df, report = prepare_pairs(replicate_frame().iloc[:6], replicates="flag")
    assert list(df.columns[:7]) == [*OUTPUT_COLUMNS, "replicate"]
    assert df["replicate"].tolist() == [True, True, True, True, True, False]
    assert (report.n_replicate_groups, report.n_replicate_rows) == (2, 5)


def test_replicates_mean_merges_exact_and_censored_values():
    df, report = prepare_pairs(replicate_frame(), replicates="mean")
    assert df["source_row"].tolist() == [1, 4, 6]
    assert df["pkd"].tolist() == [7.5, 5.0, 9.0]  # exact values beat the censored '<6'; '<6','<5' -> '<5'
    assert df["censored"].tolist() == [False, True, False]
    assert df["note"].tolist() == ["a", "d", "f"]
    assert report.n_rows_kept == 7 and report.n_output_rows == 3 and report.n_censored == 1
    assert "averaged to 3 row(s)" in report.summary()


def test_replicates_mean_keeps_the_order_of_first_appearance_when_groups_interleave():
    frame = replicate_frame().iloc[[0, 5, 3, 2, 6, 4, 1]].reset_index(drop=True)  # A, C, B, A, C, B, A
    df, report = prepare_pairs(frame, replicates="mean")
    assert df["note"].tolist() == ["a", "f", "d"] and df["source_row"].tolist() == [1, 2, 3]
    assert df["pkd"].tolist() == [7.5, 9.0, 5.0] and df["censored"].tolist() == [False, False, True]
    assert (report.n_replicate_groups, report.n_replicate_rows) == (3, 7)
    flagged, _ = prepare_pairs(frame.iloc[:6], replicates="flag")  # the last A row left out: A twice, C, B
    assert flagged["replicate"].tolist() == [True, True, True, True, True, True]
    flagged, _ = prepare_pairs(frame.iloc[:3], replicates="flag")
    assert flagged["replicate"].tolist() == [False, False, False]


def test_each_replicate_policy_takes_an_empty_table():
    from abag.data.replicates import apply_replicate_policy

    empty = prepare_pairs(replicate_frame())[0].iloc[:0]
    for policy in ("keep", "mean", "flag"):
        out, n_groups, n_rows = apply_replicate_policy(empty.copy(), policy)
        assert len(out) == 0 and (n_groups, n_rows) == (0, 0)


def test_a_bad_cell_repeated_in_several_rows_is_reported_for_each_row_in_column_order():
    frame = pd.DataFrame({"heavy": [HEAVY, "EVQL1", HEAVY, "EVQL1"], "antigen": [ANTIGEN] * 4,
                          "pkd": ["7", "x", "x", "8"]})
    with pytest.raises(DataValidationError) as caught:
        prepare_pairs(frame)
    where = [(p.row, p.column) for p in caught.value.problems]
    assert where == [(2, "heavy"), (2, "pkd"), (3, "pkd"), (4, "heavy")]
    assert [p.value for p in caught.value.problems] == ["EVQL1", "x", "x", "EVQL1"]


def test_unknown_replicate_policy_is_a_value_error():
    with pytest.raises(ValueError, match="replicates must be one of"):
        prepare_pairs(replicate_frame(), replicates="median")


# --------------------------------------------------------------------------------------------
# read_table failures
# --------------------------------------------------------------------------------------------


def file_problem(excinfo: pytest.ExceptionInfo) -> RowProblem:
    [problem] = excinfo.value.problems
    assert problem.row is None
    return problem


def test_missing_file(tmp_path):
    with pytest.raises(DataValidationError) as excinfo:
        load_pairs(tmp_path / "nope.csv")
    assert "file not found" in file_problem(excinfo).reason


@pytest.mark.parametrize("content", [b"", b"\n\r\n  \n", b"\xef\xbb\xbf", b"\xff\xfe\n\x00"])
def test_empty_file(tmp_path, content):
    (tmp_path / "t.csv").write_bytes(content)
    with pytest.raises(DataValidationError) as excinfo:
        read_table(tmp_path / "t.csv")
    assert "empty" in file_problem(excinfo).reason


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)) * 4, b"heavy,antigen\n\xff\xfeA\x80\x81,B\n", b"PK\x03\x04garbage", b"\x1f\x8bnot gzip"],
)
def test_binary_or_undecodable_files(tmp_path, content):
    (tmp_path / "t.csv").write_bytes(content)
    with pytest.raises(DataValidationError) as excinfo:
        read_table(tmp_path / "t.csv")
    reason = file_problem(excinfo).reason
    assert "not a UTF-8 or UTF-16 text file" in reason or "decompress" in reason


def test_ragged_rows_are_reported_with_row_numbers(tmp_path):
    text = "heavy,antigen,pkd\nA,B,7\nA,B\nA,B,7,extra\nA,B,7\n"
    with pytest.raises(DataValidationError) as excinfo:
        read_table(write_text(tmp_path / "t.csv", text))
    problems = excinfo.value.problems
    assert [p.row for p in problems] == [2, 3]
    assert "expected 3 field(s) like the header, found 2" in problems[0].reason


def test_unterminated_quote_is_reported_at_its_row(tmp_path):
    text = 'heavy,antigen,pkd\nA,B,7\nA,"B,7\nA,B,7\n'
    with pytest.raises(DataValidationError) as excinfo:
        read_table(write_text(tmp_path / "t.csv", text))
    assert problems_of(excinfo) == [(2, None)]
    assert "unterminated quoted field" in excinfo.value.problems[0].reason


def test_duplicate_column_names(tmp_path):
    with pytest.raises(DataValidationError) as excinfo:
        read_table(write_text(tmp_path / "t.csv", "heavy,pkd,antigen,pkd\nA,7,B,8\n"))
    assert "duplicate column name (columns 2 and 4)" in file_problem(excinfo).reason


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataValidationError, match="directory"):
        read_table(tmp_path)


# --------------------------------------------------------------------------------------------
# Missing values
# --------------------------------------------------------------------------------------------

MARKERS = ["NA", "N/A", "NaN", "nan", "None", "null", " na ", "NULL", "#N/A", "<NA>", "\tNone "]


def marker_file(tmp_path: Path, column: str, marker: str, **extra: list[str]) -> Path:
    """Two valid rows in a CSV; the second holds `marker` in `column`."""
    columns = {"heavy": [HEAVY, HEAVY], "light": [LIGHT, LIGHT], "antigen": [ANTIGEN, ANTIGEN_2],
               "pkd": ["7.5", "8"], **extra}
    columns[column] = [columns[column][0], marker]
    header = list(columns)
    return write_text(tmp_path / "t.csv", csv_text([header, *map(list, zip(*columns.values()))]))


@pytest.mark.parametrize("marker", MARKERS)
@pytest.mark.parametrize("column", ["heavy", "antigen"])
def test_missing_heavy_or_antigen_is_a_row_problem_naming_the_marker(tmp_path, column, marker):
    with pytest.raises(DataValidationError) as excinfo:
        load_pairs(marker_file(tmp_path, column, marker))
    assert problems_of(excinfo) == [(2, column)]
    assert excinfo.value.problems[0].reason == f"missing value {marker.strip()!r} (a sequence is required)"
    df, report = load_pairs(tmp_path / "t.csv", drop_invalid=True)
    assert df["source_row"].tolist() == [1] and [p.row for p in report.rejected] == [2]


@pytest.mark.parametrize("marker", MARKERS)
def test_missing_light_is_a_single_domain_antibody(tmp_path, marker):
    df, report = load_pairs(marker_file(tmp_path, "light", marker))
    assert df["light"].tolist() == [LIGHT, ""]
    assert report.rejected == [] and report.n_single_domain == 1
    assert "Single-domain (no light chain): 1 row(s)." in report.summary()


@pytest.mark.parametrize("marker", MARKERS)
def test_missing_pkd_is_a_problem_for_training_and_nan_for_prediction(tmp_path, marker):
    with pytest.raises(DataValidationError) as excinfo:
        load_pairs(marker_file(tmp_path, "pkd", marker))
    assert problems_of(excinfo) == [(2, "pkd")]
    assert excinfo.value.problems[0].reason == f"missing value {marker.strip()!r} (a pKd value is required)"
    df, report = load_pairs(tmp_path / "t.csv", require_pkd=False)
    assert df["pkd"].tolist()[0] == 7.5 and math.isnan(df["pkd"].tolist()[1]) and report.rejected == []


@pytest.mark.parametrize("marker", ["NA", " null ", "N/A"])
def test_missing_markers_in_kd_unit_and_censored_columns(marker):
    base = {"heavy": [HEAVY] * 3, "antigen": [ANTIGEN] * 3}
    flags = pd.DataFrame({**base, "pkd": ["<6", "7", marker], "censored": [marker, marker, ""]})
    df, _ = prepare_pairs(flags, require_pkd=False)
    assert df["censored"].tolist() == [True, False, False] and math.isnan(df.loc[2, "pkd"])
    kd = pd.DataFrame({**base, "kd": ["5", marker, "7"], "kd_unit": ["nM", "nM", marker]})
    with pytest.raises(DataValidationError) as excinfo:
        prepare_pairs(kd)
    assert problems_of(excinfo) == [(2, "kd"), (3, "kd_unit")]
    assert excinfo.value.problems[0].reason == f"missing value {marker.strip()!r} (a Kd value is required)"
    assert excinfo.value.problems[1].reason.startswith("missing Kd unit")
    df, _ = prepare_pairs(kd.iloc[:2], require_pkd=False)
    assert df["pkd"].tolist()[0] == pytest.approx(-math.log10(5e-9)) and math.isnan(df.loc[1, "pkd"])


def test_rows_of_missing_values_only_are_skipped_as_blank(tmp_path):
    text = f"heavy,light,antigen,pkd\n{HEAVY},,{ANTIGEN},7\nNA,N/A, null ,NaN\n{HEAVY},NA,{ANTIGEN},8\n"
    df, report = load_pairs(write_text(tmp_path / "t.csv", text))
    assert df["source_row"].tolist() == [1, 3] and report.n_rows_read == 2
    assert any("skipped 1 blank row(s)" in w for w in report.warnings)


MISSING_TABLE = [
    ["heavy", "light", "antigen", "pkd", "note"],
    [HEAVY, LIGHT, ANTIGEN, "7.5", "a"],
    [HEAVY, "NA", ANTIGEN_2, "N/A", "b"],
    ["nan", LIGHT, ANTIGEN, "8", "c"],
    ["NA", "NA", "NA", "NA", "NA"],
    [HEAVY, "", "None", "9", "d"],
    [HEAVY, "null", ANTIGEN, "", "e"],
    [HEAVY, "#N/A", ANTIGEN_2, "10", "f"],
]


def _loaded_forms(tmp_path: Path) -> dict[str, tuple[pd.DataFrame, LoadReport]]:
    """The same table as CSV, TSV, .csv.gz, a spreadsheet export, and DataFrames read by pandas."""
    text = csv_text(MISSING_TABLE)
    files = {
        "csv": write_text(tmp_path / "t.csv", text),
        "tsv": write_text(tmp_path / "t.tsv", csv_text(MISSING_TABLE, delimiter="\t")),
        "spreadsheet export (BOM, CRLF, ';')": write_text(
            tmp_path / "excel.csv", csv_text(MISSING_TABLE, newline="\r\n", delimiter=";"), "utf-8-sig"),
    }
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(text.encode()))
    files["csv.gz"] = tmp_path / "t.csv.gz"
    options = {"require_pkd": False, "drop_invalid": True}
    loaded = {name: load_pairs(path, **options) for name, path in files.items()}
    loaded["pandas defaults"] = prepare_pairs(pd.read_csv(files["csv"]), **options)
    loaded["pandas keep_default_na=False"] = prepare_pairs(
        pd.read_csv(files["csv"], keep_default_na=False, dtype=str), **options)
    cells = [[np.nan if c in ("", "NA", "N/A", "nan") else (None if c in ("None", "null") else c) for c in row]
             for row in MISSING_TABLE[1:]]
    loaded["object cells (read_excel)"] = prepare_pairs(pd.DataFrame(cells, columns=MISSING_TABLE[0]), **options)
    return loaded


def test_missing_values_load_identically_from_every_form(tmp_path):
    loaded = _loaded_forms(tmp_path)
    expected, report = loaded["csv"]
    assert expected["source_row"].tolist() == [1, 2, 6, 7]
    assert expected["light"].tolist() == [LIGHT, "", "", ""] and report.n_single_domain == 3
    np.testing.assert_array_equal(expected["pkd"], [7.5, np.nan, np.nan, 10.0])
    assert [(p.row, p.column) for p in report.rejected] == [(3, "heavy"), (5, "antigen")]
    for name, (df, form_report) in loaded.items():
        pd.testing.assert_frame_equal(df[list(OUTPUT_COLUMNS)], expected[list(OUTPUT_COLUMNS)], obj=name)
        assert [(p.row, p.column) for p in form_report.rejected] == [(3, "heavy"), (5, "antigen")], name
        assert form_report.n_rows_read == 6 and form_report.n_single_domain == 3, name


def test_missing_markers_are_the_pandas_default_missing_values():
    parsers = pytest.importorskip("pandas._libs.parsers")
    assert MISSING_MARKERS == {value.lower() for value in parsers.STR_NA_VALUES} - {""}


# --------------------------------------------------------------------------------------------
# Implausibly short chains
# --------------------------------------------------------------------------------------------


def test_short_chains_are_kept_and_counted_in_a_warning():
    short_heavy, short_light = SHORT_CHAIN_RESIDUES["heavy"], SHORT_CHAIN_RESIDUES["light"]
    short_antigen = SHORT_CHAIN_RESIDUES["antigen"]
    df_in = pd.DataFrame(
        {
            "heavy": [HEAVY[: short_heavy - 1], HEAVY[:short_heavy], HEAVY, HEAVY],
            "light": [LIGHT, LIGHT[: short_light - 1], LIGHT[:short_light], ""],
            "antigen": [ANTIGEN, ANTIGEN, ANTIGEN + "|" + ANTIGEN_2[: short_antigen - 1], ANTIGEN_2[:short_antigen]],
            "pkd": ["7", "8", "9", "10"],
        }
    )
    df, report = prepare_pairs(df_in)
    assert len(df) == 4 and report.rejected == []
    assert report.n_short_chains == {"heavy": 1, "light": 1, "antigen": 1}
    for role, what in (("heavy", "a heavy chain"), ("light", "a light chain"), ("antigen", "an antigen chain")):
        minimum = SHORT_CHAIN_RESIDUES[role]
        assert sum(f"1 row(s) have {what} shorter than {minimum} residues" in w for w in report.warnings) == 1


def test_plausible_chains_give_no_short_chain_warning():
    _, report = prepare_pairs(pd.DataFrame({"heavy": [HEAVY], "light": [""], "antigen": [ANTIGEN], "pkd": ["7"]}))
    assert report.n_short_chains == {"heavy": 0, "light": 0, "antigen": 0}
    assert not any("shorter than" in w for w in report.warnings)


# --------------------------------------------------------------------------------------------
# Real data and the shipped example
# --------------------------------------------------------------------------------------------


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def test_real_saaintdb_file_loads():
    df, report = load_pairs(shared("saaintdb_dev.csv"))
    assert len(df) == report.n_rows_kept == 817 and report.rejected == []
    assert (df["light"] == "").sum() > 0 and df["antigen"].str.contains("|", regex=False).sum() > 0
    assert df["pkd"].min() == pytest.approx(4.89, abs=0.01) and df["pkd"].max() == pytest.approx(13.47, abs=0.01)
    assert "kd_nM" in df.columns  # the Kd column is not consumed when pkd exists


def test_real_skempi_file_has_104_replicate_triplets():
    _, report = load_pairs(shared("skempi2_ab_ag.csv"))
    assert report.n_rows_kept == 884 and report.n_replicate_groups == 104


def test_real_phillips_file_counts_censored_rows():
    df, report = load_pairs(shared("phillips2021_cr9114_cr6261.csv.gz"))
    assert len(df) == 67_570 and report.n_censored == 58_362
    assert report.column_map["censored"] == "at_lower_bound"
    assert set(df.loc[df["censored"], "antibody"]) == {"CR9114"}
    assert (df.loc[df["censored"], "pkd"] == 6.0).all()


def test_example_file_shape_and_content():
    df, report = load_pairs(EXAMPLE)
    assert EXAMPLE.stat().st_size < 120_000
    assert len(df) == 240 and report.rejected == [] and report.n_outside_model_range == 0
    assert df["pkd"].between(5.0, 11.5).all() and df["pkd"].std() > 0.8
    assert 0.05 <= (df["light"] == "").mean() <= 0.15
    antigens = df["antigen"].unique()
    assert len(antigens) == 6 and sum("|" in a for a in antigens) == 1
    assert df["heavy"].str.len().between(110, 125).all()
    assert df.loc[df["light"] != "", "light"].str.len().between(105, 110).all()


def test_example_file_has_learnable_signal():
    df, _ = load_pairs(EXAMPLE)
    residues = "ACDEFGHIKLMNPQRSTVWY"
    antibodies = df["heavy"] + df["light"]
    counts = np.array([[antibody.count(r) for r in residues] for antibody in antibodies], float)
    antigen_ids = pd.factorize(df["antigen"])[0]
    features = np.hstack([counts, np.eye(antigen_ids.max() + 1)[antigen_ids]])
    train, test = slice(0, 180), slice(180, None)
    weights = np.linalg.lstsq(features[train], df["pkd"].to_numpy()[train], rcond=None)[0]
    predicted = features[test] @ weights
    assert np.corrcoef(predicted, df["pkd"].to_numpy()[test])[0, 1] > 0.7


def test_example_script_is_deterministic(tmp_path):
    output = tmp_path / "again.csv"
    script = REPO / "data" / "make_example.py"
    subprocess.run([sys.executable, str(script), str(output)], check=True, capture_output=True)
    assert output.read_bytes() == EXAMPLE.read_bytes()


def test_report_summary_mentions_every_count():
    df, report = prepare_pairs(replicate_frame(), replicates="keep")
    text = report.summary()
    assert isinstance(report, LoadReport)
    assert "7 row(s) read, 7 kept, 0 rejected" in text
    assert "Censored (true pKd at most the reported value): 3 row(s)" in text
    assert "Replicates: 3 (heavy, light, antigen) triplet(s)" in text and "policy 'keep'" in text
