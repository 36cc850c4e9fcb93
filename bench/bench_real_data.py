"""Benchmark the default model against the baselines on the real data sets (CPU, offline AntiBERTy).

    python bench/bench_real_data.py [--sets saaintdb skempi phillips] [--out runs/bench_real]
                                    [--data-dir ../shared/data] [--cache-dir DIR] [--threads 2]
                                    [--model FIELD=VALUE ...] [--epochs N] [--phillips-epochs N]

Protocols (all seeds fixed; nothing is tuned per fold):

* saaintdb_dev.csv — 5-fold cross-validation over antigen clusters (40 % identity, `abag.crossval`);
  each fold's validation slice is whole clusters from the training folds.
* skempi2_ab_ag.csv — leave-one-complex-out (group = `skempi_complex`): the model never sees the
  held-out complex's wild type or mutants; per-fold Spearman is the ranking of that complex's variants.
* phillips2021_cr9114_cr6261.csv.gz — ranking of close variants within each antibody. A seeded
  subsample (`--phillips-per-antibody`, default 2,000 per antibody; for CR9114, whose rows are mostly at
  the assay floor, half exact and half censored rows) is cross-validated with 5 random folds over
  variants (model trained on both antibodies together); Spearman is computed within CR9114 and within
  CR6261 separately on the pooled out-of-fold predictions. Censored (`at_lower_bound`) rows train with
  the one-sided loss and are never scored as exact values. Also reported: the model trained on all of
  saaintdb_dev (no Phillips data) applied zero-shot to the same subsample.
* phillips_extrapolation (same file) — per antibody, train on the variants with at most k substitutions
  from germline and test on variants with more (k: the smallest count whose variants hold
  `--extrapolation-min-train` exact rows; seeded subsamples bound the CPU time, see `extrapolation_plan`).
  Model, k-mer ridge, one-hot ridge and a mutation-count line side by side, with the Spearman within
  equal-mutation-count levels and bootstrap intervals over levels; `--repeats` training seeds.

Every cross-validated set also reports the within-group Spearman (antigen clusters, SKEMPI complexes) with
cluster-bootstrap intervals, and the antigen familiarity of its test rows (the antigen weight w of the
familiar-antigen correction, `abag.identity.novelty`, against each fold's training antigens), which says what
the protocol measures for a model that uses the antigen only where it is familiar.

`--model FIELD=VALUE ...` overrides ModelConfig defaults (e.g. `--model fusion=interaction`).
Writes OUT/<set>/ (cross-validation folders, cv_metrics.json, cv_predictions.csv), OUT/summary.json and
OUT/summary.md (markdown tables for bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_common import machine as host_machine

from abag.data.folds import fold_split
from abag.data.pipeline import load_pairs
from abag.encoding.embedding_cache import default_cache_dir
from abag.encoding.loader import load_encoder
from abag.evaluation.baselines import fit_baselines
from abag.evaluation.metrics import evaluate_predictions
from abag.folds.crossval import cross_validate
from abag.folds.crossval_tables import format_cv_markdown, format_cv_summary
from abag.identity.novelty import NoveltyReference
from abag.model.config import ModelConfig
from abag.model.ridge import RIDGE_ALPHAS, training_rows
from abag.training.config import TrainConfig

SETS = ("saaintdb", "skempi", "phillips", "phillips_extrapolation")


def machine() -> str:
    """`bench_common.machine()` plus the torch and Python versions and the torch thread count."""
    return (f"{host_machine()}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"Python {platform.python_version()}")


def fmt(x, digits=3) -> str:
    return "NA" if x is None else f"{x:.{digits}f}"


def ci_cell(m: dict) -> str:
    ci = m.get("spearman_ci95") or [None, None]
    return fmt(m.get("spearman")) + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci[0] is not None else "")


# ----------------------------------------------------------------------------------------------- sets

def fold_layout(result, n_rows: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(group per row, test rows per fold) of a cross-validation result that covered all `n_rows` rows."""
    table = result.predictions.sort_values("row")
    if not np.array_equal(table["row"].to_numpy(), np.arange(n_rows)):
        raise ValueError("the cross-validation did not predict every row exactly once")
    groups = np.asarray(table["group"].tolist())  # the labels cross_validate dealt (same order, same dtype)
    tests = [g["row"].to_numpy() for _, g in result.predictions.groupby("fold", sort=True)]
    return groups, tests


