"""`abag predict` and `abag evaluate`: their options and what they run.

Both use a trained checkpoint (`abag.inference`); `predict` writes every input row with `pkd_pred`,
`binder_prob`, `pkd_std`, the parts `pkd_wide` and `pkd_deep` (`abag.inference.predict_frame`), the
`--coverage` interval `pkd_low`/`pkd_high`, the nearest training antigen and antibody identities and the
`applicability` class, and prints one or two lines on what the interval means and how many rows are novel.
`evaluate` prints the comparison table `abag train` prints (the model beside the checkpoint's training mean, the
one baseline a checkpoint carries) and the interval coverage, and writes the metrics as JSON with `--out` (or
prints them with `--json`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from abag.cli.common import (
    UsageError,
    add_cache_options,
    add_data_options,
    add_model_options,
    load_model,
    load_table,
    show_progress,
)
from abag.data.columns import free_column_name
from abag.evaluation.metrics import evaluate_predictions
from abag.evaluation.tables import format_comparison
from abag.inference import evaluate_frame, predict_frame
from abag.numbering import annotate
from abag.outputs import (
    ensure_writable_file,
    json_text,
    write_csv_atomic,
    write_json_atomic,
)
from abag.posthoc.intervals import (
    CALIBRATED_COVERAGES,
    DEFAULT_COVERAGE,
    PredictionSupport,
)

__all__ = ["add_predict_parsers", "run_predict", "run_evaluate", "coverage_option"]

OUTPUT_COLUMNS = ("pkd_pred", "binder_prob", "pkd_std", "pkd_wide", "pkd_deep", "pkd_correction", "pkd_low", "pkd_high",
                  "nearest_train_antigen_identity", "nearest_train_antibody_identity", "applicability")


def coverage_option(text: str) -> float:
    """--coverage: one of the calibrated coverages 0.05, 0.10, …, 0.95 (as a fraction or a percentage)."""

    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.8 or 80, got {text!r}") from None
    value = value / 100 if value > 1 else value
    match = [c for c in CALIBRATED_COVERAGES if abs(c - value) < 1e-9]
    if not match:
        raise argparse.ArgumentTypeError(f"must be one of the calibrated coverages 0.05, 0.10, …, 0.95 "
                                         f"(or 5 … 95 percent), got {text!r}")
    return match[0]


coverage_option.__name__ = "coverage"


def add_predict_parsers(commands) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add the `predict` and `evaluate` subcommands to `commands`; returns their parsers."""
    predict = commands.add_parser(
        "predict", help="predict pKd, an interval and an applicability flag for a CSV",
        description="Writes the input columns plus source_row, pkd_pred, binder_prob, pkd_std (the spread of a "
                    "--folds ensemble's members; 0 for a single model), pkd_wide and pkd_deep (the parts: pkd_pred "
                    "is the members' mean of clamp(wide + deep)), pkd_low and pkd_high (the --coverage "
                    "interval, calibrated on held-out residuals), nearest_train_antigen_identity, "
                    "nearest_train_antibody_identity and applicability (in-domain, novel-antigen, "
                    "novel-antibody or novel-both).")
    add_model_options(predict)
    predict.add_argument("--data", required=True, help="CSV/TSV, .xlsx, FASTA or AIRR TSV with heavy, light, antigen "
                                                       "(labels optional; docs/data-format.md)")
    predict.add_argument("--out", required=True, help="output CSV")
    predict.add_argument("--coverage", type=coverage_option, default=DEFAULT_COVERAGE,
                         help=f"share of true pKd values the pkd_low..pkd_high interval should hold, any of 0.05, "
                              f"0.10, …, 0.95 (default: {DEFAULT_COVERAGE:g})")
    predict.add_argument("--annotate", action="store_true",
                         help="add each row's IMGT annotation: heavy_domain, cdr_h1..cdr_h3, light_domain, "
                              "cdr_l1..cdr_l3 (numbered with anarcism)")
    predict.add_argument("--rejected", help="where --skip-invalid writes rejected rows (default: OUT.rejected.csv)")
    add_cache_options(predict, default_on=False)
    add_data_options(predict, skip_flag="--skip-invalid",
                     skip_help="predict the valid rows; write rejected rows with reasons to --rejected")
    predict.set_defaults(handler=run_predict)

    evaluate = commands.add_parser(
        "evaluate", help="score a checkpoint on a labelled file: the table abag train prints, JSON with --out",
        description="Prints the comparison table that abag train prints (n, Spearman with its bootstrap 95% CI, "
                    "Pearson, RMSE, MAE, R², binder AUROC) for the checkpoint on the file, and the observed coverage "
                    "of its --coverage interval per applicability class. Baselines: a checkpoint keeps no training "
                    "rows, so the k-mer ridge of abag train cannot be refitted here; the table shows train_mean, "
                    "the training mean pKd the checkpoint records, predicted for every row (RMSE, MAE and R² to "
                    "beat; a constant has no Spearman, shown as n/a). The full metrics (with per-class intervals "
                    "and the train_mean reference under 'baselines') go to --out as JSON, or to stdout with --json.")
    add_model_options(evaluate)
    evaluate.add_argument("--data", required=True, help="CSV/TSV, .xlsx, FASTA or AIRR TSV with heavy, light, antigen, "
                                                         "pkd (docs/data-format.md)")
    evaluate.add_argument("--out", metavar="FILE", help="also write the metrics as JSON to FILE (default: not written)")
    evaluate.add_argument("--json", action="store_true",
                          help="print the metrics as JSON on stdout instead of the table (for scripts)")
    evaluate.add_argument("--coverage", type=coverage_option, default=DEFAULT_COVERAGE,
                          help=f"nominal coverage of the interval to check (default: {DEFAULT_COVERAGE:g})")
    add_cache_options(evaluate, default_on=False)
    add_data_options(evaluate, skip_flag=None, skip_help="")
    evaluate.set_defaults(handler=run_evaluate)
    return predict, evaluate


