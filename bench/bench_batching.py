"""Encoding throughput and padding: token-budget batching vs fixed-size unsorted batches (issue 6).

Encodes the same real chains (a sample of the distinct chains of SAAINT-DB and of the Phillips 2021
landscapes; antigens split into chains, long chains windowed exactly as the cache does) three ways with
`SequenceEncoder.forward`, which pools identically whatever the batching:

- `fixed-B unsorted`: B chains per batch in data order (what per-batch, uncached encoding does);
- `fixed-B sorted`: B chains per batch after sorting by length;
- `token budget`: sorted and packed up to a padded-token budget (`abag.batching.token_budget_batches`,
  what the embedding cache does).

Prints sequences/s, real tokens/s and the padding fraction of each, and speed-ups relative to the unsorted
scheme, all measured in this run; checks that all three give the same embeddings.

    python bench/bench_batching.py                    # AntiBERTy, 256 chains (a few minutes on 2 CPU cores)
    python bench/bench_batching.py --tiny             # tiny random encoder, seconds (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_common import load_average, machine  # noqa: E402 - bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("ABAG_DATA_DIR") or ROOT.parent / "shared" / "data")
SAAINT = "saaintdb_dev.csv"
PHILLIPS = "phillips2021_cr9114_cr6261.csv.gz"
AMINO = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--encoder", default="antiberty")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-chains", type=int, default=256, help="chains to encode (3/4 SAAINT-DB, 1/4 Phillips)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per batch of the fixed-size schemes")
    parser.add_argument("--token-budget", type=int, default=8192, help="the cache's budget (TrainConfig.token_budget)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--tiny", action="store_true", help="tiny random encoder and 64 chains")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.tiny:
        args.encoder, args.n_chains = "tiny", min(args.n_chains, 64)
    return args


def distinct_chains(frame: pd.DataFrame) -> list[str]:
    chains = list(frame["heavy"]) + [c for c in frame["light"] if c]
    chains += [c for a in frame["antigen"] for c in a.split("|")]
    return list(dict.fromkeys(chains))


def all_real_chains(args) -> dict[str, list[str]]:
    """Every distinct chain of SAAINT-DB, and of SAAINT-DB + the Phillips landscapes (empty if absent)."""
    saaint, phillips = args.data_dir / SAAINT, args.data_dir / PHILLIPS
    if not (saaint.is_file() and phillips.is_file()):
        return {}
    s = distinct_chains(pd.read_csv(saaint, keep_default_na=False))
    p = distinct_chains(pd.read_csv(phillips, keep_default_na=False))
    return {"SAAINT-DB": s, "SAAINT-DB + Phillips": list(dict.fromkeys(s + p))}


def cache_plan_padding(encoder, chains: list[str], budget: int, batch_size: int, seed: int) -> tuple[float, float]:
    """Padding of the cache's plan (length-sorted shards, token-budget batches) over `chains`, and of
    fixed-size batches in random order over the same chains: planned only, nothing is encoded."""
    from abag.encoding.batching import (
        fixed_size_batches,
        padded_tokens,
        token_budget_batches,
    )
    from abag.encoding.embedding_cache import CHAINS_PER_SHARD

    ordered = sorted(chains, key=len)
    slots = tokens = 0
    for start in range(0, len(ordered), CHAINS_PER_SHARD):
        lengths = encoder.token_lengths(ordered[start:start + CHAINS_PER_SHARD])
        slots += padded_tokens(lengths, token_budget_batches(lengths, budget))
        tokens += sum(lengths)
    shuffled = [chains[i] for i in np.random.default_rng(seed).permutation(len(chains))]
    lengths = encoder.token_lengths(shuffled)
    naive = padded_tokens(lengths, fixed_size_batches(len(lengths), batch_size))
    return 1 - tokens / slots, 1 - sum(lengths) / naive


def sample_chains(args) -> tuple[list[str], str]:
    """A reproducible, shuffled sample of real distinct chains (synthetic only in --tiny without data)."""
    rng = np.random.default_rng(args.seed)
    saaint, phillips = args.data_dir / SAAINT, args.data_dir / PHILLIPS
    if saaint.is_file() and phillips.is_file():
        s = distinct_chains(pd.read_csv(saaint, keep_default_na=False))
        landscape = pd.read_csv(phillips, keep_default_na=False).sample(n=2000, random_state=args.seed)
        heavy = set(landscape["heavy"])
        p = distinct_chains(landscape)
        n_p = args.n_chains // 4
        n_s = args.n_chains - n_p
        chosen = [s[i] for i in rng.choice(len(s), min(n_s, len(s)), replace=False)]
        # The Phillips antigens and light chains (few, long or common), then heavy-chain variants.
        rest = [c for c in p if c not in heavy] + [c for c in p if c in heavy]
        chosen += rest[:n_p]
        source = f"{len(chosen) - min(n_p, len(rest))} SAAINT-DB + {min(n_p, len(rest))} Phillips 2021 distinct chains"
    elif args.tiny:
        chosen = ["".join(rng.choice(AMINO, int(n))) for n in rng.integers(15, 400, args.n_chains)]
        source = f"{len(chosen)} synthetic chains (data files absent)"
    else:
        sys.exit(f"{saaint} or {phillips} not found: set --data-dir or ABAG_DATA_DIR")
    order = rng.permutation(len(chosen))  # data order for the unsorted scheme: a random mix
    return [chosen[i] for i in order], source


def run_scheme(encoder, chains, plan, device) -> dict:
    import torch

    from abag.encoding.batching import padding_fraction

    reports = []
    lengths = encoder.token_lengths(chains)
    cpu_started, started = time.process_time(), time.perf_counter()
    with torch.inference_mode():
        vectors = encoder(chains, progress=reports.append, batches=plan)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    tokens = sum(r.tokens for r in reports)
    slots = sum(r.padded_tokens for r in reports)
    assert tokens == sum(lengths)
    return {
        "seconds": seconds, "cpu_seconds": cpu_seconds, "batches": len(reports),
        "seq_per_s": len(chains) / seconds, "tokens_per_s": tokens / seconds, "slots_per_s": slots / seconds,
        "padding": 1 - tokens / slots, "planned_padding": padding_fraction(lengths, plan(lengths)),
        "vectors": vectors.float().cpu().numpy(),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from abag.encoding.batching import fixed_size_batches, token_budget_batches
    from abag.encoding.loader import load_encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    chains, source = sample_chains(args)
    encoder = load_encoder(args.encoder).to(device)
    lengths = encoder.token_lengths(chains)
    print(f"bench_batching: {source}; {len(lengths)} windows, {sum(lengths)} tokens (mean {np.mean(lengths):.0f}, "
          f"max {max(lengths)}); encoder {args.encoder} ({encoder.attention_implementation} attention, window "
          f"{encoder.window.length}); device {device}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"machine: {machine()}")
    encoder(chains[:4])  # warm-up: lazy imports and kernel selection stay out of the timings

    b, budget = args.batch_size, args.token_budget
    schemes = {
        f"fixed-{b} unsorted": lambda lengths: fixed_size_batches(len(lengths), b),
        f"fixed-{b} sorted": lambda lengths: [sorted(range(len(lengths)), key=lengths.__getitem__)[i:i + b]
                                              for i in range(0, len(lengths), b)],
        f"token budget {budget}": lambda lengths: token_budget_batches(lengths, budget),
    }
    results = {name: run_scheme(encoder, chains, plan, device) for name, plan in schemes.items()}
    baseline_name = next(iter(schemes))
    baseline = results[baseline_name]
    print(f"{'scheme':<22} {'batches':>7} {'seq/s':>9} {'tokens/s':>10} {'padding':>8} {'speed-up':>9} "
          f"{'cpu speed-up':>12}")
    for name, r in results.items():
        r["speedup"] = baseline["seconds"] / r["seconds"]
        r["cpu_speedup"] = baseline["cpu_seconds"] / max(r["cpu_seconds"], 1e-9)
        print(f"{name:<22} {r['batches']:>7d} {r['seq_per_s']:>9.1f} {r['tokens_per_s']:>10.0f} "
              f"{r['padding']:>8.1%} {r['speedup']:>8.2f}x {r['cpu_speedup']:>11.2f}x")
    reference = results[baseline_name]["vectors"]
    gap = max(float(np.abs(r["vectors"] - reference).max()) for r in results.values())
    print(f"max |embedding difference| between schemes: {gap:.2e}")
    budget_result = results[f"token budget {budget}"]
    full_sets = all_real_chains(args)
    full_padding = {}
    for name, everything in full_sets.items():
        plan_padding, naive_padding = cache_plan_padding(encoder, everything, budget, b, args.seed)
        full_padding[name] = {"chains": len(everything), "token_budget": plan_padding,
                              f"fixed_{b}_unsorted": naive_padding}
        print(f"padding over all {len(everything):,} distinct {name} chains (the cache's plan, not encoded): "
              f"token budget {plan_padding:.1%}, fixed-{b} unsorted {naive_padding:.1%}")
    if full_sets:
        print("  (the timed sample is sparser in length than a whole data set, so its token-budget batches pad more)")
    print(f"load average at the end: {load_average()}")
    summary = {
        "machine": machine(), "source": source, "encoder": args.encoder, "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(), "chains": len(chains), "tokens": int(sum(lengths)),
        "schemes": {name: {k: v for k, v in r.items() if k != "vectors"} for name, r in results.items()},
        "token_budget_speedup": budget_result["speedup"], "token_budget_padding": budget_result["padding"],
        "max_embedding_difference": gap, "full_data_padding": full_padding,
    }
    print(f"token budget vs fixed-{b} unsorted: {budget_result['speedup']:.2f}x faster, padding "
          f"{budget_result['padding']:.1%} vs {baseline['padding']:.1%}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if gap > 1e-3:
        sys.exit("FAILED: batching changed the embeddings")
    return summary


if __name__ == "__main__":
    main()
