"""The benchmark scripts run end to end at a tiny size on CPU (ratios measured in one run; real-data protocols)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import random_sequence, synthetic_frame

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


def phillips_like(seed: int = 3, n_positions: int = 6) -> pd.DataFrame:
    """Every combination of `n_positions` heavy-chain substitutions of two germlines (a Phillips stand-in):
    pKd = 6 + the sum of per-substitution effects (+ a little noise); CR9114 rows below 7 sit at the floor."""
    rng = np.random.default_rng(seed)
    rows = []
    for antibody in ("CR6261", "CR9114"):
        heavy, light, antigen = random_sequence(rng, 60), random_sequence(rng, 50), random_sequence(rng, 70)
        positions = rng.choice(len(heavy), size=n_positions, replace=False)
        mature = [rng.choice([a for a in "ACDEFGHIKLMNPQRSTVWY" if a != heavy[p]]) for p in positions]
        effects = rng.uniform(0.2, 0.8, n_positions)
        for bits in range(2 ** n_positions):
            genotype = format(bits, f"0{n_positions}b")
            chars = list(heavy)
            for j, bit in enumerate(genotype):
                if bit == "1":
                    chars[positions[j]] = mature[j]
            pkd = 6.0 + sum(e for e, bit in zip(effects, genotype) if bit == "1") + rng.normal(0, 0.05)
            floor = antibody == "CR9114" and pkd < 7.0
            rows.append({"heavy": "".join(chars), "light": light, "antigen": antigen, "pkd": 6.0 if floor else pkd,
                         "antibody": antibody, "genotype": genotype, "n_somatic": genotype.count("1"),
                         "at_lower_bound": floor})
    return pd.DataFrame(rows)


def smallest_k(part: pd.DataFrame, min_exact: int) -> int:
    """The protocol's rule, restated: the smallest count whose variants (<= k) hold `min_exact` exact rows."""
    exact = part.loc[~part["at_lower_bound"], "n_somatic"]
    return min(k for k in range(part["n_somatic"].max()) if (exact <= k).sum() >= min_exact)


