"""The wide part alone on the real protocols: `kmer_ridge` against `ridge_choice`, `ridge_blend`, `grouped_blend`
and the one-hot.

    OMP_NUM_THREADS=1 python bench/experiments/wide_onehot.py [--protocols P ...] [--predictors P ...]
        [--data-dir ../shared/data] [--out runs/wide_onehot]

No network: each predictor is fitted on every fold's training rows (exactly the rows bench_one_model's
baselines use: the validation slice is left out) and scores the fold's test rows, with bench_one_model's
protocols and metrics (imported, not copied):

* `phillips_extrapolation` — CR6261 train ≤ 4 substitutions, CR9114 ≤ 7, test on more: Spearman, RMSE.
* `skempi_loco` — leave one SKEMPI complex out: mean Spearman per complex (≥ 3 scored rows), pooled, RMSE.
* `saaintdb_cluster` — 5-fold antigen-cluster CV on the frozen folds: pooled, within-cluster, RMSE.
* `phillips_random` — 2,000 variants per antibody, 5 random folds over variants: Spearman per antibody.
* `saaintdb_random10` — the same rows in 10 random folds: pooled, mean over folds, RMSE.
* `alphaseq_antibody` — AlphaSeq, whole antibodies held out: Spearman across antigens within each antibody.

Predictors (columns): `kmer_ridge` (the k-mer parts: pair k-mer ridge + heavy 3-mer block), `ridge_choice` (the
k-mer parts or the one-hot ridge, whichever has the lower held-out error over folds of the training rows'
groups: `abag.model.wide.choose`), `ridge_blend` (the two weighed by that error, the one-hot's weight at most
`BLEND_MAX_ONEHOT`), `grouped_blend` (that blend fitted to within-group deviations plus a k-mer ridge on the group
means: `ridge_blend` where the protocol has no groups), `onehot_ridge` (`ridge_choice`'s second candidate alone,
`abag.model.wide.OneHotRidge`: the IMGT-aligned one-hot block fitted to the centred pKd) and, when asked for,
`onehot_ridge_baseline` (`abag.evaluation.variant_baselines.OneHotRidgeBaseline`, positions learned on the rows).
`ridge_choice`, `ridge_blend` and `grouped_blend` are given the groups the protocol's models split by (`GROUP_COLUMNS`: SKEMPI's
complex, the frozen antigen clusters of SAAINT-DB, AlphaSeq's antibody; none, so random folds, for Phillips and
the random split), and the table says which candidate each fold chose and the one-hot's weight per fold. Every distinct
chain is numbered once, up front, on one thread (timed apart: "numbering"); the fit times exclude it.
Writes OUT/results.json and OUT/table.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_one_model as one  # noqa: E402  (protocols, folds, metrics)

from abag.evaluation.variant_baselines import OneHotRidgeBaseline  # noqa: E402
from abag.model import wide  # noqa: E402
from abag.model.ridge import training_rows  # noqa: E402
from abag.numbering import number_chains  # noqa: E402
from abag.numbering.domains import SHARED_NUMBERING  # noqa: E402

PROTOCOLS = ("phillips_extrapolation", "skempi_loco", "saaintdb_cluster", "phillips_random", "saaintdb_random10",
             "alphaseq_antibody")
PREDICTORS = ("kmer_ridge", "ridge_choice", "ridge_blend", "grouped_blend", "onehot_ridge", "onehot_ridge_baseline")
DEFAULT_PREDICTORS = PREDICTORS[:5]
GROUP_COLUMNS = {"skempi_loco": "skempi_complex", "saaintdb_cluster": "cv_cluster",
                 "alphaseq_antibody": "antibody_name"}
"""The groups `abag train` would split by in each protocol (the others: none, random folds)."""


class WideOnly:
    """A wide part as a baseline: `fit(train, groups)` then `predict(test)`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.part: wide.WidePart | None = None

    def fit(self, frame: pd.DataFrame, groups: np.ndarray | None = None) -> WideOnly:
        self.part = wide.WidePart.fit(frame, self.kind, groups)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.part is not None  # "grouped_blend": its bound, which the model puts on wide + deep
        return self.part.bounded(self.part.predict(frame))


