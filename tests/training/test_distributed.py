"""Two processes on CPU (gloo) with torchrun: sharded encoding, DDP training, single writer, resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_sequence, synthetic_frame, write_csv

from abag.checkpoint import load_checkpoint
from abag.encoding.embedding_cache import EmbeddingCache
from abag.encoding.loader import load_tiny_encoder

PROBE = Path(__file__).resolve().parents[1] / "helpers" / "ddp_probe.py"
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def torchrun(args: list[str], env_extra: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    # --standalone rendezvous on localhost:0, so each run gets a free port; the process group's own timeout
    # (well inside the subprocess timeout) turns a hung peer into an error message instead of a silent hang.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ABAG_DIST_TIMEOUT_S": "120", **env_extra}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--max-restarts", "0", str(PROBE), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, (f"torchrun exited with {result.returncode}\n" + result.stdout[-3000:]
                                    + result.stderr[-3000:])
    return result


def records(folder: Path, rank: int) -> list[str]:
    return json.loads((folder / f"rank{rank}.json").read_text())


def test_sharded_cache_equals_single_process_cache(tmp_path):
    rng = np.random.default_rng(3)
    chains = [random_sequence(rng, int(rng.integers(20, 200))) for _ in range(60)]
    chains_file = tmp_path / "chains.txt"
    chains_file.write_text("\n".join(chains + chains[:10]))  # duplicates are encoded once
    torchrun([str(tmp_path / "rec"), "--embed", str(tmp_path / "sharded"), str(chains_file)], {})

    stats = [json.loads((tmp_path / "rec" / f"stats{r}.json").read_text()) for r in (0, 1)]
    assert stats[0]["encoded"] + stats[1]["encoded"] == 60      # no chain encoded twice
    assert min(s["encoded"] for s in stats) > 0                 # both processes did work
    tables = [np.load(tmp_path / "rec" / f"table{r}.npy") for r in (0, 1)]
    np.testing.assert_array_equal(tables[0], tables[1])          # everyone reads the same completed cache

    single = EmbeddingCache(load_tiny_encoder(), tmp_path / "single", progress=False).embed(chains + chains[:10])
    np.testing.assert_allclose(tables[0], single, atol=1e-5)    # batch composition differs: float tolerance
    shard_rows = sum(len(json.loads(__import__("safetensors").safe_open(str(p), "np").metadata()["chains"]))
                     for p in (tmp_path / "sharded").rglob("shard-*.safetensors"))
    assert shard_rows == 60


def run_training(tmp_path, name, processes, extra=(), resume=False, epochs=3):
    csv = tmp_path / "pairs.csv"
    if not csv.exists():
        write_csv(synthetic_frame(n=200), csv)
    out = tmp_path / name
    args = ["train", "--data", str(csv), "--out", str(out), "--encoder", "tiny", "--epochs", str(epochs),
            "--split", "random", "--quiet", "--embedding-cache", str(tmp_path / "cache"), *extra]
    if resume:
        args.append("--resume")
    if processes == 2:
        torchrun([str(tmp_path / f"rec-{name}"), "--", *args], {})
    else:
        from abag.cli import main

        assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """One 2-process run (batch 8) and one single-process run (batch 16), both with dropout 0."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    single = run_training(tmp_path, "single", 1, ["--dropout", "0"])
    double = run_training(tmp_path, "double", 2, ["--dropout", "0", "--batch-size", "8"])
    return tmp_path, single, double


