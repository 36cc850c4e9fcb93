"""`abag train`: its options (each default from `ModelConfig` or `TrainConfig`) and the run, one split or fold
members."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Sequence

from abag import distributed
from abag.checkpoint import load_checkpoint
from abag.cli.common import (
    UsageError,
    add_cache_options,
    add_data_options,
    config_from_args,
    config_option,
    load_table,
    number,
    show_progress,
    whole_number,
)
from abag.data.splits import SPLIT_METHODS
from abag.encoding.embedding_cache import default_cache_dir
from abag.encoding.features import TRIMS
from abag.encoding.sequence_encoder import POOLINGS
from abag.errors import AbagError, OutputNotWritableError
from abag.folds.members import TooFewFoldGroupsError, train_folds
from abag.model.config import (BLEND_MAX_ONEHOT, CORRECTIONS, FUSIONS, LARGE_TABLE_DEFAULTS, WIDES, ModelConfig,
                               defaults_for_table)
from abag.numbering import NUMBERING_MAX_CHAINS, distinct_chains
from abag.outputs import ensure_writable_folder, write_csv_atomic
from abag.policy import PRECISION_CHOICES
from abag.stage_times import recording, stage
from abag.training.config import TrainConfig
from abag.training.run import train

DEFAULT_FOLDS = 5
# ... on tables with fewer rows than this; from here on the default is one split. What the members remove is the
# noise of one small validation part choosing the epoch: with one split of SAAINT-DB (713 training rows, so ~71
# validation rows) pooled Spearman spread 0.09-0.16 from seed to seed, with 5 folds 0.03-0.05 (bench/RESULTS.md,
# "Which abag train default"). That noise shrinks like 1/sqrt(validation rows), so one split's 10 % reaches the
# 5-fold spread at ~7,000 rows (0.125 * sqrt(71 / 700) = 0.04); 20,000 leaves a factor of 3 because rows of one
# antigen cluster are not independent. Above it the members would cost ~4.5x for noise that is no longer there.
FOLDS_MAX_ROWS = 20_000


class Interrupted(Exception):
    """Ctrl-C outside the epoch loop; the message says what is saved and how to continue."""


def resume_command(argv: Sequence[str]) -> str:
    words = list(argv)
    if "--resume" not in words:
        words.append("--resume")
    return shlex.join(["abag", *words])


def _resolve_folds(args: argparse.Namespace) -> None:
    """Turn `--folds` into K >= 2 or None (one split), and note whether K is the default (`args.folds_default`).

    Unset: a resumed run keeps its own kind (folds.json holds K); otherwise `DEFAULT_FOLDS` where folds apply
    (antigen or group split, frozen encoders), else one split. `--folds 1` asks for one split."""
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


def _defaults_for_size(args: argparse.Namespace, frame) -> str | None:
    """The size rule of the defaults that number every chain (`LARGE_TABLE_DEFAULTS`): `ModelConfig`'s up to
    `NUMBERING_MAX_CHAINS` distinct antibody chains, the model before numbering above; sets the options not given.
    The log line naming what the rule chose, or None when nothing changed from `ModelConfig`'s defaults."""
    unset = [name for name in LARGE_TABLE_DEFAULTS if getattr(args, name, None) is None]
    if not unset:
        return None
    n_chains = distinct_chains(frame["heavy"], frame["light"])
    defaults = defaults_for_table(n_chains)
    for name in unset:
        setattr(args, name, defaults[name])
    changed = [name for name in unset if defaults[name] != ModelConfig.__dataclass_fields__[name].default]
    if not changed:
        return None
    chosen = ", ".join(f"--{name.replace('_', '-')} {defaults[name]}" for name in changed)
    return (f"model defaults for a table too large to number ({n_chains:,} distinct antibody chains, more than "
            f"{NUMBERING_MAX_CHAINS:,}, where numbering every chain would take longer than training): {chosen}; "
            f"give an option to override it")