class OneHotAlone:
    """`ridge_choice`'s second candidate on its own."""

    def fit(self, frame: pd.DataFrame, groups: np.ndarray | None = None) -> OneHotAlone:
        self.ridge = wide.OneHotRidge.fit(training_rows(frame))
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.ridge.predict(frame)


class Baseline:
    """`OneHotRidgeBaseline` (groups unused)."""

    def __init__(self) -> None:
        self.model = OneHotRidgeBaseline(cache=SHARED_NUMBERING)

    def fit(self, frame: pd.DataFrame, groups: np.ndarray | None = None) -> Baseline:
        self.model.fit(frame)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict(frame)


FACTORIES: dict[str, Callable[[], Any]] = {
    "kmer_ridge": lambda: WideOnly("kmer_ridge"),
    "ridge_choice": lambda: WideOnly("ridge_choice"),
    "ridge_blend": lambda: WideOnly("ridge_blend"),
    "grouped_blend": lambda: WideOnly("grouped_blend"),
    "onehot_ridge": OneHotAlone,
    "onehot_ridge_baseline": Baseline,
}


def protocol_args(data_dir: str) -> SimpleNamespace:
    """bench_one_model's defaults for the settings its protocol builders read."""
    return SimpleNamespace(data_dir=data_dir, phillips_per_antibody=2000, phillips_epochs=30, epochs=None,
                           extrapolation_min_train=300, extrapolation_test=300, extrapolation_test_censored=100,
                           extrapolation_train_censored=200, saaintdb_folds=str(one.FOLDS_FILE),
                           saaintdb_random_folds=10)


def number_up_front(parts: list[one.Part]) -> tuple[float, int, int]:
    """Number every distinct chain of the parts into the shared numbering cache on one thread: (seconds, chains,
    failures)."""
    chains = sorted({wide._clean(c) for p in parts for col in ("heavy", "light") if col in p.frame
                     for c in p.frame[col]} - {""})
    started = time.perf_counter()
    numbered = number_chains(chains, cache=SHARED_NUMBERING, workers=1)
    return time.perf_counter() - started, len(chains), len(numbered.failures)


