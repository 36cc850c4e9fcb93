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
cluster-bootstrap intervals, and the antigen familiarity of its test rows (the additive head's weight w,
`abag.novelty`, against each fold's training antigens), which says what the protocol measures for a head
that uses the antigen only where it is familiar.

`--model FIELD=VALUE ...` overrides ModelConfig defaults (e.g. `--model fusion=additive`).
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
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from abag import ModelConfig, TrainConfig, load_pairs  # noqa: E402
from abag.baselines import RIDGE_ALPHAS, fit_baselines, training_rows  # noqa: E402
from abag.crossval import cross_validate, format_cv_markdown, format_cv_summary, fold_split  # noqa: E402
from abag.embedding_cache import default_cache_dir  # noqa: E402
from abag.encoders import load_encoder  # noqa: E402
from abag.metrics import evaluate_predictions  # noqa: E402
from abag.novelty import NoveltyReference  # noqa: E402
from abag.splits import fold_groups  # noqa: E402
from bench_common import machine as host_machine  # noqa: E402

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

def run_saaintdb(args, encoders, model_config, train_config) -> dict:
    frame, report = load_pairs(Path(args.data_dir) / "saaintdb_dev.csv")
    result = cross_validate(frame, model_config, train_config, folds=5, fold_seed=0, out_dir=args.out / "saaintdb",
                            encoders=encoders, n_boot=args.n_boot)
    print(format_cv_summary(result), flush=True)
    return {"rows": len(frame), "protocol": result.protocol, "markdown": format_cv_markdown(result),
            "mean": result.mean, "pooled": result.pooled, "difference": result.difference,
            "per_fold": [{n: m.get("spearman") for n, m in f.metrics.items()} for f in result.folds],
            "seconds": result.seconds}


def run_skempi(args, encoders, model_config, train_config) -> dict:
    frame, report = load_pairs(Path(args.data_dir) / "skempi2_ab_ag.csv")
    result = cross_validate(frame, model_config, train_config, folds="logo", group_column="skempi_complex",
                            out_dir=args.out / "skempi", encoders=encoders, n_boot=args.n_boot)
    print(format_cv_summary(result, max_folds=40), flush=True)
    complexes = frame["skempi_complex"].to_numpy()
    per_fold = []
    for f in result.folds:
        rows = result.predictions.loc[result.predictions.fold == f.fold, "row"]
        per_fold.append({"complex": str(complexes[rows.iloc[0]]), "n": f.n_test,
                         **{n: m.get("spearman") for n, m in f.metrics.items()}})
    return {"rows": len(frame), "protocol": result.protocol, "markdown": format_cv_markdown(result),
            "mean": result.mean, "pooled": result.pooled, "difference": result.difference,
            "per_fold": per_fold, "seconds": result.seconds}


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
    frame = phillips_subsample(full, args.phillips_per_antibody, seed=0)
    frame["variant"] = frame["antibody"] + ":" + frame["genotype"].astype(str)
    counts = {ab: {"rows": int(len(g)), "censored": int(g["censored"].sum()),
                   "available": int((full["antibody"] == ab).sum()),
                   "available_censored": int(full.loc[full["antibody"] == ab, "censored"].sum())}
              for ab, g in frame.groupby("antibody")}
    heavy_tokens = int(sum(len(h) + 2 for h in set(frame["heavy"])))
    print(f"phillips subsample: {counts}; {frame['heavy'].nunique()} distinct heavy chains, "
          f"~{heavy_tokens} heavy-chain tokens to encode", flush=True)
    result = cross_validate(frame, model_config, train_config, folds=5, group_column="variant", fold_seed=0,
                            out_dir=args.out / "phillips", encoders=encoders, n_boot=args.n_boot)
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
    from abag.inference import predict_frame
    from abag.splits import cluster_antigens
    from abag.train import train

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
    train_config = TrainConfig(progress=False, cache_dir=args.cache_dir or str(default_cache_dir()),
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
    runners = {"saaintdb": run_saaintdb, "skempi": run_skempi, "phillips": run_phillips}
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
