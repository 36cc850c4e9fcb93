"""`abag check --data FILE`: validate a data file and print its load summary (the work is
`abag.data.check.check_file`)."""

from __future__ import annotations

import argparse

from abag.cli.common import EXIT_BAD_INPUT, add_antigen_option
from abag.data import write_rejected
from abag.data.check import check_file

__all__ = ["add_check_parser", "run_check"]


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
    check.add_argument("--no-check-chains", dest="check_chains", action="store_false",
                       help="skip numbering the antibody chains (IMGT), which finds a light chain in the heavy "
                            "column, swapped chains and scFvs in one cell")
    add_antigen_option(check)
    check.set_defaults(handler=run_check)
    return check


def run_check(args: argparse.Namespace) -> int:
    """Print the load summary (abag.data.check); exit 2 when a row or the whole file has a problem."""

    result = check_file(args.data, require_pkd=args.purpose != "predict", replicates=args.replicates,
                        antigen=args.antigen, check_chains=args.check_chains)
    print(result.text)
    if args.rejected and result.report is not None:
        write_rejected(result.report, args.rejected)
        print(f"wrote {len(result.report.rejected)} rejected row(s) to {args.rejected}")
    return 0 if result.ok else EXIT_BAD_INPUT
