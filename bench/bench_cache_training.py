"""Training speed with the embedding cache vs `--no-embedding-cache` (issue 6), measured in one run.

Trains the same model three times on the same rows, in this process, with the encoder loaded once:

1. `--no-embedding-cache`: every batch's chains go through the frozen encoder, every epoch;
2. cold cache: every distinct chain is encoded once into an empty `--embedding-cache` folder;
3. warm cache: a new run on the same folder, which must encode nothing.

Default: 300 CR6261 rows of the Phillips et al. 2021 Tite-Seq file, AntiBERTy, 5 epochs, random split
(the file has one antigen per antibody), on whatever device `--device` names (CPU by default, which is
what the issue asks for). Prints times and the ratios between them, and checks that the cached and
uncached runs trained on the same numbers (their validation losses agree).

    python bench/bench_cache_training.py                 # the real benchmark (AntiBERTy, ~5 min on 2 CPU cores)
    python bench/bench_cache_training.py --tiny          # tiny random encoder, seconds (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_common import load_average, machine  # noqa: E402 - bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("ABAG_DATA_DIR") or ROOT.parent / "shared" / "data")
PHILLIPS = "phillips2021_cr9114_cr6261.csv.gz"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help=f"folder with {PHILLIPS}")
    parser.add_argument("--antibody", default="CR6261", help="value of the file's `antibody` column to keep")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--encoder", default="antiberty")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny random encoder, 48 rows, 2 epochs (synthetic rows if the data file is absent)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.tiny:
        args.encoder, args.rows, args.epochs = "tiny", min(args.rows, 48), min(args.epochs, 2)
    return args


def load_rows(args) -> tuple[pd.DataFrame, str]:
    """`args.rows` rows of one antibody's landscape, validated like `abag train` does."""
    from abag.data import prepare_pairs

    path = args.data_dir / PHILLIPS
    if path.is_file():
        raw = pd.read_csv(path, keep_default_na=False)
        raw = raw[raw["antibody"] == args.antibody]
        if raw.empty:
            sys.exit(f"no rows with antibody == {args.antibody!r} in {path}")
        raw = raw.sample(n=min(args.rows, len(raw)), random_state=args.seed)
        source = f"{PHILLIPS}, antibody {args.antibody}"
    elif args.tiny:
        raw = synthetic_rows(args.rows, args.seed)
        source = "synthetic rows (data file absent)"
    else:
        sys.exit(f"{path} not found: set --data-dir or ABAG_DATA_DIR (see shared/data/README.md)")
    columns = ["heavy", "light", "antigen", "pkd"] + (["at_lower_bound"] if "at_lower_bound" in raw else [])
    frame, _ = prepare_pairs(raw[columns].reset_index(drop=True), source=source)
    return frame, source


def synthetic_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amino = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    heavy = "".join(rng.choice(amino, 120))
    rows = []
    for _ in range(n):
        chars = list(heavy)
        for position in rng.choice(len(chars), 4, replace=False):
            chars[position] = rng.choice(amino)
        light = rows[0]["light"] if rows else "".join(rng.choice(amino, 110))
        rows.append({"heavy": "".join(chars), "light": light,
                     "antigen": "MKV" * 60, "pkd": float(rng.uniform(6, 10))})
    return pd.DataFrame(rows)