def test_real_data_bench_runs_its_protocols_on_small_files(tmp_path):
    """bench_real_data.py end to end on synthetic stand-ins for the three real files (tiny encoder)."""
    data = tmp_path / "data"
    data.mkdir()
    synthetic_frame(n=60, n_antigens=10, seed=1).drop(columns="censored").to_csv(data / "saaintdb_dev.csv",
                                                                                  index=False)
    skempi = synthetic_frame(n=40, n_antigens=4, seed=2).drop(columns="censored")
    skempi["skempi_complex"] = [f"C{i % 4}" for i in range(len(skempi))]
    shared = skempi.loc[skempi["skempi_complex"] == "C2", "antigen"].iloc[0]
    skempi.loc[skempi["skempi_complex"] == "C3", "antigen"] = shared  # C2 and C3: one antigen, two complexes
    skempi.to_csv(data / "skempi2_ab_ag.csv", index=False)
    phillips = phillips_like()
    phillips.to_csv(data / "phillips2021_cr9114_cr6261.csv.gz", index=False)

    out = tmp_path / "out"
    command = [sys.executable, str(BENCH / "bench_real_data.py"), "--data-dir", str(data), "--out", str(out),
               "--cache-dir", str(tmp_path / "cache"), "--threads", "1", "--epochs", "2", "--phillips-epochs", "2",
               "--phillips-per-antibody", "30", "--n-boot", "50", "--extrapolation-min-train", "15",
               "--extrapolation-test", "12", "--extrapolation-test-censored", "4",
               "--extrapolation-train-censored", "3", "--repeats", "2",
               "--model", "antibody_encoder=tiny", "antigen_encoder=tiny"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["sets"]) == {"saaintdb", "skempi", "phillips", "phillips_extrapolation"}
    for name in ("saaintdb", "skempi"):
        part = summary["sets"][name]
        assert {"model", "train_mean", "kmer_ridge"} <= set(part["pooled"])
        assert part["pooled"]["model"]["n"] > 0 and part["difference"]["reference"] == "kmer_ridge"
        assert "spearman_within_group" in part["pooled"]["model"]
    skempi_part = summary["sets"]["skempi"]
    assert len(skempi_part["per_fold"]) == 4  # leave one complex out
    weights = {f["complex"]: f["antigen_weight"] for f in skempi_part["per_fold"]}
    assert weights["C2"] == weights["C3"] == 1.0 and weights["C0"] == weights["C1"] == 0.0
    assert skempi_part["by_familiarity"]["familiar"]["complexes"] == 2
    assert skempi_part["familiarity"]["fraction_weight_one"] == 0.5

    phillips_part = summary["sets"]["phillips"]
    cr9114_rows = phillips[phillips["antibody"] == "CR9114"]
    n_censored = int(cr9114_rows["at_lower_bound"].sum())
    n_exact = min(len(cr9114_rows) - n_censored, 15)  # half of the 30 exact, the rest censored where possible
    assert phillips_part["subsample"]["CR9114"] == {"rows": n_exact + min(n_censored, 30 - n_exact),
                                                    "censored": min(n_censored, 30 - n_exact),
                                                    "available": len(cr9114_rows), "available_censored": n_censored}
    cr9114 = phillips_part["within_antibody"]["CR9114"]["model"]["pooled"]
    assert cr9114["n"] == n_exact and cr9114["n_censored"] == min(n_censored, 30 - n_exact)  # never scored
    assert "onehot_ridge" in phillips_part["within_antibody"]["CR6261"]
    assert set(phillips_part["zero_shot"]) == {"CR6261", "CR9114"}

    extrapolation = summary["sets"]["phillips_extrapolation"]["antibodies"]
    for antibody, entry in extrapolation.items():
        rows = phillips[phillips["antibody"] == antibody]
        assert entry["max_train_mutations"] == smallest_k(rows, 15)
        assert entry["counts"]["n_somatic_agrees"] is True  # mutation counts derived from the sequences
        metrics = entry["metrics"]
        assert {"model", "kmer_ridge", "onehot_ridge", "mutation_count"} <= set(metrics)
        assert metrics["model"]["n"] + metrics["model"]["n_censored"] == entry["counts"]["test_rows"]
        assert metrics["model"]["n_censored"] == entry["counts"]["test_censored"]
        assert len(metrics["model"]["per_seed"]["spearman"]) == 2 and len(entry["model_minus"]["onehot_ridge"]) == 2
        # a line in the mutation count cannot rank variants with the same count: every level scores 0
        assert metrics["mutation_count"]["spearman_within_group"] == 0.0
    # pKd is additive over substitutions, so the one-hot ridge extrapolates from few to many mutations
    assert extrapolation["CR6261"]["metrics"]["onehot_ridge"]["spearman"] > 0.8
    predictions = pd.read_csv(out / "phillips_extrapolation" / "CR6261" / "repeat_0" / "cv_predictions.csv")
    assert len(predictions) == extrapolation["CR6261"]["counts"]["test_rows"]
    text = (out / "summary.md").read_text()
    assert "saaintdb_dev.csv" in text and "| CR9114 | kmer_ridge |" in text and "Phillips extrapolation" in text


def test_germline_distance_counts_substitutions_and_names_a_variant_of_another_length():
    sys.path.insert(0, str(BENCH))
    from bench_real_data import germline_distance

    frame = phillips_like(seed=5, n_positions=4)
    assert germline_distance(frame).tolist() == frame["n_somatic"].tolist()
    frame.loc[7, "heavy"] = frame.loc[7, "heavy"] + "A"  # an insertion is not a substitution variant
    with pytest.raises(ValueError, match=r"row 7, column 'heavy'"):
        germline_distance(frame)