def antigen_familiarity(frame: pd.DataFrame, groups: np.ndarray, tests: list[np.ndarray], fold_seed: int = 0,
                        val_fraction: float = 0.1) -> tuple[np.ndarray, dict]:
    """The antigen weight w (`abag.identity.novelty`) of every test row against its fold's training
    antigens, and a summary. Each fold's split is dealt again exactly as `cross_validate` deals it
    (validation groups drawn with seed fold_seed * 1000 + fold), so w is what that fold's model applied."""
    weight = np.full(len(frame), np.nan)
    antigens = frame["antigen"].astype(str).to_numpy()
    for i, test in enumerate(tests):
        split = fold_split(np.asarray(groups), np.asarray(test), val_fraction=val_fraction,
                           seed=fold_seed * 1000 + i)
        reference = NoveltyReference.from_antigens(antigens[split.indices("train")].tolist())
        weight[test] = reference.weights(antigens[test].tolist())
    tested = weight[np.isfinite(weight)]
    return weight, {"rows": int(tested.size), "mean_weight": float(tested.mean()),
                    "fraction_weight_positive": float(np.mean(tested > 0)),
                    "fraction_weight_one": float(np.mean(tested >= 1))}


def cv_summary(result, frame: pd.DataFrame, fold_seed: int = 0) -> dict:
    """What every cross-validated set reports: tables, means, pooled, difference, familiarity of the test rows."""
    groups, tests = fold_layout(result, len(frame))
    weight, familiarity = antigen_familiarity(frame, groups, tests, fold_seed)
    return {"rows": len(frame), "protocol": result.protocol, "markdown": format_cv_markdown(result),
            "mean": result.mean, "pooled": result.pooled, "difference": result.difference,
            "familiarity": familiarity, "seconds": result.seconds}, weight


def run_saaintdb(args, encoders, model_config, train_config) -> dict:
    frame, report = load_pairs(Path(args.data_dir) / "saaintdb_dev.csv")
    result = cross_validate(frame, model_config, train_config, folds=5, fold_seed=0, out_dir=args.out / "saaintdb",
                            encoders=encoders, n_boot=args.n_boot)
    print(format_cv_summary(result), flush=True)
    summary, _ = cv_summary(result, frame.reset_index(drop=True))
    summary["per_fold"] = [{n: m.get("spearman") for n, m in f.metrics.items()} for f in result.folds]
    return summary


def run_skempi(args, encoders, model_config, train_config) -> dict:
    """Leave one complex out; per complex also its antigen's familiarity (do other complexes share it?)."""
    frame, report = load_pairs(Path(args.data_dir) / "skempi2_ab_ag.csv")
    frame = frame.reset_index(drop=True)
    result = cross_validate(frame, model_config, train_config, folds="logo", group_column="skempi_complex",
                            out_dir=args.out / "skempi", encoders=encoders, n_boot=args.n_boot)
    print(format_cv_summary(result, max_folds=40), flush=True)
    summary, weight = cv_summary(result, frame)
    complexes = frame["skempi_complex"].to_numpy()
    per_fold = []
    for f in result.folds:
        rows = result.predictions.loc[result.predictions.fold == f.fold, "row"].to_numpy()
        per_fold.append({"complex": str(complexes[rows[0]]), "n": f.n_test, "antigen_weight": float(weight[rows].mean()),
                         **{n: m.get("spearman") for n, m in f.metrics.items()}})
    summary["per_fold"] = per_fold
    summary["by_familiarity"] = split_by_familiarity(per_fold, result.predictors)
    return summary


