"""The `abag` command line: `abag train`, `abag predict`, `abag evaluate`, `abag suggest`.

`predict` and `evaluate` live in `abag.predict_cli`, `suggest`'s options in `abag.suggest_cli`.

Every error a user can act on ends as one message on stderr (`abag: error: …`, saying what to do next) and a
non-zero exit code: 2 for bad input, options, files, checkpoints or encoders, 3 for a diverged run, 130 for
Ctrl-C. Never a traceback (set ABAG_DEBUG=1 to see one for an unexpected internal error).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import AbagError, CheckpointError

# abag.policy.PRECISION_CHOICES, spelled out so that parsing arguments does not import torch (a test checks).
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
# `abag train`'s default number of folds where folds apply: 5 beat one split on SAAINT-DB (lower RMSE in every
# seed, a third of the seed-to-seed spread; bench/RESULTS.md, "Which abag train default").
DEFAULT_FOLDS = 5
# ... on tables with fewer rows than this; from here on the default is one split. What the members remove is the
# noise of one small validation part choosing the epoch: with one split of SAAINT-DB (713 training rows, so ~71
# validation rows) pooled Spearman spread 0.09-0.16 from seed to seed, with 5 folds 0.03-0.05 (bench/RESULTS.md,
# "Which abag train default"). That noise shrinks like 1/sqrt(validation rows), so one split's 10 % reaches the
# 5-fold spread at ~7,000 rows (0.125 * sqrt(71 / 700) = 0.04); 20,000 leaves a factor of 3 because rows of one
# antigen cluster are not independent. Above it the members would cost ~4.5x for noise that is no longer there
# (100k rows, tiny encoder: 146 s against 31.5 s; 500k: over 15 min against under 3).
FOLDS_MAX_ROWS = 20_000

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 1


class UsageError(Exception):
    """A bad command line (unknown option, value out of range): reported like every other error."""

    def __init__(self, message: str, prog: str):
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse that raises `UsageError` instead of printing usage and calling sys.exit(2)."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message, self.prog)


# ----------------------------------------------------------------------------------------------- option types

def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    parse.__name__ = "whole number"
    return parse


def number(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False,
           ) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if not math.isfinite(value) or too_low or too_high:
            left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
            raise argparse.ArgumentTypeError(f"must be a finite number in {left}{low:g}, {high:g}{right}, got {text!r}")
        return value
    parse.__name__ = "number"
    return parse


# ----------------------------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="abag", description="Antibody–antigen binding affinity (pKd) from sequence.")
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
    train.add_argument("--epochs", type=whole_number(1), default=100)
    train.add_argument("--seed", type=whole_number(0, 2**32 - 1), default=0)
    train.add_argument("--resume", action="store_true",
                       help="continue from OUT/checkpoints/last.pt (after a disconnect, kill or Ctrl-C); the run's "
                            "settings come from the checkpoint, only --epochs and --device may change")
    train.add_argument("--learning-rate", type=number(0, 1e6, low_open=True), default=1e-3)
    train.add_argument("--batch-size", type=whole_number(1), default=16)
    train.add_argument("--gradient-accumulation", type=whole_number(1), default=8)
    train.add_argument("--weight-decay", type=number(0), default=1e-5)
    train.add_argument("--dropout", type=number(0, 1, high_open=True), default=0.1)
    train.add_argument("--hidden-dim", type=whole_number(1), default=256)
    train.add_argument("--fusion", choices=("antibody_only", "additive", "interaction", "concat"), default=None,
                       help="how the network uses the antigen: antibody_only (default: blind to the antigen, "
                            "which is then not encoded; see --familiar-correction), additive (antibody part + "
                            "antigen parts weighted by how familiar the antigen is), interaction (the v2.7 "
                            "[ab, ag, ab*ag] head), or concat")
    train.add_argument("--familiar-correction", choices=("kmer_ridge_context", "kmer_ridge", "none"),
                       default=None,
                       help="kmer_ridge_context (default): after training, a k-mer ridge on the network's "
                            "training residuals is added in proportion to how familiar each query antigen is "
                            "(nothing for an antigen from an unseen cluster, all of it for a training antigen or "
                            "its point mutant; its antibody terms only for antibodies of a training lineage), and "
                            "in the remaining proportion a term for the antigen construct (its chain count and "
                            "residues, learned within antigen clusters); kmer_ridge: the k-mer ridge alone; none: "
                            "the network alone")
    train.add_argument("--branch-dropout", type=number(0, 1, high_open=True), default=None,
                       help="fusion additive: chance per training row that the antigen terms are dropped "
                            "(default 0.5; --dropout 0 turns it off)")
    train.add_argument("--no-trim-antibody", dest="trim_antibody", action="store_false", default=None,
                       help="encode whole heavy/light chains (v2.7) instead of their variable domains")
    train.add_argument("--head-members", type=whole_number(1), default=None,
                       help="head copies trained together and averaged (default 5; 1 = the v2.7 head)")
    train.add_argument("--member-loss", choices=("mean", "each"), default=None,
                       help="head members: one loss on their mean (default) or each member its own loss")
    train.add_argument("--input-dropout", type=number(0, 1, high_open=True), default=None,
                       help="dropout on the chain vectors entering the head (default 0.3; v2.7: 0; "
                            "--dropout 0 turns it off too)")
    train.add_argument("--ranking-weight", type=number(0), default=0.0,
                       help="add this weight x a pairwise ranking loss within antigen clusters to the v2.7 loss "
                            "(default 0: off); micro-batches then hold runs of 4 rows of one cluster")
    train.add_argument("--early-stopping-patience", type=whole_number(1), default=15)
    train.add_argument("--finetune-layers", type=whole_number(0), default=0,
                       help="fine-tune the last N encoder layers (turns the embedding cache off)")
    train.add_argument("--split", choices=("antigen", "random", "stratified", "group"), default="antigen",
                       help="antigen: whole antigen clusters per part (default); random; stratified by pKd bin; "
                            "group: whole values of --group-column")
    train.add_argument("--group-column", help="column holding groups for --split group")
    train.add_argument("--split-identity", type=number(0, 1, low_open=True), default=0.4,
                       help="sequence identity that joins antigens into one cluster (default 0.4)")
    train.add_argument("--folds", type=whole_number(1), default=None, metavar="K",
                       help="train K members, each on K-1 folds of whole antigen clusters (or --split group "
                            "groups) and early-stopped on its own held-out fold; metrics come from out-of-fold "
                            f"predictions and the saved model averages the members. Default {DEFAULT_FOLDS} with "
                            f"--split antigen or group, frozen encoders and fewer than {FOLDS_MAX_ROWS:,} rows (one "
                            "split when the data has too few clusters), else one split; --folds 1 = one "
                            "train/val/test split (the v2.7 recipe); --resume keeps the run's own kind")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    train.add_argument("--no-mixed-precision", action="store_true", help="fp32 everywhere (encoders, head, cache)")
    train.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                       help="auto (default): bf16 on GPUs that run it natively (A100, H100, …), fp16 with a "
                            "gradient scaler on older ones (T4, V100), fp32 on CPU; or force one")
    _add_cache_options(train)
    _add_data_options(train, skip_flag="--drop-invalid",
                      skip_help="drop invalid rows instead of stopping; they are listed in OUT/rejected_rows.csv")
    train.set_defaults(handler=run_train)

    from .predict_cli import add_predict_parsers

    add_predict_parsers(commands, _add_cache_options, _add_data_options)
    from .suggest_cli import add_suggest_parser

    add_suggest_parser(commands, whole_number, number).set_defaults(handler=run_suggest)
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
    from .distributed import is_main_process

    if is_main_process():
        print(report.summary(), file=sys.stderr)
    return frame, report


def _load_model(args: argparse.Namespace):
    """The checkpoint's model, or a `CheckpointError`/`EncoderUnavailableError` saying why not."""
    from .checkpoint import LOAD_HINT
    from .inference import load_trained_model

    try:
        return load_trained_model(args.checkpoint, device=args.device)
    except CheckpointError as exc:
        if "abag train" in str(exc) or "retrain" in str(exc):
            raise
        raise CheckpointError(f"{exc}. {LOAD_HINT}") from None
    except AbagError:
        raise
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:  # weights that do not fit the model they name
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {args.checkpoint} does not match the model it describes ({detail}). "
                              f"It is damaged or was edited; use a best.pt or last.pt written by `abag train`."
                              ) from None


