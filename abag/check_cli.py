"""`abag check --data FILE`: validate a data file and print its load summary; and the `--antigen` option that every
command reading a data file shares (for FASTA or AIRR files of antibodies only).

The work is `abag.data.check.check_file`; this module only adds the subcommand and prints its text. Imports
argparse at import time; abag.data when the command runs.
"""

from __future__ import annotations

import argparse

__all__ = ["add_check_parser", "add_antigen_option", "run_check"]

EXIT_PROBLEMS = 2  # abag.cli.EXIT_BAD_INPUT


def add_antigen_option(parser: argparse.ArgumentParser) -> None:
    """Add `--antigen SEQUENCE_OR_FASTA` (load_pairs' `antigen=`) to a command that reads --data."""
    parser.add_argument("--antigen", metavar="SEQUENCE_OR_FASTA",
                        help="the antigen of every antibody, for files without one (FASTA or AIRR of antibodies): "
                             "a sequence (chains joined with |) or a FASTA file whose records are its chains")


def add_check_parser(commands) -> argparse.ArgumentParser:
    """Add the `check` subcommand to `commands`; returns its parser."""
    check = commands.add_parser("check", help="validate a data file and print its load summary (nothing else runs)",
                                description="Read the file as `abag train` (or, with --for predict, `abag predict`) "
                                            "would and print what was read: rows read, kept and rejected with "
                                            "their reasons, the columns used and ignored. Exit 0 when every row "
                                            "can be used, 2 otherwise.")
    check.add_argument("--data", required=True, help="CSV/TSV, Excel .xlsx, FASTA or AIRR TSV (docs/data-format.md)")
    check.add_argument("--for", dest="purpose", choices=("train", "evaluate", "predict"), default="train",
                       help="check as for train or evaluate (labels required; default train) or for predict "
                            "(labels not needed: bad label columns are ignored)")
    check.add_argument("--rejected", metavar="CSV", help="also write every rejected row with its reason to CSV")
    check.add_argument("--replicates", choices=("keep", "mean", "flag"), default="keep",
                       help="rows with the same heavy, light and antigen: keep all (default), average, or flag")
    add_antigen_option(check)
    check.set_defaults(handler=run_check)
    return check


def run_check(args: argparse.Namespace) -> int:
    """Print the load summary (abag.data.check); exit 2 when a row or the whole file has a problem."""
    from .data import write_rejected
    from .data.check import check_file

    result = check_file(args.data, require_pkd=args.purpose != "predict", replicates=args.replicates,
                        antigen=args.antigen)
    print(result.text)
    if args.rejected and result.report is not None:
        write_rejected(result.report, args.rejected)
        print(f"wrote {len(result.report.rejected)} rejected row(s) to {args.rejected}")
    return 0 if result.ok else EXIT_PROBLEMS
