"""`abag suggest` end to end with a tiny checkpoint: the batch file, enumeration from a parent, the report, the
checkpoint's embeddings and prior, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_suggest import split, toy_landscape

from abag.cli import main

TRAIN_ARGS = ["--encoder", "tiny", "--epochs", "2", "--split", "random", "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny checkpoint trained on a toy landscape, and candidate / measured / parent CSVs of it."""
    folder = tmp_path_factory.mktemp("suggest")
    landscape = toy_landscape()
    measured, candidates = split(landscape, 40)
    paths = {name: folder / f"{name}.csv" for name in ("measured", "candidates", "parent", "train")}
    measured.to_csv(paths["measured"], index=False)
    candidates.to_csv(paths["candidates"], index=False)
    landscape.iloc[[0]][["heavy", "light", "antigen"]].to_csv(paths["parent"], index=False)
    landscape.sample(96, random_state=1).to_csv(paths["train"], index=False)
    run = folder / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ABAG_CACHE_DIR", str(folder / "cache"))
        assert main(["train", "--data", str(paths["train"]), "--out", str(run), *TRAIN_ARGS]) == 0
    paths["checkpoint"] = run / "checkpoints" / "best.pt"
    paths["folder"] = folder
    return paths


def suggest(files, *extra: str) -> list[str]:
    return ["suggest", "--checkpoint", str(files["checkpoint"]), "--quiet", *extra]


def test_suggest_writes_a_batch_and_a_report(files, tmp_path, capsys):
    out, report = tmp_path / "batch.csv", tmp_path / "report.json"
    code = main(suggest(files, "--candidates", str(files["candidates"]), "--measured", str(files["measured"]),
                        "--n", "8", "--out", str(out), "--report", str(report), "--seed", "4"))
    assert code == 0, capsys.readouterr().err
    batch = pd.read_csv(out, keep_default_na=False, dtype={"genotype": str})
    candidates = pd.read_csv(files["candidates"], dtype={"genotype": str})
    assert len(batch) == 8 and batch["genotype"].is_unique and set(batch["genotype"]) <= set(candidates["genotype"])
    assert list(batch["pick"]) == list(range(1, 9)) and {"pkd_pred", "pkd_std", "acquisition", "source_row"} <= \
        set(batch.columns)
    assert "pkd" not in batch and "censored" not in batch  # the candidates file had neither
    document = json.loads(report.read_text())
    names = [s["name"] for s in document["model"]["scores"]]
    assert names == ["onehot_ridge", "embedding_ridge", "gp", "checkpoint"]  # the checkpoint adds two models
    assert document["model"]["chosen"] in names and document["measured"]["n"] == 40
    err = capsys.readouterr().err
    assert "variant model:" in err and "wrote a batch of 8" in err


def test_without_measured_variants_the_checkpoint_ranks_and_says_it_has_no_uncertainty(files, tmp_path, capsys):
    out, report = tmp_path / "batch.csv", tmp_path / "report.json"
    assert main(suggest(files, "--candidates", str(files["candidates"]), "--n", "5", "--out", str(out),
                        "--strategy", "ucb", "--report", str(report))) == 0
    document = json.loads(report.read_text())
    assert document["model"]["chosen"] == "checkpoint"
    assert any("no uncertainty" in note for note in document["notes"])
    batch = pd.read_csv(out)
    assert batch["pkd_pred"].is_monotonic_decreasing or batch["pkd_pred"].nunique() < len(batch)
    assert (batch["pkd_std"] == 0).all()


def test_parent_and_positions_enumerate_single_mutants_and_helpful_combinations(files, tmp_path, capsys):
    out = tmp_path / "batch.csv"
    assert main(suggest(files, "--parent", str(files["parent"]), "--positions", "seq:H10,H20-H21",
                        "--measured", str(files["measured"]), "--n", "12", "--out", str(out))) == 0, \
        capsys.readouterr().err
    batch = pd.read_csv(out, keep_default_na=False)
    singles = batch[~batch["mutations"].str.contains(";")]
    assert len(batch) == 12 and batch["mutations"].str.len().gt(0).all()
    assert set(singles["mutations"].str.extract(r"H:.(\d+)")[0]) <= {"10", "20", "21"}