def _rejected_path(args: argparse.Namespace) -> Path | None:

    out = Path(args.out)
    if args.skip_invalid:
        rejected = Path(args.rejected) if args.rejected else out.with_name(out.name + ".rejected.csv")
        if rejected.resolve() == out.resolve():
            raise UsageError("--rejected must differ from --out", "abag predict")
        return rejected
    if args.rejected:
        raise UsageError("--rejected only applies with --skip-invalid", "abag predict")
    return None


def run_predict(args: argparse.Namespace) -> int:

    out, rejected = Path(args.out), _rejected_path(args)
    # Fail before loading anything when the results cannot be written.
    ensure_writable_file(out, "--out")
    if rejected is not None:
        ensure_writable_file(rejected, "--rejected")
    model, _ = load_model(args)
    frame, report = load_table(args, require_pkd=False)
    # Input columns that share a name with an output column are kept, renamed, never overwritten.
    frame = frame.rename(columns={c: free_column_name(f"{c}_input", frame.columns)
                                  for c in OUTPUT_COLUMNS if c in frame})
    predicted = predict_frame(model, frame, cache_dir=args.embedding_cache, progress=show_progress(args),
                              coverage=args.coverage)
    predicted = predicted.drop(columns=[c for c in ("censored",) if c in predicted and not predicted[c].any()])
    if args.annotate:
        annotation = annotate(predicted["heavy"].tolist(), predicted["light"].tolist())
        annotation.columns = [free_column_name(c, predicted.columns) for c in annotation.columns]
        predicted = pd.concat([predicted.reset_index(drop=True), annotation], axis=1)
    if rejected is not None:
        write_csv_atomic(rejected, report.rejected_frame())
    write_csv_atomic(out, predicted)
    print(f"wrote {len(predicted)} predictions to {out}", file=sys.stderr)
    support = getattr(model, "prediction_support", None) or PredictionSupport(None, None, None)
    print(support.summary(predicted, args.coverage), file=sys.stderr)
    if rejected is not None:
        print(f"wrote {len(report.rejected)} rejected rows with reasons to {rejected} "
              f"({report.n_rows_kept} valid + {len(report.rejected)} rejected = {report.n_rows_read} data rows)",
              file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:

    if args.out:  # fail before loading anything when the results cannot be written
        ensure_writable_file(args.out, "--out")
    model, state = load_model(args)
    frame, _ = load_table(args, require_pkd=True)
    threshold = state["config"]["train"].get("binder_threshold", 9.0)
    metrics = evaluate_frame(model, frame, binder_threshold=threshold, cache_dir=args.embedding_cache,
                             coverage=args.coverage)
    reference = _training_mean_reference(state, frame, threshold)
    metrics["baselines"] = {} if reference is None else {"train_mean": reference}
    if args.out:
        write_json_atomic(args.out, metrics)
    if args.json:
        sys.stdout.write(json_text(metrics))
    else:
        print(evaluation_text(metrics, f"{args.data} ({len(frame)} rows)"))
    if args.out:
        print(f"wrote the metrics (JSON) to {args.out}", file=sys.stderr)
    return 0


def _training_mean_reference(state: dict, frame, threshold: float) -> dict | None:
    """train_mean on this file: the training mean pKd the checkpoint records (`initial_pkd`, set to the mean of
    the training rows when the run started), predicted for every row. None for a checkpoint without it."""
    model_settings = state["config"].get("model", {}) if isinstance(state.get("config"), dict) else {}
    mean = model_settings.get("initial_pkd") if isinstance(model_settings, dict) else None
    if not isinstance(mean, (int, float)) or not np.isfinite(mean):
        return None
    censored = frame["censored"].to_numpy(dtype=bool) if "censored" in frame else None
    result = evaluate_predictions(frame["pkd"].to_numpy(dtype=float), np.full(len(frame), float(mean)), None,
                                  censored=censored, threshold=threshold, ci=False)
    return {**result, "method": f"training mean pKd recorded in the checkpoint ({float(mean):.3f}), every row",
            "constant": True}


def evaluation_text(metrics: dict, title: str) -> str:
    """The comparison table (model, then the reference rows) and the interval coverage per applicability class."""
    lines = [format_comparison({"model": metrics, **metrics.get("baselines", {})}, title=title)]
    intervals = metrics.get("intervals")
    if intervals:
        nominal = intervals["nominal_coverage"]
        parts = [f"{name} {_share(entry['coverage'])} of {entry['n']}"
                 for name, entry in intervals["coverage"].items() if entry.get("n")]
        lines.append(f"\n{nominal:.0%} interval, share of true pKd inside: " + "; ".join(parts))
    else:
        lines.append("\nno interval check: the checkpoint has no interval calibration")
    return "\n".join(lines)


def _share(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"