def test_folds_default_experiment_scores_both_arms_on_the_same_frozen_folds(tmp_path, monkeypatch):
    """cv_folds_default.py: the single split and a K-fold ensemble, trained per outer fold, scored pooled."""
    import torch
    from scipy import stats

    monkeypatch.syspath_prepend(str(BENCH / "experiments"))
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    import attempt_args
    import cv_folds_default

    frame = synthetic_frame(n=40, n_antigens=8, seed=3)
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    groups = [i % 8 for i in range(len(frame))]  # synthetic antigens are unrelated: one cluster each
    tests = [[r for r in range(len(frame)) if groups[r] % 2 == k] for k in range(2)]
    (tmp_path / "folds.json").write_text(json.dumps({"protocol": "2 folds", "groups": groups, "tests": tests}))
    log_before = attempt_args.ATTEMPTS_LOG.read_bytes() if attempt_args.ATTEMPTS_LOG.exists() else None
    common = ["--data", str(tmp_path / "pairs.csv"), "--folds-file", str(tmp_path / "folds.json"), "--out",
              str(tmp_path / "out"), "--n-boot", "20", "--no-record", "antibody_encoder=\"tiny\"",
              "antigen_encoder=\"tiny\"", "epochs=2"]
    threads = torch.get_num_threads()

    def run(*args, extra=()):
        try:
            return cv_folds_default.main([*args, *common, *extra])
        finally:
            torch.set_num_threads(threads)

    single, ensemble = run("--folds", "0", "--seeds", "0", "1"), run("--folds", "2", "--seeds", "0", "1")
    assert (attempt_args.ATTEMPTS_LOG.read_bytes() if attempt_args.ATTEMPTS_LOG.exists() else None) == log_before
    assert single["model_config"]["antibody_encoder"] == "tiny" and single["train_config"]["epochs"] == 2
    assert single["kmer_ridge"] == ensemble["kmer_ridge"]  # fitted on the same outer-training rows
    for line in (single, ensemble):
        values = [line["per_seed"][s]["spearman"] for s in ("0", "1")]
        assert line["spearman_spread"] == pytest.approx(max(values) - min(values))
        assert len(line["seconds_per_training"]) == 2 * len(tests)
        for seed in ("0", "1"):
            table = pd.read_csv(tmp_path / "out" / line["arm"] / f"seed_{seed}" / "predictions.csv")
            assert sorted(table["row"]) == list(range(len(frame)))  # every row scored once, out of fold
            assert line["per_seed"][seed]["spearman"] == pytest.approx(
                stats.spearmanr(table["pkd"], table["model"]).statistic)
            assert line["per_seed"][seed]["network_only"]["spearman"] == pytest.approx(
                stats.spearmanr(table["pkd"], table["network"]).statistic)
    assert all(len(t["best_epochs"]) == 2 for t in ensemble["trainings"]["0"])  # two members per outer fold
    assert single["versus_single"] is None
    for seed in ("0", "1"):
        assert ensemble["versus_single"][seed]["pooled_spearman_difference"] == pytest.approx(
            ensemble["per_seed"][seed]["spearman"] - single["per_seed"][seed]["spearman"])
    other = run("--folds", "2", "--seeds", "0", extra=["epochs=1"])
    assert "skipped" in other["versus_single"]["0"]  # trained with other settings: no paired difference


def alphaseq_like(n_antibodies: int = 10, n_antigens: int = 8, seed: int = 4) -> pd.DataFrame:
    """Every antibody against every antigen variant (an AlphaSeq stand-in): pKd = antigen effect + antibody effect."""
    rng = np.random.default_rng(seed)
    antigen = random_sequence(rng, 60)
    antigens = [antigen[:10 + i] + "A" + antigen[11 + i:] for i in range(n_antigens)]
    escape = rng.normal(0, 1, n_antigens)
    heavy, light = random_sequence(rng, 60), random_sequence(rng, 50)
    rows = []
    for a in range(n_antibodies):
        chain = heavy[:a] + "W" + heavy[a + 1:]
        for g in range(n_antigens):
            rows.append({"heavy": chain, "light": light, "antigen": antigens[g], "antibody_name": f"ab{a}",
                         "pkd": 7 + escape[g] + 0.3 * a / n_antibodies + rng.normal(0, 0.1),
                         "censored": a == 0 and g == 0})
    return pd.DataFrame(rows)


