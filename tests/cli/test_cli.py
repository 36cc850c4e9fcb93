"""The command line: train/predict/evaluate end to end with the tiny encoder, and clean errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import synthetic_frame, write_csv

from abag.cli import main

TRAIN_ARGS = ["--encoder", "tiny", "--epochs", "2", "--split", "random", "--quiet"]


@pytest.fixture
def csv_path(tmp_path):
    return write_csv(synthetic_frame(), tmp_path / "pairs.csv")


@pytest.fixture
def trained(tmp_path, csv_path, monkeypatch):
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["train", "--data", csv_path, "--out", str(out), *TRAIN_ARGS]) == 0
    return out


def test_train_writes_the_run_folder(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["version"] == "v2.7" and metrics["test"]["n"] > 0
    assert metrics["data"]["source"].endswith("pairs.csv")
    history = pd.read_csv(trained / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {"train_loss", "val_loss", "overfit_ratio", "val_spearman", "learning_rate", "pred_min",
            "pred_max", "optimizer_steps", "seconds"} <= set(history.columns)
    assert (trained / "checkpoints" / "best.pt").exists() and (trained / "checkpoints" / "last.pt").exists()


def test_predict_echoes_input_columns_and_adds_predictions(trained, tmp_path):
    frame = synthetic_frame(n=20, seed=5).drop(columns=["pkd", "censored"])
    frame["my_id"] = [f"c{i}" for i in range(len(frame))]
    source = tmp_path / "new.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(trained / "checkpoints" / "best.pt"), "--data", str(source),
                 "--out", str(out), "--quiet"]) == 0
    predicted = pd.read_csv(out, keep_default_na=False)
    assert list(predicted["my_id"]) == list(frame["my_id"])
    assert predicted["pkd_pred"].between(4, 14).all() and predicted["binder_prob"].between(0, 1).all()


def test_evaluate_prints_the_table_of_train_and_writes_json_with_out(trained, csv_path, tmp_path, capsys):
    checkpoint = str(trained / "checkpoints" / "best.pt")
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", checkpoint, "--data", csv_path, "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert lines[0] == f"{csv_path} (96 rows)" and set(lines[1]) == {"="}
    header = lines[2].split()
    assert header[:4] == ["n", "spearman", "[95%", "CI]"] and {"rmse", "mae", "r2", "auroc"} <= set(header)
    model = next(line for line in lines if line.split()[:2] == ["model", "96"])
    mean = next(line for line in lines if line.startswith("train_mean "))
    assert "n/a" not in model and "n/a*" in mean  # a constant has no Spearman …
    assert any(line.startswith("* n/a: train_mean predicts the same pKd") for line in lines)  # … and says why
    assert any(line.startswith("80% interval, share of true pKd inside: all ") for line in lines)
    assert len(lines) < 15 and "{" not in printed.out  # a table, not 65 lines of JSON
    assert f"wrote the metrics (JSON) to {out}" in printed.err
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 96 and "spearman" in metrics and "auroc" in metrics["binder"]
    saved = torch.load(checkpoint, weights_only=True)["config"]["model"]["initial_pkd"]
    reference = metrics["baselines"]["train_mean"]
    assert reference["constant"] and f"({saved:.3f})" in reference["method"]
    assert reference["rmse"] == pytest.approx(float(np.sqrt(np.mean((synthetic_frame()["pkd"] - saved) ** 2))))
    assert f"{reference['rmse']:.3f}" in mean
    # --json: the same metrics on stdout, for scripts
    assert main(["evaluate", "--checkpoint", checkpoint, "--data", csv_path, "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out) == metrics
    # an --out that cannot be written fails before anything is loaded
    assert main(["evaluate", "--checkpoint", checkpoint, "--data", csv_path, "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_predict_ignores_a_kd_column_without_unit_that_evaluate_refuses(trained, tmp_path, capsys):
    frame = synthetic_frame(n=12, seed=5)[["heavy", "light", "antigen"]].assign(kd=[str(10 * i + 1) for i in range(12)])
    source = tmp_path / "unitless.csv"
    frame.to_csv(source, index=False)
    out, checkpoint = tmp_path / "pred.csv", str(trained / "checkpoints" / "best.pt")
    assert main(["predict", "--checkpoint", checkpoint, "--data", str(source), "--out", str(out), "--quiet"]) == 0
    assert "column 'kd' ignored (no labels are needed here" in capsys.readouterr().err
    predicted = pd.read_csv(out, keep_default_na=False)
    assert len(predicted) == 12 and list(predicted["kd"]) == [10 * i + 1 for i in range(12)]
    assert main(["evaluate", "--checkpoint", checkpoint, "--data", str(source)]) == 2
    assert "Kd column 'kd' has no unit" in capsys.readouterr().err


def test_kd_typed_into_pkd_stops_training_and_names_the_unit(tmp_path, capsys):
    frame = synthetic_frame(n=20)
    frame["pkd"] = [12000.0, 350.0, 8.0, 45.0, 2.5] * 4  # Kd in nM, typed into the pkd column
    path = write_csv(frame, tmp_path / "kd.csv")
    code = main(["train", "--data", path, "--out", str(tmp_path / "run"), *TRAIN_ARGS, "--drop-invalid"])
    err = capsys.readouterr().err
    assert code == 2 and "column 'pkd'" in err and "cannot be pKd" in err and "'kd_nM'" in err
    assert "Traceback" not in err and not (tmp_path / "run" / "checkpoints" / "best.pt").exists()


def test_check_prints_the_load_summary_and_exits_2_on_problems(tmp_path, capsys):
    frame = synthetic_frame(n=10).astype({"pkd": object})
    good = write_csv(frame, tmp_path / "good.csv")
    assert main(["check", "--data", good]) == 0
    out = capsys.readouterr().out
    assert "10 row(s) read, 10 kept, 0 rejected" in out and "Columns used: heavy <- 'heavy'" in out
    assert "Result: OK, all 10 row(s) can be used for training and evaluation." in out
    frame.loc[3, "pkd"] = "abc"
    bad = write_csv(frame, tmp_path / "bad.csv")
    assert main(["check", "--data", bad, "--rejected", str(tmp_path / "rejected.csv")]) == 2
    out = capsys.readouterr().out
    assert "rejected row 4, column 'pkd': pKd 'abc' is not a number" in out
    assert list(pd.read_csv(tmp_path / "rejected.csv")["row"]) == [4]
    assert main(["check", "--data", bad, "--for", "predict"]) == 0
    assert "column 'pkd' ignored" in capsys.readouterr().out


def test_invalid_rows_are_reported_all_at_once_with_exit_2(tmp_path, capsys):
    frame = synthetic_frame(n=10).astype({"pkd": object})
    frame.loc[2, "heavy"] = "EVQLX1"
    frame.loc[5, "pkd"] = "abc"
    path = write_csv(frame, tmp_path / "bad.csv")
    code = main(["train", "--data", path, "--out", str(tmp_path / "run"), *TRAIN_ARGS])
    err = capsys.readouterr().err
    assert code == 2
    assert "row 3" in err and "'heavy'" in err and "row 6" in err and "'pkd'" in err
    assert "Traceback" not in err


def test_drop_invalid_lists_rejected_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    frame = synthetic_frame()
    frame.loc[4, "antigen"] = "ACDZZ"
    path = write_csv(frame, tmp_path / "bad.csv")
    out = tmp_path / "run"
    assert main(["train", "--data", path, "--out", str(out), "--drop-invalid", *TRAIN_ARGS]) == 0
    rejected = pd.read_csv(out / "rejected_rows.csv")
    assert list(rejected["row"]) == [5] and rejected["column"].iloc[0] == "antigen"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["n_rejected"] == 1
    assert metrics["data"]["n_train"] + metrics["data"]["n_val"] + metrics["data"]["n_test"] == 95


def test_offline_hub_encoder_fails_with_a_clear_message(tmp_path, csv_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["train", "--data", csv_path, "--out", str(tmp_path / "run"), "--encoder",
                 "facebook/esm2_t6_8M_UR50D", "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "facebook/esm2_t6_8M_UR50D" in err and "--encoder antiberty" in err and "Traceback" not in err


def test_unknown_encoder_and_missing_file(tmp_path, csv_path, capsys):
    assert main(["train", "--data", csv_path, "--out", str(tmp_path / "r"), "--encoder", "nope"]) == 2
    assert "unknown encoder 'nope'" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r2")]) == 2
    assert "missing.csv" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "check"])
def test_every_command_has_help(command):
    result = subprocess.run([sys.executable, "-m", "abag", command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--data" in result.stdout


def test_console_script_reports_errors_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "abag", "predict", "--checkpoint", str(tmp_path / "x.pt"),
                             "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o.csv")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("abag: error:") and "Traceback" not in result.stderr


def test_antigen_split_with_too_few_clusters_is_a_clean_error(tmp_path, capsys):
    frame = synthetic_frame(n=30, n_antigens=2)
    path = write_csv(frame, tmp_path / "two_antigens.csv")
    code = main(["train", "--data", path, "--out", str(tmp_path / "run"), "--encoder", "tiny", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "antigen split" in err and "--split random" in err and "Traceback" not in err


def test_model_options_reach_the_checkpoint_and_default_to_model_config(tmp_path, csv_path, monkeypatch):
    """--fusion/--trim-antibody/--head-members/--input-dropout rebuild the v2.7 head; without them,
    the checkpoint holds ModelConfig's defaults."""
    from abag.inference import load_trained_model
    from abag.model.config import ModelConfig

    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    v27 = tmp_path / "v27"
    assert main(["train", "--data", csv_path, "--out", str(v27), *TRAIN_ARGS, "--fusion", "interaction",
                 "--trim-antibody", "none", "--head-members", "1", "--input-dropout", "0",
                 "--familiar-correction", "kmer_ridge"]) == 0
    model, state = load_trained_model(v27 / "checkpoints" / "best.pt")
    saved = state["config"]["model"]
    assert (saved["fusion"], saved["trim_antibody"], saved["n_members"], saved["input_dropout"]) == \
        ("interaction", "none", 1, 0.0)
    assert saved["familiar_correction"] == "kmer_ridge" and model.familiar_correction.context is None
    assert model.config.n_members == 1

    default = tmp_path / "default"
    assert main(["train", "--data", csv_path, "--out", str(default), *TRAIN_ARGS]) == 0
    saved = load_trained_model(default / "checkpoints" / "best.pt")[1]["config"]["model"]
    expected = ModelConfig()
    assert (saved["fusion"], saved["trim_antibody"], saved["n_members"], saved["input_dropout"]) == \
        (expected.fusion, expected.trim_antibody, expected.n_members, expected.input_dropout)
    assert saved["familiar_correction"] == expected.familiar_correction


