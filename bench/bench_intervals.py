"""Honest check of abag's prediction intervals: coverage on rows no model (and no calibration) has seen.

    ABAG_CACHE_DIR=/tmp/abag-cache python bench/bench_intervals.py [--set saaintdb|phillips] [--folds clusters|random]
        [--outer 5] [--inner 3] [--threads 1] [--data-dir ../shared/data] [--out runs/bench_intervals] [--epochs N]
        [--max-rows N] [--phillips-per-antibody N]

For each of `--outer` folds, a fold ensemble (`abag.kfold.train_folds`, `--inner` members) is trained on the
other folds, calibrated on its own out-of-fold residuals exactly as `abag train --folds K` does, and saved; the
held-out outer fold is then predicted from that checkpoint with `abag.inference.predict_frame`, so the
intervals, identities and applicability classes are the product's. `--folds clusters` (the default for
saaintdb_dev) keeps whole antigen clusters (40 % identity, `abag.crossval.make_folds`) apart, outer and inner, so
every held-out row is novel; `--folds random` (the default for `--set phillips`, variants of two antibodies)
deals rows at random, outer and inner, so held-out rows are in-domain. Phillips is a seeded subsample
(`--phillips-per-antibody` rows per antibody, half of CR9114's at the assay floor; censored rows train with the
one-sided loss and are never scored), drawn with bench_real_data's `phillips_subsample`.

Reported per applicability class and for in-domain vs novel rows: observed coverage and mean width of the
50/80/90/95 % intervals, Spearman(|error|, pkd_std), the share flagged novel, and the coverages of the first
calibration (|error| / (pkd_std + floor) per class, pkd_std the spread of all inner members on the calibration
rows) refitted on the same out-of-fold rows, so the two compare on the same predictions. The product owner's
target: the 80 % interval covers 72–88 % of unseen-cluster rows, and most of them are flagged novel. Writes
OUT/summary.json, OUT/summary.md and OUT/calibration.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_common import machine  # noqa: E402

from abag.data.folds import make_folds  # noqa: E402
from abag.data.pipeline import load_pairs  # noqa: E402
from abag.encoding.loader import load_encoder  # noqa: E402
from abag.folds.members import train_folds  # noqa: E402
from abag.inference import load_trained_model, predict_frame  # noqa: E402
from abag.model.config import ModelConfig
from abag.posthoc.intervals import (  # noqa: E402
    IntervalCalibration,
    IntervalScale,
    interval_coverage,
    interval_report,
)
from abag.training.config import TrainConfig

COVERAGES = (0.5, 0.8, 0.9, 0.95)


def outer_fold(frame: pd.DataFrame, train_rows: np.ndarray, test_rows: np.ndarray, args, encoders: dict,
               fold: int) -> pd.DataFrame:
    """Train the inner fold ensemble on `train_rows`, predict `test_rows` from its saved checkpoint."""
    grouping = {"split": "group", "group_column": "fold_unit"} if args.folds == "random" else {}
    config = TrainConfig(progress=False, cache_dir=args.cache_dir, seed=fold, **grouping,
                         **({"epochs": args.epochs} if args.epochs else {}))
    out = args.out / f"outer_{fold}"
    result = train_folds(frame.iloc[train_rows].reset_index(drop=True), out, ModelConfig(), config,
                         folds=args.inner, encoders=encoders, log=lambda _: None)
    model, _ = load_trained_model(result.best_checkpoint, "cpu", encoders=encoders)
    predicted = predict_frame(model, frame.iloc[test_rows], cache_dir=args.cache_dir, coverage=0.8)
    calibration = model.prediction_support.calibration
    first = first_calibration(pd.read_csv(out / "test_predictions.csv"))
    novelty = (predicted["nearest_train_antigen_identity"], predicted["nearest_train_antibody_identity"])
    for c in COVERAGES:
        predicted[f"low_{c:g}"], predicted[f"high_{c:g}"] = calibration.interval(
            predicted["pkd_pred"], predicted["pkd_std"], predicted["applicability"], c, *novelty)
        predicted[f"first_low_{c:g}"], predicted[f"first_high_{c:g}"] = first.interval(
            predicted["pkd_pred"], predicted["pkd_std"], predicted["applicability"], c)
    predicted["outer_fold"] = fold
    predicted["row"] = test_rows
    predicted.attrs["calibration"] = calibration
    return predicted


def first_calibration(out_of_fold: pd.DataFrame) -> IntervalCalibration:
    """The first calibration, refitted on the inner out-of-fold table: |error| / (pkd_std + floor) per class,
    with pkd_std the spread of all inner members (each trained on every row but its own fold's)."""
    std = out_of_fold["pkd_std"].to_numpy(float)
    censored = out_of_fold["censored"].to_numpy(bool) if "censored" in out_of_fold else None
    return IntervalCalibration.fit(out_of_fold["pkd"], out_of_fold["pkd_pred"], std, out_of_fold["applicability"],
                                   coverages=COVERAGES, censored=censored, scale=IntervalScale.fixed(std))


def summarise(table: pd.DataFrame, prefix: str = "") -> dict:
    """Coverage and width per class and nominal level, Spearman(|err|, std), share novel (censored rows left out)."""
    from scipy import stats

    y, pred, std = (table[c].to_numpy(float) for c in ("pkd", "pkd_pred", "pkd_std"))
    classes = table["applicability"].to_numpy(object)
    censored = table["censored"].to_numpy(bool) if "censored" in table else np.zeros(len(table), bool)
    levels = {}
    for c in COVERAGES:
        low, high = table[f"{prefix}low_{c:g}"].to_numpy(float), table[f"{prefix}high_{c:g}"].to_numpy(float)
        by_class = interval_coverage(y, low, high, classes, censored)
        novel = classes != "in-domain"
        by_class["novel"] = interval_coverage(y[novel], low[novel], high[novel], None, censored[novel])["all"]
        levels[f"{c:g}"] = by_class
    error, spread = np.abs(y - pred)[~censored], std[~censored]
    rho = stats.spearmanr(error, spread).statistic if np.ptp(spread) > 0 else float("nan")
    return {"rows": len(table), "rows_scored": int((~censored).sum()),
            "share_novel_antigen": float(np.isin(classes, ["novel-antigen", "novel-both"]).mean()),
            "share_novel": float((classes != "in-domain").mean()),
            "classes": {str(k): int(v) for k, v in pd.Series(classes).value_counts().items()},
            "coverage": levels, "spearman_abs_error_vs_pkd_std": float(rho)}


def markdown(name: str, summary: dict, first: dict, per_fold: list[dict], seconds: float) -> list[str]:
    lines = [f"**{name}** ({summary['rows']} rows, {summary['rows_scored']} exact; {seconds / 60:.1f} min): "
             f"{summary['share_novel']:.0%} of held-out rows flagged novel ({summary['share_novel_antigen']:.0%} "
             f"novel-antigen or novel-both); Spearman(|error|, pkd_std) = "
             f"{summary['spearman_abs_error_vs_pkd_std']:.3f}", "",
             "| group | rows | " + " | ".join(f"{c:.0%}: coverage (width)" for c in COVERAGES)
             + " | first calibration " + " / ".join(f"{c:.0%}" for c in COVERAGES) + " |",
             "|---|---|" + "---|" * len(COVERAGES) + "---|"]
    for group in ("all", "in-domain", "novel", "novel-antigen", "novel-antibody", "novel-both"):
        cells = [summary["coverage"][f"{c:g}"][group] for c in COVERAGES]
        if not cells[0]["n"]:
            continue
        old = [first["coverage"][f"{c:g}"][group] for c in COVERAGES]
        lines.append(f"| {group} | {cells[0]['n']} | "
                     + " | ".join(f"{x['coverage']:.3f} ({x['mean_width']:.2f})" for x in cells)
                     + " | " + " / ".join(f"{x['coverage']:.3f}" for x in old) + " |")
    lines += ["", "Per outer fold, 80% interval: " + "; ".join(
        f"fold {f['fold']}: {f['coverage_80']:.3f} (n {f['n']}, width {f['width_80']:.2f})" for f in per_fold), ""]
    return lines


def load_set(args) -> tuple[pd.DataFrame, str]:
    """The benchmark table with a `fold_unit` column (one unit per row, what random folds deal), and its name."""
    if args.set == "phillips":
        from bench_real_data import phillips_subsample

        full, _ = load_pairs(Path(args.data_dir) / "phillips2021_cr9114_cr6261.csv.gz")
        frame = phillips_subsample(full.reset_index(drop=True), args.phillips_per_antibody, seed=0)
        name = f"phillips2021_cr9114_cr6261.csv.gz ({args.phillips_per_antibody} per antibody, seed 0)"
    else:
        frame, _ = load_pairs(Path(args.data_dir) / "saaintdb_dev.csv")
        name = "saaintdb_dev.csv"
    if args.max_rows:
        frame = frame.sample(n=min(args.max_rows, len(frame)), random_state=0).reset_index(drop=True)
    frame["fold_unit"] = np.arange(len(frame))
    return frame, name


def run(args) -> dict:
    frame, name = load_set(args)
    encoders = {"antiberty": load_encoder("antiberty")}
    group_column = "fold_unit" if args.folds == "random" else None
    _, tests, protocol = make_folds(frame, args.outer, group_column=group_column, seed=0)
    started, parts, per_fold = time.perf_counter(), [], []
    for fold, test_rows in enumerate(tests):
        train_rows = np.setdiff1d(np.arange(len(frame)), test_rows)
        part = outer_fold(frame, train_rows, np.asarray(test_rows), args, encoders, fold)
        calibration = part.attrs["calibration"]
        report = interval_report(part["pkd"], part["pkd_pred"], part["pkd_std"], part["applicability"],
                                 calibration, 0.8, part["censored"] if "censored" in part else None,
                                 part["nearest_train_antigen_identity"], part["nearest_train_antibody_identity"])
        per_fold.append({"fold": fold, "n": report["coverage"]["all"]["n"],
                         "coverage_80": report["coverage"]["all"]["coverage"],
                         "width_80": report["coverage"]["all"]["mean_width"],
                         "calibration_rows": calibration.counts, "scale": calibration.scale.to_state()})
        print(f"outer fold {fold + 1}/{len(tests)}: 80% coverage {per_fold[-1]['coverage_80']:.3f} on "
              f"{per_fold[-1]['n']} rows ({time.perf_counter() - started:.0f}s)", flush=True)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    table.drop(columns=[c for c in ("heavy", "light", "antigen") if c in table]).to_csv(
        args.out / "held_out_predictions.csv", index=False)
    seconds = time.perf_counter() - started
    summary, first = summarise(table), summarise(table, "first_")
    inner = "random rows" if args.folds == "random" else "antigen clusters"
    result = {"set": args.set, "folds": args.folds,
              "protocol": f"outer: {protocol}; inner: {args.inner}-fold ensemble over {inner} per outer fold, "
                          f"calibrated on its out-of-fold residuals", "machine": machine(), "threads": args.threads,
              "seconds": seconds, "summary": summary, "first_calibration": first, "per_fold": per_fold}
    (args.out / "summary.json").write_text(json.dumps(result, indent=2))
    lines = [f"Protocol: {result['protocol']}.", f"Machine: {result['machine']}; torch threads {args.threads}.", ""]
    lines += markdown(name, summary, first, per_fold, seconds)
    (args.out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))
    plot(table, args.out / "calibration.png", name)
    return result