def run_part(part: one.Part, predictors: list[str], group_column: str | None,
             log: Callable[[str], None]) -> tuple[dict, dict, list]:
    """Out-of-fold predictions per predictor, fit seconds per predictor and fold, `ridge_choice`'s choice and
    `ridge_blend`'s weight per fold."""
    columns = {name: np.full(len(part.frame), np.nan) for name in predictors}
    seconds: dict[str, list[float]] = {name: [] for name in predictors}
    choices, weights = [], []
    for i, split in enumerate(one.fold_splits(part)):
        train = part.frame.iloc[split.indices("train")]
        groups = None if group_column is None else train[group_column].astype(str).to_numpy()
        test_rows = split.indices("test")
        for name in predictors:
            started = time.perf_counter()
            model = FACTORIES[name]().fit(train, groups)
            seconds[name].append(time.perf_counter() - started)
            columns[name][test_rows] = model.predict(part.frame.iloc[test_rows])
            if name == "ridge_blend":
                weights.append({"fold": i, "onehot_weight": model.part.weight})
            if name == "ridge_choice":
                fitted = model.part
                choices.append({"fold": i, "chosen": wide.CANDIDATES[fitted.choice],
                                "held_out_rmse": dict(zip(wide.CANDIDATES, fitted.cv_rmse)),
                                "folds": fitted.cv_folds, "groups": None if groups is None else len(set(groups)),
                                "onehot_alpha": None if np.isinf(fitted.onehot.block.alpha)
                                else fitted.onehot.block.alpha})
        chose = f"; chose {choices[-1]['chosen']} {choices[-1]['held_out_rmse']}" if "ridge_choice" in predictors \
            else ""
        log(f"  {part.name} fold {i + 1}/{len(part.tests)}: {len(train)} training rows; "
            + ", ".join(f"{n} {seconds[n][-1]:.1f}s" for n in predictors) + chose)
    return columns, seconds, choices, weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--predictors", nargs="+", choices=PREDICTORS, default=list(DEFAULT_PREDICTORS))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "wide_onehot")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    wide.NUMBERING_WORKERS = 1

    def log(line: str) -> None:
        print(line, flush=True)

    results: dict[str, Any] = {}
    for name in args.protocols:
        log(f"=== {name} ===")
        protocol = one.BUILDERS[name](protocol_args(args.data_dir))
        numbering_s, chains, failures = number_up_front(protocol.parts)
        log(f"  numbered {chains} distinct chains in {numbering_s:.0f}s ({failures} could not be numbered)")
        predictions: dict[str, dict[str, pd.DataFrame]] = {p: {} for p in args.predictors}
        seconds: dict[str, list[float]] = {p: [] for p in args.predictors}
        choices, weights = [], []
        for part in protocol.parts:
            columns, part_seconds, part_choices, part_weights = run_part(part, args.predictors,
                                                                         GROUP_COLUMNS.get(name), log)
            weights += [{"part": part.name, **w} for w in part_weights]
            for p in args.predictors:
                predictions[p][part.name] = one.predictions_table(part, columns[p])
                seconds[p] += part_seconds[p]
            choices += [{"part": part.name, **c} for c in part_choices]
        results[name] = {"description": protocol.description, "groups": GROUP_COLUMNS.get(name),
                         "numbering_seconds": numbering_s, "distinct_chains": chains, "unnumbered_chains": failures,
                         "metrics": {p: protocol.score(predictions[p]) for p in args.predictors},
                         "fit_seconds": {p: {"total": float(np.sum(s)), "per_fit_mean": float(np.mean(s)),
                                             "per_fit_max": float(np.max(s)), "fits": len(s)}
                                         for p, s in seconds.items()},
                         "choices": choices, "blend_weights": weights}
        log(markdown({name: results[name]}, args.predictors))
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (args.out / "table.md").write_text(markdown(results, args.predictors) + "\n")
    return 0


def markdown(results: dict[str, Any], predictors: list[str]) -> str:
    """One row per protocol and metric, one column per predictor; then the fit times and the choices."""
    lines = ["| protocol | metric | " + " | ".join(f"`{p}`" for p in predictors) + " |",
             "|---|---|" + "---|" * len(predictors)]
    short = {"k-mer ridge": "k", "one-hot ridge": "1h"}
    for name, entry in results.items():
        metrics = [m for m in next(iter(entry["metrics"].values())) if not m.endswith("scored")]
        for metric in metrics:
            cells = [one.fmt(entry["metrics"][p].get(metric)) for p in predictors]
            lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
        cells = [f"{entry['fit_seconds'][p]['per_fit_mean']:.1f} (max {entry['fit_seconds'][p]['per_fit_max']:.1f})"
                 for p in predictors]
        lines.append(f"| {name} | seconds per fit | " + " | ".join(cells) + " |")
        if entry["choices"]:
            per_fold = ", ".join(f"{short[c['chosen']]}" + (f" ({c['part']})" if c["part"] != "all" else "")
                                 for c in entry["choices"])
            cells = [f"{per_fold} [k: k-mer parts, 1h: one-hot ridge]" if p == "ridge_choice" else "–"
                     for p in predictors]
            lines.append(f"| {name} | chosen per fold | " + " | ".join(cells) + " |")
        if entry.get("blend_weights"):
            per_fold = np.array([w["onehot_weight"] for w in entry["blend_weights"]])
            summary = (f"one-hot weight per fold: median {np.median(per_fold):.2f}, range {per_fold.min():.2f}–"
                       f"{per_fold.max():.2f} over {len(per_fold)} folds")
            cells = [summary if p == "ridge_blend" else "–" for p in predictors]
            lines.append(f"| {name} | blend weights | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
