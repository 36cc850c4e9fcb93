"""One table: the network, the model and the ridges side by side on every real-data protocol (issue "one model, one formula").

    python bench/bench_one_model.py [--protocols P ...] [--seeds 0 100 200] [--out runs/one_model]
        [--model-config FIELD=VALUE ...] [--label model] [--predictors network model baselines]
        [--data-dir ../shared/data] [--cache-dir DIR] [--threads 1] [--epochs N] [--phillips-epochs 30]

Predictors (columns):

* `network` — `ModelConfig(familiar_correction="none")`: the network alone.
* `model` (the column is named by `--label`) — `ModelConfig(**--model-config)`; default: today's default. When it
  differs from the network only in `familiar_correction`, one training gives both columns (the network column is
  the same trained models without their post-hoc terms, `cross_validate`'s `network_only`).
* baselines, deterministic (fitted once per fold on exactly the model's training rows, validation slice excluded):
  `kmer_ridge` (abag's 1–2-mers of heavy + light + antigen), `heavy_kmer123_ridge` (1–3-mers of the heavy
  chain), `onehot_ridge` (IMGT-aligned one-hot of VH and VL), and per protocol `train_mean`,
  `mutation_count` (Phillips extrapolation) or `antigen_mean` (AlphaSeq).

Every network is one single-split model per fold (`abag.cross_validate`), trained with seeds `--seeds` on frozen
folds (the fold deal's seed is fixed at 0). Protocols:

* `phillips_random` — bench_real_data's 2,000-variant subsample per antibody (CR9114: half at the assay floor),
  5 random folds over variants (both antibodies in one model), pooled out-of-fold Spearman within each antibody.
* `phillips_extrapolation` — bench_real_data's plan: per antibody, train on variants with <= k substitutions
  (CR6261 k = 4, CR9114 k = 7), test on more; Spearman and RMSE on the exact test rows.
* `skempi_loco` — leave one SKEMPI complex out: mean Spearman per complex (>= 3 scored rows), pooled Spearman, RMSE.
* `saaintdb_cluster` — 5-fold antigen-cluster CV on the frozen folds (bench/experiments/saaintdb_folds.json):
  pooled Spearman, within-cluster Spearman (clusters with >= 5 rows), RMSE.
* `saaintdb_random10` — 10 random folds over rows (no grouping): pooled and mean-over-folds Spearman, beside
  AbAffinity's published 10-fold random-split Spearman 0.844; what a random split hides.
* `alphaseq_antibody` — hold out whole antibodies (5 folds of 4): Spearman across the 37 antigens within each
  held-out antibody, mean over the 20 antibodies (ranking only, no RMSE).

Censored rows train with the one-sided loss (the networks) or are left out (the baselines) and are never scored.
Writes OUT/results.json (every metric per predictor and seed) and OUT/table.md (default OUT: bench/one_model,
committed), and WORK/<protocol>/predictions_<part>.csv (out-of-fold predictions, a column per predictor and seed;
default WORK: runs/one_model). A rerun into the same OUT keeps the other predictors' results (same protocol
settings only), so a new model is one more column:

    python bench/bench_one_model.py --predictors model --label wide_deep \
        --model-config wide=kmer_ridge familiar_correction=none
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_real_data as real  # noqa: E402  (Phillips subsample and extrapolation plan, mutation-count line)
from bench_common import machine as host_machine  # noqa: E402

from abag.data.folds import fold_split, make_folds  # noqa: E402
from abag.data.pipeline import load_pairs  # noqa: E402
from abag.data.splits import fold_groups  # noqa: E402
from abag.evaluation.baselines import MeanBaseline  # noqa: E402
from abag.evaluation.variant_baselines import (  # noqa: E402
    HeavyKmerRidgeBaseline,
    OneHotRidgeBaseline,
)
from abag.folds.crossval import cross_validate  # noqa: E402
from abag.model.config import ModelConfig  # noqa: E402
from abag.model.ridge import KmerRidgeBaseline, training_rows  # noqa: E402
from abag.training.config import TrainConfig  # noqa: E402

PROTOCOLS = ("phillips_random", "phillips_extrapolation", "skempi_loco", "saaintdb_cluster", "saaintdb_random10",
             "alphaseq_antibody")
RIDGES = ("kmer_ridge", "heavy_kmer123_ridge", "onehot_ridge")
ABAFFINITY_RANDOM10 = 0.844  # AbAffinity (2026), SAAINT-DB, 10-fold random split, Spearman (published)
FOLDS_FILE = ROOT / "bench" / "experiments" / "saaintdb_folds.json"


# ----------------------------------------------------------------------------------------------- protocols

@dataclass
class Part:
    """One cross-validation: a table, its test folds, the group column for the validation slices, its baselines."""

    name: str
    frame: pd.DataFrame
    tests: list[np.ndarray]
    group_column: str
    extra_baselines: dict[str, Callable[[], object]] = field(default_factory=dict)


@dataclass
class Protocol:
    name: str
    description: str
    parts: list[Part]
    score: Callable[[dict[str, pd.DataFrame]], dict[str, float | None]]  # part name -> predictions -> metrics
    settings: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)


class AntigenMeanBaseline:
    """Each antigen's mean pKd over the training rows (other antibodies); the training mean for a new antigen."""

    name = "antigen_mean"

    def fit(self, df: pd.DataFrame) -> "AntigenMeanBaseline":
        rows = training_rows(df)
        pkd = pd.to_numeric(rows["pkd"], errors="coerce")
        self.means_ = pkd.groupby(rows["antigen"].astype(str)).mean().to_dict()
        self.mean_ = float(pkd.mean())
        return self

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return np.array([self.means_.get(a, self.mean_) for a in df["antigen"].astype(str)], dtype=float)


