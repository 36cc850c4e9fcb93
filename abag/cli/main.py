"""`abag`'s entry point: parse the command line, run the verb, and turn every error a user can act on into one
message on stderr (`abag: error: …`, saying what to do next) and an exit code: 2 for bad input, options, files,
checkpoints or encoders, 3 for a diverged run, 130 for Ctrl-C. Never a traceback (ABAG_DEBUG=1 shows one for an
unexpected internal error)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from abag.cli.check import add_check_parser
from abag.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    Parser,
    UsageError,
)
from abag.cli.info import add_info_parser
from abag.cli.predict import add_predict_parsers
from abag.cli.suggest import add_suggest_parser
from abag.cli.train import Interrupted, add_train_parser, resume_command
from abag.data import DataValidationError
from abag.errors import AbagError
from abag.training.loop import TrainingInterrupted
from abag.version import __version__


def build_parser() -> argparse.ArgumentParser:
    """The `abag` parser with one subcommand per verb."""
    parser = Parser(prog="abag", description="Antibody–antigen binding affinity (pKd) from sequence.")
    parser.add_argument("--version", action="version", version=f"abag {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(commands)
    add_predict_parsers(commands)
    add_suggest_parser(commands)
    add_check_parser(commands)
    add_info_parser(commands)
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `abag` console script; returns the exit code and never raises."""

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
            message = message.split(" Continue with")[0] + f" Continue with: {resume_command(argv)}"
        print(f"abag: {message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Interrupted as exc:
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