def sized_option(parser: argparse.ArgumentParser, flag: str, name: str, help: str, choices: Sequence[str]) -> None:
    """Add `flag` for the `ModelConfig` field `name`, whose default follows the table's size (`_defaults_for_size`);
    --help shows both defaults."""
    small, large = ModelConfig.__dataclass_fields__[name].default, LARGE_TABLE_DEFAULTS[name]
    parser.add_argument(flag, dest=name, default=None, choices=choices,
                        help=f"{help} (default: {small} up to {NUMBERING_MAX_CHAINS:,} distinct antibody chains, "
                             f"{large} above, where numbering every chain would take longer than training)")


def _recorded_folds(record: Path) -> int | None:
    """K of the --folds run recorded in `record` (None when there is none or it is unreadable: resume says why)."""

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

    last, record = out / "checkpoints" / "last.pt", out / "folds.json"
    if not args.resume and (last.exists() or record.exists()):
        raise OutputNotWritableError(
            f"{out} already holds a training run ({last if last.exists() else record}). Continue it with --resume, "
            f"or choose a new --out folder (or delete {out}) to start over; nothing was overwritten.")
    if args.resume and args.folds is None and record.exists():
        raise UsageError(f"{out} holds a --folds run ({record}): continue it with --resume and the same --folds K "
                         f"(or without --folds)", "abag train")


def run_train(args: argparse.Namespace) -> int:
    """`abag train`: check the options and the run folder, load, train, and print each stage's time at the end."""
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
    try:
        with stage("load"):
            frame, report = load_table(args, require_pkd=True)
        for line in (_folds_for_size(args, len(frame)), _defaults_for_size(args, frame)):
            if line and distributed.is_main_process():
                print(line, flush=True)
        if args.group_column and args.group_column not in frame.columns:
            extras = [str(c) for c in frame.columns if c not in ("censored", "source_row")]
            raise UsageError(f"--group-column {args.group_column!r} is not a column of {args.data} "
                             f"(columns: {', '.join(extras)})", "abag train")
        if report.rejected and distributed.is_main_process():
            write_csv_atomic(out / "rejected_rows.csv", report.rejected_frame())
            print(f"{len(report.rejected)} rejected rows listed in {out / 'rejected_rows.csv'}", file=sys.stderr)
        model_config = config_from_args(ModelConfig, args, antibody_encoder=args.antibody_encoder or args.encoder,
                                        antigen_encoder=args.antigen_encoder or args.encoder)
        config = config_from_args(
            TrainConfig, args, embedding_cache=not args.no_embedding_cache,
            cache_dir=str(args.embedding_cache) if args.embedding_cache else str(default_cache_dir()),
            progress=show_progress(args))
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
        raise Interrupted(_interrupt_message(last, args)) from None
    return result, main_process


def _run_training(args: argparse.Namespace, frame, out: Path, model_config, config, data_info: dict):
    """`abag.train` (one split), or `abag.folds.members.train_folds` with --folds K."""
    def log(line: str) -> None:
        print(line, flush=True)


    if args.folds is None:
        return train(frame, out, model_config, config, resume=args.resume, data_info=data_info, log=log)

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

    argv = getattr(args, "argv", None) or ["train", "--data", str(args.data), "--out", str(args.out)]
    if args.folds is not None and (Path(args.out) / "folds.json").exists():
        return (f"interrupted; finished members stay in {Path(args.out) / 'members'} and a member in progress "
                f"continues from its own checkpoints/last.pt. Continue with: {resume_command(argv)}")

    try:
        epoch = load_checkpoint(last)["epoch"] if last.exists() else None
    except (AbagError, KeyboardInterrupt):
        epoch = None
    if epoch is None:

        kept = "" if args.no_embedding_cache else \
            f" (chains encoded so far are kept in {args.embedding_cache or default_cache_dir()})"
        return f"interrupted before the first epoch; nothing to resume. Run the same command again{kept}."
    return (f"interrupted; {last} holds the state after epoch {epoch}, nothing else is lost. Continue with: "
            f"{resume_command(argv)}")