def _spearman(y: np.ndarray, p: np.ndarray) -> float | None:
    keep = np.isfinite(y) & np.isfinite(p)
    y, p = y[keep], p[keep]
    if len(y) < 3 or np.all(y == y[0]) or np.all(p == p[0]):
        return None
    return float(stats.spearmanr(y, p).statistic)


def _scored(table: pd.DataFrame) -> pd.DataFrame:
    """Rows that are scored: exact (not censored) with a finite pKd."""
    return table[~table["censored"].to_numpy(bool) & np.isfinite(table["pkd"].to_numpy(float))]


def _rmse(table: pd.DataFrame) -> float | None:
    t = _scored(table)
    return float(np.sqrt(np.mean((t["pkd"] - t["pred"]) ** 2))) if len(t) else None


def _within(y: np.ndarray, p: np.ndarray) -> float | None:
    """Spearman inside one group; a constant prediction for varying pKd ranks nothing: 0 (as bench_real_data).
    Constant within 1e-6 pKd: a network that ignores the antigen gives one antibody float-rounding differences."""
    keep = np.isfinite(y) & np.isfinite(p)
    y, p = y[keep], p[keep]
    if len(y) >= 3 and np.ptp(p) <= 1e-6 and not np.all(y == y[0]):
        return 0.0
    return _spearman(y, p)


def _mean_within(table: pd.DataFrame, by: np.ndarray, min_rows: int) -> tuple[float | None, int]:
    """Mean Spearman within each group of `by` with >= min_rows scored rows (groups of one pKd left out)."""
    t = _scored(table.assign(_by=by))
    values = [_within(g["pkd"].to_numpy(float), g["pred"].to_numpy(float))
              for _, g in t.groupby("_by") if len(g) >= min_rows]
    values = [v for v in values if v is not None]
    return (float(np.mean(values)) if values else None), len(values)


def _pooled(table: pd.DataFrame) -> float | None:
    t = _scored(table)
    return _spearman(t["pkd"].to_numpy(float), t["pred"].to_numpy(float))


