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
k-mer parts or the one-hot ridge, whichever has the lower held-out error over folds of the training rows' groups:
`abag.model.wide.choose`), `ridge_blend` (the two weighed by that error, the one-hot's weight at most
`BLEND_MAX_ONEHOT`), `grouped_blend` (that blend fitted to within-group deviations, scaled, plus a k-mer ridge on
the group means and the local kernel term; where the protocol has no groups, `ridge_blend` plus the local term; the
scale and the local term landed after the RESULTS sections up to "SKEMPI over three seeds", whose `grouped_blend`
columns were measured without them, as were `grouped_within`'s, whose within part now includes them, and the local
term without groups after "A local term on what the linear part leaves"), `onehot_ridge` (`ridge_choice`'s second
candidate alone, `abag.model.wide.OneHotRidge`: the IMGT-aligned one-hot block fitted to the centred pKd) and, when
asked for, `onehot_ridge_baseline` (`abag.evaluation.variant_baselines.OneHotRidgeBaseline`, positions learned on
the rows) and `grouped_blend` taken apart or changed (`GroupedParts`, `LocalWithin`): `grouped_level` and
`grouped_within` (each part alone), `grouped_within_1sd` and `grouped_within_2sd` (the within part soft-bounded),
`grouped_local` (a local kernel as the within part). `ridge_choice`, `ridge_blend` and `grouped_blend` are given the
groups the protocol's models split by (`GROUP_COLUMNS`: SKEMPI's complex, the frozen antigen clusters of SAAINT-DB,
AlphaSeq's antibody; none, so random folds, for Phillips and the random split), and the table says which candidate
each fold chose and the one-hot's weight per fold. Every distinct chain is numbered once, up front, on one thread
(timed apart: "numbering"); the fit times exclude it. Writes OUT/results.json and OUT/table.md and prints the table.
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
from sklearn.metrics.pairwise import euclidean_distances

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_one_model as one  # noqa: E402  (protocols, folds, metrics)

from abag.encoding.kmers import kmer_composition  # noqa: E402
from abag.evaluation.variant_baselines import OneHotRidgeBaseline  # noqa: E402
from abag.model import wide  # noqa: E402
from abag.model.local_kernel import median_positive  # noqa: E402
from abag.model.ridge import training_rows  # noqa: E402
from abag.numbering import number_chains  # noqa: E402
from abag.numbering.domains import SHARED_NUMBERING  # noqa: E402

PROTOCOLS = ("phillips_extrapolation", "skempi_loco", "saaintdb_cluster", "phillips_random", "saaintdb_random10",
             "alphaseq_antibody")
PREDICTORS = ("kmer_ridge", "ridge_choice", "ridge_blend", "grouped_blend", "onehot_ridge", "onehot_ridge_baseline",
              "grouped_level", "grouped_within", "grouped_within_1sd", "grouped_within_2sd", "grouped_local",
              "grouped_kmer")
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


