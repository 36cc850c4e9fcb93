"""What every `abag` command shares: the argument parser that reports errors instead of exiting, option types,
option groups built from the config dataclasses (so each default is written once), and loading a table or a
checkpoint with a message a user can act on."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import MISSING, fields
from typing import Any, Callable

from abag.checkpoint import LOAD_HINT
from abag.data import ChainCheck, load_pairs
from abag.distributed import is_main_process
from abag.encoding import default_cache_dir
from abag.encoding.pair_embeddings import numbering_cache
from abag.errors import AbagError, CheckpointError
from abag.inference import load_trained_model
from abag.numbering import NUMBERING_MAX_CHAINS
from abag.pretrained import PRETRAINED_NAME, pretrained_path

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


def add_cache_options(parser: argparse.ArgumentParser, default_on: bool = True) -> None:
    parser.add_argument("--embedding-cache", metavar="DIR",
                        help="folder for the on-disk embedding cache (default ~/.cache/abag/embeddings, "
                             "or $ABAG_CACHE_DIR)" if default_on else "reuse/extend an on-disk embedding cache")
    if default_on:
        parser.add_argument("--no-embedding-cache", action="store_true",
                            help="encode every batch instead (the slow, pre-cache behaviour)")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """`--checkpoint` (the pretrained model when not given) and `--device`, for commands that use a trained model."""
    parser.add_argument("--checkpoint", default=None,
                        help="a best.pt written by abag train (default: the pretrained model, see abag info)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 … (default: auto)")


def add_antigen_option(parser: argparse.ArgumentParser) -> None:
    """Add `--antigen SEQUENCE_OR_FASTA` (load_pairs' `antigen=`) to a command that reads --data."""
    parser.add_argument("--antigen", metavar="SEQUENCE_OR_FASTA",
                        help="the antigen of every antibody, for files without one (FASTA or AIRR of antibodies): "
                             "a sequence (chains joined with |) or a FASTA file whose records are its chains")


def add_data_options(parser: argparse.ArgumentParser, skip_flag: str | None, skip_help: str) -> None:
    parser.add_argument("--replicates", choices=("keep", "mean", "flag"), default="keep",
                        help="rows with the same heavy, light and antigen: keep all (default), average, or flag")
    if skip_flag:
        parser.add_argument(skip_flag, dest="skip_invalid", action="store_true", help=skip_help)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    checks = parser.add_mutually_exclusive_group()
    checks.add_argument("--check-chains", dest="check_chains", action="store_const", const="always", default="auto",
                        help="number every antibody chain (IMGT) and reject rows whose columns do not hold the chain "
                             "they claim (a light chain in heavy, swapped chains, an scFv in one cell), however many "
                             f"(default: checked up to {NUMBERING_MAX_CHAINS:,} distinct chains)")
    checks.add_argument("--no-check-chains", dest="check_chains", action="store_const", const="never",
                        help="skip that check")
    add_antigen_option(parser)


def numbering_disk_cache(args: argparse.Namespace):
    """The numbering cache beside the command's on-disk embedding cache (train: unless --no-embedding-cache;
    predict and evaluate: with --embedding-cache); None without one."""
    if getattr(args, "no_embedding_cache", False):
        return None
    folder = getattr(args, "embedding_cache", None)
    if folder is None and hasattr(args, "no_embedding_cache"):  # a command whose cache is on by default
        folder = default_cache_dir()
    return None if folder is None else numbering_cache(folder)


def load_table(args: argparse.Namespace, require_pkd: bool):
    """Read `--data` with the command's replicate and skip options; print the load summary."""
    frame, report = load_pairs(args.data, require_pkd=require_pkd, antigen=getattr(args, "antigen", None),
                               check_chains=ChainCheck(getattr(args, "check_chains", "auto"),
                                                       numbering_disk_cache(args)),
                               drop_invalid=getattr(args, "skip_invalid", False), replicates=args.replicates)
    if is_main_process():
        print(report.summary(), file=sys.stderr)
    return frame, report


def load_model(args: argparse.Namespace):
    """The checkpoint's model (the shipped one without --checkpoint), or a `CheckpointError` /
    `EncoderUnavailableError` saying why not."""
    if args.checkpoint is None:
        args.checkpoint = str(pretrained_path())
        print(f"abag: using the pretrained model {PRETRAINED_NAME} (abag info describes it; --checkpoint uses "
              f"your own)", file=sys.stderr)
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


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal only: redirected to a log file they would fill it with carriage returns."""
    return not args.quiet and sys.stderr.isatty()


def config_option(parser: argparse.ArgumentParser, flag: str, config: type, name: str, help: str,
                  **kwargs: Any) -> None:
    """Add `flag` for field `name` of the dataclass `config`: the default is the field's, and --help shows it.

    The option's value lands in `args.<name>` (or `dest=`), where `config_from_args` picks it up."""
    field = {f.name: f for f in fields(config)}[name]
    if field.default is MISSING:
        raise TypeError(f"{config.__name__}.{name} has no plain default")
    default = field.default
    if isinstance(default, bool) and flag.startswith("--no-"):  # a switch that turns a default-on setting off
        parser.add_argument(flag, dest=kwargs.pop("dest", name), action="store_false", default=default, help=help)
        return
    if "choices" not in kwargs:
        kwargs.setdefault("metavar", flag.removeprefix("--").upper().replace("-", "_"))
    shown = "none" if default is None else f"{default:g}" if isinstance(default, float) else default
    kwargs.setdefault("dest", name)
    parser.add_argument(flag, default=default, help=f"{help} (default: {shown})", **kwargs)


def config_from_args(config: type, args: argparse.Namespace, **given: Any):
    """An instance of the dataclass `config` from the parsed options named after its fields (plus `given`)."""
    values = {f.name: getattr(args, f.name) for f in fields(config) if f.init and hasattr(args, f.name)}
    return config(**{**values, **given})