def test_one_model_bench_runs_every_protocol_and_adds_a_column_on_rerun(tmp_path):
    """bench_one_model.py on synthetic stand-ins of the four files (tiny encoder, 1 epoch, 1 seed), then a rerun
    that adds one model column to the same results (what the wide+deep model's measurement does)."""
    data = tmp_path / "data"
    data.mkdir()
    saaint = synthetic_frame(n=60, n_antigens=10, seed=1).drop(columns="censored")
    saaint.to_csv(data / "saaintdb_dev.csv", index=False)
    groups = [i % 10 for i in range(len(saaint))]
    tests = [[r for r in range(len(saaint)) if groups[r] % 5 == k] for k in range(5)]
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"protocol": "5 folds", "groups": groups, "tests": tests}))
    skempi = synthetic_frame(n=40, n_antigens=4, seed=2).drop(columns="censored")
    skempi["skempi_complex"] = [f"C{i % 4}" for i in range(len(skempi))]
    skempi.to_csv(data / "skempi2_ab_ag.csv", index=False)
    phillips_like().to_csv(data / "phillips2021_cr9114_cr6261.csv.gz", index=False)
    alphaseq_like().to_csv(data / "alphaseq2022_cov2_dev.csv", index=False)

    out = tmp_path / "out"
    common = [sys.executable, str(BENCH / "bench_one_model.py"), "--data-dir", str(data), "--out", str(out),
              "--work", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"), "--saaintdb-folds",
              str(folds), "--saaintdb-random-folds", "3", "--seeds", "0",
              "--epochs", "1", "--phillips-epochs", "1", "--phillips-per-antibody", "30",
              "--extrapolation-min-train", "15", "--extrapolation-test", "12", "--extrapolation-test-censored", "4",
              "--extrapolation-train-censored", "3", "--base-config", "antibody_encoder=tiny", "antigen_encoder=tiny"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(common, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    protocols = results["protocols"]
    assert set(protocols) == {"phillips_random", "phillips_extrapolation", "skempi_loco", "saaintdb_cluster",
                              "saaintdb_random10", "alphaseq_antibody"}
    ridges = {"kmer_ridge", "heavy_kmer123_ridge", "onehot_ridge"}
    for name, entry in protocols.items():
        assert {"network", "model"} | ridges <= set(entry["predictors"]), name
        assert entry["predictors"]["network"]["per_seed"].keys() == {"0"}
        assert entry["predictors"]["kmer_ridge"]["deterministic"] is True
    assert "antigen_mean" in protocols["alphaseq_antibody"]["predictors"]
    assert "mutation_count" in protocols["phillips_extrapolation"]["predictors"]
    alphaseq = protocols["alphaseq_antibody"]["predictors"]
    assert alphaseq["antigen_mean"]["per_seed"]["deterministic"]["antibodies scored"] == 10
    assert alphaseq["antigen_mean"]["summary"]["Spearman within antibody (mean)"]["mean"] > 0.8  # the escape effect
    skempi_metrics = protocols["skempi_loco"]["predictors"]["model"]["per_seed"]["0"]
    assert {"Spearman per complex (mean)", "pooled Spearman", "RMSE"} <= set(skempi_metrics)
    assert "within-cluster Spearman" in protocols["saaintdb_cluster"]["predictors"]["network"]["per_seed"]["0"]
    assert protocols["saaintdb_random10"]["notes"]["abaffinity_random10_spearman"] == 0.844
    table = pd.read_csv(tmp_path / "work" / "alphaseq_antibody" / "predictions_all.csv")
    assert {"network@0", "model@0", "onehot_ridge@deterministic"} <= set(table.columns)
    assert sorted(table["row"]) == list(range(80))  # every row predicted once, out of fold

    rerun = [*common, "--protocols", "alphaseq_antibody", "--predictors", "model", "--label", "other",
             "--model-config", "hidden_dim=16", "familiar_correction=none"]
    done = subprocess.run(rerun, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    again = json.loads((out / "results.json").read_text())
    columns = again["protocols"]["alphaseq_antibody"]["predictors"]
    assert {"network", "model", "other", "antigen_mean"} <= set(columns)  # the earlier columns stay
    assert columns["network"] == protocols["alphaseq_antibody"]["predictors"]["network"]
    assert columns["other"]["model_config"]["hidden_dim"] == 16
    assert len(again["runs"]) == 2
    text = (out / "table.md").read_text()
    assert "**alphaseq_antibody**" in text and "`other`" in text and "`heavy_kmer123_ridge`" in text
    assert "other@0" in pd.read_csv(tmp_path / "work" / "alphaseq_antibody" / "predictions_all.csv").columns
    assert not (tmp_path / "work" / "runs" / "alphaseq_antibody" / "other" / "seed_0" / "all" / "fold_0").exists()
    rescore = [*common, "--protocols", "alphaseq_antibody", "--rescore"]  # metrics again from the saved predictions
    done = subprocess.run(rescore, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rescored = json.loads((out / "results.json").read_text())["protocols"]["alphaseq_antibody"]["predictors"]
    assert {name: c["per_seed"] for name, c in rescored.items()} == {name: c["per_seed"] for name, c in columns.items()}


def test_init_bench_starts_a_single_model_from_one_shipped_member_except_its_wide_part(monkeypatch):
    """bench_init_pretrained: member k's head weights, renamed as a single model's, fit that model exactly."""
    import torch

    from abag.checkpoint import load_checkpoint
    from abag.model.config import ModelConfig
    from abag.model.network import AffinityHead
    from abag.pretrained import pretrained_path

    monkeypatch.syspath_prepend(str(BENCH))
    import bench_init_pretrained as bench

    shipped = load_checkpoint(pretrained_path())
    config = ModelConfig(**shipped["config"]["model"])
    width = shipped["model_state_dict"]["head.fold_heads.0.no_light"].numel()
    own = {f"head.{k}": v for k, v in AffinityHead(width, width, config).state_dict().items()}
    carried = bench.member_head(shipped, 3)
    assert set(carried) == {k for k in own if ".wide." not in k and not k.endswith("deep_shift")}
    assert all(carried[k].shape == own[k].shape for k in carried)
    assert torch.equal(carried["head.fusion.0.weight"], shipped["model_state_dict"]["head.fold_heads.3.fusion.0.weight"])
    assert not torch.equal(carried["head.fusion.0.weight"], bench.member_head(shipped, 0)["head.fusion.0.weight"])
    assignment = bench.deal(pd.DataFrame({"x": range(300)}), 96, 100, seed=4)
    assert [int((assignment == part).sum()) for part in ("train", "val", "test", "")] == [96, 24, 100, 80]
    assert (assignment == bench.deal(pd.DataFrame({"x": range(300)}), 96, 100, seed=4)).all()


def test_wide_onehot_takes_grouped_blend_apart_and_its_local_within_part_is_silent_far_from_training(monkeypatch):
    """wide_onehot.py's `GroupedParts` sum to `grouped_blend`, its within bound keeps the order and stays inside
    two SD, and `LocalWithin` gives its training rows their within-group deviations and a row far from all of them
    none (bench/RESULTS.md, "Where SKEMPI's RMSE comes from")."""
    from scipy import stats

    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.syspath_prepend(str(BENCH / "experiments"))
    import wide_onehot

    from tests.model.test_wide_onehot import VL, variants

    groups = np.arange(80) % 4
    train = variants(80, seed=1)
    train["pkd"] += 0.5 * groups  # the groups differ in level, as antigen clusters do
    test = variants(20, seed=2)  # rows none of the parts was fitted on

    apart = wide_onehot.GroupedParts("level").fit(train, groups)
    level, within = apart.parts(test)
    np.testing.assert_allclose(level + within, apart.part.predict(test), atol=1e-9)

    bounded = wide_onehot.GroupedParts("both", within_sd=1.0).fit(train, groups)
    edge = bounded.within_bound.high  # one SD of the training within-group deviations
    spread = np.linspace(-10 * edge, 10 * edge, 41)
    squeezed = bounded.within_bound.apply(spread)
    assert np.all(np.diff(squeezed) > 0) and np.all(np.abs(squeezed) < 2 * edge)
    np.testing.assert_allclose(squeezed[np.abs(spread) <= edge], spread[np.abs(spread) <= edge])

    local = wide_onehot.LocalWithin().fit(train, groups)
    assert local.choice is not None  # a within part predicts held-out groups better than none (siblings share sites)
    near = local.within(train)
    deviation = train["pkd"] - train["pkd"].groupby(groups).transform("mean")
    assert stats.spearmanr(near, deviation).statistic > 0.5
    far = local.within(train.assign(heavy=VL))  # no heavy domain: far from every training row
    assert np.abs(far).max() < 0.01 * np.abs(near).max()