def phillips_random(args) -> Protocol:
    full, _ = load_pairs(Path(args.data_dir) / "phillips2021_cr9114_cr6261.csv.gz")
    frame = real.phillips_subsample(full.reset_index(drop=True), args.phillips_per_antibody, seed=0)
    frame["variant"] = frame["antibody"] + ":" + frame["genotype"].astype(str)
    _, tests, what = make_folds(frame, 5, group_column="variant", seed=0)
    antibody = frame["antibody"].to_numpy()

    def score(pred: dict[str, pd.DataFrame]) -> dict:
        t = pred["all"]
        ab = antibody[t["row"].to_numpy()]
        return {f"{a} Spearman": _pooled(t[ab == a]) for a in sorted(set(antibody))}

    return Protocol("phillips_random", f"Phillips 2021, {args.phillips_per_antibody} variants per antibody (seed 0), "
                    f"{what}; {args.phillips_epochs} epochs; pooled out-of-fold Spearman within each antibody",
                    [Part("all", frame, tests, "variant")], score,
                    {"per_antibody": args.phillips_per_antibody, "epochs": args.phillips_epochs})


def phillips_extrapolation(args) -> Protocol:
    full, _ = load_pairs(Path(args.data_dir) / "phillips2021_cr9114_cr6261.csv.gz")
    plans = real.extrapolation_plan(full, args.extrapolation_min_train, args.extrapolation_test,
                                    args.extrapolation_test_censored, args.extrapolation_train_censored, seed=0)
    parts = [Part(p.antibody, p.frame, [p.test_rows], "variant",
                  {"mutation_count": real.MutationCountBaseline}) for p in plans]
    ks = {p.antibody: p.max_train_mutations for p in plans}

    def score(pred: dict[str, pd.DataFrame]) -> dict:
        out = {}
        for name, t in pred.items():
            out[f"{name} (≤ {ks[name]} → more) Spearman"] = _pooled(t)
            out[f"{name} (≤ {ks[name]} → more) RMSE"] = _rmse(t)
        return out

    return Protocol("phillips_extrapolation", "Phillips 2021, train on variants with ≤ k substitutions from "
                    f"germline, test on more (bench_real_data's plan: {ks}; {args.epochs or 100} epochs)",
                    parts, score, {"k": ks, "epochs": args.epochs, "counts": {p.antibody: p.counts for p in plans}})


def skempi_loco(args) -> Protocol:
    frame, _ = load_pairs(Path(args.data_dir) / "skempi2_ab_ag.csv")
    frame = frame.reset_index(drop=True)
    _, tests, what = make_folds(frame, "logo", group_column="skempi_complex")
    complexes = frame["skempi_complex"].astype(str).to_numpy()

    def score(pred: dict[str, pd.DataFrame]) -> dict:
        t = pred["all"]
        per_complex, n = _mean_within(t, complexes[t["row"].to_numpy()], 3)
        return {"Spearman per complex (mean)": per_complex, "complexes scored": n, "pooled Spearman": _pooled(t),
                "RMSE": _rmse(t)}

    return Protocol("skempi_loco", f"SKEMPI 2.0 antibody set, {what}; {args.epochs or 100} epochs",
                    [Part("all", frame, tests, "skempi_complex", {"train_mean": MeanBaseline})], score,
                    {"epochs": args.epochs})


def saaintdb_cluster(args) -> Protocol:
    frame, _ = load_pairs(Path(args.data_dir) / "saaintdb_dev.csv")
    frame = frame.reset_index(drop=True)
    folds_file = Path(args.saaintdb_folds)
    frozen = json.loads(folds_file.read_text())
    if len(frozen["groups"]) != len(frame):
        raise ValueError(f"{folds_file} has {len(frozen['groups'])} rows, the data {len(frame)}")
    frame["cv_cluster"] = frozen["groups"]
    tests = [np.asarray(t, dtype=np.int64) for t in frozen["tests"]]
    # Do today's clusters and fold deal give the same test folds? (recorded; the frozen folds are used either way)
    _, today, _ = make_folds(frame.drop(columns="cv_cluster"), 5, seed=0)
    same = sorted(map(tuple, map(sorted, today))) == sorted(map(tuple, map(sorted, tests)))
    clusters = frame["cv_cluster"].to_numpy()

    def score(pred: dict[str, pd.DataFrame]) -> dict:
        t = pred["all"]
        within, n = _mean_within(t, clusters[t["row"].to_numpy()], 5)
        return {"pooled Spearman": _pooled(t), "within-cluster Spearman": within, "clusters scored": n,
                "RMSE": _rmse(t)}

    return Protocol("saaintdb_cluster", f"saaintdb_dev, {frozen['protocol']} (frozen folds {folds_file.name}; "
                    f"today's clustering deals {'the same' if same else 'different'} folds); "
                    f"{args.epochs or 100} epochs", [Part("all", frame, tests, "cv_cluster",
                                                          {"train_mean": MeanBaseline})], score,
                    {"epochs": args.epochs}, {"frozen_folds_match_today": same})


