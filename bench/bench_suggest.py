"""Retrospective benchmark of `abag suggest` on the Phillips 2021 CR6261 and CR9114 landscapes.

    python bench/bench_suggest.py [--data ../shared/data/phillips2021_cr9114_cr6261.csv.gz] [--out runs/bench_suggest]
                                  [--repeats 10] [--rounds 5] [--batch 96] [--landscapes CR6261 CR9114]
    python bench/bench_suggest.py --owner-check [--repeats 3]

Campaign protocol (all seeds fixed; nothing is tuned to these landscapes): every variant of one antibody is a
candidate whose measurement is its Tite-Seq pKd (CR9114 variants at the assay floor are measured as censored
at 6.0, as a real assay would report them). A campaign starts from 96 random variants (`random` start) or from
the germline plus all its single mutants (`germline` start), then runs `--rounds` rounds: fit on everything
measured so far, choose `--batch` unmeasured variants, measure them. Reported after each round, per strategy,
as mean ± standard deviation over `--repeats` campaigns (seeds 0..repeats-1): how many of the landscape's top 1%
variants have been measured (start included), and the best pKd measured.

Strategies: `random`; `ridge_greedy` (EVOLVEpro-like: RidgeCV on one-hot, top-n by predicted mean, no
uncertainty, no diversity rule, ties in the seeded random order abag draws; written here with sklearn,
independent of abag.suggest); and abag's `suggest_batch` with the greedy, ucb and thompson strategies, each
without the diversity rule (`abag_greedy`: min_distance 1, the default) and with it (`abag_greedy+div`:
min_distance 2). abag's variant models here use one-hot features only (no language-model embeddings: encoding
65,536 CR9114 variants with AntiBERTy on a CPU would take hours); each round the model is chosen by
cross-validation between one-hot ridge and a GP on one-hot. BLAS runs single-threaded (threaded BLAS on these
small matrices spends most of its CPU time spinning).

`--owner-check`: 200 random variants measured, 48 suggested from the rest (1,834 for CR6261), `--repeats`
repeats (seeds 0..); the share of the picks in the top decile of the remaining variants, per strategy and
landscape. The product owner's check is CR6261; CR9114 is reported beside it.

Writes OUT/summary.json, OUT/summary.md (tables for bench/RESULTS.md) and OUT/rounds.png
(`--render-only` rewrites the last two from OUT/summary.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # before numpy: threaded BLAS on small matrices only spins

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.linear_model import RidgeCV  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_common import machine  # noqa: E402

from abag.suggest import SuggestConfig, suggest_batch  # noqa: E402
from abag.suggest.encoding import encode_variants  # noqa: E402
from abag.suggest.variant_models import ALPHAS  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "phillips2021_cr9114_cr6261.csv.gz"
ABAG_STRATEGIES = {f"abag_{strategy}{suffix}": dict(strategy=strategy, min_distance=distance)
                   for suffix, distance in (("", 1), ("+div", 2)) for strategy in ("greedy", "ucb", "thompson")}
STRATEGIES = ("random", "ridge_greedy", *ABAG_STRATEGIES)


@dataclass
class Landscape:
    """One antibody's variants: sequences, the measurement each would give, and what counts as top."""

    name: str
    frame: pd.DataFrame        # heavy, light, antigen, pkd, censored, n_somatic
    onehot: np.ndarray         # one-hot of the varying positions (for the ridge baseline)
    top_cut: float             # pKd of the landscape's top 1%

    @property
    def pkd(self) -> np.ndarray:
        return self.frame["pkd"].to_numpy()


def load_landscape(data: Path, antibody: str) -> Landscape:
    full = pd.read_csv(data, usecols=["heavy", "light", "antigen", "pkd", "antibody", "n_somatic",
                                      "at_lower_bound"], keep_default_na=False)
    frame = full[full["antibody"] == antibody].reset_index(drop=True)
    frame = frame.assign(censored=frame["at_lower_bound"].astype(str).str.lower() == "true")
    frame = frame[["heavy", "light", "antigen", "pkd", "censored", "n_somatic"]]
    k = max(1, int(np.ceil(0.01 * len(frame))))
    top_cut = float(np.sort(frame["pkd"].to_numpy())[::-1][k - 1])
    return Landscape(antibody, frame, encode_variants(frame).features, top_cut)


def start_rows(landscape: Landscape, start: str, size: int, seed: int) -> np.ndarray:
    if start == "germline":
        return np.flatnonzero(landscape.frame["n_somatic"].to_numpy() <= 1)
    return np.random.default_rng(seed).choice(len(landscape.frame), size=size, replace=False)


def choose(landscape: Landscape, strategy: str, measured: np.ndarray, batch: int, seed: int) -> np.ndarray:
    """Rows of the next batch (indices into landscape.frame)."""
    return choose_with_model(landscape, strategy, measured, batch, seed)[0]


