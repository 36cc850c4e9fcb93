"""The `abag suggest` command: read the files named on the command line, run `suggest_batch`, write the batch.

Candidates come from `--candidates CSV`, from `--parent CSV` (one row) enumerated at `--positions`, and,
with `--parent` and `--measured`, from combinations of the mutations the measured variants show to help
(up to `--max-order` mutations). Measured replicates of one variant are averaged (`replicates="mean"`), so
cross-validation never holds out a copy of a training row. Output: the batch CSV (`--out`), the report as
JSON (`--report`, optional) and the report's summary on stderr. Imports abag.data, abag.outputs and the
abag.suggest modules; the checkpoint is loaded by the caller (`abag.cli`), which maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from abag.data import load_pairs
from abag.outputs import ensure_writable_file, write_csv_atomic, write_json_atomic
from abag.suggest.candidates import (
    KEY,
    combine_helpful,
    mutation_names,
    parse_positions,
    single_mutants,
)
from abag.suggest.config import SuggestConfig, SuggestError
from abag.suggest.pipeline import suggest_batch

__all__ = ["check_outputs", "read_inputs", "run_suggest_command"]


def check_outputs(args: argparse.Namespace) -> None:
    """Fail before any loading when the batch or the report cannot be written."""
    ensure_writable_file(args.out, "--out")
    if args.report:
        if Path(args.report).resolve() == Path(args.out).resolve():
            raise SuggestError("--report must differ from --out")
        ensure_writable_file(args.report, "--report")


def _parent(path: str) -> pd.Series:
    frame, _ = load_pairs(path, require_pkd=False)
    if len(frame) != 1:
        raise SuggestError(f"--parent {path} must hold exactly one row (heavy, light, antigen); it has {len(frame)}")
    return frame.iloc[0]


def read_inputs(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(candidates, measured or None) from the files and the enumeration options in `args`."""
    measured = None
    if args.measured:
        measured, report = load_pairs(args.measured, require_pkd=True, replicates="mean")
        print(report.summary(), file=sys.stderr)
    parts = []
    if args.candidates:
        candidates, report = load_pairs(args.candidates, require_pkd=False)
        print(report.summary(), file=sys.stderr)
        unused = [c for c, used in (("pkd", candidates["pkd"].notna().any()),
                                    ("censored", candidates["censored"].astype(bool).any())) if not used]
        parts.append(candidates.drop(columns=unused))  # columns load_pairs adds when the file has no pkd
    if args.parent:
        parent = _parent(args.parent)
        if args.positions:
            parts.append(single_mutants(parent, parse_positions(args.positions, parent)))
        if measured is not None:
            parts.append(combine_helpful(parent, measured, args.max_order))
        if parts and "mutations" not in parts[0]:
            parts[0] = parts[0].assign(mutations=mutation_names(parent, parts[0]))
    candidates = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=KEY)
    if len(candidates) == 0:
        raise SuggestError("no candidates: the candidate file is empty, or the parent gave none (add "
                           "--positions, or --measured variants whose mutations help)")
    return candidates, measured


def run_suggest_command(args: argparse.Namespace, model) -> int:
    """Everything after the checkpoint is loaded: inputs, `suggest_batch`, outputs; returns the exit code."""
    candidates, measured = read_inputs(args)
    config = SuggestConfig(n=args.n, strategy=args.strategy, seed=args.seed, beta=args.beta,
                           min_distance=args.min_distance)
    result = suggest_batch(candidates, measured, config, model=model, cache_dir=args.embedding_cache,
                           progress=not args.quiet and sys.stderr.isatty())
    write_csv_atomic(args.out, result.batch)
    if args.report:
        write_json_atomic(args.report, result.report.to_dict())
    print(result.report.summary(), file=sys.stderr)
    print(f"wrote a batch of {len(result.batch)} to {args.out}" + (f" and the report to {args.report}"
                                                                     if args.report else ""), file=sys.stderr)
    return 0
