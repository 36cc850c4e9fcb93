"""Property tests for abag.data: arbitrary input either loads into a valid table or raises
DataValidationError (never another exception), and harmless variations do not change the result."""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abag.data import (
    MAX_CHAIN_LENGTH,
    MISSING_MARKERS,
    OUTPUT_COLUMNS,
    PKD_MODEL_RANGE,
    DataValidationError,
    load_pairs,
    prepare_pairs,
)
from abag.data.reading import _lines

# ABAG_FUZZ_EXAMPLES=5000 for a deeper local run; the default keeps the file under ~30 s.
FUZZ_EXAMPLES = int(os.environ.get("ABAG_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
VALID_CHAIN = re.compile(f"[{AMINO_ACIDS}]+")
SHORT_HEAVY = "EVQLVESGGGLVQPGGSLRLSCAAS"


def load_bytes(data: bytes, name: str = "t.csv", **kwargs):
    """Write bytes to a fresh temporary file and load it (hypothesis reruns: no shared tmp_path)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        return load_pairs(path, **kwargs)


def load_or_reject(data: bytes, name: str = "t.csv", **kwargs):
    """The property under test: success, or DataValidationError; anything else propagates."""
    try:
        return load_bytes(data, name, **kwargs)
    except DataValidationError as err:
        assert err.problems, "a DataValidationError must carry its problems"
        assert str(err)
        return None


def assert_valid_output(df: pd.DataFrame, report, *, require_pkd: bool = True) -> None:
    assert list(df.columns[: len(OUTPUT_COLUMNS)]) == list(OUTPUT_COLUMNS)
    assert list(df.index) == list(range(len(df))) and len(df) > 0
    assert df["pkd"].dtype == np.float64 and df["censored"].dtype == bool
    for heavy, light, antigen in zip(df["heavy"], df["light"], df["antigen"]):
        assert VALID_CHAIN.fullmatch(heavy) and len(heavy) <= MAX_CHAIN_LENGTH
        assert light == "" or (VALID_CHAIN.fullmatch(light) and len(light) <= MAX_CHAIN_LENGTH)
        assert all(VALID_CHAIN.fullmatch(c) and len(c) <= MAX_CHAIN_LENGTH for c in antigen.split("|"))
    if require_pkd:
        assert np.isfinite(df["pkd"]).all()
    rows = df["source_row"].tolist()
    assert rows == sorted(set(rows)) and rows[0] >= 1
    rejected_rows = [p.row for p in report.rejected]
    assert len(set(rejected_rows)) == len(rejected_rows) and not set(rejected_rows) & set(rows)
    assert report.n_rows_kept == len(df)
    assert report.n_rows_kept + len(report.rejected) == report.n_rows_read
    assert report.n_censored == int(df["censored"].sum())
    low, high = PKD_MODEL_RANGE
    assert report.n_outside_model_range == int(((df["pkd"] < low) | (df["pkd"] > high)).sum())


# --------------------------------------------------------------------------------------------
# Random bytes
# --------------------------------------------------------------------------------------------

BOMS = st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00"])
HEADERS = st.sampled_from(
    [b"", b"heavy,light,antigen,pkd\n", b"heavy\tantigen\tkd_nM\n", b"vh,antigen,pkd,at_lower_bound\r\n"]
)
RANDOM_FILES = st.one_of(
    st.binary(max_size=600),
    st.tuples(BOMS, HEADERS, st.binary(max_size=300)).map(b"".join),
    st.binary(max_size=300).map(gzip.compress),
    st.tuples(HEADERS, st.binary(max_size=300)).map(lambda parts: gzip.compress(b"".join(parts))[:-3]),
)


@FUZZ
@given(data=RANDOM_FILES, name=st.sampled_from(["t.csv", "t.tsv", "t.csv.gz", "t.bz2", "t.zip", "t.fasta", "t.xlsx"]),
       drop=st.booleans())
def test_random_bytes_load_or_raise_data_validation_error(data, name, drop):
    result = load_or_reject(data, name, drop_invalid=drop)
    if result is not None:
        assert_valid_output(*result)


# --------------------------------------------------------------------------------------------
# Random FASTA and AIRR files
# --------------------------------------------------------------------------------------------

FASTA_LINES = st.lists(
    st.one_of(
        st.sampled_from([">ab1|heavy", ">ab1|light", ">ab1|antigen", ">ab2_H pkd=8", ">ab2_L kd_nM=3", ">H", ">L",
                         ">HER2|antigen", ">", "> ", ">x|heavy pkd=", ">ab1|heavy pkd=1 PKD=2", ">ab1|vh id=3",
                         ">ab3|light censored=maybe", ">ag|antigen unit=nM", ";comment", "", "*", "\r"]),
        st.text(alphabet=AMINO_ACIDS + "acx*-. \t", max_size=40),
        st.text(max_size=20),
    ),
    max_size=14,
).map("\n".join)


@FUZZ
@given(text=FASTA_LINES, name=st.sampled_from(["t.fasta", "t.csv", "t.fa.gz"]), drop=st.booleans(),
       require_pkd=st.booleans(), antigen=st.sampled_from([None, "ACDEFGHIK", "AC|DE"]))
def test_random_fasta_loads_or_raises_data_validation_error(text, name, drop, require_pkd, antigen):
    data = (">" + text).encode()
    result = load_or_reject(gzip.compress(data) if name.endswith(".gz") else data, name, drop_invalid=drop,
                            require_pkd=require_pkd, antigen=antigen)
    if result is not None:
        assert_valid_output(*result, require_pkd=require_pkd)


AIRR_CELLS = {
    "sequence_id": st.sampled_from(["s1", "s2", ""]),
    "cell_id": st.sampled_from(["c1", "c2", "c3", "", "NA"]),
    "locus": st.sampled_from(["IGH", "IGH", "IGK", "IGL", "igh", "TRB", ""]),
    "productive": st.sampled_from(["T", "T", "F", "", "true"]),
    "sequence_alignment_aa": st.one_of(st.just(""), st.text(alphabet=AMINO_ACIDS + ".-*x", max_size=30)),
    "sequence_aa": st.one_of(st.just(SHORT_HEAVY), st.text(alphabet=AMINO_ACIDS + "*", max_size=30)),
    "pkd": st.sampled_from(["8", "7.5", "", "abc", "12000"]),
}


@FUZZ
@given(rows=st.lists(st.fixed_dictionaries(AIRR_CELLS), max_size=8), drop=st.booleans(), require_pkd=st.booleans(),
       columns=st.sets(st.sampled_from(["sequence_id", "cell_id", "productive", "sequence_alignment_aa", "pkd"])))
def test_random_airr_tables_load_or_raise_data_validation_error(rows, drop, require_pkd, columns):
    header = [c for c in AIRR_CELLS if c in columns or c in ("locus", "sequence_aa")]
    text = render([header] + [[row[c] for c in header] for row in rows], quote_properly=True, delimiter="\t")
    result = load_or_reject(text.encode(), "airr.tsv", drop_invalid=drop, require_pkd=require_pkd,
                            antigen="ACDEFGHIKL")
    if result is not None:
        assert_valid_output(*result, require_pkd=require_pkd)


# --------------------------------------------------------------------------------------------
# Random CSV shapes
# --------------------------------------------------------------------------------------------

COLUMN_NAMES = st.one_of(
    st.sampled_from(
        ["heavy", "Light", " antigen", "pKd", "vh", "vl", "antibody_sequence", "antigen_sequence", "kd",
         "kd_nM", "Kd (pM)", "unit", "kd_unit", "censored", "at_lower_bound", "source_row", "replicate", "note"]
    ),
    st.text(max_size=8),
)
CELLS = st.one_of(
    st.sampled_from([SHORT_HEAVY, SHORT_HEAVY.lower(), "AAA|CC", "AAA||CC", "|", "EVQ LVE", "X", "nM", "µM",
                     "7.5", "<6", ">6", "<=5", ">1000", "0", "-1", "nan", "inf", "-inf", "1e-9", "1e400",
                     "true", "False", "yes", "maybe", "", " ", '"', '""', ",", "a,b", "line\nbreak", "\r",
                     "NA", " n/a", "None", "NULL", "#N/A", "<NA>"]),
    st.text(alphabet=AMINO_ACIDS + "acdexXBZ*-| \t", max_size=40),
    st.text(max_size=20),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.just("A" * (MAX_CHAIN_LENGTH + 1)),
    st.just("G" * 5000),
)


@FUZZ
@given(text=st.lists(st.sampled_from(["a", ",", '"', "\r", "\n", "\r\n", " ", "\u2028", "\x0c", "\x85"])).map("".join))
def test_lines_split_like_a_file_opened_with_newline_empty(text):
    """The reader's line splitter must agree with io.StringIO(newline=""), which it replaces to save memory."""
    assert list(_lines(text)) == list(io.StringIO(text, newline=""))


@st.composite
def random_tables(draw) -> list[list[str]]:
    header = draw(st.lists(COLUMN_NAMES, min_size=1, max_size=7))
    n_rows = draw(st.integers(min_value=0, max_value=6))
    rows = []
    for _ in range(n_rows):
        width = len(header) + draw(st.sampled_from([0, 0, 0, 0, 0, -1, 1]))  # sometimes ragged
        rows.append(draw(st.lists(CELLS, min_size=max(width, 0), max_size=max(width, 0))))
    return [header, *rows]


def render(table: list[list[str]], *, quote_properly: bool, delimiter: str = ",", newline: str = "\n") -> str:
    if not quote_properly:  # naive join: may produce malformed quoting or ragged rows
        return "".join(delimiter.join(row) + newline for row in table)
    buffer = io.StringIO()
    # csv.writer quotes only the characters of *its* line terminator: with "\r" a cell holding
    # "\n" would be written unquoted (a real line break), so quote every cell in that case.
    quoting = csv.QUOTE_ALL if newline == "\r" else csv.QUOTE_MINIMAL
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline, quoting=quoting).writerows(table)
    return buffer.getvalue()


@FUZZ
@given(
    table=random_tables(),
    quote_properly=st.booleans(),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    require_pkd=st.booleans(),
)
def test_random_csv_shapes_load_or_raise(table, quote_properly, encoding, newline, require_pkd):
    data = render(table, quote_properly=quote_properly, newline=newline).encode(encoding)
    result = load_or_reject(data, drop_invalid=True, require_pkd=require_pkd)
    if result is not None:
        assert_valid_output(*result, require_pkd=require_pkd)
    strict = load_or_reject(data, drop_invalid=False, require_pkd=require_pkd)
    if strict is not None:  # no problem at all: nothing rejected, and identical to the lenient load
        assert strict[1].rejected == [] and result is not None
        pd.testing.assert_frame_equal(strict[0], result[0])


DATAFRAME_CELLS = st.one_of(CELLS, st.none(), st.just(pd.NA), st.floats(), st.integers(), st.booleans())


@FUZZ
@given(
    header=st.lists(COLUMN_NAMES, min_size=1, max_size=6, unique=True),
    cells=st.lists(DATAFRAME_CELLS, min_size=0, max_size=30),
    replicates=st.sampled_from(["keep", "flag"]),
)
def test_random_dataframes_prepare_or_raise(header, cells, replicates):
    n_rows = len(cells) // len(header)
    rows = [cells[i * len(header) : (i + 1) * len(header)] for i in range(n_rows)]
    df_in = pd.DataFrame(rows, columns=header) if rows else pd.DataFrame(columns=header)
    try:
        df, report = prepare_pairs(df_in, drop_invalid=True, replicates=replicates)
    except DataValidationError as err:
        assert err.problems
        return
    assert_valid_output(df, report)
    if replicates == "flag":
        assert df["replicate"].dtype == bool


# --------------------------------------------------------------------------------------------
# Harmless variations give the identical canonical table
# --------------------------------------------------------------------------------------------

# "NA" and "NAN" are amino-acid letters but missing-value markers: never a chain.
CHAINS = st.text(alphabet=AMINO_ACIDS, min_size=1, max_size=30).filter(lambda c: c.lower() not in MISSING_MARKERS)


@st.composite
def valid_tables(draw) -> list[dict[str, str]]:
    n_rows = draw(st.integers(min_value=1, max_value=6))
    return [
        {
            "heavy": draw(CHAINS),
            "light": draw(st.one_of(st.just(""), CHAINS)),
            "antigen": "|".join(draw(st.lists(CHAINS, min_size=1, max_size=3))),
            # a possible pKd: values outside [0, 20], or a column whose median is under 1, are refused as Kd
            "pkd": repr(draw(st.floats(min_value=1, max_value=20, allow_nan=False))),
        }
        for _ in range(n_rows)
    ]


def messy_sequence(rnd: random.Random, sequence: str) -> str:
    """Random case flips and whitespace runs (spaces, tabs, newlines, NBSP) between residues."""
    separators = ["", "", "", " ", "\t", " \n ", "\u00a0"]
    out = [rnd.choice(["", " "])]
    for residue in sequence:
        out.append(residue.lower() if rnd.random() < 0.5 else residue)
        out.append(rnd.choice(separators))
    return "".join(out)


def table_rows(records: list[dict[str, str]], header: list[str]) -> list[list[str]]:
    return [header] + [[r["heavy"], r["light"], r["antigen"], r["pkd"]] for r in records]


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    return df[list(OUTPUT_COLUMNS)]


@settings(FUZZ, max_examples=max(FUZZ_EXAMPLES * 2 // 3, 1))
@given(
    records=valid_tables(),
    header=st.sampled_from(
        [["heavy", "light", "antigen", "pkd"], [" HEAVY", "Light ", "ANTIGEN", "pKd"],
         ["VH", "VL", "antigen_sequence", "PKD"], ["heavy_chain", "light chain", "Antigen-Seq", " pkd "]]
    ),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le"]),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    delimiter_and_name=st.sampled_from([(",", "t.csv"), ("\t", "t.tsv"), ("\t", "t.csv"), (",", "t.csv.gz")]),
    rnd=st.randoms(use_true_random=False),
)
def test_harmless_variations_give_identical_result(records, header, encoding, newline, delimiter_and_name, rnd):
    clean = render(table_rows(records, ["heavy", "light", "antigen", "pkd"]), quote_properly=True)
    expected, _ = load_bytes(clean.encode())

    messy_records = [
        {**r, **{k: messy_sequence(rnd, r[k]) for k in ("heavy", "light", "antigen")},
         "pkd": rnd.choice(["", " "]) + r["pkd"] + rnd.choice(["", " "])}
        for r in records
    ]
    delimiter, name = delimiter_and_name
    text = render(table_rows(messy_records, header), quote_properly=True, delimiter=delimiter, newline=newline)
    payload = text.encode(encoding)
    if name.endswith(".gz"):
        payload = gzip.compress(payload)
    actual, report = load_bytes(payload, name)
    pd.testing.assert_frame_equal(canonical(actual), canonical(expected))
    assert report.rejected == [] and report.n_rows_read == len(records)
    via_frame, _ = prepare_pairs(pd.DataFrame(table_rows(messy_records, header)[1:], columns=header))
    pd.testing.assert_frame_equal(canonical(via_frame), canonical(expected))
    assert all(not math.isnan(v) for v in actual["pkd"])


# --------------------------------------------------------------------------------------------
# Missing-value markers, in every column and every form
# --------------------------------------------------------------------------------------------

ROLES = ("heavy", "light", "antigen", "pkd")


def _spelled(word: str, upper: list[bool], left: str, right: str) -> str:
    return left + "".join(c.upper() if u else c for c, u in zip(word, upper)) + right


MARKER_CELLS = st.one_of(
    st.just(""),
    st.builds(_spelled, st.sampled_from(sorted(MISSING_MARKERS)), st.lists(st.booleans(), min_size=12, max_size=12),
              st.sampled_from(["", " ", "  ", "\t"]), st.sampled_from(["", " ", "\t "])),
)


@st.composite
def tables_with_missing_values(draw) -> list[dict[str, tuple[str, bool]]]:
    """Rows of (cell text, is missing) per role: valid values, each replaced by a marker now and then."""
    rows = []
    for record in draw(valid_tables()):
        record["light"] = record["light"] or draw(CHAINS)
        row = {}
        for role in ROLES:
            missing = draw(st.integers(0, 2)) == 0
            row[role] = (draw(MARKER_CELLS), True) if missing else (record[role], False)
        rows.append(row)
    return rows


def _expected_outcome(rows, require_pkd: bool) -> tuple[list[int], dict[int, set[str]]]:
    """(1-based rows kept, {row: columns with a missing required value}); all-missing rows are blank."""
    kept, problems = [], {}
    for number, row in enumerate(rows, start=1):
        missing = {role for role, (_, is_missing) in row.items() if is_missing}
        if missing == set(ROLES):
            continue
        required = {"heavy", "antigen"} | ({"pkd"} if require_pkd else set())
        if missing & required:
            problems[number] = missing & required
        else:
            kept.append(number)
    return kept, problems


@FUZZ
@given(
    rows=tables_with_missing_values(),
    require_pkd=st.booleans(),
    form=st.sampled_from(["csv", "tsv", "csv.gz", "spreadsheet", "pandas", "pandas-text"]),
)
def test_missing_value_markers_never_become_chains(rows, require_pkd, form):
    header = list(ROLES)
    table = [header] + [[row[role][0] for role in ROLES] for row in rows]
    delimiter, newline, encoding = ("\t", "\n", "utf-8") if form == "tsv" else (",", "\n", "utf-8")
    if form == "spreadsheet":  # what a spreadsheet's "CSV UTF-8" export looks like
        delimiter, newline, encoding = ";", "\r\n", "utf-8-sig"
    payload = render(table, quote_properly=True, delimiter=delimiter, newline=newline).encode(encoding)
    name = {"tsv": "t.tsv", "csv.gz": "t.csv.gz"}.get(form, "t.csv")
    payload = gzip.compress(payload) if form == "csv.gz" else payload

    def load(drop_invalid: bool):
        if form.startswith("pandas"):  # a DataFrame read by pandas, with or without its own NA handling
            options = {"keep_default_na": False, "dtype": str} if form == "pandas-text" else {}
            frame = pd.read_csv(io.BytesIO(payload), **options)
            return prepare_pairs(frame, require_pkd=require_pkd, drop_invalid=drop_invalid)
        return load_bytes(payload, name, require_pkd=require_pkd, drop_invalid=drop_invalid)

    kept, problems = _expected_outcome(rows, require_pkd)
    if problems:
        try:
            load(drop_invalid=False)
            raise AssertionError("missing required values were not reported")
        except DataValidationError as err:
            found = {(p.row, p.column) for p in err.problems}
            assert found == {(r, c) for r, columns in problems.items() for c in columns}
            assert all("missing" in p.reason for p in err.problems)
    if not kept:
        try:
            load(drop_invalid=True)
            raise AssertionError("a table without a valid row loaded")
        except DataValidationError as err:
            assert "no valid rows left" in err.problems[0].reason or "no data rows" in err.problems[0].reason
        return
    df, report = load(drop_invalid=True)
    assert df["source_row"].tolist() == kept
    assert sorted(p.row for p in report.rejected) == sorted(problems)
    for out_row, number in zip(df.itertuples(), kept):
        row = rows[number - 1]
        assert out_row.heavy == row["heavy"][0] and out_row.antigen == row["antigen"][0]
        assert out_row.light == ("" if row["light"][1] else row["light"][0])
        assert math.isnan(out_row.pkd) == row["pkd"][1]
    assert report.n_single_domain == sum(rows[n - 1]["light"][1] for n in kept)