def test_two_processes_match_one_with_the_same_effective_batch(ddp_runs):
    # 2 processes × batch 8 × accumulation 8 = 1 process × batch 16 × accumulation 8. Process r takes rows
    # r, r+2, … of the epoch's order, so each pair of micro-batches holds exactly the single process's
    # 16 rows and DDP's gradient average equals the 16-row mean. With dropout 0 the runs differ only by
    # float summation order (one 128-row pass against two 64-row passes per step); Adam divides each step by
    # the gradient's running size, so a weight whose gradient is near rounding level can move by a small
    # fraction of the learning rate (1e-3) differently: at most 1e-4 anywhere, 1e-7 on average. With dropout,
    # masks are drawn per process and the runs differ by dropout noise as two seeds would.
    _, single, double = ddp_runs
    a = load_checkpoint(single / "checkpoints" / "last.pt")["model_state_dict"]
    b = load_checkpoint(double / "checkpoints" / "last.pt")["model_state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-4)
        if a[key].is_floating_point() and a[key].numel():
            assert float((a[key] - b[key]).abs().mean()) < 1e-7, key
    ma = json.loads((single / "metrics.json").read_text())
    mb = json.loads((double / "metrics.json").read_text())
    assert mb["training"]["world_size"] == 2 and ma["training"]["world_size"] == 1
    assert mb["test"]["spearman"] == pytest.approx(ma["test"]["spearman"], abs=1e-3)
    history_a, history_b = pd.read_csv(single / "history.csv"), pd.read_csv(double / "history.csv")
    np.testing.assert_allclose(history_a["train_loss"], history_b["train_loss"], rtol=1e-4)


def test_only_one_process_writes_and_accumulation_skips_allreduce(ddp_runs):
    tmp_path, _, out = ddp_runs
    rank0, rank1 = records(tmp_path / "rec-double", 0), records(tmp_path / "rec-double", 1)
    assert not [e for e in rank1 if e.startswith("save")]
    saves = [e for e in rank0 if e.startswith("save")]
    assert saves.count("save last.pt epoch 0") == 1 and saves.count("save last.pt epoch 3") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    n_train = metrics["data"]["n_train"]
    micro_batches = math.ceil(math.ceil(n_train / 2) / 8)           # per process per epoch
    steps = math.ceil(micro_batches / 8)
    # Only the head learns: each process runs its share of a group as one pass, which all-reduces once.
    assert rank0.count("no_sync") == rank1.count("no_sync") == 0
    assert list(pd.read_csv(out / "history.csv")["optimizer_steps"]) == [steps] * 3


def test_micro_batches_of_a_learning_encoder_skip_the_allreduce_until_the_step(tmp_path):
    out = run_training(tmp_path, "finetune", 2, ["--batch-size", "8", "--finetune-layers", "1"], epochs=1)
    rank0, rank1 = records(tmp_path / "rec-finetune", 0), records(tmp_path / "rec-finetune", 1)
    n_train = json.loads((out / "metrics.json").read_text())["data"]["n_train"]
    micro_batches = math.ceil(math.ceil(n_train / 2) / 8)           # per process
    steps = math.ceil(micro_batches / 8)
    assert rank0.count("no_sync") == rank1.count("no_sync") == micro_batches - steps  # every non-stepping one
    assert list(pd.read_csv(out / "history.csv")["optimizer_steps"]) == [steps]


def test_resume_with_the_same_number_of_processes(ddp_runs, capsys):
    from abag.cli import main

    tmp_path, _, straight = ddp_runs
    resumed = run_training(tmp_path, "resumed", 2, ["--dropout", "0", "--batch-size", "8"], epochs=1)
    # A different number of processes is refused with a clear message …
    code = main(["train", "--data", str(tmp_path / "pairs.csv"), "--out", str(resumed), "--encoder", "tiny",
                 "--epochs", "3", "--split", "random", "--quiet", "--resume",
                 "--embedding-cache", str(tmp_path / "cache")])
    assert code == 2 and "2 process(es)" in capsys.readouterr().err
    # … the same number continues exactly.
    run_training(tmp_path, "resumed", 2, ["--dropout", "0", "--batch-size", "8"], epochs=3, resume=True)
    a = load_checkpoint(straight / "checkpoints" / "last.pt")["model_state_dict"]
    b = load_checkpoint(resumed / "checkpoints" / "last.pt")["model_state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_encoding_bench_reports_the_process_ratio():
    script = Path(__file__).resolve().parents[2] / "bench" / "bench_distributed_encoding.py"
    result = subprocess.run([sys.executable, str(script), "--tiny"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 processes, 1 thread(s) each" in result.stdout
    ratio = [line for line in result.stdout.splitlines() if line.startswith("ratio (2 processes / 1 process with 1")]
    assert ratio and float(ratio[0].rsplit(":", 1)[1].strip().rstrip("x")) > 0


def test_a_torchrun_worker_ends_without_interpreter_teardown_and_one_process_exits_normally(monkeypatch, capsys):
    from abag import distributed

    ended = []
    monkeypatch.setattr(distributed.os, "_exit", lambda code: ended.append(code))
    with pytest.raises(SystemExit) as exit_info:  # never joined a process group: an ordinary exit
        distributed.exit_process(3)
    assert exit_info.value.code == 3 and ended == []
    monkeypatch.setattr(distributed, "_JOINED", True)
    print("written before the exit")
    distributed.exit_process(0)
    assert ended == [0] and "written before the exit" in capsys.readouterr().out