# ----------------------------------------------------------------------------------------------- train

class _Interrupted(Exception):
    """Ctrl-C outside the epoch loop; the message says what is saved and how to continue."""


def _resume_command(argv: Sequence[str]) -> str:
    words = list(argv)
    if "--resume" not in words:
        words.append("--resume")
    return shlex.join(["abag", *words])


def _resolve_folds(args: argparse.Namespace) -> None:
    """Turn `--folds` into K >= 2 or None (one split), and note whether K is the default (`args.folds_default`).

    Unset: a resumed run keeps its own kind (folds.json holds K); otherwise `DEFAULT_FOLDS` where folds apply
    (antigen or group split, frozen encoders), else one split; `_folds_for_size` then turns a default K into one
    split on a table of `FOLDS_MAX_ROWS` rows or more. `--folds 1` asks for one split."""
    args.folds_default = args.folds is None
    if args.folds is None:
        record = Path(args.out) / "folds.json"
        if args.resume:
            args.folds = _recorded_folds(record)
        elif args.split in ("antigen", "group") and not args.finetune_layers:
            args.folds = DEFAULT_FOLDS
    if args.folds == 1:
        args.folds = None


def _folds_for_size(args: argparse.Namespace, n_rows: int) -> str | None:
    """The default's size rule: one split from `FOLDS_MAX_ROWS` rows on (changes `args.folds`); the log line saying
    the rule and the choice, or None when `--folds` was given, the run resumes, or folds do not apply."""
    if not args.folds_default or args.resume or args.folds is None:
        return None
    if n_rows < FOLDS_MAX_ROWS:
        return f"folds: {args.folds} members (default below {FOLDS_MAX_ROWS:,} rows; this table has {n_rows:,})"
    line = (f"folds: one train/val/test split (default from {FOLDS_MAX_ROWS:,} rows; this table has {n_rows:,}; "
            f"--folds {args.folds} trains {args.folds} members)")
    args.folds = None
    return line