def saaintdb_random10(args) -> Protocol:
    frame, _ = load_pairs(Path(args.data_dir) / "saaintdb_dev.csv")
    frame = frame.reset_index(drop=True)
    frame["row_id"] = np.arange(len(frame))
    _, tests, _ = make_folds(frame, args.saaintdb_random_folds, group_column="row_id", seed=0)
    fold_of = np.empty(len(frame), dtype=np.int64)
    for i, t in enumerate(tests):
        fold_of[t] = i

    def score(pred: dict[str, pd.DataFrame]) -> dict:
        t = pred["all"]
        per_fold, _ = _mean_within(t, fold_of[t["row"].to_numpy()], 3)
        return {"pooled Spearman": _pooled(t), "mean Spearman over folds": per_fold, "RMSE": _rmse(t)}

    return Protocol("saaintdb_random10", f"saaintdb_dev, {args.saaintdb_random_folds} random folds over rows (fold seed 0; validation = a random "
                    f"10 % of the training rows); {args.epochs or 100} epochs; AbAffinity's published 10-fold "
                    f"random-split Spearman: {ABAFFINITY_RANDOM10}",
                    [Part("all", frame, tests, "row_id", {"train_mean": MeanBaseline})], score,
                    {"epochs": args.epochs, "folds": args.saaintdb_random_folds},
                    {"abaffinity_random10_spearman": ABAFFINITY_RANDOM10})


def alphaseq_antibody(args) -> Protocol:
    frame, _ = load_pairs(Path(args.data_dir) / "alphaseq2022_cov2_dev.csv")
    frame = frame.reset_index(drop=True)
    _, tests, what = make_folds(frame, 5, group_column="antibody_name", seed=0)
    antibody = frame["antibody_name"].astype(str).to_numpy()

    def score(pred: dict[str, pd.DataFrame]) -> dict:
        t = pred["all"]
        within, n = _mean_within(t, antibody[t["row"].to_numpy()], 5)
        return {"Spearman within antibody (mean)": within, "antibodies scored": n}

    n_antibodies, n_antigens = len(set(antibody)), frame["antigen"].nunique()
    return Protocol("alphaseq_antibody", f"AlphaSeq 2022 ({n_antibodies} antibodies × {n_antigens} RBD variants), "
                    f"{what} ({n_antibodies // 5} antibodies per fold); Spearman across antigens within each held-out "
                    f"antibody; {args.epochs or 100} epochs",
                    [Part("all", frame, tests, "antibody_name", {"antigen_mean": AntigenMeanBaseline})], score,
                    {"epochs": args.epochs})


BUILDERS = {"phillips_random": phillips_random, "phillips_extrapolation": phillips_extrapolation,
            "skempi_loco": skempi_loco, "saaintdb_cluster": saaintdb_cluster, "saaintdb_random10": saaintdb_random10,
            "alphaseq_antibody": alphaseq_antibody}


# ----------------------------------------------------------------------------------------------- running

def fold_splits(part: Part, fold_seed: int = 0, val_fraction: float = 0.1) -> list:
    """The train/val/test split of every fold exactly as `cross_validate` deals it for these test rows."""
    groups = fold_groups(part.frame, group_column=part.group_column).labels
    return [fold_split(groups, test, val_fraction=val_fraction, seed=fold_seed * 1000 + i)
            for i, test in enumerate(part.tests)]


def baseline_factories(part: Part, numbering_cache: dict) -> dict[str, Callable[[], object]]:
    return {"kmer_ridge": KmerRidgeBaseline, "heavy_kmer123_ridge": HeavyKmerRidgeBaseline,
            "onehot_ridge": lambda: OneHotRidgeBaseline(cache=numbering_cache), **part.extra_baselines}