def add_train_parser(commands) -> argparse.ArgumentParser:
    """Add the `train` subcommand to `commands` (argparse subparsers); returns its parser."""
    train_parser = commands.add_parser(
        "train", help="train a model on a CSV and write metrics, history and checkpoints",
        description="Split the data, train with the v2.7 recipe, evaluate on held-out antigens next to baselines, "
                    "write DIR/metrics.json.")
    add = train_parser.add_argument
    add("--data", required=True, help="CSV/TSV, .xlsx, FASTA or AIRR TSV with heavy, light, antigen, pkd "
                                      "(docs/data-format.md)")
    add("--out", required=True, help="run folder: metrics.json, history.csv, checkpoints/")
    config_option(train_parser, "--encoder", ModelConfig, "antibody_encoder",
                  "encoder for antibody and antigen: tiny, antiberty, or a Hugging Face id", dest="encoder")
    add("--antibody-encoder", default=None, help="override --encoder for heavy/light chains")
    add("--antigen-encoder", default=None, help="override --encoder for the antigen")
    config_option(train_parser, "--epochs", TrainConfig, "epochs", "maximum epochs", type=whole_number(1))
    config_option(train_parser, "--seed", TrainConfig, "seed", "seed of the split, initialisation and data order",
                  type=whole_number(0, 2**32 - 1))
    add("--resume", action="store_true",
        help="continue from OUT/checkpoints/last.pt (after a disconnect, kill or Ctrl-C); the run's settings come "
             "from the checkpoint, only --epochs and --device may change")
    config_option(train_parser, "--learning-rate", TrainConfig, "learning_rate", "AdamW learning rate",
                  type=number(0, 1e6, low_open=True))
    config_option(train_parser, "--batch-size", TrainConfig, "batch_size", "rows per micro-batch",
                  type=whole_number(1))
    config_option(train_parser, "--gradient-accumulation", TrainConfig, "gradient_accumulation",
                  "micro-batches per optimiser step", type=whole_number(1))
    config_option(train_parser, "--weight-decay", TrainConfig, "weight_decay", "AdamW weight decay", type=number(0))
    config_option(train_parser, "--dropout", ModelConfig, "dropout", "dropout in the head (0 also turns input "
                  "dropout off)", type=number(0, 1, high_open=True))
    config_option(train_parser, "--hidden-dim", ModelConfig, "hidden_dim", "width of the head's hidden layers",
                  type=whole_number(1))
    config_option(train_parser, "--fusion", ModelConfig, "fusion",
                  "how the network uses the antigen: antibody_only (blind to the antigen, which is then not "
                  "encoded; see --familiar-correction) or interaction (the v2.7 [ab, ag, ab*ag] head)",
                  choices=FUSIONS)
    sized_option(train_parser, "--familiar-correction", "familiar_correction",
                 "a post-training correction: kmer_ridge_context adds a k-mer ridge on the network's training "
                 "residuals in proportion to how familiar each query antigen is, and in the remaining proportion a "
                 "term for the antigen construct (its chain count and residues, learned within antigen clusters); "
                 "kmer_ridge: the k-mer ridge alone; none: no correction (the wide part reads the antigen)",
                 choices=CORRECTIONS)
    sized_option(train_parser, "--wide", "wide",
                 "the wide part of pKd = clamp(soft_bound(wide + deep)), closed-form ridges fitted on the training "
                 "rows before the network, which learns the residual. grouped_blend: within each split group (antigen "
                 "cluster, complex) a weighted sum of the k-mer ridge (1-2-mers of heavy, light and antigen) and a "
                 "ridge on the IMGT-aligned one-hot of VH and VL, fitted to each row's deviation from its group's "
                 "mean pKd; across groups the k-mer ridge fitted to the group means; wide "
                 "+ deep softly bounded to the training pKd range (past it by less than the wide part's held-out "
                 "RMSE; no ranking changes). grouped_kmer: the same with the k-mer ridge alone within groups (no "
                 "one-hot, no local term: it numbers nothing, for tables too large to number). ridge_blend: that "
                 "weighted sum over all rows (the one-hot ridge's "
                 f"weight at most {BLEND_MAX_ONEHOT}, so the antigen always enters), no bound; ridge_choice: the one "
                 "of the two with the lower held-out error over 5 folds of the split's groups; kmer_ridge: the k-mer "
                 "ridge plus a heavy-chain 3-mer block fitted to what it leaves; none: the network alone",
                 choices=WIDES)
    sized_option(train_parser, "--trim-antibody", "trim_antibody",
                 "encode heavy/light chains as their variable domains: imgt (the domain IMGT numbering finds), motif "
                 "(cut after the framework-4 motif, the rule before numbering) or none (whole chains, v2.7)",
                 choices=TRIMS)
    sized_option(train_parser, "--pooling", "pooling",
                 "how antibody chain vectors pool the encoder's residue vectors: regions (the domain's mean beside "
                 "its frameworks', CDR1's, CDR2's and CDR3's, IMGT-numbered) or mean (the whole chain)",
                 choices=POOLINGS)
    config_option(train_parser, "--head-members", ModelConfig, "n_members",
                  "head copies trained together and averaged (1 = the v2.7 head)", type=whole_number(1))
    config_option(train_parser, "--input-dropout", ModelConfig, "input_dropout",
                  "dropout on the chain vectors entering the head (v2.7: 0)", type=number(0, 1, high_open=True))
    config_option(train_parser, "--ranking-weight", TrainConfig, "ranking_weight",
                  "weight of a pairwise ranking loss within antigen clusters added to the v2.7 loss (0: off)",
                  type=number(0))
    config_option(train_parser, "--early-stopping-patience", TrainConfig, "early_stopping_patience",
                  "epochs without a better validation Spearman before stopping", type=whole_number(1))
    config_option(train_parser, "--finetune-layers", ModelConfig, "finetune_layers",
                  "fine-tune the last N encoder layers (turns the embedding cache off)", type=whole_number(0))
    config_option(train_parser, "--split", TrainConfig, "split",
                  "antigen: whole antigen clusters per part; random; stratified by pKd bin; group: whole values "
                  "of --group-column", choices=SPLIT_METHODS)
    config_option(train_parser, "--group-column", TrainConfig, "group_column",
                  "column holding groups for --split group")
    config_option(train_parser, "--split-identity", TrainConfig, "split_identity",
                  "sequence identity that joins antigens into one cluster", type=number(0, 1, low_open=True))
    add("--folds", type=whole_number(1), default=None, metavar="K",
        help=f"train K members, each on K-1 folds of whole antigen clusters (or --split group groups) and "
             f"early-stopped on its own held-out fold; metrics come from out-of-fold predictions and the saved "
             f"model averages the members (default: {DEFAULT_FOLDS} with --split antigen or group, frozen "
             f"encoders and fewer than {FOLDS_MAX_ROWS:,} rows, one split when the data has too few clusters; "
             f"--folds 1 = one train/val/test split, the v2.7 recipe; --resume keeps the run's own kind)")
    config_option(train_parser, "--device", TrainConfig, "device", "auto, cpu, cuda, cuda:1 …")
    config_option(train_parser, "--no-mixed-precision", TrainConfig, "mixed_precision",
                  "fp32 everywhere (encoders, head, cache)")
    config_option(train_parser, "--precision", TrainConfig, "precision",
                  "auto: bf16 on GPUs that run it natively (A100, H100, …), fp16 with a gradient scaler on older "
                  "ones (T4, V100), fp32 on CPU; or force one", choices=PRECISION_CHOICES)
    add_cache_options(train_parser)
    add_data_options(train_parser, skip_flag="--drop-invalid",
                     skip_help="drop invalid rows instead of stopping; they are listed in OUT/rejected_rows.csv")
    train_parser.set_defaults(handler=run_train)
    return train_parser