def test_positions_are_imgt_positions_of_an_antibody_parent(files, tmp_path, capsys):
    import abag

    parent = tmp_path / "parent.csv"
    abag.datasets.example_pairs().iloc[[0]][["heavy", "light", "antigen"]].to_csv(parent, index=False)
    out = tmp_path / "batch.csv"
    # All (7 + 6) x 19 = 247 single mutants of CDR-H3 SRWGGDG and CDR-L1 QGIRNC, so every position shows whatever
    # the checkpoint ranks first.
    assert main(suggest(files, "--parent", str(parent), "--positions", "H:CDR3,L27-L38", "--n", "247",
                        "--out", str(out))) == 0, capsys.readouterr().err
    batch = pd.read_csv(out, keep_default_na=False)
    assert len(batch) == 247 and batch["mutations"].is_unique
    positions = batch["mutations"].str.extract(r"^([HL]):.(\d+[A-Z]?).$").agg("".join, axis=1)
    assert set(positions) == {f"H{p}" for p in (105, 106, 107, 108, 115, 116, 117)} | \
        {f"L{p}" for p in (27, 28, 29, 36, 37, 38)}
    assert (positions.value_counts() == 19).all()
    assert main(suggest(files, "--parent", str(parent), "--positions", "H111A", "--n", "3",
                        "--out", str(out))) == 2
    assert "position H111A: the parent's heavy chain has no IMGT position 111A" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--n", "5"], "give --candidates CSV, or --parent CSV"),
    (["--n", "5", "--candidates", "C", "--positions", "H3"], "--positions needs --parent"),
    (["--n", "0", "--candidates", "C"], "argument --n: must be at least 1"),
    (["--n", "5", "--candidates", "C", "--strategy", "best"], "invalid choice: 'best'"),
])
def test_bad_options_are_one_line_usage_errors(files, tmp_path, capsys, extra, message):
    extra = [str(files["candidates"]) if x == "C" else x for x in extra]
    assert main(suggest(files, "--out", str(tmp_path / "b.csv"), *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "abag suggest --help" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_batch_larger_than_the_candidates_is_a_clean_error(files, tmp_path, capsys):
    code = main(suggest(files, "--candidates", str(files["candidates"]), "--measured", str(files["measured"]),
                        "--n", "1000", "--out", str(tmp_path / "b.csv")))
    err = capsys.readouterr().err
    assert code == 2 and "abag: error: only 216 candidates remain" in err and "Traceback" not in err
    assert not (tmp_path / "b.csv").exists()


def test_bad_positions_and_an_unwritable_output_fail_before_work(files, tmp_path, capsys):
    code = main(suggest(files, "--parent", str(files["parent"]), "--positions", "seq:H999", "--n", "3",
                        "--out", str(tmp_path / "b.csv")))
    assert code == 2 and "position seq:H999: the parent's heavy chain has 60 residues" in capsys.readouterr().err
    code = main(suggest(files, "--parent", str(files["parent"]), "--positions", "H10", "--n", "3",
                        "--out", str(tmp_path / "b.csv")))
    assert code == 2 and "heavy chain cannot be numbered in IMGT" in capsys.readouterr().err
    (tmp_path / "folder.csv").mkdir()
    code = main(suggest(files, "--candidates", str(files["candidates"]), "--n", "3",
                        "--out", str(tmp_path / "folder.csv")))
    assert code == 2 and "is a folder" in capsys.readouterr().err


def test_invalid_candidate_rows_are_named_by_row_and_column(files, tmp_path, capsys):
    frame = pd.read_csv(files["candidates"])
    frame.loc[4, "heavy"] = "EVQLX1"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    code = main(suggest(files, "--candidates", str(path), "--n", "3", "--out", str(tmp_path / "b.csv")))
    err = capsys.readouterr().err
    assert code == 2 and "row 5" in err and "'heavy'" in err and "Traceback" not in err
    assert np.isfinite(code)


def test_an_embedding_cache_folder_is_filled_and_reused(files, tmp_path, capsys):
    cache = tmp_path / "cache"
    args = ["--candidates", str(files["candidates"]), "--measured", str(files["measured"]), "--n", "4",
            "--embedding-cache", str(cache)]
    assert main(suggest(files, *args, "--out", str(tmp_path / "a.csv"))) == 0
    shards = sorted(p.name for p in cache.rglob("shard-*.safetensors"))
    assert shards
    assert main(suggest(files, *args, "--out", str(tmp_path / "b.csv"))) == 0
    assert sorted(p.name for p in cache.rglob("shard-*.safetensors")) == shards  # nothing encoded again
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv"))


def test_help_lists_the_options_and_a_missing_checkpoint_is_one_line(tmp_path, files):
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "-m", "abag", "suggest", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0
    for option in ("--candidates", "--measured", "--strategy", "--min-distance", "--parent", "--positions"):
        assert option in shown.stdout
    failed = subprocess.run([sys.executable, "-m", "abag", "suggest", "--checkpoint", str(tmp_path / "none.pt"),
                             "--candidates", str(files["candidates"]), "--n", "3", "--out", str(tmp_path / "b.csv")],
                            capture_output=True, text=True)
    assert failed.returncode == 2 and failed.stderr.startswith("abag: error:") and "none.pt" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_fold_ensemble_checkpoint_gives_its_member_spread_as_the_prior(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ABAG_CACHE_DIR", str(files["folder"] / "cache"))
    run = tmp_path / "folds"
    assert main(["train", "--data", str(files["train"]), "--out", str(run), *TRAIN_ARGS[:4], "--quiet",
                 "--folds", "2", "--split", "group", "--group-column", "genotype"]) == 0, capsys.readouterr().err
    out, report = tmp_path / "batch.csv", tmp_path / "report.json"
    assert main(["suggest", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--quiet", "--candidates",
                 str(files["candidates"]), "--n", "5", "--out", str(out), "--report", str(report)]) == 0, \
        capsys.readouterr().err
    document = json.loads(report.read_text())
    assert document["model"]["chosen"] == "checkpoint"
    assert any("fold-ensemble" in note for note in document["notes"])
    assert (pd.read_csv(out)["pkd_std"] > 0).all()