def split_by_familiarity(per_fold: list[dict], predictors: list[str], cut: float = 0.5) -> dict:
    """Mean per-complex Spearman of each predictor over complexes whose antigen is familiar (mean w >= cut:
    another complex has the same or a close antigen) and over the novel ones."""
    out = {}
    for label, keep in (("familiar", lambda w: w >= cut), ("novel", lambda w: w < cut)):
        folds = [f for f in per_fold if keep(f["antigen_weight"])]
        out[label] = {"complexes": len(folds), **{
            name: _mean_or_none([f.get(name) for f in folds]) for name in predictors}}
    return out


def _mean_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def phillips_subsample(frame: pd.DataFrame, per_antibody: int, seed: int) -> pd.DataFrame:
    """Seeded subsample per antibody; where censored rows exist, half exact and half censored."""
    rng = np.random.default_rng(seed)
    picked = []
    for antibody, rows in frame.groupby("antibody", sort=True):
        exact = rows.index[~rows["censored"].to_numpy(bool)]
        censored = rows.index[rows["censored"].to_numpy(bool)]
        if len(censored) == 0:
            take = rng.choice(rows.index, size=min(per_antibody, len(rows)), replace=False)
        else:
            n_exact = min(len(exact), per_antibody // 2)
            n_cens = min(len(censored), per_antibody - n_exact)
            take = np.concatenate([rng.choice(exact, n_exact, replace=False),
                                   rng.choice(censored, n_cens, replace=False)])
        picked.append(np.sort(take))
    return frame.loc[np.concatenate(picked)].reset_index(drop=True)


def within_antibody(predictions: pd.DataFrame, antibody: np.ndarray, names: list[str], n_boot: int) -> dict:
    """Per antibody and predictor: metrics of the pooled out-of-fold predictions, and mean over folds."""
    out = {}
    ab = antibody[predictions["row"].to_numpy()]
    for name_ab in sorted(set(ab)):
        part = predictions[ab == name_ab]
        entry = {}
        for name in names:
            pooled = evaluate_predictions(part["pkd"], part[name], None, censored=part["censored"], n_boot=n_boot)
            folds = [evaluate_predictions(p["pkd"], p[name], None, censored=p["censored"], ci=False)["spearman"]
                     for _, p in part.groupby("fold")]
            folds = [v for v in folds if v is not None]
            entry[name] = {"pooled": pooled, "mean_over_folds": float(np.mean(folds)) if folds else None,
                           "sd_over_folds": float(np.std(folds, ddof=1)) if len(folds) > 1 else None}
        out[name_ab] = entry
    return out


def run_phillips(args, encoders, model_config, train_config) -> dict:
    started = time.perf_counter()
    zero_shot_config = train_config  # trained on saaintdb_dev with the default recipe
    train_config = dataclasses.replace(train_config, epochs=args.phillips_epochs)
    full, report = load_pairs(Path(args.data_dir) / "phillips2021_cr9114_cr6261.csv.gz")
    full = full.reset_index(drop=True)
    full["n_mutations"] = germline_distance(full)  # for the mutation-count line
    frame = phillips_subsample(full, args.phillips_per_antibody, seed=0)
    frame["variant"] = frame["antibody"] + ":" + frame["genotype"].astype(str)
    counts = {ab: {"rows": len(g), "censored": int(g["censored"].sum()),
                   "available": int((full["antibody"] == ab).sum()),
                   "available_censored": int(full.loc[full["antibody"] == ab, "censored"].sum())}
              for ab, g in frame.groupby("antibody")}
    heavy_tokens = int(sum(len(h) + 2 for h in set(frame["heavy"])))
    print(f"phillips subsample: {counts}; {frame['heavy'].nunique()} distinct heavy chains, "
          f"~{heavy_tokens} heavy-chain tokens to encode", flush=True)
    result = cross_validate(frame, model_config, train_config, folds=5, group_column="variant", fold_seed=0,
                            out_dir=args.out / "phillips", encoders=encoders, baselines=phillips_baselines,
                            n_boot=args.n_boot)
    print(format_cv_summary(result), flush=True)
    antibody = frame["antibody"].to_numpy()
    within = within_antibody(result.predictions, antibody, result.predictors, args.n_boot)

    # Zero-shot: trained on saaintdb_dev only (whole clusters held out for validation), applied to the subsample.
    zero_shot = run_zero_shot(args, encoders, model_config, zero_shot_config, frame)
    return {"rows": len(frame), "subsample": counts, "protocol": "5 random folds over variants "
            f"(subsample of {args.phillips_per_antibody} per antibody, seed 0; {args.phillips_epochs} epochs)",
            "within_antibody": within,
            "zero_shot": zero_shot, "pooled_both": result.pooled, "seconds": time.perf_counter() - started}


def run_zero_shot(args, encoders, model_config, train_config, target: pd.DataFrame) -> dict:
    from abag.identity.clustering import cluster_antigens
    from abag.inference import predict_frame
    from abag.training.run import train

    source, _ = load_pairs(Path(args.data_dir) / "saaintdb_dev.csv")
    groups = cluster_antigens(source["antigen"].tolist())
    split = fold_split(groups, np.zeros(0, dtype=np.int64), val_fraction=0.1, seed=0,
                       description="all of saaintdb_dev for training")
    result = train(source, args.out / "phillips_zero_shot", model_config, train_config, encoders=encoders,
                   split=split, log=lambda line: None)
    predicted = predict_frame(result.model, target, cache_dir=train_config.cache_dir)
    baselines = fit_baselines(source.iloc[split.indices("train")])
    out = {}
    for ab, part in predicted.groupby("antibody"):
        entry = {"model": evaluate_predictions(part["pkd"], part["pkd_pred"], None, censored=part["censored"],
                                               n_boot=args.n_boot)}
        for name, model in baselines.items():
            entry[name] = evaluate_predictions(part["pkd"], model.predict(part), None, censored=part["censored"],
                                               n_boot=args.n_boot)
        out[ab] = entry
    return out


# ----------------------------------------------------------------------------------------------- Phillips

class OneHotRidgeBaseline:
    """Ridge (RidgeCV over abag's RIDGE_ALPHAS) on the one-hot residue at every position of heavy and light.

    Meant for close variants of one antibody (substitutions only, equal lengths), where position i means
    the same residue in every row: chains are padded with '-' to the training rows' length (cut beyond it);
    a residue not seen at a position in training contributes nothing. Fitted on exact rows only.
    """

    name = "onehot_ridge"

    def fit(self, df: pd.DataFrame) -> OneHotRidgeBaseline:
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder

        rows = training_rows(df)
        self.lengths_ = {c: int(rows[c].fillna("").astype(str).str.len().max()) for c in ("heavy", "light")}
        self.pipeline_ = make_pipeline(OneHotEncoder(handle_unknown="ignore"), RidgeCV(alphas=RIDGE_ALPHAS))
        self.pipeline_.fit(self._positions(rows), rows["pkd"].to_numpy(dtype=float))
        return self

    def _positions(self, df: pd.DataFrame) -> np.ndarray:
        columns = []
        for chain, length in self.lengths_.items():
            if length:
                padded = df[chain].fillna("").astype(str).str.ljust(length, "-").str[:length]
                columns.append(np.array([list(s) for s in padded]))
        return np.hstack(columns)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict(self._positions(df))


class MutationCountBaseline:
    """Least-squares line pKd ~ substitutions from germline (`n_mutations`) on the exact training rows: how far
    "more somatic mutations, tighter binding" alone goes. It ranks nothing within one mutation count."""

    name = "mutation_count"

    def fit(self, df: pd.DataFrame) -> MutationCountBaseline:
        from sklearn.linear_model import LinearRegression

        rows = training_rows(df)
        self.line_ = LinearRegression().fit(rows[["n_mutations"]].to_numpy(float), rows["pkd"].to_numpy(float))
        return self

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return self.line_.predict(df[["n_mutations"]].to_numpy(float))


def phillips_baselines(train_df: pd.DataFrame) -> dict:
    """abag's baselines plus the one-hot ridge and the mutation-count line, fitted on the same rows."""
    return {**fit_baselines(train_df), "onehot_ridge": OneHotRidgeBaseline().fit(train_df),
            "mutation_count": MutationCountBaseline().fit(train_df)}


def germline_distance(frame: pd.DataFrame) -> np.ndarray:
    """Substitutions of each row's heavy + light chains from its antibody's germline row (positional frame).

    The germline row is the variant whose `genotype` holds no somatic allele ('1' = mature residue, as in
    Phillips et al. 2021); every variant must have the germline's chain lengths (substitutions only).
    """
    counts = np.zeros(len(frame), dtype=np.int64)
    for antibody, rows in frame.groupby("antibody", sort=True):
        germline = rows.loc[rows["genotype"].astype(str).str.count("1").idxmin()]
        for chain in ("heavy", "light"):
            reference = str(germline[chain] or "")
            chains = rows[chain].fillna("").astype(str)
            wrong = chains.str.len().to_numpy() != len(reference)
            if wrong.any():
                row = int(rows.index[np.argmax(wrong)])
                raise ValueError(f"row {row}, column {chain!r}: {antibody} variant of length "
                                 f"{len(chains[row])}, germline {len(reference)}; the extrapolation "
                                 f"protocol needs substitution variants of one germline")
            codes = np.frombuffer("".join(chains).encode("ascii"), np.uint8).reshape(len(rows), len(reference))
            counts[rows.index.to_numpy()] += (codes != np.frombuffer(reference.encode("ascii"), np.uint8)).sum(1)
    return counts


@dataclass(frozen=True)
class ExtrapolationSplit:
    """One antibody's split: train on variants with <= `max_train_mutations` substitutions, test on more."""

    antibody: str
    max_train_mutations: int
    frame: pd.DataFrame      # the subsample (training rows, then test rows) with `n_mutations` and `variant`
    test_rows: np.ndarray    # positions of the test rows in `frame`
    counts: dict             # rows available and taken, exact and censored, per part


def extrapolation_plan(frame: pd.DataFrame, min_train_exact: int = 300, test_exact: int = 300,
                       test_censored: int = 100, train_censored: int = 200, seed: int = 0) -> list[ExtrapolationSplit]:
    """Per antibody: k = the smallest substitution count whose variants (<= k) hold `min_train_exact` exact
    rows; training = every exact row <= k plus up to `train_censored` censored ones, test = up to
    `test_exact` exact and `test_censored` censored rows > k (seeded draws, `seed`)."""
    frame = frame.reset_index(drop=True)
    frame = frame.assign(n_mutations=germline_distance(frame),
                         variant=frame["antibody"].astype(str) + ":" + frame["genotype"].astype(str))
    rng = np.random.default_rng(seed)
    plans = []
    for antibody, rows in frame.groupby("antibody", sort=True):
        mutations, censored = rows["n_mutations"].to_numpy(), rows["censored"].to_numpy(bool)
        exact_up_to = pd.Series(~censored).groupby(mutations).sum().cumsum()
        enough = exact_up_to.index[(exact_up_to.to_numpy() >= min_train_exact) & (exact_up_to.index < mutations.max())]
        if not len(enough):
            raise ValueError(f"{antibody}: no substitution count k leaves >= {min_train_exact} exact training rows "
                             f"and variants with more than k substitutions to test")
        k = int(enough[0])
        low = mutations <= k

        def draw(mask: np.ndarray, n: int) -> np.ndarray:
            return np.sort(rng.choice(rows.index[mask], size=min(n, int(mask.sum())), replace=False))

        train = np.sort(np.concatenate([rows.index[low & ~censored], draw(low & censored, train_censored)]))
        test = np.concatenate([draw(~low & ~censored, test_exact), draw(~low & censored, test_censored)])
        part = frame.loc[np.concatenate([train, np.sort(test)])].reset_index(drop=True)
        counts = {"train_rows": len(train), "train_censored": int(part["censored"].iloc[:len(train)].sum()),
                  "test_rows": len(test), "test_censored": int(part["censored"].iloc[len(train):].sum()),
                  "available_train_exact": int((low & ~censored).sum()),
                  "available_train_censored": int((low & censored).sum()),
                  "available_test_exact": int((~low & ~censored).sum()),
                  "available_test_censored": int((~low & censored).sum())}
        if "n_somatic" in rows:
            somatic = pd.to_numeric(rows["n_somatic"], errors="coerce").to_numpy()  # extra columns load as text
            counts["n_somatic_agrees"] = bool(np.array_equal(somatic, mutations))
        plans.append(ExtrapolationSplit(str(antibody), k, part, np.arange(len(train), len(part)), counts))
    return plans


def score_extrapolation(plan: ExtrapolationSplit, runs: list[pd.DataFrame], n_boot: int) -> dict:
    """Metrics of every predictor on the test rows (censored rows never scored as exact), with the Spearman
    within equal-mutation-count levels and intervals resampling those levels; model rows per training seed."""
    from abag.folds.crossval import paired_spearman_difference

    def score(table: pd.DataFrame, column: str) -> dict:
        levels = plan.frame["n_mutations"].to_numpy()[table["row"].to_numpy()]
        return evaluate_predictions(table["pkd"], table[column], None, censored=table["censored"],
                                    n_boot=n_boot, groups=levels)

    first = runs[0]
    names = [c for c in first.columns if c not in ("row", "fold", "group", "pkd", "censored", "binder_prob")]
    metrics = {name: score(first, name) for name in names}
    per_seed = [score(table, "model") for table in runs]
    keys = ("spearman", "spearman_within_group", "rmse", "censored_violation_rate")
    metrics["model"]["per_seed"] = {key: [m[key] for m in per_seed] for key in keys}
    differences = {}
    for reference in ("onehot_ridge", "kmer_ridge"):
        differences[reference] = [paired_spearman_difference(t["pkd"], t["model"], t[reference],
                                                             censored=t["censored"], n_boot=n_boot)
                                  for t in runs]
    return {"max_train_mutations": plan.max_train_mutations, "counts": plan.counts, "metrics": metrics,
            "model_minus": differences}


def run_phillips_extrapolation(args, encoders, model_config, train_config) -> dict:
    started = time.perf_counter()
    full, _ = load_pairs(Path(args.data_dir) / "phillips2021_cr9114_cr6261.csv.gz")
    plans = extrapolation_plan(full, args.extrapolation_min_train, args.extrapolation_test,
                               args.extrapolation_test_censored, args.extrapolation_train_censored, seed=0)
    antibodies = {}
    for plan in plans:
        print(f"{plan.antibody}: train <= {plan.max_train_mutations} substitutions, {plan.counts}", flush=True)
        runs = []
        for r in range(args.repeats):
            config = dataclasses.replace(train_config, seed=train_config.seed + 100 * r)
            result = cross_validate(plan.frame, model_config, config, folds=[plan.test_rows], group_column="variant",
                                    out_dir=args.out / "phillips_extrapolation" / plan.antibody / f"repeat_{r}",
                                    encoders=encoders, baselines=phillips_baselines, n_boot=args.n_boot)
            print(format_cv_summary(result), flush=True)
            runs.append(result.predictions)
        antibodies[plan.antibody] = score_extrapolation(plan, runs, args.n_boot)
    return {"protocol": f"train on <= k substitutions from germline, test on more (k: smallest with >= "
                        f"{args.extrapolation_min_train} exact training rows; test subsample of "
                        f"{args.extrapolation_test} exact + {args.extrapolation_test_censored} censored rows, seed 0; "
                        f"validation = 10% of the training variants; {args.repeats} training seed(s))",
            "antibodies": antibodies, "seconds": time.perf_counter() - started}


# ----------------------------------------------------------------------------------------------- report

def markdown(summary: dict) -> str:
    lines = [f"Machine: {summary['machine']}. Model: `ModelConfig()` "
             f"(`{json.dumps(summary['model_config'])}`), `TrainConfig()` defaults (v2.7 recipe). "
             f"Total wall time {(summary['seconds'] + summary.get('earlier_seconds', 0)) / 60:.0f} min.", ""]
    if "saaintdb" in summary["sets"]:
        s = summary["sets"]["saaintdb"]
        lines += [f"**saaintdb_dev.csv** ({s['rows']} rows; {s['protocol']}; {s['seconds'] / 60:.1f} min)", "",
                  s["markdown"], ""]
    if "skempi" in summary["sets"]:
        s = summary["sets"]["skempi"]
        lines += [f"**skempi2_ab_ag.csv** ({s['rows']} rows; {s['protocol']}; per-fold Spearman = ranking "
                  f"within the held-out complex; folds with < 3 scored rows are left out of the mean; "
                  f"{s['seconds'] / 60:.1f} min)", "", s["markdown"], ""]
    for name in ("saaintdb", "skempi"):
        if name in summary["sets"] and "familiarity" in summary["sets"][name]:
            f = summary["sets"][name]["familiarity"]
            lines += [f"{name} test rows: mean antigen weight w {f['mean_weight']:.3f}, w > 0 for "
                      f"{f['fraction_weight_positive']:.1%}, w = 1 for {f['fraction_weight_one']:.1%} "
                      f"(the familiar-antigen correction's familiarity against each fold's training antigens)", ""]
    if "by_familiarity" in summary["sets"].get("skempi", {}):
        for label, m in summary["sets"]["skempi"]["by_familiarity"].items():
            lines.append(f"- SKEMPI complexes with a {label} antigen ({m['complexes']}): mean Spearman "
                         + ", ".join(f"{n} {fmt(v)}" for n, v in m.items() if n != "complexes"))
        lines.append("")
    if "phillips_extrapolation" in summary["sets"]:
        lines += extrapolation_markdown(summary["sets"]["phillips_extrapolation"])
    if "phillips" in summary["sets"]:
        s = summary["sets"]["phillips"]
        sub = "; ".join(f"{ab}: {c['rows']} of {c['available']} rows ({c['censored']} censored)"
                        for ab, c in s["subsample"].items())
        lines += [f"**phillips2021_cr9114_cr6261.csv.gz** ({sub}; {s['protocol']}; "
                  f"{s['seconds'] / 60:.1f} min). Spearman within each antibody, censored rows never scored:", "",
                  "| antibody | predictor | 5-fold CV: pooled Spearman [95% CI] | mean over folds | "
                  "zero-shot from saaintdb: Spearman [95% CI] |", "|---|---|---|---|---|"]
        for ab, entry in s["within_antibody"].items():
            for name, m in entry.items():
                zs = s["zero_shot"].get(ab, {}).get(name)
                lines.append(f"| {ab} | {name} | {ci_cell(m['pooled'])} (n={m['pooled']['n']}) | "
                             f"{fmt(m['mean_over_folds'])} | {ci_cell(zs) if zs else 'NA'} |")
        lines.append("")
    return "\n".join(lines)


def extrapolation_markdown(s: dict) -> list[str]:
    """Table of the extrapolation protocol (one row per antibody and predictor), then the paired differences."""
    lines = [f"**Phillips extrapolation** ({s['protocol']}; {s['seconds'] / 60:.1f} min). Censored rows never "
             "scored; levels = variants with the same number of substitutions:", "",
             "| antibody (train <= k) | predictor | Spearman [row CI] [level CI] | within levels [CI] (levels) "
             "| RMSE | censored > bound + 0.5 | model per seed |", "|---|---|---|---|---|---|---|"]
    notes = []
    for ab, entry in s["antibodies"].items():
        c = entry["counts"]
        label = (f"{ab} (k = {entry['max_train_mutations']}; {c['train_rows']} train / {c['test_rows']} test, "
                 f"{c['test_censored']} censored)")
        for name, m in entry["metrics"].items():
            level_ci = m.get("spearman_ci95_cluster") or [None, None]
            within_ci = m.get("spearman_within_group_ci95") or [None, None]
            seeds = ", ".join(fmt(v) for v in m["per_seed"]["spearman"]) if "per_seed" in m else ""
            lines.append(f"| {label} | {name} | {ci_cell(m)} [{fmt(level_ci[0], 2)}, {fmt(level_ci[1], 2)}] | "
                         f"{fmt(m.get('spearman_within_group'))} [{fmt(within_ci[0], 2)}, {fmt(within_ci[1], 2)}] "
                         f"({m.get('n_groups_within')}) | {fmt(m.get('rmse'))} | {fmt(m.get('censored_violation_rate'))} "
                         f"| {seeds} |")
        for reference, diffs in entry["model_minus"].items():
            notes.append(f"- {ab}: model − {reference} (paired row bootstrap, per seed): " + "; ".join(
                f"{fmt(d['difference'])} [{fmt(d['ci95'][0])}, {fmt(d['ci95'][1])}]" for d in diffs))
    return lines + [""] + notes + [""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_real")
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default: $ABAG_CACHE_DIR or ~/.cache)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--phillips-per-antibody", type=int, default=2000)
    parser.add_argument("--phillips-epochs", type=int, default=30,
                        help="epochs for the Phillips models (4,000 rows x 5 folds; the v2.7 default is 100)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for saaintdb/SKEMPI and the zero-shot model (default: the v2.7 100)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="training seed (TrainConfig.seed)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="phillips_extrapolation: training seeds seed, seed + 100, ... (seed-to-seed spread)")
    parser.add_argument("--extrapolation-min-train", type=int, default=300,
                        help="phillips_extrapolation: exact training rows that fix k (see extrapolation_plan)")
    parser.add_argument("--extrapolation-test", type=int, default=300, help="exact test rows per antibody")
    parser.add_argument("--extrapolation-test-censored", type=int, default=100, help="censored test rows per antibody")
    parser.add_argument("--extrapolation-train-censored", type=int, default=200,
                        help="censored training rows per antibody (at most)")
    parser.add_argument("--model", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override ModelConfig defaults, e.g. --model fusion=interaction (JSON values)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    overrides = {}
    for item in args.model:
        key, value = item.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    model_config = ModelConfig(**overrides)
    train_config = TrainConfig(progress=False, seed=args.seed, cache_dir=args.cache_dir or str(default_cache_dir()),
                               **({"epochs": args.epochs} if args.epochs else {}))
    encoders = {name: load_encoder(name) for name in {model_config.antibody_encoder, model_config.antigen_encoder}}
    summary = {"machine": machine(), "model_config": dataclasses.asdict(model_config),
               "train_config": dataclasses.asdict(train_config), "sets": {}}
    previous = args.out / "summary.json"
    if previous.exists():  # keep the other sets of an earlier run into the same folder (same model only)
        old = json.loads(previous.read_text())
        if old.get("model_config") == summary["model_config"]:
            summary["sets"] = {k: v for k, v in old.get("sets", {}).items() if k not in args.sets}
            summary["earlier_seconds"] = old.get("seconds", 0) + old.get("earlier_seconds", 0)
    runners = {"saaintdb": run_saaintdb, "skempi": run_skempi, "phillips": run_phillips,
               "phillips_extrapolation": run_phillips_extrapolation}
    for name in args.sets:
        print(f"=== {name} ===", flush=True)
        summary["sets"][name] = runners[name](args, encoders, model_config, train_config)
        summary["seconds"] = time.perf_counter() - started
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    summary["seconds"] = time.perf_counter() - started
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (args.out / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
