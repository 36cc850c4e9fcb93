"""The benchmark scripts run end to end at a tiny size on CPU (ratios measured in one run; real-data protocols)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import synthetic_frame

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = {
    "cache": ["bench_cache_training.py", "--tiny"],
    "batching": ["bench_batching.py", "--tiny"],
    "gpu": ["bench_gpu_encoder.py", "--tiny", "--device", "cpu", "--peak-tflops", "1"],
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Run the three scripts at once (each is mostly interpreter start-up) and collect stdout and JSON."""
    folder = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ABAG_CACHE_DIR": str(folder / "default-cache")}
    running = {}
    for name, (script, *args) in SCRIPTS.items():
        command = [sys.executable, str(BENCH / script), *args, "--json", str(folder / f"{name}.json")]
        running[name] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    results = {}
    for name, process in running.items():
        try:
            out, err = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        assert process.returncode == 0, f"{name}: exit {process.returncode}\n{out[-2000:]}\n{err[-3000:]}"
        results[name] = (out, json.loads((folder / f"{name}.json").read_text()))
    return results


def test_cache_training_bench_reports_ratios_and_a_warm_run_that_encodes_nothing(outputs):
    out, result = outputs["cache"]
    assert "ratios (same run, same machine)" in out and "per epoch, no cache / cache" in out
    assert result["warm_encoded_nothing"] is True
    runs = result["runs"]
    assert runs["warm_cache"]["encoded"] == 0 and runs["cold_cache"]["encoded"] == result["distinct_chains"]
    assert runs["no_cache"]["encoded"] is None  # per-batch encoding: no cache line at all
    assert all(v > 0 for v in result["ratios"].values())
    assert result["val_loss_max_gap"] < 1e-3  # cached and uncached training saw the same numbers


def test_batching_bench_compares_token_budget_with_fixed_unsorted_batches(outputs):
    out, result = outputs["batching"]
    assert "token budget vs fixed-32 unsorted" in out
    schemes = result["schemes"]
    assert set(schemes) == {"fixed-32 unsorted", "fixed-32 sorted", "token budget 8192"}
    for scheme in schemes.values():
        assert scheme["seq_per_s"] > 0 and scheme["tokens_per_s"] > 0 and 0 <= scheme["padding"] < 1
    assert schemes["token budget 8192"]["padding"] <= schemes["fixed-32 unsorted"]["padding"] + 1e-9
    assert result["max_embedding_difference"] < 1e-3


def test_gpu_encoder_bench_runs_tiny_on_cpu_with_mfu_and_extrapolation(outputs):
    out, result = outputs["gpu"]
    assert "MFU" in out and "extrapolation to 160,000 pairs" in out
    assert result["device"] == "cpu" and result["tokens_per_s"] > 0
    assert result["precision"] == "fp32" and "fp32; torch" in out  # the policy's choice on CPU, as printed
    assert result["peak_memory_gib"] is None  # GPU memory only
    assert result["peak_tflops"] == 1 and 0 < result["mfu"] < 1
    extrapolation = result["extrapolation"]
    assert extrapolation["distinct_chains"] > 0 and extrapolation["encode_minutes"] > 0
    assert extrapolation["head_epoch_seconds"] > 0


def test_real_data_bench_runs_its_three_protocols_on_small_files(tmp_path):
    """bench_real_data.py end to end on synthetic stand-ins for the three real files (tiny encoder)."""
    data = tmp_path / "data"
    data.mkdir()
    synthetic_frame(n=60, n_antigens=10, seed=1).drop(columns="censored").to_csv(data / "saaintdb_dev.csv",
                                                                                  index=False)
    skempi = synthetic_frame(n=40, n_antigens=4, seed=2).drop(columns="censored")
    skempi["skempi_complex"] = [f"C{i % 4}" for i in range(len(skempi))]
    skempi.to_csv(data / "skempi2_ab_ag.csv", index=False)
    phillips = synthetic_frame(n=80, n_antigens=1, seed=3).drop(columns="censored")
    phillips["antibody"] = ["CR9114" if i % 2 else "CR6261" for i in range(len(phillips))]
    phillips["genotype"] = [format(i, "08b") for i in range(len(phillips))]
    phillips["at_lower_bound"] = [bool(i % 2 and i % 4 == 1) for i in range(len(phillips))]  # CR9114 only
    phillips.to_csv(data / "phillips2021_cr9114_cr6261.csv.gz", index=False)

    out = tmp_path / "out"
    command = [sys.executable, str(BENCH / "bench_real_data.py"), "--data-dir", str(data), "--out", str(out),
               "--cache-dir", str(tmp_path / "cache"), "--threads", "1", "--epochs", "2", "--phillips-epochs", "2",
               "--phillips-per-antibody", "30", "--n-boot", "50",
               "--model", "antibody_encoder=tiny", "antigen_encoder=tiny"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["sets"]) == {"saaintdb", "skempi", "phillips"}
    for name in ("saaintdb", "skempi"):
        part = summary["sets"][name]
        assert {"model", "train_mean", "kmer_ridge"} <= set(part["pooled"])
        assert part["pooled"]["model"]["n"] > 0 and part["difference"]["reference"] == "kmer_ridge"
    assert len(summary["sets"]["skempi"]["per_fold"]) == 4  # leave one complex out
    phillips_part = summary["sets"]["phillips"]
    assert phillips_part["subsample"]["CR9114"] == {"rows": 30, "censored": 15, "available": 40,
                                                    "available_censored": 20}
    cr9114 = phillips_part["within_antibody"]["CR9114"]["model"]["pooled"]
    assert cr9114["n"] == 15 and cr9114["n_censored"] == 15  # censored rows are never scored as exact
    assert set(phillips_part["zero_shot"]) == {"CR6261", "CR9114"}
    text = (out / "summary.md").read_text()
    assert "saaintdb_dev.csv" in text and "| CR9114 | kmer_ridge |" in text