def test_familiar_correction_choices_are_the_library_ones():
    """The CLI lists the choices itself (no heavy imports to build the parser); they must stay the library's."""
    from abag.cli import build_parser
    from abag.model.config import CORRECTIONS

    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    option = next(a for a in train._actions if a.dest == "familiar_correction")
    assert set(option.choices) == set(CORRECTIONS)


@pytest.mark.parametrize("flag, value", [("--head-members", "0"), ("--input-dropout", "1"),
                                         ("--input-dropout", "-0.1")])
def test_model_options_out_of_range_are_usage_errors(tmp_path, csv_path, flag, value, capsys):
    assert main(["train", "--data", csv_path, "--out", str(tmp_path / "run"), *TRAIN_ARGS, flag, value]) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_predict_annotate_adds_imgt_domains_and_cdrs(trained, tmp_path):
    vh = ("EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDG"
          "FYAMDYWGQGTLVTVSS")
    data = tmp_path / "one.csv"
    pd.DataFrame({"heavy": [vh, "ACDEFGHIKLMNPQRSTVWY" * 4], "light": ["", ""],
                  "antigen": ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"] * 2}).to_csv(data, index=False)
    out = tmp_path / "annotated.csv"
    assert main(["predict", "--checkpoint", str(trained / "checkpoints" / "best.pt"), "--data", str(data),
                 "--out", str(out), "--annotate", "--quiet"]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table["cdr_h3"]) == ["SRWGGDGFYAMDY", ""]
    assert table["heavy_domain"][0].startswith("heavy") and table["heavy_domain"][1].startswith("not numbered")
    assert list(table["pkd_pred"].between(4, 14)) == [True, True]


# ----------------------------------------------------------------------------------------------- folds default by size

STAGES = ("load", "split", "encode", "train", "evaluate", "references and baselines", "familiar correction",
          "intervals", "write")


def _stage_names(out: str) -> list[str]:
    [line] = [line for line in out.splitlines() if line.startswith("stage times: ")]
    return [part.rsplit(" ", 2)[0] for part in line.removeprefix("stage times: ").split(" (other")[0].split(", ")]


def test_folds_default_is_one_split_from_the_row_threshold_and_the_log_says_so(tmp_path, monkeypatch, capsys):
    import abag.cli.train as train_cli

    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    data = write_csv(synthetic_frame(n=60, n_antigens=7), tmp_path / "pairs.csv")
    common = ["--data", data, "--encoder", "tiny", "--epochs", "1", "--quiet", "--hidden-dim", "16"]
    monkeypatch.setattr(train_cli, "FOLDS_MAX_ROWS", 60)
    assert main(["train", "--out", str(tmp_path / "big"), *common]) == 0
    out = capsys.readouterr().out
    assert "folds: one train/val/test split (default from 60 rows; this table has 60; --folds 5 trains 5 members)" \
        in out.splitlines()
    assert "folds" not in json.loads((tmp_path / "big" / "metrics.json").read_text())
    assert not (tmp_path / "big" / "folds.json").exists()
    assert _stage_names(out) == list(STAGES)  # printed at the end, every stage of a single split
    # The nearest-chain search and the baselines ran beside the epochs: the stage counts the wait, the line says
    # how long they took.
    assert re.search(r"; references and baselines [0-9.]+ s beside the other stages; total ", out), out
    # An explicit --folds K is never changed by the size rule, and a resumed fold run keeps its kind.
    assert main(["train", "--out", str(tmp_path / "k2"), *common, "--folds", "2"]) == 0
    out = capsys.readouterr().out
    assert "folds: " not in out and json.loads((tmp_path / "k2" / "metrics.json").read_text())["folds"]["k"] == 2
    # The members' stages add up with the ensemble's, which evaluates its own baselines.
    assert sorted(_stage_names(out)) == sorted((*STAGES, "baselines"))
    assert main(["train", "--out", str(tmp_path / "k2"), *common, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "not retrained" in out and "folds: " not in out and "stage times: " in out
    monkeypatch.setattr(train_cli, "FOLDS_MAX_ROWS", 61)
    args = __import__('abag.cli', fromlist=['build_parser']).build_parser().parse_args(["train", "--out", str(tmp_path / "small"), *common])
    train_cli._resolve_folds(args)
    assert train_cli._folds_for_size(args, 60) == "folds: 5 members (default below 61 rows; this table has 60)"
    assert args.folds == 5


def test_folds_default_threshold_is_one_named_constant_in_the_help():
    import abag.cli.train as train_cli

    assert train_cli.FOLDS_MAX_ROWS == 20_000 and train_cli.DEFAULT_FOLDS == 5
    help_text = " ".join(__import__('abag.cli', fromlist=['build_parser']).build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "fewer than 20,000 rows" in help_text


def test_numbering_defaults_follow_the_table_size(monkeypatch):
    """--trim-antibody, --pooling, --wide and --familiar-correction unset: ModelConfig's defaults up to
    NUMBERING_MAX_CHAINS distinct antibody chains, the model before numbering above, with a log line naming what
    the rule chose; a given value is kept."""
    import argparse

    import abag.cli.train as train_command
    import abag.numbering.domains as domains
    from abag.model.config import LARGE_TABLE_DEFAULTS, ModelConfig

    frame = synthetic_frame(n=12)
    n_chains = len(set(frame.heavy) | {c for c in frame.light if c})
    names = list(LARGE_TABLE_DEFAULTS)
    args = argparse.Namespace(**dict.fromkeys(names))
    assert train_command._defaults_for_size(args, frame) is None
    assert {n: getattr(args, n) for n in names} == {n: getattr(ModelConfig(), n) for n in names}
    assert (args.trim_antibody, args.pooling, args.wide) == ("imgt", "regions", "grouped_blend")
    monkeypatch.setattr(domains, "NUMBERING_MAX_CHAINS", n_chains - 1)
    args = argparse.Namespace(**dict.fromkeys(names))
    line = train_command._defaults_for_size(args, frame)
    assert (args.trim_antibody, args.pooling, args.wide, args.familiar_correction) == \
        ("motif", "mean", "none", "kmer_ridge_context")
    assert f"({n_chains} distinct antibody chains" in line and "--pooling mean" in line and "--wide none" in line
    args = argparse.Namespace(**{**dict.fromkeys(names), "wide": "grouped_blend", "trim_antibody": "imgt"})
    line = train_command._defaults_for_size(args, frame)
    assert (args.trim_antibody, args.wide, args.pooling) == ("imgt", "grouped_blend", "mean")
    assert "--wide" not in line and "--trim-antibody" not in line and "--pooling mean" in line
    args = argparse.Namespace(**{n: getattr(ModelConfig(), n) for n in names})
    assert train_command._defaults_for_size(args, frame) is None and args.pooling == "regions"