class GroupedParts(WideOnly):
    """`grouped_blend` taken apart (bench/RESULTS.md, "Where SKEMPI's RMSE comes from"): `keep="level"` predicts
    the level alone, `keep="within"` the blend on within-group deviations alone (each around the overall mean);
    `keep="both"` with `within_sd` the sum with the within part soft-bounded at ± `within_sd` SD of the training
    rows' within-group deviations (margin one SD). `grouped_blend` itself where there is no level (no groups)."""

    def __init__(self, keep: str = "both", within_sd: float | None = None) -> None:
        super().__init__("grouped_blend")
        self.keep, self.within_sd = keep, within_sd
        self.within_bound: wide.SoftBound | None = None

    def fit(self, frame: pd.DataFrame, groups: np.ndarray | None = None) -> GroupedParts:
        super().fit(frame, groups)
        self.split = split = wide._between_within(frame.reset_index(drop=True), groups)
        if split is not None and self.within_sd is not None:
            sd = float(np.std(wide._targets(training_rows(split.within)) - split.mean))
            self.within_bound = wide.SoftBound(-self.within_sd * sd, self.within_sd * sd, sd)
        return self

    def parts(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
        """(overall mean + level, within-group deviation) per row, unbounded; None without a level."""
        part = self.part
        if part is None or part.level is None:
            return None
        level = part.level.predict(frame)
        return part.level.mean + level, part.predict(frame) - level - part.level.mean

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        parts = self.parts(frame)
        if parts is None:
            return super().predict(frame)
        level, within = parts
        if self.keep == "level":
            return self.part.bounded(level)
        if self.keep == "within":
            return self.part.bounded(self.part.level.mean + within)
        bounded = within if self.within_bound is None else self.within_bound.apply(within)
        return self.part.bounded(level + bounded)


LOCAL_SCALES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
"""Length scales of `LocalWithin`'s kernel, as fractions of each block's median squared distance."""
LOCAL_PENALTIES = (0.01, 0.1, 1.0)


class LocalWithin(GroupedParts):
    """`grouped_blend`'s level plus, instead of the linear blend, a kernel ridge on the within-group deviations
    whose kernel falls to zero away from every training row, so a group unlike any it was fitted on gets no
    deviation (bench/RESULTS.md, "A local kernel as the within part"): K = exp(-|x - x'|^2 / (l_ab m_ab)
    - |a - a'|^2 / (l_ag m_ag)), x the IMGT-aligned one-hot of VH and VL, a the antigen's 1-2-mer composition, m each
    block's median squared distance over the training rows. l_ab, l_ag and the penalty minimise the out-of-fold
    squared error over folds of the groups (`wide.cross_fit_folds`); no within part is a candidate and wins ties."""

    def fit(self, frame: pd.DataFrame, groups: np.ndarray | None = None) -> LocalWithin:
        super().fit(frame, groups)
        self.choice: tuple[float, float, float] | None = None
        if self.split is None:
            return self
        rows = training_rows(self.split.within)
        target = wide._targets(rows) - self.split.mean
        self.x, self.a = local_features(rows)
        # The training rows' distances once: every length scale and the medians read the same two matrices.
        distances = (euclidean_distances(self.x, squared=True), euclidean_distances(self.a, squared=True))
        self.scales = (median_positive(distances[0]), median_positive(distances[1]))
        fold = wide.cross_fit_folds(len(rows), np.asarray(groups).astype(str)[rows.index.to_numpy()])
        best_error = float(np.mean(target ** 2))
        for l_ab in LOCAL_SCALES:
            for l_ag in LOCAL_SCALES:
                kernel = self._kernel(distances, (l_ab, l_ag))
                for penalty in LOCAL_PENALTIES:
                    error = 0.0
                    for k in np.unique(fold):
                        out = fold == k
                        weights = np.linalg.solve(kernel[np.ix_(~out, ~out)] + penalty * np.eye(int((~out).sum())),
                                                  target[~out])
                        error += float(np.sum((kernel[np.ix_(out, ~out)] @ weights - target[out]) ** 2))
                    if error / len(target) < best_error:
                        self.choice, best_error = (l_ab, l_ag, penalty), error / len(target)
        if self.choice is not None:
            kernel = self._kernel(distances, self.choice[:2])
            self.weights = np.linalg.solve(kernel + self.choice[2] * np.eye(len(target)), target)
        return self

    def _kernel(self, distances: tuple[np.ndarray, np.ndarray], scales: tuple[float, float]) -> np.ndarray:
        """K from squared distances (one-hot, antigen) to the training rows."""
        return np.exp(-distances[0] / (scales[0] * self.scales[0]) - distances[1] / (scales[1] * self.scales[1]))

    def within(self, frame: pd.DataFrame) -> np.ndarray:
        """The kernel ridge's within-group deviation per row (zeros when no within part was chosen)."""
        if self.choice is None:
            return np.zeros(len(frame))
        x, a = local_features(frame)
        distances = (euclidean_distances(x, self.x, squared=True), euclidean_distances(a, self.a, squared=True))
        return self._kernel(distances, self.choice[:2]) @ self.weights

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        parts = self.parts(frame)
        if parts is None:
            return WideOnly.predict(self, frame)
        return self.part.bounded(parts[0] + self.within(frame))


def local_features(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(IMGT-aligned one-hot of VH and VL, the antigen's 1- and 2-mer composition), dense, one row per row."""
    heavy = [wide._clean(c) for c in frame["heavy"]]
    light = [wide._clean(c) for c in frame["light"]] if "light" in frame else [""] * len(frame)
    onehot = wide.ONEHOT_ENCODER.transform(wide._numbered(heavy), wide._numbered(light)).matrix
    antigen = frame["antigen"].astype(str).tolist()
    return (onehot.toarray().astype(np.float64),
            np.hstack([kmer_composition(antigen, 1), kmer_composition(antigen, 2)]))


FACTORIES: dict[str, Callable[[], Any]] = {
    "kmer_ridge": lambda: WideOnly("kmer_ridge"),
    "ridge_choice": lambda: WideOnly("ridge_choice"),
    "ridge_blend": lambda: WideOnly("ridge_blend"),
    "grouped_blend": lambda: WideOnly("grouped_blend"),
    "onehot_ridge": OneHotAlone,
    "onehot_ridge_baseline": Baseline,
    "grouped_level": lambda: GroupedParts("level"),
    "grouped_within": lambda: GroupedParts("within"),
    "grouped_within_1sd": lambda: GroupedParts("both", within_sd=1.0),
    "grouped_within_2sd": lambda: GroupedParts("both", within_sd=2.0),
    "grouped_local": LocalWithin,
    "grouped_kmer": lambda: WideOnly("grouped_kmer"),
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