def run_once(frame, encoders, args, out: Path, *, cache_dir: str | None, use_cache: bool) -> dict:
    from abag.model.config import ModelConfig
    from abag.training.config import TrainConfig
    from abag.training.run import train

    lines: list[str] = []
    model_config = ModelConfig(antibody_encoder=args.encoder, antigen_encoder=args.encoder)
    config = TrainConfig(epochs=args.epochs, seed=args.seed, split="random", progress=False, device=args.device,
                         embedding_cache=use_cache, cache_dir=cache_dir, early_stopping_patience=10 ** 6)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = train(frame, out, model_config, config, encoders=encoders, log=lines.append)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    history = result.history
    cache_line = next((line for line in lines if line.startswith("embedding cache")), "")
    match = re.search(r"(\d+) chains encoded, (\d+) reused in ([\d.]+)s", cache_line)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "epoch_seconds": float(history["seconds"].sum()),
        "mean_epoch_seconds": float(history["seconds"].mean()),
        "val_loss": [float(v) for v in history["val_loss"]],
        "encoded": int(match.group(1)) if match else None,
        "reused": int(match.group(2)) if match else None,
        "embedding_seconds": float(match.group(3)) if match else 0.0,
        "cache_log": cache_line,
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from abag.encoding.loader import load_encoder

    if args.threads:
        torch.set_num_threads(args.threads)

    frame, source = load_rows(args)
    started = time.perf_counter()
    encoder = load_encoder(args.encoder).to(args.device)
    load_seconds = time.perf_counter() - started
    encoder(["ACDEFGHIKLMNPQRSTVWY"])  # first call pays transformers' lazy imports: keep them out of the timings
    encoders = {args.encoder: encoder}
    from abag.encoding.features import InputSpec
    from abag.model.config import ModelConfig

    antigens_encoded = InputSpec.from_config(ModelConfig(antibody_encoder=args.encoder,
                                                         antigen_encoder=args.encoder)).uses_antigen
    distinct = len(set(frame["heavy"]) | set(c for c in frame["light"] if c)) + \
        (len({c for a in frame["antigen"] for c in a.split("|")}) if antigens_encoded else 0)
    print(f"bench_cache_training: {len(frame)} rows of {source}; {distinct} distinct chains; encoder "
          f"{args.encoder} ({encoder.attention_implementation} attention, loaded in {load_seconds:.1f}s); "
          f"{args.epochs} epochs; device {args.device}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"machine: {machine()}")

    with tempfile.TemporaryDirectory(prefix="abag-bench-") as tmp:
        tmp = Path(tmp)
        cache_dir = str(tmp / "cache")
        runs = {}
        for name, use_cache in (("no_cache", False), ("cold_cache", True), ("warm_cache", True)):
            runs[name] = run_once(frame, encoders, args, tmp / name, cache_dir=cache_dir, use_cache=use_cache)
            r = runs[name]
            print(f"  {name:<10} total {r['seconds']:8.1f}s (cpu {r['cpu_seconds']:7.1f}s) | "
                  f"epochs {r['epoch_seconds']:8.2f}s "
                  f"({r['mean_epoch_seconds']:.3f}s/epoch) | embedding pass {r['embedding_seconds']:.1f}s"
                  + (f" | {r['cache_log']}" if r["cache_log"] else ""))

    none, cold, warm = runs["no_cache"], runs["cold_cache"], runs["warm_cache"]
    ratios = {
        "cpu_no_cache_over_cold_cache": none["cpu_seconds"] / cold["cpu_seconds"],
        "total_no_cache_over_cold_cache": none["seconds"] / cold["seconds"],
        "total_no_cache_over_warm_cache": none["seconds"] / warm["seconds"],
        "per_epoch_no_cache_over_cache": none["mean_epoch_seconds"] / max(warm["mean_epoch_seconds"], 1e-9),
        "training_no_cache_over_cold_cache":
            none["epoch_seconds"] / (cold["epoch_seconds"] + cold["embedding_seconds"]),
    }
    loss_gap = float(np.max(np.abs(np.array(none["val_loss"]) - np.array(cold["val_loss"]))))
    warm_ok = warm["encoded"] == 0 and "nothing to encode" in warm["cache_log"]
    print("ratios (same run, same machine):")
    print(f"  whole run, no cache / cold cache     {ratios['total_no_cache_over_cold_cache']:8.1f}x")
    print(f"  whole run, no cache / warm cache     {ratios['total_no_cache_over_warm_cache']:8.1f}x")
    print(f"  CPU time, no cache / cold cache      {ratios['cpu_no_cache_over_cold_cache']:8.1f}x")
    print(f"  epochs+encoding, no cache / cold     {ratios['training_no_cache_over_cold_cache']:8.1f}x")
    print(f"  per epoch, no cache / cache          {ratios['per_epoch_no_cache_over_cache']:8.1f}x")
    print(f"warm rerun: encoded {warm['encoded']} chains, reused {warm['reused']} "
          f"({'nothing to encode: OK' if warm_ok else 'ENCODED SOMETHING'})")
    print(f"max |val loss(no cache) - val loss(cache)| over epochs: {loss_gap:.2e}")
    print(f"load average at the end: {load_average()}")
    results = {"machine": machine(), "load_average_end": load_average(), "rows": len(frame), "source": source,
               "distinct_chains": distinct, "encoder": args.encoder,
               "epochs": args.epochs, "device": args.device, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "runs": runs, "ratios": ratios,
               "warm_encoded_nothing": warm_ok, "val_loss_max_gap": loss_gap}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not warm_ok or loss_gap > 1e-3:
        sys.exit("FAILED: the warm rerun encoded chains, or cached and uncached training disagree")
    return results


if __name__ == "__main__":
    main()
