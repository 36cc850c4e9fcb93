"""Run `abag` under torchrun while recording, per process, checkpoint writes and DDP `no_sync` entries.

Usage: torchrun ... tests/helpers/ddp_probe.py RECORD_DIR -- abag-cli-args...
        torchrun ... tests/helpers/ddp_probe.py RECORD_DIR --embed CACHE_DIR CHAINS_FILE
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch.nn.parallel


def main() -> int:
    record_dir = Path(sys.argv[1])
    record_dir.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    events: list[str] = []

    import importlib

    train_module = importlib.import_module("abag.training.run")  # `abag.train` itself is the train() function
    original_save = train_module.save_checkpoint

    def counting_save(state, path):
        events.append(f"save {Path(path).name} epoch {state['epoch']}")
        return original_save(state, path)

    train_module.save_checkpoint = counting_save
    original_no_sync = torch.nn.parallel.DistributedDataParallel.no_sync

    def counting_no_sync(self):
        events.append("no_sync")
        return original_no_sync(self)

    torch.nn.parallel.DistributedDataParallel.no_sync = counting_no_sync
    try:
        if sys.argv[2] == "--embed":
            code = embed(Path(sys.argv[3]), Path(sys.argv[4]), record_dir, rank)
        else:
            from abag.cli import main as cli_main

            code = cli_main(sys.argv[3:])
    finally:
        (record_dir / f"rank{rank}.json").write_text(json.dumps(events))
    return code


def embed(cache_dir: Path, chains_file: Path, record_dir: Path, rank: int) -> int:
    """Sharded encoding: every process calls the cache; each encodes its share of the missing chains."""
    import numpy as np

    from abag import distributed
    from abag.encoding.embedding_cache import EmbeddingCache
    from abag.encoding.loader import load_tiny_encoder

    distributed.init_from_environment()
    chains = chains_file.read_text().split()
    cache = EmbeddingCache(load_tiny_encoder(), cache_dir, progress=False)
    table = cache.embed(chains)
    np.save(record_dir / f"table{rank}.npy", table)
    (record_dir / f"stats{rank}.json").write_text(json.dumps(cache.stats.__dict__))
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    from abag.distributed import exit_process

    exit_process(main())