def choose_with_model(landscape: Landscape, strategy: str, measured: np.ndarray, batch: int, seed: int
                      ) -> tuple[np.ndarray, str]:
    """(rows of the next batch, the variant model that ranked them: "" for random)."""
    rest = np.setdiff1d(np.arange(len(landscape.frame)), measured)
    if strategy == "random":
        return np.random.default_rng([seed, len(measured)]).choice(rest, size=batch, replace=False), ""
    if strategy == "ridge_greedy":
        model = RidgeCV(alphas=ALPHAS).fit(landscape.onehot[measured], landscape.pkd[measured])
        # Ties (e.g. a start whose variants all sit at the assay floor) in seeded random order, the very order
        # suggest_batch draws (so both rank an uninformative start alike); the file is sorted by affinity, so
        # its order would leak the answer.
        tie_break = np.random.default_rng(seed).random(len(rest))
        return rest[np.lexsort((tie_break, -model.predict(landscape.onehot[rest])))[:batch]], "onehot_ridge"
    config = SuggestConfig(n=batch, seed=seed, **ABAG_STRATEGIES[strategy])
    frame = landscape.frame
    candidates = frame.iloc[rest][["heavy", "light", "antigen"]].assign(row=rest)
    result = suggest_batch(candidates, frame.iloc[measured], config)
    return result.batch["row"].to_numpy(), result.report.model.chosen


def campaign(landscape: Landscape, strategy: str, start: str, args, seed: int) -> dict:
    measured = start_rows(landscape, start, args.start_size, seed)
    top, best, seconds, models = [], [], [], []
    for round_ in range(args.rounds + 1):
        if round_:
            began = time.process_time()
            picked, model = choose_with_model(landscape, strategy, measured, args.batch, seed)
            seconds.append(time.process_time() - began)
            models.append(model)
            assert len(set(picked)) == args.batch and not set(picked) & set(measured)
            measured = np.concatenate([measured, picked])
        top.append(int((landscape.pkd[measured] >= landscape.top_cut).sum()))
        best.append(float(landscape.pkd[measured].max()))
    return {"top1": top, "best": best, "models": models, "cpu_seconds": float(np.sum(seconds))}


def run_campaigns(landscapes, args) -> dict:
    results = {}
    for landscape in landscapes:
        for start in args.starts:
            for strategy in args.strategies:
                runs = [campaign(landscape, strategy, start, args, seed) for seed in range(args.repeats)]
                key = f"{landscape.name}/{start}/{strategy}"
                results[key] = {"top1": [r["top1"] for r in runs], "best": [r["best"] for r in runs],
                                "models": [r["models"] for r in runs],
                                "cpu_seconds": float(sum(r["cpu_seconds"] for r in runs))}
                mean_top = np.mean([r["top1"] for r in runs], axis=0)
                print(f"{key:<40} top-1% found per round {np.round(mean_top, 1).tolist()} "
                      f"({results[key]['cpu_seconds']:.0f} s CPU)", flush=True)
    return results


def owner_check(landscape: Landscape, args) -> dict:
    """Train on 200 random variants, suggest 48 of the rest: share of picks in the rest's top decile."""
    shares = {s: [] for s in args.strategies}
    models = {s: [] for s in args.strategies}
    for seed in range(args.repeats):
        measured = np.random.default_rng(seed).choice(len(landscape.frame), size=200, replace=False)
        rest = np.setdiff1d(np.arange(len(landscape.frame)), measured)
        decile = np.quantile(landscape.pkd[rest], 0.9)
        for strategy in shares:
            picked, model = choose_with_model(landscape, strategy, measured, 48, seed)
            shares[strategy].append(float(np.mean(landscape.pkd[picked] >= decile)))
            models[strategy].append(model)
    for strategy, values in shares.items():
        print(f"owner check {landscape.name} {strategy:<20} top-decile share {np.round(values, 3).tolist()} "
              f"mean {np.mean(values):.3f} (models: {', '.join(m for m in models[strategy] if m) or '-'})", flush=True)
    return {"shares": shares, "models": models}


# ----------------------------------------------------------------------------------------------- reporting

def _cell(values: list[float], digits: int) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.{digits}f}"


