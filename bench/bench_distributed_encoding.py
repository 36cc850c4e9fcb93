"""Encoding throughput with 1 and N processes (torchrun, sharded embedding cache); prints the ratio.

    python bench/bench_distributed_encoding.py --encoder antiberty --chains 400 --processes 2
    python bench/bench_distributed_encoding.py --tiny            # seconds, for the test suite

Each run encodes the same distinct chains into an empty cache folder. With N processes every process
encodes its share of the missing chains (see abag/embedding_cache.py) and all read the completed cache.
On a multi-GPU machine torchrun gives each process its own GPU (LOCAL_RANK); on CPU each process gets
cores/N threads so the comparison is fair.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_common import machine

WORKER = """
import json, sys, time
from abag import distributed
from abag.encoding.embedding_cache import EmbeddingCache
from abag.encoding.loader import load_encoder
distributed.init_from_environment()
encoder = load_encoder(sys.argv[1]).to(distributed.local_device())
chains = open(sys.argv[3]).read().split()
import torch
with torch.inference_mode():
    encoder(chains[:4])  # warm-up: first-call overheads are not throughput
distributed.barrier()
started = time.perf_counter()
cache = EmbeddingCache(encoder, sys.argv[2], progress=False)
cache.embed(chains)
elapsed = time.perf_counter() - started
if distributed.is_main_process():
    print(json.dumps({"seconds": elapsed}))
distributed.shutdown()
"""


def sample_chains(n: int, seed: int) -> list[str]:
    """Distinct antibody and antigen chains from the real SAAINT-DB set when present, else random ones."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "saaintdb_dev.csv"
    rng = np.random.default_rng(seed)
    if path.exists():
        import pandas as pd

        table = pd.read_csv(path, keep_default_na=False)
        chains = sorted({c for column in ("heavy", "light") for c in table[column] if c}
                        | {c for a in table["antigen"] for c in a.split("|")})
        chains = [c for c in chains if len(c) <= 1000]
        return list(rng.choice(chains, size=min(n, len(chains)), replace=False))
    alphabet = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    return ["".join(rng.choice(alphabet, size=int(rng.integers(80, 250)))) for _ in range(n)]


def run(processes: int, encoder: str, chains_file: Path, threads: int) -> float:
    with tempfile.TemporaryDirectory(prefix="abag-bench-") as scratch:
        return _run_in(Path(scratch), processes, encoder, chains_file, threads)


def _run_in(scratch: Path, processes: int, encoder: str, chains_file: Path, threads: int) -> float:
    cache = scratch / "cache"
    worker = scratch / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if processes == 1:
        command = [sys.executable, str(worker)]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes), str(worker)]
    result = subprocess.run([*command, encoder, str(cache), str(chains_file)], env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit(f"{processes}-process run failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="antiberty")
    parser.add_argument("--chains", type=int, default=400)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="tiny encoder, 60 chains: a smoke run")
    args = parser.parse_args()
    if args.tiny:
        args.encoder, args.chains = "tiny", 60
    cores = os.cpu_count() or 1
    chains = sample_chains(args.chains, args.seed)
    scratch = tempfile.TemporaryDirectory(prefix="abag-bench-chains-")
    chains_file = Path(scratch.name) / "chains.txt"
    chains_file.write_text("\n".join(chains))
    per_process = max(1, cores // args.processes)
    one = run(1, args.encoder, chains_file, threads=cores)
    one_narrow = run(1, args.encoder, chains_file, threads=per_process)
    many = run(args.processes, args.encoder, chains_file, threads=per_process)
    residues = sum(len(c) for c in chains)
    print(f"machine: {machine()}; encoder {args.encoder}; "
          f"{len(chains)} distinct chains, {residues} residues")
    print(f"1 process, {cores} threads:  {len(chains) / one:8.1f} chains/s")
    print(f"1 process, {per_process} thread(s): {len(chains) / one_narrow:8.1f} chains/s")
    print(f"{args.processes} processes, {per_process} thread(s) each: {len(chains) / many:8.1f} chains/s")
    print(f"ratio ({args.processes} processes / 1 process with all {cores} threads): {one / many:.2f}x")
    print(f"ratio ({args.processes} processes / 1 process with {per_process} thread(s)): {one_narrow / many:.2f}x")


if __name__ == "__main__":
    main()
