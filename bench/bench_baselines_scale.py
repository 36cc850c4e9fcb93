"""Wall time and peak memory of the baselines (training mean, k-mer ridge) on large synthetic pair sets.

The pairs reuse chains the way real affinity tables do: by default 500,000 pairs drawn from 100,000 heavy
chains, 50,000 light chains (10 % of pairs single-domain) and 20,000 antigens in 2,000 families (members of a
family are point mutants of one parent; a quarter of the antigens have two chains joined by '|'). pKd is a
noisy linear function of chain composition, so the ridge has something to find; 2 % of rows are censored.
The distinct-chain counts scale with `--rows` unless given.

Fits `fit_baselines` on 80 % of the rows and predicts the other 20 %, then prints the seconds, the traced
peak of Python/NumPy allocations (tracemalloc) and the process's peak resident memory for fit + predict.

    python bench/bench_baselines_scale.py --rows 500000
    python bench/bench_baselines_scale.py --rows 20000 --compare-direct   # also the direct sklearn RidgeCV
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from bench_common import machine  # noqa: E402 - bench/ is on sys.path when run as a script

from abag.evaluation.baselines import fit_baselines
from abag.model.ridge import RIDGE_ALPHAS, pair_features, training_rows
from abag.policy import AMINO_ACIDS

LETTERS = np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)


def _chains(rng: np.random.Generator, count: int, low: int, high: int) -> list[str]:
    """`count` random chains with lengths in [low, high) and a chain-specific residue bias."""
    out: list[str] = []
    for start in range(0, count, 5000):
        size = min(5000, count - start)
        lengths = rng.integers(low, high, size=size)
        cumulative = np.cumsum(rng.dirichlet(np.full(20, 2.0), size=size), axis=1)
        draws = rng.random((size, high))
        codes = (draws[:, :, None] > cumulative[:, None, :-1]).sum(axis=2).astype(np.uint8)
        out += [LETTERS[row[:n]].tobytes().decode() for row, n in zip(codes, lengths)]
    return out


def _antigens(rng: np.random.Generator, count: int, families: int) -> list[str]:
    """Point mutants (about 5 % of positions) of `families` parents; a quarter of them two-chain."""
    parents = _chains(rng, families, 150, 500)
    out = []
    for i in range(count):
        parent = np.frombuffer(parents[i % families].encode(), dtype=np.uint8).copy()
        sites = rng.random(parent.size) < 0.05
        parent[sites] = LETTERS[rng.integers(0, 20, size=int(sites.sum()))]
        text = parent.tobytes().decode()
        if i % 4 == 0:
            text = text[: len(text) // 2] + "|" + text[len(text) // 2:]
        out.append(text)
    return out


def synthetic_pairs(rows: int, heavy: int, light: int, antigens: int, families: int, seed: int = 0) -> pd.DataFrame:
    """`rows` pairs over the given numbers of distinct chains (see the module docstring)."""
    rng = np.random.default_rng(seed)
    chains = {
        "heavy": np.array(_chains(rng, heavy, 110, 130), dtype=object),
        "light": np.array(_chains(rng, light, 100, 115) + [""], dtype=object),
        "antigen": np.array(_antigens(rng, antigens, families), dtype=object),
    }
    index = {
        "heavy": rng.integers(0, heavy, size=rows),
        "light": np.where(rng.random(rows) < 0.1, light, rng.integers(0, light, size=rows)),
        "antigen": rng.integers(0, antigens, size=rows),
    }
    weights = rng.normal(0, 3, size=20)
    pkd = np.full(rows, 8.0)
    for name, seqs in chains.items():
        signal = np.array([np.bincount(np.frombuffer(s.encode(), np.uint8), minlength=256)[LETTERS].dot(weights)
                           / max(len(s), 1) for s in seqs])
        pkd += signal[index[name]]
    pkd += rng.normal(0, 0.5, size=rows)
    frame = pd.DataFrame({name: chains[name][index[name]] for name in chains})
    frame["pkd"] = np.clip(pkd, 4.0, 14.0)
    frame["censored"] = rng.random(rows) < 0.02
    return frame


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(train: pd.DataFrame, test: pd.DataFrame, trace: bool) -> dict:
    """Seconds, traced peak and resident peak of fitting the baselines on `train` and predicting `test`."""
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    models = fit_baselines(train)
    fitted = time.perf_counter()
    predictions = {name: model.predict(test) for name, model in models.items()}
    done = time.perf_counter()
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    if trace:
        tracemalloc.stop()
    ridge = models["kmer_ridge"]
    truth = test["pkd"].to_numpy()
    return {
        "fit_s": fitted - started, "predict_s": done - fitted, "traced_peak_mb": traced,
        "peak_rss_mb": _peak_rss_mb(), "alpha": ridge.alpha_, "method": ridge.method,
        "test_spearman": float(pd.Series(predictions["kmer_ridge"]).corr(pd.Series(truth), method="spearman")),
        "predictions": predictions["kmer_ridge"],
    }


def direct_ridge(train: pd.DataFrame, test: pd.DataFrame) -> tuple[float, np.ndarray, float]:
    """The earlier implementation: StandardScaler + RidgeCV on the dense pair features."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    started = time.perf_counter()
    rows = training_rows(train)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    model.fit(pair_features(rows), rows["pkd"].to_numpy(dtype=float))
    predictions = model.predict(pair_features(test))
    return float(model[-1].alpha_), predictions, time.perf_counter() - started


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--heavy", type=int, help="distinct heavy chains (default rows / 5)")
    parser.add_argument("--light", type=int, help="distinct light chains (default rows / 10)")
    parser.add_argument("--antigens", type=int, help="distinct antigens (default rows / 25)")
    parser.add_argument("--families", type=int, help="antigen families (default antigens / 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-trace", action="store_true", help="skip tracemalloc (it slows Python code a little)")
    parser.add_argument("--compare-direct", action="store_true",
                        help="also fit the direct sklearn pipeline (dense n x d: only for small --rows)")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    heavy = args.heavy or max(args.rows // 5, 1)
    light = args.light or max(args.rows // 10, 1)
    antigens = args.antigens or max(args.rows // 25, 1)
    families = args.families or max(antigens // 10, 1)
    print(f"machine: {machine()}")
    started = time.perf_counter()
    frame = synthetic_pairs(args.rows, heavy, light, antigens, families, seed=args.seed)
    cut = int(0.8 * len(frame))
    train, test = frame.iloc[:cut], frame.iloc[cut:]
    print(f"{args.rows:,} pairs ({heavy:,} heavy, {light:,} light, {antigens:,} antigens in {families:,} families) "
          f"generated in {time.perf_counter() - started:.0f} s; resident {_peak_rss_mb():.0f} MB")
    result = measure(train, test, trace=not args.no_trace)
    predictions = result.pop("predictions")
    traced = "n/a" if result["traced_peak_mb"] is None else f"{result['traced_peak_mb']:.0f} MB"
    print(f"fit {result['fit_s']:.1f} s on {len(train):,} rows, predict {result['predict_s']:.1f} s on "
          f"{len(test):,} rows; traced peak {traced}, process peak RSS {result['peak_rss_mb']:.0f} MB")
    print(f"kmer_ridge: {result['method']}; test Spearman {result['test_spearman']:.3f}")
    out = {"rows": args.rows, "heavy": heavy, "light": light, "antigens": antigens, "families": families,
           "machine": machine(), **result}
    if args.compare_direct:
        alpha, direct, seconds = direct_ridge(train, test)
        gap = float(np.max(np.abs(direct - predictions)))
        print(f"direct sklearn RidgeCV: alpha {alpha:g}, {seconds:.1f} s; max |prediction gap| {gap:.2e}")
        out["direct"] = {"alpha": alpha, "seconds": seconds, "max_abs_gap": gap}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
