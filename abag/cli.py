"""The `abag` command line: `abag train`, `abag predict`, `abag evaluate`.

Every error a user can act on ends as one line on stderr (`abag: error: …`) and a non-zero exit code:
2 for bad input, files or encoders, 3 for a diverged run, 130 for Ctrl-C. Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .errors import AbagError

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="abag", description="Antibody–antigen binding affinity (pKd) from sequence.")
    parser.add_argument("--version", action="version", version=f"abag {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model on a CSV and write metrics, history and checkpoints",
                                description="Split the data, train with the v2.7 recipe, evaluate on held-out "
                                            "antigens next to baselines, write DIR/metrics.json.")
    train.add_argument("--data", required=True, help="CSV with heavy, light, antigen, pkd (see README: data format)")
    train.add_argument("--out", required=True, help="run folder: metrics.json, history.csv, checkpoints/")
    train.add_argument("--encoder", default="antiberty",
                       help="encoder for antibody and antigen: tiny, antiberty, or a Hugging Face id (default antiberty)")
    train.add_argument("--antibody-encoder", help="override --encoder for heavy/light chains")
    train.add_argument("--antigen-encoder", help="override --encoder for the antigen")
    train.add_argument("--epochs", type=int, default=100)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--gradient-accumulation", type=int, default=8)
    train.add_argument("--weight-decay", type=float, default=1e-5)
    train.add_argument("--dropout", type=float, default=0.1)
    train.add_argument("--hidden-dim", type=int, default=256)
    train.add_argument("--early-stopping-patience", type=int, default=15)
    train.add_argument("--finetune-layers", type=int, default=0,
                       help="fine-tune the last N encoder layers (turns the embedding cache off)")
    train.add_argument("--split", choices=("antigen", "random", "stratified", "group"), default="antigen",
                       help="antigen: whole antigen clusters per part (default); random; stratified by pKd bin; "
                            "group: whole values of --group-column")
    train.add_argument("--group-column", help="column holding groups for --split group")
    train.add_argument("--split-identity", type=float, default=0.4,
                       help="sequence identity that joins antigens into one cluster (default 0.4)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    train.add_argument("--no-mixed-precision", action="store_true", help="fp32 on CUDA too")
    _add_cache_options(train)
    _add_data_options(train, skip_flag="--drop-invalid",
                      skip_help="drop invalid rows instead of stopping; they are listed in OUT/rejected_rows.csv")
    train.set_defaults(handler=run_train)

    predict = commands.add_parser("predict", help="predict pKd and binder probability for a CSV",
                                  description="Writes the input columns plus pkd_pred and binder_prob.")
    predict.add_argument("--checkpoint", required=True, help="a best.pt or last.pt written by abag train")
    predict.add_argument("--data", required=True, help="CSV with heavy, light, antigen (pkd optional)")
    predict.add_argument("--out", required=True, help="output CSV")
    predict.add_argument("--rejected", help="where --skip-invalid writes rejected rows (default: OUT.rejected.csv)")
    predict.add_argument("--device", default="auto")
    _add_cache_options(predict, default_on=False)
    _add_data_options(predict, skip_flag="--skip-invalid",
                      skip_help="predict the valid rows; write rejected rows with reasons to --rejected")
    predict.set_defaults(handler=run_predict)

    evaluate = commands.add_parser("evaluate", help="print metrics of a checkpoint on a labelled CSV as JSON")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--data", required=True, help="CSV with heavy, light, antigen, pkd")
    evaluate.add_argument("--device", default="auto")
    _add_cache_options(evaluate, default_on=False)
    _add_data_options(evaluate, skip_flag=None, skip_help="")
    evaluate.set_defaults(handler=run_evaluate)
    return parser


def _add_cache_options(parser: argparse.ArgumentParser, default_on: bool = True) -> None:
    parser.add_argument("--embedding-cache", metavar="DIR",
                        help="folder for the on-disk embedding cache (default ~/.cache/abag/embeddings, "
                             "or $ABAG_CACHE_DIR)" if default_on else "reuse/extend an on-disk embedding cache")
    if default_on:
        parser.add_argument("--no-embedding-cache", action="store_true",
                            help="encode every batch instead (the slow, pre-cache behaviour)")


def _add_data_options(parser: argparse.ArgumentParser, skip_flag: str | None, skip_help: str) -> None:
    parser.add_argument("--replicates", choices=("keep", "mean", "flag"), default="keep",
                        help="rows with the same heavy, light and antigen: keep all (default), average, or flag")
    if skip_flag:
        parser.add_argument(skip_flag, dest="skip_invalid", action="store_true", help=skip_help)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _version() -> str:
    from .version import __version__

    return __version__


def _load(args: argparse.Namespace, require_pkd: bool):
    from .data import load_pairs

    frame, report = load_pairs(args.data, require_pkd=require_pkd,
                               drop_invalid=getattr(args, "skip_invalid", False), replicates=args.replicates)
    print(report.summary(), file=sys.stderr)
    return frame, report


def run_train(args: argparse.Namespace) -> int:
    from . import distributed
    from .embedding_cache import default_cache_dir
    from .data import write_rejected
    from .model import ModelConfig
    from .outputs import ensure_writable_folder
    from .train import TrainConfig, train

    out = Path(args.out)
    ensure_writable_folder(out)  # before reading data or loading encoders: fail in seconds, not after an hour
    distributed.init_from_environment()
    frame, report = _load(args, require_pkd=True)
    if report.rejected:
        write_rejected(report, out / "rejected_rows.csv")
        print(f"{len(report.rejected)} rejected rows listed in {out / 'rejected_rows.csv'}", file=sys.stderr)
    model_config = ModelConfig(
        antibody_encoder=args.antibody_encoder or args.encoder, antigen_encoder=args.antigen_encoder or args.encoder,
        hidden_dim=args.hidden_dim, dropout=args.dropout, finetune_layers=args.finetune_layers)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, gradient_accumulation=args.gradient_accumulation,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, seed=args.seed, split=args.split,
        group_column=args.group_column, split_identity=args.split_identity,
        early_stopping_patience=args.early_stopping_patience,
        embedding_cache=not args.no_embedding_cache,
        cache_dir=str(args.embedding_cache) if args.embedding_cache else str(default_cache_dir()),
        mixed_precision=not args.no_mixed_precision, device=args.device, progress=not args.quiet)
    data_info = {"source": str(args.data), "n_rows_read": report.n_rows_read,
                 "n_rejected": len(report.rejected), "n_outside_model_range": report.n_outside_model_range,
                 "n_censored": report.n_censored, "replicates": report.replicates,
                 "n_replicate_rows": report.n_replicate_rows}
    result = train(frame, out, model_config, config, resume=args.resume, data_info=data_info,
                   log=lambda line: print(line, flush=True))
    if distributed.is_main_process():
        print(f"wrote {out / 'metrics.json'}, {out / 'history.csv'}, {result.best_checkpoint}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from .data import write_rejected
    from .inference import load_trained_model, predict_frame
    from .outputs import ensure_writable_folder

    out = Path(args.out)
    ensure_writable_folder(out.parent if str(out.parent) else Path("."))
    frame, report = _load(args, require_pkd=False)
    model, _ = load_trained_model(args.checkpoint, device=args.device)
    predicted = predict_frame(model, frame, cache_dir=args.embedding_cache, progress=not args.quiet)
    predicted = predicted.drop(columns=[c for c in ("censored",) if c in predicted and not predicted[c].any()])
    predicted.to_csv(out, index=False)
    print(f"wrote {len(predicted)} predictions to {out}", file=sys.stderr)
    if args.skip_invalid:
        rejected = Path(args.rejected) if args.rejected else out.with_name(out.name + ".rejected.csv")
        write_rejected(report, rejected)
        print(f"wrote {len(report.rejected)} rejected rows with reasons to {rejected}", file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from .inference import evaluate_frame, load_trained_model

    frame, _ = _load(args, require_pkd=True)
    model, state = load_trained_model(args.checkpoint, device=args.device)
    threshold = state["config"]["train"].get("binder_threshold", 9.0)
    metrics = evaluate_frame(model, frame, binder_threshold=threshold, cache_dir=args.embedding_cache)
    print(json.dumps(metrics, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `abag` console script; returns the exit code."""
    from .data import DataValidationError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DataValidationError as exc:
        print(f"abag: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except AbagError as exc:
        print(f"abag: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("abag: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
