"""`abag suggest`: its options (defaults from `abag.suggest.SuggestConfig`) and the command
(`abag.suggest.command`)."""

from __future__ import annotations

import argparse

from abag.cli.common import (
    UsageError,
    add_model_options,
    config_option,
    load_model,
    number,
    whole_number,
)
from abag.suggest.command import check_outputs, run_suggest_command
from abag.suggest.config import STRATEGIES
from abag.suggest.config import SuggestConfig as Defaults

__all__ = ["add_suggest_parser", "option_problem"]


def add_suggest_parser(commands) -> argparse.ArgumentParser:
    """Add the `suggest` subcommand to `commands` (argparse subparsers); returns its parser."""

    suggest = commands.add_parser(
        "suggest", help="choose the next batch of antibody variants to measure (affinity maturation)",
        description="Rank candidate variants with a model fitted on your measured variants (chosen by "
                    "cross-validation; the checkpoint adds embeddings and a pKd prior) and write a batch of N "
                    "distinct candidates with pkd_pred, pkd_std, acquisition and pick (the pick order).")
    add_model_options(suggest)
    suggest.add_argument("--candidates", help="CSV of candidate variants (heavy, light, antigen; other columns kept)")
    suggest.add_argument("--measured", help="CSV of measured variants with pkd (replicates are averaged)")
    suggest.add_argument("--n", type=whole_number(1), required=True, help="batch size")
    suggest.add_argument("--out", required=True, help="batch CSV, in pick order")
    config_option(suggest, "--strategy", Defaults, "strategy",
                  "greedy: highest predicted pKd; ucb: mean + beta*std; thompson: one posterior draw per pick "
                  "(chosen by bench/bench_suggest.py)", choices=STRATEGIES)
    config_option(suggest, "--seed", Defaults, "seed", "seed of the cross-validation folds, bootstrap and draws",
                  type=whole_number(0, 2**32 - 1))
    config_option(suggest, "--beta", Defaults, "beta", "ucb: weight of the std", type=number(0))
    config_option(suggest, "--min-distance", Defaults, "min_distance",
                  "diversity: picks differ at >= this many positions (1: off; 2: no two picks differ by a single "
                  "residue)", type=whole_number(1))
    suggest.add_argument("--parent", help="CSV with one row (heavy, light, antigen): enumerate its variants")
    suggest.add_argument("--positions", help="with --parent: all single mutants at these positions, in IMGT "
                                             "numbering of the parent's variable domains: H105-H117 (CDR-H3), "
                                             "H111A (insertion codes), L27-L38, or regions H:CDR3, L:CDR1, H:FR2 "
                                             "(a bare number is a heavy position). seq:H31,H50-H58 counts residues "
                                             "along the chain from 1 instead")
    suggest.add_argument("--max-order", type=whole_number(2), default=3,
                         help="with --parent and --measured: combine up to this many helpful mutations (default 3)")
    suggest.add_argument("--report", help="write the round's report (model choice, CV scores) as JSON here")
    suggest.add_argument("--embedding-cache", metavar="DIR", help="reuse/extend an on-disk embedding cache "
                                                                  "(default: a temporary one for this run)")
    suggest.add_argument("--quiet", action="store_true", help="no progress bars")
    suggest.set_defaults(handler=run_suggest)
    return suggest


def option_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a combination of suggest options, or None."""
    if not args.candidates and not args.parent:
        return "give --candidates CSV, or --parent CSV with --positions (or with --measured) to enumerate them"
    if args.positions and not args.parent:
        return "--positions needs --parent (the sequence the single mutants are made from)"
    if args.parent and not args.positions and not args.measured and not args.candidates:
        return "--parent alone enumerates nothing: add --positions, or --measured variants to combine mutations of"
    return None


def run_suggest(args: argparse.Namespace) -> int:

    if option_problem(args):
        raise UsageError(option_problem(args), "abag suggest")
    check_outputs(args)  # before the checkpoint is loaded
    model, _ = load_model(args)
    return run_suggest_command(args, model)