def _recorded_folds(record: Path) -> int | None:
    """K of the --folds run recorded in `record` (None when there is none or it is unreadable: resume says why)."""
    import json

    try:
        return int(json.loads(record.read_text())["folds"]) if record.exists() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_train_options(args: argparse.Namespace) -> None:
    if args.split == "group" and not args.group_column:
        raise UsageError("--split group needs --group-column COLUMN (the column whose values must not be split)",
                         "abag train")
    if args.group_column and args.split != "group":
        raise UsageError(f"--group-column only applies with --split group (the split is {args.split!r})",
                         "abag train")
    if args.folds is not None and args.split not in ("antigen", "group"):
        raise UsageError(f"--folds keeps whole antigen clusters (--split antigen) or groups (--split group) apart; "
                         f"it does not work with --split {args.split}", "abag train")
    if args.folds is not None and args.finetune_layers:
        raise UsageError("--folds needs frozen encoders (its members share one set): drop --finetune-layers or "
                         "--folds", "abag train")


def _check_run_folder(args: argparse.Namespace, out: Path) -> None:
    """Refuse to start over in a folder holding a run, and to resume a run of the other kind (--folds or not)."""
    from .errors import OutputNotWritableError

    last, record = out / "checkpoints" / "last.pt", out / "folds.json"
    if not args.resume and (last.exists() or record.exists()):
        raise OutputNotWritableError(
            f"{out} already holds a training run ({last if last.exists() else record}). Continue it with --resume, "
            f"or choose a new --out folder (or delete {out}) to start over; nothing was overwritten.")
    if args.resume and args.folds is None and record.exists():
        raise UsageError(f"{out} holds a --folds run ({record}): continue it with --resume and the same --folds K "
                         f"(or without --folds)", "abag train")