def plot(table: pd.DataFrame, path: Path, name: str) -> None:
    from abag.plots import plot_calibration

    figure = plot_calibration(table["pkd"], table["pkd_pred"], table["pkd_std"], table["applicability"],
                              low_high={c: (table[f"low_{c:g}"], table[f"high_{c:g}"]) for c in COVERAGES},
                              censored=table["censored"] if "censored" in table else None,
                              title=f"held-out rows: {name}")
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_intervals")
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default: $ABAG_CACHE_DIR or ~/.cache)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", choices=("saaintdb", "phillips"), default="saaintdb")
    parser.add_argument("--folds", choices=("clusters", "random"), default=None,
                        help="clusters: whole antigen clusters per fold (default for saaintdb); random: rows dealt "
                             "at random, so held-out rows are in-domain (default for phillips)")
    parser.add_argument("--phillips-per-antibody", type=int, default=600)
    parser.add_argument("--outer", type=int, default=5)
    parser.add_argument("--inner", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per member (default: the TrainConfig one)")
    parser.add_argument("--max-rows", type=int, default=None, help="seeded subsample (smoke runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.folds is None:
        args.folds = "random" if args.set == "phillips" else "clusters"
    if args.cache_dir is None:
        from abag.encoding.embedding_cache import default_cache_dir

        args.cache_dir = str(default_cache_dir())
    args.out.mkdir(parents=True, exist_ok=True)
    run(args)


if __name__ == "__main__":
    main()
