"""bench/bench_suggest.py on two small toy landscapes in the Phillips file's format: campaigns, tables, plot,
and the owner's check, in seconds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_suggest import toy_landscape

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
bench = pytest.importorskip("bench_suggest")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two toy landscapes named like the Phillips antibodies; the second has an assay floor."""
    parts = []
    for name, seed in (("CR6261", 0), ("CR9114", 1)):
        frame = toy_landscape("additive", seed=seed)
        frame["antibody"] = name
        frame["n_somatic"] = frame["genotype"].str.count("1")
        floor = frame["pkd"].quantile(0.5) if name == "CR9114" else -np.inf
        frame["at_lower_bound"] = frame["pkd"] <= floor
        frame["pkd"] = frame["pkd"].clip(lower=floor)
        parts.append(frame.sample(frac=1.0, random_state=seed))
    path = tmp_path_factory.mktemp("bench") / "landscapes.csv.gz"
    pd.concat(parts).to_csv(path, index=False)
    return path


def test_campaigns_write_tables_json_and_a_plot(data, tmp_path):
    out = tmp_path / "out"
    strategies = ["random", "ridge_greedy", "abag_greedy", "abag_thompson+div"]
    assert bench.main(["--data", str(data), "--out", str(out), "--repeats", "2", "--rounds", "2", "--batch", "8",
                       "--start-size", "16", "--strategies", *strategies]) == 0
    summary = json.loads((out / "summary.json").read_text())
    results = summary["results"]
    assert set(results) == {f"{ab}/{start}/{s}" for ab in ("CR6261", "CR9114") for start in ("random", "germline")
                            for s in strategies}
    for entry in results.values():
        top = np.array(entry["top1"])
        assert top.shape == (2, 3) and (np.diff(top, axis=1) >= 0).all()  # finds only accumulate
        assert (np.diff(np.array(entry["best"]), axis=1) >= 0).all()
    # The germline start is the germline and its 8 single mutants; greedy on an additive landscape climbs.
    greedy = np.array(results["CR6261/germline/abag_greedy"]["best"])
    assert (greedy[:, -1] > greedy[:, 0]).all()
    assert all(m in ("onehot_ridge", "gp") for m in np.ravel(results["CR6261/random/abag_greedy"]["models"]))
    table = (out / "summary.md").read_text()
    assert "Variant model chosen by abag's cross-validation" in table
    assert table.count("| abag_thompson+div |") == 4 + 2  # one row per panel, one per landscape headline
    assert "mean ± sd over 2 repeats" in table and "germline start, round 2" in table
    assert (out / "rounds.png").stat().st_size > 10_000
    (out / "summary.md").unlink()
    assert bench.main(["--data", str(data), "--out", str(out), "--repeats", "2", "--rounds", "2", "--strategies",
                       *strategies, "--render-only"]) == 0
    assert (out / "summary.md").read_text() == table  # rendered again from summary.json alone


def test_ridge_baseline_breaks_ties_at_random_not_in_file_order(data):
    landscape = bench.load_landscape(data, "CR9114")
    floor_rows = np.flatnonzero(landscape.frame["censored"].to_numpy())[:20]  # all at the floor: ridge ties
    picks = [set(bench.choose(landscape, "ridge_greedy", floor_rows, 8, seed)) for seed in (0, 1)]
    assert picks[0] != picks[1]


def test_owner_check_reports_a_share_per_strategy(data, tmp_path, capsys):
    out = tmp_path / "owner"
    assert bench.main(["--data", str(data), "--out", str(out), "--owner-check", "--repeats", "2",
                       "--landscapes", "CR6261", "--strategies", "random", "ridge_greedy", "abag_greedy"]) == 0
    check = json.loads((out / "owner_check.json").read_text())["checks"]["CR6261"]
    shares = check["shares"]
    assert check["models"]["ridge_greedy"] == ["onehot_ridge"] * 2 and check["models"]["random"] == [""] * 2
    assert set(shares) == {"random", "ridge_greedy", "abag_greedy"}
    assert all(len(v) == 2 and all(0 <= x <= 1 for x in v) for v in shares.values())
    assert np.mean(shares["ridge_greedy"]) > np.mean(shares["random"])
    assert "owner check CR6261 abag_greedy" in capsys.readouterr().out