def run_baselines(part: Part, numbering_cache: dict, log) -> tuple[dict[str, np.ndarray], dict]:
    """Out-of-fold predictions of every baseline (fitted on each fold's training rows), and notes."""
    columns, notes = {}, {"onehot_unnumbered_test_rows": 0, "onehot_unnumbered_train_rows": []}
    for i, split in enumerate(fold_splits(part)):
        train_rows, test_rows = split.indices("train"), split.indices("test")
        train, test = part.frame.iloc[train_rows], part.frame.iloc[test_rows]
        for name, make in baseline_factories(part, numbering_cache).items():
            started = time.perf_counter()
            model = make().fit(train)
            columns.setdefault(name, np.full(len(part.frame), np.nan))[test_rows] = model.predict(test)
            if name == "onehot_ridge":
                notes["onehot_unnumbered_test_rows"] += model.unnumbered_
                notes["onehot_unnumbered_train_rows"].append(model.unnumbered_train_)
            if i == 0:
                log(f"  {part.name} fold 1: {name} {time.perf_counter() - started:.1f}s"
                    + (f" ({model.method})" if hasattr(model, "method") else ""))
    return columns, notes


def run_networks(part: Part, protocol: str, config: ModelConfig, train_config: TrainConfig, seed: int,
                 out: Path, n_boot: int, log) -> dict[str, np.ndarray]:
    """Out-of-fold predictions of one training seed: `model` and, when the config has a correction, `network_only`."""
    result = cross_validate(part.frame, config, dataclasses.replace(train_config, seed=seed), folds=part.tests,
                            group_column=part.group_column, fold_seed=0, out_dir=out, baselines=None,
                            n_boot=n_boot, log=log)
    table = result.predictions
    columns = {}
    for name in ("model", "network_only"):
        if name in table:
            column = np.full(len(part.frame), np.nan)
            column[table["row"].to_numpy()] = table[name].to_numpy(float)
            columns[name] = column
    return columns


def predictions_table(part: Part, column: np.ndarray) -> pd.DataFrame:
    rows = np.concatenate(part.tests)
    y = pd.to_numeric(part.frame["pkd"], errors="coerce").to_numpy(float)
    censored = part.frame["censored"].to_numpy(bool) if "censored" in part.frame else np.zeros(len(part.frame), bool)
    return pd.DataFrame({"row": rows, "pkd": y[rows], "censored": censored[rows], "pred": column[rows]})


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--model-config takes FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def plan_networks(model_config: ModelConfig, network_config: ModelConfig, label: str,
                  predictors: list[str]) -> list[tuple[ModelConfig, dict]]:
    """Trainings to run: (config, {column of cross_validate -> predictor names}). One training serves both columns
    when the model is the network plus post-hoc terms (the network column is then `network_only`)."""
    runs = []
    want_network = "network" in predictors
    if "model" in predictors:
        names = {"model": [label]}
        if want_network and dataclasses.replace(model_config, familiar_correction="none") == network_config:
            if model_config.familiar_correction == "none":
                names["model"].append("network")
            else:
                names["network_only"] = ["network"]
            want_network = False
        runs.append((model_config, names))
    if want_network:
        runs.append((network_config, {"model": ["network"]}))
    return runs


