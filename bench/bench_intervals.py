"""Honest check of abag's prediction intervals: coverage on antigen clusters no model has seen.

    ABAG_CACHE_DIR=/tmp/abag-cache python bench/bench_intervals.py [--outer 5] [--inner 3] [--threads 1]
        [--data-dir ../shared/data] [--out runs/bench_intervals] [--epochs N] [--max-rows N]

For each of `--outer` folds of whole antigen clusters (40 % identity, `abag.crossval.make_folds`), a fold
ensemble (`abag.kfold.train_folds`, `--inner` members) is trained on the other folds, calibrated on its own
out-of-fold residuals exactly as `abag train --folds K` does, and saved; the held-out outer fold is then
predicted from that checkpoint with `abag.inference.predict_frame`, so the intervals, identities and
applicability classes are the product's. Reported per applicability class and for in-domain vs novel rows:
observed coverage of the 50/80/90/95 % intervals, mean width, Spearman(|error|, pkd_std), and the share
flagged novel. The product owner's target: the 80 % interval covers 72–88 % of unseen-cluster rows, and most
of them are flagged novel. Writes OUT/summary.json, OUT/summary.md and OUT/calibration.png.
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

from abag import ModelConfig, TrainConfig, load_pairs  # noqa: E402
from abag.crossval import make_folds  # noqa: E402
from abag.encoders import load_encoder  # noqa: E402
from abag.inference import load_trained_model, predict_frame  # noqa: E402
from abag.intervals import interval_coverage, interval_report  # noqa: E402
from abag.kfold import train_folds  # noqa: E402
from bench_common import machine  # noqa: E402

COVERAGES = (0.5, 0.8, 0.9, 0.95)


def outer_fold(frame: pd.DataFrame, train_rows: np.ndarray, test_rows: np.ndarray, args, encoders: dict,
               fold: int) -> pd.DataFrame:
    """Train the inner fold ensemble on `train_rows`, predict `test_rows` from its saved checkpoint."""
    config = TrainConfig(progress=False, cache_dir=args.cache_dir, seed=fold,
                         **({"epochs": args.epochs} if args.epochs else {}))
    result = train_folds(frame.iloc[train_rows].reset_index(drop=True), args.out / f"outer_{fold}", ModelConfig(),
                         config, folds=args.inner, encoders=encoders, log=lambda _: None)
    model, _ = load_trained_model(result.best_checkpoint, "cpu", encoders=encoders)
    predicted = predict_frame(model, frame.iloc[test_rows], cache_dir=args.cache_dir, coverage=0.8)
    calibration = model.prediction_support.calibration
    for c in COVERAGES:
        low, high = calibration.interval(predicted["pkd_pred"], predicted["pkd_std"], predicted["applicability"], c)
        predicted[f"low_{c:g}"], predicted[f"high_{c:g}"] = low, high
    predicted["outer_fold"] = fold
    predicted["row"] = test_rows
    predicted.attrs["calibration"] = calibration
    return predicted


def summarise(table: pd.DataFrame) -> dict:
    """Coverage per class and nominal level, width, Spearman(|err|, std), share novel (censored rows left out)."""
    y, pred, std = (table[c].to_numpy(float) for c in ("pkd", "pkd_pred", "pkd_std"))
    classes = table["applicability"].to_numpy(object)
    censored = table["censored"].to_numpy(bool) if "censored" in table else np.zeros(len(table), bool)
    levels = {}
    for c in COVERAGES:
        low, high = table[f"low_{c:g}"].to_numpy(float), table[f"high_{c:g}"].to_numpy(float)
        by_class = interval_coverage(y, low, high, classes, censored)
        novel = classes != "in-domain"
        by_class["novel"] = interval_coverage(y[novel], low[novel], high[novel], None, censored[novel])["all"]
        levels[f"{c:g}"] = by_class
    error = np.abs(y - pred)[~censored]
    from scipy import stats

    rho = stats.spearmanr(error, std[~censored]).statistic
    return {"rows": len(table), "rows_scored": int((~censored).sum()),
            "share_novel_antigen": float(np.isin(classes, ["novel-antigen", "novel-both"]).mean()),
            "classes": {str(k): int(v) for k, v in pd.Series(classes).value_counts().items()},
            "coverage": levels, "spearman_abs_error_vs_pkd_std": float(rho)}


def markdown(name: str, summary: dict, per_fold: list[dict], seconds: float) -> list[str]:
    lines = [f"**{name}** ({summary['rows']} rows, {summary['rows_scored']} exact; {seconds / 60:.1f} min): "
             f"{summary['share_novel_antigen']:.0%} of held-out rows flagged novel-antigen or novel-both; "
             f"Spearman(|error|, pkd_std) = {summary['spearman_abs_error_vs_pkd_std']:.3f}", "",
             "| group | rows | " + " | ".join(f"{c:.0%} coverage" for c in COVERAGES) + " | 80% mean width |",
             "|---|---|" + "---|" * len(COVERAGES) + "---|"]
    for group in ("all", "in-domain", "novel", "novel-antigen", "novel-antibody", "novel-both"):
        cells = [summary["coverage"][f"{c:g}"][group] for c in COVERAGES]
        if not cells[0]["n"]:
            continue
        width = cells[1]["mean_width"]
        lines.append(f"| {group} | {cells[0]['n']} | " + " | ".join(f"{x['coverage']:.3f}" for x in cells)
                     + f" | {width:.2f} |")
    lines += ["", "Per outer fold, 80% interval: " + "; ".join(
        f"fold {f['fold']}: {f['coverage_80']:.3f} (n {f['n']}, width {f['width_80']:.2f})" for f in per_fold), ""]
    return lines


def run(args) -> dict:
    frame, _ = load_pairs(Path(args.data_dir) / "saaintdb_dev.csv")
    if args.max_rows:
        frame = frame.sample(n=min(args.max_rows, len(frame)), random_state=0).reset_index(drop=True)
    encoders = {"antiberty": load_encoder("antiberty")}
    _, tests, protocol = make_folds(frame, args.outer, seed=0)
    started, parts, per_fold = time.perf_counter(), [], []
    for fold, test_rows in enumerate(tests):
        train_rows = np.setdiff1d(np.arange(len(frame)), test_rows)
        part = outer_fold(frame, train_rows, np.asarray(test_rows), args, encoders, fold)
        calibration = part.attrs["calibration"]
        report = interval_report(part["pkd"], part["pkd_pred"], part["pkd_std"], part["applicability"],
                                 calibration, 0.8, part["censored"] if "censored" in part else None)
        per_fold.append({"fold": fold, "n": report["coverage"]["all"]["n"],
                         "coverage_80": report["coverage"]["all"]["coverage"],
                         "width_80": report["coverage"]["all"]["mean_width"],
                         "calibration_rows": calibration.counts})
        print(f"outer fold {fold + 1}/{len(tests)}: 80% coverage {per_fold[-1]['coverage_80']:.3f} on "
              f"{per_fold[-1]['n']} rows ({time.perf_counter() - started:.0f}s)", flush=True)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    table.drop(columns=[c for c in ("heavy", "light", "antigen") if c in table]).to_csv(
        args.out / "held_out_predictions.csv", index=False)
    seconds = time.perf_counter() - started
    summary = summarise(table)
    result = {"protocol": f"outer: {protocol}; inner: {args.inner}-fold ensemble per outer fold, calibrated on "
                          f"its out-of-fold residuals", "machine": machine(), "threads": args.threads,
              "seconds": seconds, "saaintdb": summary, "per_fold": per_fold}
    (args.out / "summary.json").write_text(json.dumps(result, indent=2))
    lines = [f"Protocol: {result['protocol']}.", f"Machine: {result['machine']}; torch threads {args.threads}.", ""]
    lines += markdown("saaintdb_dev.csv", summary, per_fold, seconds)
    (args.out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))
    plot(table, args.out / "calibration.png")
    return result


def plot(table: pd.DataFrame, path: Path) -> None:
    from abag.plots import plot_calibration

    figure = plot_calibration(table["pkd"], table["pkd_pred"], table["pkd_std"], table["applicability"],
                              low_high={c: (table[f"low_{c:g}"], table[f"high_{c:g}"]) for c in COVERAGES},
                              censored=table["censored"] if "censored" in table else None,
                              title="held-out antigen clusters (saaintdb_dev)")
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_intervals")
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default: $ABAG_CACHE_DIR or ~/.cache)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--outer", type=int, default=5)
    parser.add_argument("--inner", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per member (default: the TrainConfig one)")
    parser.add_argument("--max-rows", type=int, default=None, help="seeded subsample (smoke runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.cache_dir is None:
        from abag.embedding_cache import default_cache_dir

        args.cache_dir = str(default_cache_dir())
    args.out.mkdir(parents=True, exist_ok=True)
    run(args)


if __name__ == "__main__":
    main()