def headline(results: dict, landscapes, args) -> list[str]:
    """Per landscape: top-1% variants found after rounds 1, 3 and the last, both starts, every strategy."""
    shown = sorted({1, min(3, args.rounds), args.rounds})
    lines = []
    for landscape in landscapes:
        n_top = int((landscape.pkd >= landscape.top_cut).sum())
        columns = [f"{start} start, round {r}" for start in args.starts for r in shown]
        lines += [f"**{landscape.name}**: top-1% variants found ({n_top} exist), mean ± sd over {args.repeats} "
                  f"campaigns", "", "| strategy | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        for strategy in args.strategies:
            cells = [_cell(np.array(results[f"{landscape.name}/{start}/{strategy}"]["top1"], dtype=float)[:, r], 1)
                     for start in args.starts for r in shown]
            lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def markdown(results: dict, landscapes, args) -> str:
    lines = headline(results, landscapes, args)
    for landscape in landscapes:
        n_top = int((landscape.pkd >= landscape.top_cut).sum())
        for start in args.starts:
            lines += [f"**{landscape.name}, {start} start** ({len(landscape.frame):,} variants, top 1% = {n_top} "
                      f"variants with pKd ≥ {landscape.top_cut:.2f}; max {landscape.pkd.max():.2f}). "
                      f"Top-1% variants found / best pKd measured after each round, mean ± sd over "
                      f"{args.repeats} repeats:", "",
                      "| strategy | " + " | ".join(f"round {r}" for r in range(args.rounds + 1)) + " |",
                      "|---|" + "---|" * (args.rounds + 1)]
            for strategy in args.strategies:
                entry = results[f"{landscape.name}/{start}/{strategy}"]
                top = np.array(entry["top1"], dtype=float).T
                best = np.array(entry["best"]).T
                cells = [f"{_cell(t, 1)} / {_cell(b, 2)}" for t, b in zip(top, best)]
                lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines + model_choices(results, landscapes, args))


def model_choices(results: dict, landscapes, args) -> list[str]:
    """How often abag's cross-validation chose the GP over one-hot ridge, per round (all repeats pooled)."""
    lines = ["**Variant model chosen by abag's cross-validation**: share of campaigns in which the GP (not one-hot "
             "ridge) ranked that round's batch, for `abag_greedy`:", "",
             "| landscape, start | " + " | ".join(f"round {r}" for r in range(1, args.rounds + 1)) + " |",
             "|---|" + "---|" * args.rounds]
    for landscape in landscapes:
        for start in args.starts:
            entry = results.get(f"{landscape.name}/{start}/abag_greedy")
            if entry is None:
                continue
            models = np.array(entry["models"])
            lines.append(f"| {landscape.name}, {start} | " + " | ".join(f"{np.mean(models[:, r] == 'gp'):.0%}"
                                                                   for r in range(args.rounds)) + " |")
    return lines + [""]


def plot(results: dict, landscapes, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"random": "0.6", "ridge_greedy": "black", "greedy": "C0", "ucb": "C1", "thompson": "C3"}
    panels = [(ls, s) for ls in landscapes for s in args.starts]
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7), squeeze=False)
    rounds = np.arange(args.rounds + 1)
    for col, (landscape, start) in enumerate(panels):
        for strategy in args.strategies:
            entry = results[f"{landscape.name}/{start}/{strategy}"]
            for row, metric in enumerate(("top1", "best")):
                values = np.array(entry[metric], dtype=float)
                mean, sd = values.mean(axis=0), values.std(axis=0)
                colour = colours[strategy.removeprefix("abag_").removesuffix("+div")]
                style = "--" if strategy.endswith("+div") else "-"
                axes[row, col].plot(rounds, mean, style, color=colour, marker="o", ms=3, label=strategy)
                axes[row, col].fill_between(rounds, mean - sd, mean + sd, color=colour, alpha=0.08)
        axes[0, col].set_title(f"{landscape.name}, {start} start")
        axes[0, col].set_ylabel("top-1% variants found")
        axes[1, col].set_ylabel("best pKd measured")
        axes[1, col].set_xlabel("round")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_suggest")
    parser.add_argument("--landscapes", nargs="+", default=["CR6261", "CR9114"])
    parser.add_argument("--starts", nargs="+", choices=("random", "germline"), default=["random", "germline"])
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--repeats", type=int, default=None, help="default 10 (3 with --owner-check)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--start-size", type=int, default=96)
    parser.add_argument("--owner-check", action="store_true")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite OUT/summary.md and OUT/rounds.png from OUT/summary.json (same arguments)")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.owner_check else 10
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    began, cpu = time.perf_counter(), time.process_time()
    print(machine(), flush=True)
    if args.owner_check:
        checks = {name: owner_check(load_landscape(args.data, name), args) for name in args.landscapes}
        (args.out / "owner_check.json").write_text(json.dumps({"machine": machine(), "checks": checks}, indent=2))
        return 0
    landscapes = [load_landscape(args.data, name) for name in args.landscapes]
    if args.render_only:  # tables and plot again from OUT/summary.json, nothing rerun
        summary = json.loads((args.out / "summary.json").read_text())
        results = summary["results"]
    else:
        results = run_campaigns(landscapes, args)
        summary = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                   "wall_seconds": time.perf_counter() - began, "cpu_seconds": time.process_time() - cpu,
                   "results": results}
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    (args.out / "summary.md").write_text(markdown(results, landscapes, args))
    plot(results, landscapes, args, args.out / "rounds.png")
    print(f"wrote {args.out / 'summary.md'} and {args.out / 'rounds.png'} "
          f"({summary['wall_seconds']:.0f} s wall, {summary['cpu_seconds']:.0f} s CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
