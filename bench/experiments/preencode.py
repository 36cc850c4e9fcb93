"""Fill the embedding cache for the benchmark sets ahead of time (AntiBERTy, trimmed antibody chains).

Usage: ABAG_CACHE_DIR=/tmp/abag-cache THREADS=1 python bench/experiments/preencode.py [saaintdb] [skempi] [phillips]
"""
import importlib.util, os, sys, time
from pathlib import Path
import torch
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
from abag import load_pairs
from abag.embedding_cache import EmbeddingCache, default_cache_dir
from abag.encoders import load_antiberty_encoder
from abag.features import InputSpec

spec = importlib.util.spec_from_file_location("b", Path(__file__).parents[1] / "bench_real_data.py")
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
data = Path("/work/shared/data")
trim = InputSpec(trim_antibody=True)
cache = EmbeddingCache(load_antiberty_encoder(), default_cache_dir(), progress=False)
files = {"saaintdb": "saaintdb_dev.csv", "skempi": "skempi2_ab_ag.csv",
         "phillips": "phillips2021_cr9114_cr6261.csv.gz"}
for name in sys.argv[1:] or list(files):
    frame, _ = load_pairs(data / files[name])
    if name == "phillips":
        frame = bench.phillips_subsample(frame, 2000, seed=0)
    ab = list(dict.fromkeys([trim.encoder_input(c, "heavy") for c in frame.heavy] +
                            [trim.encoder_input(c, "light") for c in frame.light if c]))
    ag = list(dict.fromkeys(c for a in frame.antigen for c in a.split("|")))
    chains = ab + ag
    t = time.time()
    cache.embed(chains)
    print(f"{name}: {len(chains)} chains, {sum(map(len, chains))} residues, {cache.stats.encoded} encoded so far, "
          f"{time.time() - t:.0f}s", flush=True)
