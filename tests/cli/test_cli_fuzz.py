"""Hostile input at the command line: random bytes, random CSV shapes, odd encodings, huge fields, bad values.

Property: `abag.cli.main` either succeeds or reports a clean error (exit 2, stderr starting `abag: error:`,
invalid rows named by row, column and reason); no exception escapes, no traceback is printed, and no row
is ever dropped silently (with --skip-invalid, predictions + rejected rows = the file's data rows, and
their row numbers cover the data rows exactly once). Harmless variation (case, spaces, BOM, UTF-16, CRLF,
quoting, column order and aliases) is accepted and gives the same predictions.

The loader itself is fuzzed in tests/data/test_data_fuzz.py; this file goes through the CLI, with a tiny trained
checkpoint made once per module. ABAG_FUZZ_EXAMPLES scales the number of examples (default keeps the file
well under a minute).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import synthetic_frame, torch_threads, write_csv
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from abag.cli import main
from abag.data import MAX_CHAIN_LENGTH, MISSING_MARKERS

EXAMPLES = int(os.environ.get("ABAG_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
POOL = synthetic_frame(n=12, n_antigens=4, seed=11)
HEAVY, LIGHT, ANTIGEN = list(POOL["heavy"]), [c for c in POOL["light"] if c], list(dict.fromkeys(POOL["antigen"]))
ROW_PROBLEM = re.compile(r"^  row \d+(, column '[^']*')?: \S")


# ----------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-fuzz")
    with torch_threads(1), pytest.MonkeyPatch.context() as patch:
        patch.setenv("ABAG_CACHE_DIR", str(folder / "cache"))
        data = write_csv(synthetic_frame(n=40, seed=2), folder / "train.csv")
        code, err, _ = run_cli(["train", "--data", data, "--out", str(folder / "run"), "--encoder", "tiny",
                                "--epochs", "1", "--split", "random", "--hidden-dim", "16", "--quiet"])
        assert code == 0, err
        yield str(folder / "run" / "checkpoints" / "best.pt")


# ----------------------------------------------------------------------------------------------- helpers

def run_cli(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stderr, stdout) of an in-process run; an escaping exception fails the test."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(args)
    return code, err.getvalue(), out.getvalue()


def assert_clean(code: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert code in (0, 2), stderr
    if code == 2:
        assert stderr.startswith("abag: error:"), stderr[:500]
        if "invalid row(s)" in stderr.splitlines()[0]:
            assert any(ROW_PROBLEM.match(line) for line in stderr.splitlines()), stderr[:2000]


def encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-16-le-nobom":
        return text.encode("utf-16-le")
    return text.encode(encoding, errors="replace") if encoding == "cp1252" else text.encode(encoding)


def data_row_numbers(rows: list[list[str]]) -> list[int]:
    """1-based numbers of the rows that are data (rows of empty cells and missing-value markers are skipped)."""
    return [i for i, row in enumerate(rows, start=1)
            if any(cell.strip() and cell.strip().lower() not in MISSING_MARKERS for cell in row)]


# ----------------------------------------------------------------------------------------------- strategies

def _spaced(sequence: str, positions: list[int]) -> str:
    chars = list(sequence)
    for p in sorted(positions, reverse=True):
        chars.insert(p % (len(chars) + 1), " ")
    return "".join(chars)


def harmless(pool: list[str]) -> st.SearchStrategy[str]:
    """A valid chain, possibly lower-cased, with inner spaces or padding: the same chain after normalising."""
    return st.builds(
        lambda seq, lower, spaces, pad: (pad + _spaced(seq.lower() if lower else seq, spaces) + pad),
        st.sampled_from(pool), st.booleans(), st.lists(st.integers(0, 200), max_size=3),
        st.sampled_from(["", " ", "\t"]))


TEXT = st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=30)
BAD_SEQUENCE = st.one_of(
    st.sampled_from(["X", "EVQLX", "EVQL*", "EVQL1", "evql-vqs", "ΑΒΓ", "EVQL😀", "EV\x00QL", "N/A", "nan", "None",
                     "\"EVQL\"", "EVQL,VQS", "EV\nQL", "EV\rQL", "<6", "ＥＶＱＬ", "EVQL\u200bVQS", "E\u0301VQL"]),
    TEXT.map(lambda t: t if t.strip() else t + "Z"),
    st.builds(lambda n, c: c * n, st.integers(MAX_CHAIN_LENGTH + 1, MAX_CHAIN_LENGTH + 5000), st.sampled_from("AX")),
)
GOOD = {
    "heavy": harmless(HEAVY),
    "light": st.one_of(harmless(LIGHT), harmless(LIGHT), st.sampled_from(["", " "])),
    "antigen": st.one_of(harmless(ANTIGEN), harmless(ANTIGEN),
                         st.builds(lambda a, b: f"{a}|{b}", st.sampled_from(ANTIGEN), st.sampled_from(ANTIGEN)),
                         st.builds(lambda n: "ACDEFGHIKL" * n, st.integers(20, 120))),  # long: encoded in windows
    "pkd": st.one_of(st.floats(2, 16).map(lambda x: f"{x:.3f}"), st.floats(5, 12).map(lambda x: f" {x:g} "),
                     st.sampled_from(["<6", "< 7.5", "8.", ".8", "+8", "7.5e0"])),
}
BAD = {
    "heavy": st.one_of(BAD_SEQUENCE, st.sampled_from(["", " "])),
    "light": BAD_SEQUENCE,
    "antigen": st.one_of(BAD_SEQUENCE, st.sampled_from(["", "A||B", "|" + ANTIGEN[0], ANTIGEN[0] + "|"])),
    "pkd": st.one_of(st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "-3", "abc", "7,5", ">6", "6..5",
                                      "7.5 nM", "１０", "9" * 400, "1e-400"]),
                     TEXT.map(lambda t: t if t.strip() else t + "Z")),
}
NAMES = {
    "heavy": ["heavy", "HEAVY", " Heavy ", "heavy_chain", "VH", "Heavy Chain", "antibody_sequence", "heavy-chain"],
    "light": ["light", "Light", "vl", "light_chain", "LIGHT SEQUENCE"],
    "antigen": ["antigen", "Antigen", "antigen_sequence", "ANTIGEN_SEQ"],
    "pkd": ["pkd", "pKd", "PKD", " pkd"],
}
EXTRA_COLUMNS = ["id", "notes", "pkd_pred", "source_row", "binder_prob", "heavy", "", "Kd (nM)"]


@st.composite
def tables(draw) -> tuple[list[str], list[list[str]]]:
    """A header and rows: random column set, names, order, extras, values and (sometimes) ragged rows."""
    roles = ["heavy", "antigen"] + [r for r in ("light", "pkd") if draw(st.booleans())]
    if draw(st.integers(0, 9)) == 0:
        roles.remove(draw(st.sampled_from(roles)))  # a required column missing, now and then
    header = [draw(st.sampled_from(NAMES[role])) for role in roles]
    extras = draw(st.lists(st.sampled_from(EXTRA_COLUMNS), max_size=2)) if draw(st.integers(0, 3)) == 0 else []
    header += extras
    order = draw(st.permutations(range(len(header))))
    hostility = draw(st.sampled_from([0, 0, 1, 2, 5]))  # bad cells per 20: clean files are common too

    def cell(role: str) -> str:
        return draw(BAD[role] if draw(st.integers(0, 19)) < hostility else GOOD[role])

    rows = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 14)) == 0:
            rows.append([""] * len(header))  # a blank row
            continue
        rows.append([cell(role) for role in roles] + [draw(st.text(max_size=6)) for _ in extras])
    if rows and draw(st.integers(0, 9)) == 0:  # one ragged row, now and then
        i = draw(st.integers(0, len(rows) - 1))
        rows[i] = rows[i][:-1] if draw(st.booleans()) and len(rows[i]) > 1 else rows[i] + ["surplus"]
    return [header[i] for i in order], [[r[i] for i in order if i < len(r)] + r[len(order):] for r in rows]


FORMATS = st.fixed_dictionaries({
    "encoding": st.sampled_from(["utf-8"] * 3 + ["utf-8-sig", "utf-16", "utf-16-le-nobom", "cp1252"]),
    "newline": st.sampled_from(["\n", "\r\n", "\r"]),
    "delimiter": st.sampled_from([",", ",", "\t", ";"]),
    "quoting": st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    "gzip": st.booleans(),
    "trailing": st.sampled_from(["", "\n", "\n\n", "\r\n"]),
})


def serialise(header: list[str], rows: list[list[str]], fmt: dict) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=fmt["delimiter"], quoting=fmt["quoting"], lineterminator=fmt["newline"])
    writer.writerow(header)
    writer.writerows(rows)
    raw = encode(buffer.getvalue() + fmt["trailing"], fmt["encoding"])
    return gzip.compress(raw, mtime=0) if fmt["gzip"] else raw


def file_name(fmt: dict) -> str:
    return ("pairs.tsv" if fmt["delimiter"] == "\t" else "pairs.csv") + (".gz" if fmt["gzip"] else "")


# ----------------------------------------------------------------------------------------------- properties

@FUZZ
@given(data=st.binary(max_size=3000), command=st.sampled_from(["predict", "predict-skip", "evaluate"]))
def test_random_bytes_never_crash_the_cli(checkpoint, data, command):
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "pairs.csv"
        source.write_bytes(data)
        args = ["evaluate"] if command == "evaluate" else ["predict", "--out", str(Path(folder) / "p.csv")]
        if command == "predict-skip":
            args.append("--skip-invalid")
        code, err, _ = run_cli([*args, "--checkpoint", checkpoint, "--data", str(source), "--quiet"])
        assert_clean(code, err)


@FUZZ
@given(table=tables(), fmt=FORMATS, command=st.sampled_from(["predict", "predict-skip", "predict-skip",
                                                              "evaluate"]))
def test_random_tables_succeed_or_fail_cleanly_and_never_drop_rows_silently(checkpoint, table, fmt, command):
    header, rows = table
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / file_name(fmt)
        source.write_bytes(serialise(header, rows, fmt))
        out = Path(folder) / "p.csv"
        skip = command == "predict-skip"
        args = ["evaluate", "--json"] if command == "evaluate" else ["predict", "--out", str(out)]
        code, err, stdout = run_cli([*args, *(["--skip-invalid"] if skip else []), "--checkpoint", checkpoint,
                                     "--data", str(source), "--quiet"])
        assert_clean(code, err)
        event(f"{command}: exit {code}")
        if code != 0:
            assert not out.exists()  # a failed run writes nothing (no half-written results)
            return
        expected = data_row_numbers(rows)
        if command == "evaluate":
            assert json.loads(stdout)["n_total"] == len(expected)
            return
        predicted = pd.read_csv(out, keep_default_na=False, dtype=str)
        numbers = [int(n) for n in predicted["source_row"]]
        assert predicted["pkd_pred"].astype(float).between(4, 14).all()
        if not skip:
            assert numbers == expected
            return
        rejected = pd.read_csv(Path(f"{out}.rejected.csv"), keep_default_na=False, dtype=str)
        rejected_numbers = [int(n) for n in rejected["row"]]
        event(f"predict-skip: {'some' if len(rejected) else 'no'} rows rejected")
        assert len(predicted) + len(rejected) == len(expected)           # every data row accounted for …
        assert sorted(numbers + rejected_numbers) == expected            # … exactly once
        assert all(reason.strip() for reason in rejected["reason"])      # each rejection says why


CANONICAL = pd.DataFrame({
    "heavy": HEAVY[:6], "light": [LIGHT[0], "", LIGHT[1], LIGHT[2], "", LIGHT[3]],
    "antigen": [ANTIGEN[i % len(ANTIGEN)] for i in range(6)], "pkd": [6.5, 7.25, 8.0, 9.5, 10.0, 5.5]})


@pytest.fixture(scope="module")
def canonical_predictions(checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("canonical")
    CANONICAL.to_csv(folder / "pairs.csv", index=False)
    code, err, _ = run_cli(["predict", "--checkpoint", checkpoint, "--data", str(folder / "pairs.csv"),
                            "--out", str(folder / "p.csv"), "--quiet"])
    assert code == 0, err
    return pd.read_csv(folder / "p.csv")["pkd_pred"].to_numpy()


@FUZZ
@given(lower=st.lists(st.booleans(), min_size=18, max_size=18), spaces=st.lists(st.integers(0, 90), max_size=6),
       names=st.fixed_dictionaries({role: st.sampled_from(names) for role, names in NAMES.items()}),
       order=st.permutations(range(4)), fmt=FORMATS, extra=st.booleans())
def test_harmless_variation_is_accepted_and_predicts_the_same(checkpoint, canonical_predictions, lower, spaces,
                                                              names, order, fmt, extra):
    roles = ["heavy", "light", "antigen", "pkd"]
    rows = []
    for i, record in CANONICAL.iterrows():
        row = []
        for j, role in enumerate(roles[:3]):
            value = record[role]
            value = value.lower() if lower[3 * i + j] else value
            row.append(_spaced(value, spaces) if value and i % 2 else value)
        row.append(f" {record['pkd']} ")
        rows.append([row[k] for k in order] + (["note"] if extra else []))
    header = [names[roles[k]] for k in order] + (["comment"] if extra else [])
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / file_name(fmt)
        lossless = fmt if fmt["encoding"] != "cp1252" else {**fmt, "encoding": "utf-8"}
        source.write_bytes(serialise(header, rows, lossless))
        out = Path(folder) / "p.csv"
        code, err, _ = run_cli(["predict", "--checkpoint", checkpoint, "--data", str(source), "--out", str(out),
                                "--quiet"])
        assert code == 0, err
        predicted = pd.read_csv(out)
    assert list(predicted["source_row"]) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(predicted["pkd_pred"].to_numpy(), canonical_predictions, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------- train

TRAIN = ["--encoder", "tiny", "--epochs", "1", "--split", "random", "--hidden-dim", "16", "--quiet"]
BAD_OPTIONS = [
    (["--batch-size", "0"], "--batch-size"), (["--epochs", "0"], "--epochs"), (["--epochs", "two"], "whole number"),
    (["--learning-rate", "nan"], "--learning-rate"), (["--learning-rate", "-1"], "--learning-rate"),
    (["--learning-rate", "inf"], "--learning-rate"), (["--dropout", "1"], "--dropout"), (["--seed", "-1"], "--seed"),
    (["--gradient-accumulation", "0"], "--gradient-accumulation"), (["--split-identity", "0"], "--split-identity"),
    (["--hidden-dim", "abc"], "--hidden-dim"), (["--weight-decay", "-0.1"], "--weight-decay"),
    (["--split", "group"], "--group-column"), (["--group-column", "id"], "--split group"),
    (["--split", "sideways"], "--split"), (["--no-such-option"], "unrecognized"),
]


@pytest.mark.parametrize("extra, phrase", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_train_options_are_one_clean_error(extra, phrase, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("data was read although the options are invalid")

    monkeypatch.setattr("abag.data.load_pairs", never)
    code, err, _ = run_cli(["train", "--data", str(tmp_path / "x.csv"), "--out", str(tmp_path / "run"), *TRAIN,
                            *extra])
    assert code == 2 and err.startswith("abag: error:") and phrase in err and "--help" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_help_and_version_return_0_without_raising(capsys):
    assert main(["--version"]) == 0
    assert main(["train", "--help"]) == 0
    assert "--resume" in capsys.readouterr().out


def _train_file(tmp_path: Path, content: bytes, name: str = "pairs.csv") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


TRAIN_FILES = {
    "random bytes": (bytes(range(256)) * 4, "cannot load"),
    "empty": (b"", "empty"),
    "header only": (b"heavy,light,antigen,pkd\n", "no data rows"),
    "no pkd column": (b"heavy,antigen\nEVQL,MKTA\n", "pkd"),
    "every row invalid, dropped": (b"heavy,light,antigen,pkd\nX1,,MKT,7\nEVQL,,,8\n", "no valid rows left"),
    "one row cannot be split": (f"heavy,light,antigen,pkd\n{HEAVY[0]},,{ANTIGEN[0]},7\n".encode(), "split"),
    "huge invalid field": (("heavy,light,antigen,pkd\n" + "A" * 25_000 + ",,MKT,7\n").encode(), "too long"),
    "unknown group column": (CANONICAL.to_csv(index=False).encode(), "--group-column 'complex_id' is not a column"),
}


@pytest.mark.parametrize("case", list(TRAIN_FILES))
def test_hostile_training_files_fail_cleanly(case, tmp_path, monkeypatch):
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    content, phrase = TRAIN_FILES[case]
    extra = ["--drop-invalid"] if "dropped" in case else []
    if case == "unknown group column":
        extra = ["--split", "group", "--group-column", "complex_id"]
    args = ["train", "--data", _train_file(tmp_path, content), "--out", str(tmp_path / "run"), *TRAIN, *extra]
    if case == "unknown group column":
        args.remove("random")
        args.remove("--split")
    code, err, _ = run_cli(args)
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("abag:")]
    assert len(lines) == 1 and lines[0].startswith("abag: error:") and phrase in err, err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_training_accepts_harmless_variation(tmp_path, monkeypatch):
    """Lower case, spaces, BOM, CRLF and aliased headers train exactly like the clean file."""
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    frame = synthetic_frame(n=30, seed=6)
    write_csv(frame, tmp_path / "clean.csv")
    messy = frame[["heavy", "light", "antigen", "pkd"]].copy()
    messy["heavy"] = [" " + s.lower()[:10] + " " + s.lower()[10:] for s in messy["heavy"]]
    messy.columns = ["Heavy Chain", "VL", "Antigen_Sequence", "pKd"]
    (tmp_path / "messy.csv").write_bytes(b"\xef\xbb\xbf" + messy.to_csv(index=False, lineterminator="\r\n").encode())
    for name in ("clean", "messy"):
        code, err, _ = run_cli(["train", "--data", str(tmp_path / f"{name}.csv"), "--out", str(tmp_path / name),
                                *TRAIN])
        assert code == 0, err
    a = torch.load(tmp_path / "clean" / "checkpoints" / "last.pt", weights_only=True)["model_state_dict"]
    b = torch.load(tmp_path / "messy" / "checkpoints" / "last.pt", weights_only=True)["model_state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_carriage_returns_inside_fields_survive_into_the_output(checkpoint, tmp_path):
    """Found by the fuzzer: a lone CR inside a quoted field must not split the output row in two."""
    frame = CANONICAL.drop(columns=["pkd"]).assign(notes=["old\rmac", "a\r\nb", "plain", "", "x\ry\rz", "q"])
    source = tmp_path / "pairs.csv"
    frame.to_csv(source, index=False, quoting=csv.QUOTE_ALL)
    out = tmp_path / "p.csv"
    code, err, _ = run_cli(["predict", "--checkpoint", checkpoint, "--data", str(source), "--out", str(out)])
    assert code == 0, err
    predicted = pd.read_csv(out, keep_default_na=False)
    assert list(predicted["source_row"]) == [1, 2, 3, 4, 5, 6]
    assert list(predicted["notes"]) == list(frame["notes"])


def test_missing_value_markers_predict_as_single_domain_and_unlabelled(checkpoint, tmp_path):
    frame = CANONICAL.assign(light=["NA", LIGHT[1], " nan ", "", "NULL", LIGHT[3]],
                             pkd=["N/A", "7", "NaN", "", "None", "8"])
    frame.loc[len(frame)] = ["NA", LIGHT[0], ANTIGEN[0], "7"]  # a missing heavy chain: a row problem
    source = tmp_path / "pairs.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "p.csv"
    code, err, _ = run_cli(["predict", "--checkpoint", checkpoint, "--data", str(source), "--out", str(out)])
    assert code == 2 and "row 7, column 'heavy': missing value 'NA'" in err
    code, err, _ = run_cli(["predict", "--checkpoint", checkpoint, "--data", str(source), "--out", str(out),
                            "--skip-invalid"])
    assert code == 0, err
    assert "Single-domain (no light chain): 4 row(s)." in err
    predicted = pd.read_csv(out, keep_default_na=False)
    assert list(predicted["source_row"]) == [1, 2, 3, 4, 5, 6]
    assert list(predicted["light"]) == ["", LIGHT[1], "", "", "", LIGHT[3]]
    assert predicted["pkd_pred"].between(4, 14).all()
    rejected = pd.read_csv(f"{out}.rejected.csv", keep_default_na=False)
    assert list(rejected["row"]) == [7] and list(rejected["column"]) == ["heavy"]