def _show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal only: redirected to a log file they would fill it with carriage returns."""
    return not args.quiet and sys.stderr.isatty()


def run_train(args: argparse.Namespace) -> int:
    from . import distributed
    from .outputs import ensure_writable_folder
    from .stage_times import recording

    _resolve_folds(args)
    _check_train_options(args)
    out = Path(args.out)
    # Before reading data or loading encoders: fail in seconds, not after an hour.
    ensure_writable_folder(out)
    ensure_writable_folder(out / "checkpoints")
    last = out / "checkpoints" / "last.pt"
    _check_run_folder(args, out)
    distributed.init_from_environment()
    with recording() as times:
        result, main_process = _train_command(args, out, last)
    if main_process:
        print(times.summary(), flush=True)
        print(f"wrote {out / 'metrics.json'}, {out / 'history.csv'}, {result.best_checkpoint}")
    return 0


def _train_command(args: argparse.Namespace, out: Path, last: Path):
    """Load, train and write the run folder (each step a stage of `abag.stage_times`); the result, and whether
    this is the main process."""
    from . import distributed
    from .embedding_cache import default_cache_dir
    from .model import ModelConfig
    from .outputs import write_csv_atomic
    from .stage_times import stage
    from .train import TrainConfig

    try:
        with stage("load"):
            frame, report = _load(args, require_pkd=True)
        folds_line = _folds_for_size(args, len(frame))
        if folds_line and distributed.is_main_process():
            print(folds_line, flush=True)
        if args.group_column and args.group_column not in frame.columns:
            extras = [str(c) for c in frame.columns if c not in ("censored", "source_row")]
            raise UsageError(f"--group-column {args.group_column!r} is not a column of {args.data} "
                             f"(columns: {', '.join(extras)})", "abag train")
        if report.rejected and distributed.is_main_process():
            write_csv_atomic(out / "rejected_rows.csv", report.rejected_frame())
            print(f"{len(report.rejected)} rejected rows listed in {out / 'rejected_rows.csv'}", file=sys.stderr)
        model_config = ModelConfig(
            antibody_encoder=args.antibody_encoder or args.encoder,
            antigen_encoder=args.antigen_encoder or args.encoder,
            hidden_dim=args.hidden_dim, dropout=args.dropout, finetune_layers=args.finetune_layers,
            **_model_overrides(args))
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, gradient_accumulation=args.gradient_accumulation,
            learning_rate=args.learning_rate, weight_decay=args.weight_decay, seed=args.seed, split=args.split,
            group_column=args.group_column, split_identity=args.split_identity,
            early_stopping_patience=args.early_stopping_patience, ranking_weight=args.ranking_weight,
            embedding_cache=not args.no_embedding_cache,
            cache_dir=str(args.embedding_cache) if args.embedding_cache else str(default_cache_dir()),
            mixed_precision=not args.no_mixed_precision, precision=args.precision, device=args.device,
            progress=_show_progress(args))
        data_info = {"source": str(args.data), "n_rows_read": report.n_rows_read,
                     "n_rejected": len(report.rejected), "n_outside_model_range": report.n_outside_model_range,
                     "n_censored": report.n_censored, "replicates": report.replicates,
                     "n_replicate_rows": report.n_replicate_rows}
        try:
            result = _run_training(args, frame, out, model_config, config, data_info)
        finally:
            main_process = distributed.is_main_process()
            distributed.shutdown()
    except KeyboardInterrupt:  # outside the epoch loop (loading, encoding, final evaluation)
        raise _Interrupted(_interrupt_message(last, args)) from None
    return result, main_process


def _run_training(args: argparse.Namespace, frame, out: Path, model_config, config, data_info: dict):
    """`abag.train` (one split), or `abag.kfold.train_folds` with --folds K."""
    def log(line: str) -> None:
        print(line, flush=True)

    from .train import train

    if args.folds is None:
        return train(frame, out, model_config, config, resume=args.resume, data_info=data_info, log=log)
    from .kfold import TooFewFoldGroupsError, train_folds

    try:
        return train_folds(frame, out, model_config, config, folds=args.folds, resume=args.resume,
                           data_info=data_info, log=log)
    except TooFewFoldGroupsError as exc:
        if not args.folds_default or args.resume:
            raise
        log(f"{exc}: training one train/val/test split instead (the default --folds {args.folds} needs more "
            f"antigen clusters or groups; --folds 1 says so without this note)")
        args.folds = None
        return train(frame, out, model_config, config, data_info=data_info, log=log)


def _interrupt_message(last: Path, args: argparse.Namespace) -> str:
    from .checkpoint import load_checkpoint

    argv = getattr(args, "argv", None) or ["train", "--data", str(args.data), "--out", str(args.out)]
    if args.folds is not None and (Path(args.out) / "folds.json").exists():
        return (f"interrupted; finished members stay in {Path(args.out) / 'members'} and a member in progress "
                f"continues from its own checkpoints/last.pt. Continue with: {_resume_command(argv)}")

    try:
        epoch = load_checkpoint(last)["epoch"] if last.exists() else None
    except (AbagError, KeyboardInterrupt):
        epoch = None
    if epoch is None:
        from .embedding_cache import default_cache_dir

        kept = "" if args.no_embedding_cache else \
            f" (chains encoded so far are kept in {args.embedding_cache or default_cache_dir()})"
        return f"interrupted before the first epoch; nothing to resume. Run the same command again{kept}."
    return (f"interrupted; {last} holds the state after epoch {epoch}, nothing else is lost. Continue with: "
            f"{_resume_command(argv)}")


# ----------------------------------------------------------------------------------------------- suggest

def run_suggest(args: argparse.Namespace) -> int:
    from .suggest.command import check_outputs, run_suggest_command
    from .suggest_cli import option_problem

    if option_problem(args):
        raise UsageError(option_problem(args), "abag suggest")
    check_outputs(args)  # before the checkpoint is loaded
    model, _ = _load_model(args)
    return run_suggest_command(args, model)


# ----------------------------------------------------------------------------------------------- main

_DATA_HINTS = {
    "train": "Fix these rows, or add --drop-invalid to train without them (they are listed in "
             "OUT/rejected_rows.csv).",
    "predict": "Fix these rows, or add --skip-invalid to predict the valid rows and list the rejected ones with "
               "their reasons in OUT.rejected.csv.",
    "evaluate": "Fix these rows: evaluate scores every row of the file.",
}


def _data_hint(exc, argv: Sequence[str]) -> str:
    """What to do about invalid rows (file-level problems explain themselves)."""
    if not any(p.row is not None for p in getattr(exc, "problems", [])):
        return ""
    command = next((word for word in argv if word in _DATA_HINTS), None)
    if command is None or {"--skip-invalid", "--drop-invalid"} & set(argv):
        return ""
    return "\n" + _DATA_HINTS[command]


def _model_overrides(args: argparse.Namespace) -> dict:
    """ModelConfig fields set on the command line; the rest keep ModelConfig's defaults."""
    chosen = {"fusion": args.fusion, "trim_antibody": args.trim_antibody, "n_members": args.head_members,
              "member_loss": args.member_loss, "familiar_correction": args.familiar_correction,
              "input_dropout": args.input_dropout, "branch_dropout": args.branch_dropout}
    return {key: value for key, value in chosen.items() if value is not None}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `abag` console script; returns the exit code and never raises."""
    from .data import DataValidationError
    from .train import TrainingInterrupted

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        return args.handler(args)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        print(f"abag: error: {exc}. See '{exc.prog} --help'.", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DataValidationError as exc:
        print(f"abag: error: {exc}{_data_hint(exc, argv)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingInterrupted as exc:
        message = str(exc)
        if "--resume" in message:
            message = message.split(" Continue with")[0] + f" Continue with: {_resume_command(argv)}"
        print(f"abag: {message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Interrupted as exc:
        print(f"abag: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except AbagError as exc:
        print(f"abag: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("abag: interrupted; nothing was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line instead of a traceback, unless ABAG_DEBUG asks for it
        if os.environ.get("ABAG_DEBUG"):
            raise
        detail = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(f"abag: internal error: {type(exc).__name__}: {detail}. This is a bug in abag; rerun with "
              f"ABAG_DEBUG=1 for the traceback and report it. Files written so far (checkpoints included) are "
              f"intact.", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
