"""Fill the embedding cache for the benchmark sets ahead of time (AntiBERTy, trimmed antibody chains).

Usage: ABAG_CACHE_DIR=/tmp/abag-cache THREADS=1 python bench/experiments/preencode.py [saaintdb] [skempi] [phillips] [phillips_extrapolation]
"""
import os
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(int(os.environ.get("THREADS", "1")))
from abag.data.pipeline import load_pairs
from abag.encoding.embedding_cache import EmbeddingCache, default_cache_dir
from abag.encoding.features import InputSpec
from abag.encoding.loader import load_antiberty_encoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_real_data as bench  # phillips_subsample, extrapolation_plan

data = Path("/work/shared/data")
trim = InputSpec(trim_antibody=True)
cache = EmbeddingCache(load_antiberty_encoder(), default_cache_dir(), progress=False)
files = {"saaintdb": "saaintdb_dev.csv", "skempi": "skempi2_ab_ag.csv",
         "phillips": "phillips2021_cr9114_cr6261.csv.gz", "phillips_extrapolation": "phillips2021_cr9114_cr6261.csv.gz"}
for name in sys.argv[1:] or list(files):
    frame, _ = load_pairs(data / files[name])
    if name == "phillips":
        frame = bench.phillips_subsample(frame, 2000, seed=0)
    if name == "phillips_extrapolation":  # bench_real_data's default extrapolation subsample
        frame = bench.pd.concat([plan.frame for plan in bench.extrapolation_plan(frame)])
    ab = list(dict.fromkeys([trim.encoder_input(c, "heavy") for c in frame.heavy] +
                            [trim.encoder_input(c, "light") for c in frame.light if c]))
    ag = list(dict.fromkeys(c for a in frame.antigen for c in a.split("|")))
    chains = ab + ag
    t = time.time()
    cache.embed(chains)
    print(f"{name}: {len(chains)} chains, {sum(map(len, chains))} residues, {cache.stats.encoded} encoded so far, "
          f"{time.time() - t:.0f}s", flush=True)