def summarise(per_seed: dict[str, dict]) -> dict:
    """Mean, SD and range over seeds of every metric."""
    metrics = {}
    for values in per_seed.values():
        for key in values:
            metrics.setdefault(key, [])
    for key in metrics:
        vals = [v.get(key) for v in per_seed.values()]
        vals = [float(v) for v in vals if v is not None]
        metrics[key] = {"mean": float(np.mean(vals)) if vals else None,
                        "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                        "min": min(vals) if vals else None, "max": max(vals) if vals else None, "n_seeds": len(vals)}
    return metrics


def fmt(x, digits=3) -> str:
    return "–" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


COLUMN_ORDER = ("network", "model", "kmer_ridge", "heavy_kmer123_ridge", "onehot_ridge", "train_mean", "mutation_count",
                "antigen_mean")


PROTOCOL_BASELINES = ("train_mean", "mutation_count", "antigen_mean")


def _cell(summary: dict | None) -> str:
    if summary is None or summary["mean"] is None:
        return "–"
    value = f"{summary['mean']:.3f}"
    return value + (f" ± {summary['sd']:.3f}" if summary["n_seeds"] > 1 else "")


def combined_markdown(results: dict) -> str:
    """Every protocol in one table: network, the model column(s), the three ridges, the protocol's own baseline."""
    protocols = results["protocols"]
    names = {p for entry in protocols.values() for p in entry["predictors"]}
    models = sorted(names - set(RIDGES) - set(PROTOCOL_BASELINES) - {"network"}, key=lambda p: (p != "model", p))
    columns = ["network", *models, *RIDGES]
    lines = ["| protocol | metric | " + " | ".join(f"`{c}`" for c in columns) + " | protocol baseline |",
             "|---|---|" + "---|" * (len(columns) + 1)]
    for name in [p for p in PROTOCOLS if p in protocols]:
        entry = protocols[name]["predictors"]
        metrics = list(dict.fromkeys(k for p in entry.values() for k in p["summary"] if not k.endswith("scored")))
        for metric in metrics:
            cells = [_cell(entry[c]["summary"].get(metric)) if c in entry else "pending" for c in columns]
            base = [f"`{b}` {_cell(entry[b]['summary'].get(metric))}" for b in PROTOCOL_BASELINES if b in entry]
            lines.append(f"| {name} | {metric} | " + " | ".join(cells) + f" | {'; '.join(base) or '–'} |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """One table per protocol: rows = metrics, columns = predictors; mean over seeds ± SD (seeds) for networks."""
    lines = []
    for name, entry in results["protocols"].items():
        predictors = sorted(entry["predictors"], key=lambda p: (COLUMN_ORDER.index(p) if p in COLUMN_ORDER else 1.5, p))
        lines += [f"**{name}** — {entry['description']}", ""]
        lines += ["| metric | " + " | ".join(f"`{p}`" for p in predictors) + " |",
                  "|---|" + "---|" * len(predictors)]
        metrics = list(dict.fromkeys(k for p in predictors for k in entry["predictors"][p]["summary"]))
        for metric in metrics:
            cells = []
            for p in predictors:
                s = entry["predictors"][p]["summary"].get(metric)
                if s is None or s["mean"] is None:
                    cells.append("–")
                    continue
                integer = metric.endswith("scored")
                value = f"{s['mean']:.0f}" if integer else f"{s['mean']:.3f}"
                if s["n_seeds"] > 1 and not integer:
                    value += f" ± {s['sd']:.3f}"
                cells.append(value)
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        seeds = {p: list(entry["predictors"][p]["per_seed"]) for p in predictors
                 if not entry["predictors"][p].get("deterministic")}
        lines += ["", "Seeds: " + "; ".join(f"`{p}` {', '.join(s)}" for p, s in seeds.items())
                  + ". ± = SD over training seeds; baselines are deterministic.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--predictors", nargs="+", choices=("network", "model", "baselines"),
                        default=["network", "model", "baselines"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 100, 200], help="training seeds")
    parser.add_argument("--model-config", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="ModelConfig fields for the model column (JSON values), e.g. wide=kmer_ridge")
    parser.add_argument("--label", default="model", help="column name of the --model-config model")
    parser.add_argument("--base-config", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="ModelConfig fields for the network and the model alike (e.g. encoders; tests)")
    parser.add_argument("--saaintdb-folds", type=Path, default=FOLDS_FILE, help="frozen saaintdb_dev folds (JSON)")
    parser.add_argument("--saaintdb-random-folds", type=int, default=10, help="saaintdb_random10: folds (tests: fewer)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "one_model",
                        help="results.json and table.md (committed: a rerun adds its columns to them)")
    parser.add_argument("--work", type=Path, default=None,
                        help="out-of-fold predictions and run folders (default: runs/one_model, not committed)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default: $ABAG_CACHE_DIR or ~/.cache)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="epochs except Phillips random (default: v2.7's 100)")
    parser.add_argument("--phillips-epochs", type=int, default=30, help="Phillips random folds (as bench_real_data)")
    parser.add_argument("--phillips-per-antibody", type=int, default=2000)
    parser.add_argument("--extrapolation-min-train", type=int, default=300)
    parser.add_argument("--extrapolation-test", type=int, default=300)
    parser.add_argument("--extrapolation-test-censored", type=int, default=100)
    parser.add_argument("--extrapolation-train-censored", type=int, default=200)
    parser.add_argument("--n-boot", type=int, default=1, help="bootstrap draws inside cross_validate (its intervals are not reported)")
    parser.add_argument("--keep-runs", action="store_true", help="keep the per-fold run folders (checkpoints)")
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the metrics of OUT/results.json from WORK's saved predictions (no training)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work = args.work or ROOT / "runs" / "one_model"
    from abag.encoding.embedding_cache import default_cache_dir

    base = parse_overrides(args.base_config)
    model_config = ModelConfig(**{**base, **parse_overrides(args.model_config)})
    network_config = ModelConfig(**{**base, "familiar_correction": "none"})
    label = args.label
    if label in RIDGES + ("network", "train_mean", "mutation_count", "antigen_mean"):
        raise SystemExit(f"--label {label!r} is another column's name")
    base_train = TrainConfig(progress=False, cache_dir=args.cache_dir or str(default_cache_dir()))
    path = args.out / "results.json"
    numbering_cache: dict = {}
    started = time.perf_counter()
    run_log = {"started": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:] if argv is None else list(argv),
               "machine_at_start": f"{host_machine()}, torch {torch.__version__}, {args.threads} torch thread(s)",
               "model_config": dataclasses.asdict(model_config), "label": label, "seconds": {}}

    def log(line: str) -> None:
        print(line, flush=True)

    if args.rescore:
        for name in args.protocols:
            with locked_results(path) as results:
                if name in results["protocols"]:
                    rescore(BUILDERS[name](args), results["protocols"][name], args.work, log)
        with locked_results(path) as results:
            (args.out / "table.md").write_text(combined_markdown(results) + "\n\n" + markdown(results))
        return 0
    for name in args.protocols:
        t0 = time.perf_counter()
        log(f"=== {name} ===")
        protocol = BUILDERS[name](args)
        entry = {"description": protocol.description, "settings": json.loads(json.dumps(protocol.settings)),
                 "notes": dict(protocol.notes), "predictors": {}}
        columns: dict[str, dict[str, dict[str, np.ndarray]]] = {}  # predictor -> seed -> part -> column
        if "baselines" in args.predictors:
            for part in protocol.parts:
                predicted, notes = run_baselines(part, numbering_cache, log)
                entry["notes"][f"{part.name} baselines"] = notes
                for bname, column in predicted.items():
                    columns.setdefault(bname, {}).setdefault("deterministic", {})[part.name] = column
        for config, names in plan_networks(model_config, network_config, label, args.predictors):
            for seed in args.seeds:
                for part in protocol.parts:
                    out = args.work / "runs" / name / names["model"][0] / f"seed_{seed}" / part.name
                    train_config = dataclasses.replace(
                        base_train, **({"epochs": args.phillips_epochs} if name == "phillips_random" else
                                       {"epochs": args.epochs} if args.epochs else {}))
                    log(f"{name} / {part.name}: {' + '.join(sum(names.values(), []))}, seed {seed}")
                    predicted = run_networks(part, name, config, train_config, seed, out, args.n_boot, log)
                    if not args.keep_runs:
                        import shutil

                        for fold_dir in out.glob("fold_*"):
                            shutil.rmtree(fold_dir, ignore_errors=True)
                    for column, pnames in names.items():
                        if column not in predicted:
                            raise RuntimeError(f"cross_validate gave no {column!r} column for {config}")
                        for pname in pnames:
                            columns.setdefault(pname, {}).setdefault(str(seed), {})[part.name] = predicted[column]
        tables = {}
        for pname, by_seed in columns.items():
            per_seed = {}
            for seed, parts in by_seed.items():
                preds = {part.name: predictions_table(part, parts[part.name]) for part in protocol.parts}
                per_seed[seed] = protocol.score(preds)
                for part_name, table in preds.items():
                    tables[(part_name, pname, seed)] = table
            entry["predictors"][pname] = {"per_seed": per_seed, "summary": summarise(per_seed),
                                          "deterministic": list(by_seed) == ["deterministic"],
                                          **({"model_config": dataclasses.asdict(model_config)} if pname == label else {}),
                                          **({"model_config": dataclasses.asdict(network_config)}
                                             if pname == "network" else {})}
        run_log["seconds"][name] = time.perf_counter() - t0
        with locked_results(path) as results:
            save_predictions(protocol, tables, args.work)
            results["protocols"][name] = merge_entry(results["protocols"].get(name), entry, log)
            log(markdown({"protocols": {name: results["protocols"][name]}}))
    run_log["seconds_total"] = time.perf_counter() - started
    run_log["machine_at_end"] = host_machine()
    with locked_results(path) as results:
        results["runs"].append(run_log)
        (args.out / "table.md").write_text(combined_markdown(results) + "\n\n" + markdown(results))
    return 0


def save_predictions(protocol: Protocol, tables: dict, work: Path) -> None:
    """Out-of-fold predictions, one column per predictor and seed (merged with an earlier run's)."""
    for part in protocol.parts:
        columns = {f"{predictor}@{seed}": table["pred"].to_numpy()
                   for (pn, predictor, seed), table in tables.items() if pn == part.name}
        if not columns:
            continue
        file = work / protocol.name / f"predictions_{part.name}.csv"
        file.parent.mkdir(parents=True, exist_ok=True)
        frame = predictions_table(part, np.full(len(part.frame), np.nan)).drop(columns="pred")
        if file.exists():
            keep = pd.read_csv(file)
            if len(keep) == len(frame) and (keep["row"].to_numpy() == frame["row"].to_numpy()).all():
                frame = keep
        frame = frame.assign(**columns)
        frame.to_csv(file, index=False)


def rescore(protocol: Protocol, entry: dict, work: Path, log) -> None:
    """Metrics again from the saved out-of-fold predictions (every predictor@seed column), without training."""
    saved = {part.name: pd.read_csv(work / protocol.name / f"predictions_{part.name}.csv") for part in protocol.parts}
    for pname, predictor in entry["predictors"].items():
        per_seed = {}
        for seed in predictor["per_seed"]:
            preds = {}
            for part in protocol.parts:
                table, column = saved[part.name], f"{pname}@{seed}"
                full = np.full(len(part.frame), np.nan)
                full[table["row"].to_numpy()] = table[column].to_numpy(float)
                preds[part.name] = predictions_table(part, full)
            per_seed[seed] = protocol.score(preds)
        predictor.update(per_seed=per_seed, summary=summarise(per_seed))
    entry["description"] = protocol.description
    log(f"{protocol.name}: rescored {len(entry['predictors'])} predictors from {work / protocol.name}")


@contextlib.contextmanager
def locked_results(path: Path):
    """results.json read, changed and written under a lock (two runs may share one folder)."""
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.exists() else {"protocols": {}, "runs": []}
        yield results
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(results, indent=2, default=str))
        temporary.replace(path)


def merge_entry(old: dict | None, new: dict, log) -> dict:
    """A protocol's new columns and seeds over an earlier run's (kept when the protocol settings are the same): a
    predictor run again with the same config gets the new seeds beside its old ones; with another config, replaced."""
    if old is not None and old.get("settings") != new["settings"]:
        log(f"settings changed ({old.get('settings')} -> {new['settings']}): the earlier columns are dropped")
        old = None
    if old is None:
        return new
    predictors = dict(old["predictors"])
    for name, column in new["predictors"].items():
        earlier = predictors.get(name)
        if earlier is not None and earlier.get("model_config") == column.get("model_config"):
            per_seed = {**earlier["per_seed"], **column["per_seed"]}
            column = {**column, "per_seed": per_seed, "summary": summarise(per_seed)}
        predictors[name] = column
    return {**new, "notes": {**old.get("notes", {}), **new["notes"]}, "predictors": predictors}


if __name__ == "__main__":
    raise SystemExit(main())
