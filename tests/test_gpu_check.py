"""bench/gpu_check.py: the one-command GPU check runs on CPU at a tiny size, and each of its checks can fail.

On CPU it trains, resumes and compares cached with uncached embeddings in fp32 and says that bf16/fp16 were
skipped; the precision forcing and the probes that prove which precision ran are tested on CPU autocast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import gpu_check  # noqa: E402


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """The command as a user runs it, on CPU (what `--tiny` and a machine without CUDA give)."""
    folder = tmp_path_factory.mktemp("gpu-check")
    out, data = folder / "check.md", folder / "check.json"
    command = [sys.executable, str(BENCH / "gpu_check.py"), "--tiny", "--device", "cpu", "--out", str(out),
               "--json", str(data), "--log", str(folder / "check.log")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ABAG_CACHE_DIR": str(folder / "default-cache")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    return done, out, json.loads(data.read_text()) if data.exists() else None, folder


def rows_of(result: dict, check: str) -> list[dict]:
    return [row for row in result["rows"] if row["check"] == check]


def test_cpu_run_passes_and_writes_one_markdown_table(cpu_run):
    done, out, result, _ = cpu_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    assert text in done.stdout  # what was printed is what was written
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0] == "| check | encoder | precision | result | detail | tokens/s | MFU | peak memory | seconds |"
    assert len(table) == 2 + len(result["rows"])
    assert not [row for row in result["rows"] if row["result"] == "FAIL"]


def test_cpu_run_trains_resumes_and_compares_the_cache_for_both_encoders_in_fp32(cpu_run):
    _, _, result, _ = cpu_run
    for check in ("train", "resume", "cache"):
        rows = rows_of(result, check)
        assert {row["encoder"] for row in rows} == {"tiny", "ESM-2 650M shape (tiny)"}, check
        assert all(row["precision"] == "fp32" and row["result"] == "pass" for row in rows), rows
    assert all("bit-identical" in row["detail"] for row in rows_of(result, "resume"))
    assert all("head and encoder in fp32" in row["detail"] for row in rows_of(result, "train"))
    for row in rows_of(result, "cache"):
        assert row["tokens_per_s"] > 0 and "read back exactly" in row["detail"]
        assert "≤ 0.0001" in row["detail"]  # the fp32 tolerance is the one applied


def test_cpu_run_says_what_it_skipped_and_runs_the_throughput_bench(cpu_run):
    _, _, result, folder = cpu_run
    skipped = [row for row in result["rows"] if row["result"] == "skip"]
    assert sorted(row["precision"] for row in skipped) == ["bf16", "fp16"]
    assert all("needs CUDA" in row["detail"] for row in skipped)
    (bench,) = rows_of(result, "throughput")
    assert bench["result"] == "pass" and bench["tokens_per_s"] > 0 and bench["mfu"] is None
    assert "MFU only on CUDA" in bench["detail"]
    log = (folder / "check.log").read_text()
    assert "resuming from" in log and "bench_gpu_encoder:" in log  # the runs' own output went to --log


def test_bf16_and_fp16_are_refused_on_cpu(capsys):
    with pytest.raises(SystemExit) as stopped:
        gpu_check.parse_args(["--device", "cpu", "--precisions", "fp32,bf16"])
    assert stopped.value.code == 2
    assert "on CUDA only" in capsys.readouterr().err


def test_without_cuda_the_defaults_are_tiny_and_fp32():
    settings = gpu_check.parse_args(["--device", "cpu"])
    assert settings.tiny and settings.precisions == ["fp32"] and settings.pairs == 60


# ----------------------------------------------------------------------------------------------- machinery

def test_forced_precision_reaches_every_abag_module_and_is_undone():
    import abag.policy

    original = abag.policy.choose_precision
    holders = [m for m in gpu_check._abag_modules() if getattr(m, "choose_precision", None) is original]
    assert abag.policy in holders and len(holders) >= 2  # the policy and those that import the function by name
    with gpu_check.forced_precision("fp16"):
        for module in holders:
            assert module.choose_precision("cpu").name == "fp16", module.__name__
            assert module.choose_precision("cpu", mixed_precision=False).name == "fp32"
    assert all(module.choose_precision is original for module in holders)
    assert abag.policy.choose_precision("cpu").name == "fp32"


def test_the_probe_sees_the_precision_the_encoder_ran_in(tiny_encoders):
    """CPU autocast stands in for the GPU: forcing bf16 must reach the encoder, and the probe must see it."""
    encoder = tiny_encoders["tiny"]
    with gpu_check.PrecisionProbe([encoder]) as plain:
        encoder(["ACDEFGHIKLMNPQRSTVWY"])
    encoder.use_precision(None)  # the session's shared encoder may be pinned by an earlier training run
    with gpu_check.forced_precision("bf16"), gpu_check.PrecisionProbe([encoder]) as forced:
        encoder(["ACDEFGHIKLMNPQRSTVWY"])
    assert plain.encoder_seen == {"fp32"} and forced.encoder_seen == {"bf16"}
    assert plain.head_seen == forced.head_seen == set()  # the encoder is not mistaken for a head


def test_the_resume_check_fails_on_a_single_changed_weight(tmp_path, tiny_encoders):
    import abag

    frame = gpu_check.load_frame(30)
    settings = gpu_check.parse_args(["--device", "cpu"])
    gpu_check.train_run(frame, tmp_path / "a", tiny_encoders["tiny"], settings, tmp_path / "cache", 1, [])
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    same = gpu_check.compare_weights(tmp_path / "a", tmp_path / "b", gpu_check.CheckRow("resume", "", "", "", ""))
    assert same.result == "pass"
    path = tmp_path / "b" / "checkpoints" / "last.pt"
    state = abag.checkpoint.load_checkpoint(path)
    name = next(iter(state["model_state_dict"]))
    tensor = state["model_state_dict"][name].clone()
    first = tensor.view(-1)[0]
    tensor.view(-1)[0] = torch.nextafter(first, first + 1)  # one weight, one ulp
    state["model_state_dict"][name] = tensor
    abag.checkpoint.save_checkpoint(state, path)
    changed = gpu_check.compare_weights(tmp_path / "a", tmp_path / "b", gpu_check.CheckRow("resume", "", "", "", ""))
    assert changed.result == "FAIL" and "differ" in changed.detail


def test_the_cache_check_fails_above_its_tolerance(monkeypatch, tmp_path, tiny_encoders):
    frame = gpu_check.load_frame(30)
    settings = gpu_check.parse_args(["--device", "cpu"])
    chains = gpu_check.distinct_chains(frame)
    passed = gpu_check.check_cache("tiny", tiny_encoders["tiny"], chains, "fp32", settings, tmp_path / "one")
    monkeypatch.setitem(gpu_check.TOLERANCE, "fp32", 0.0)  # the two paths batch differently: never bit-equal
    failed = gpu_check.check_cache("tiny", tiny_encoders["tiny"], chains, "fp32", settings, tmp_path / "two")
    assert passed.result == "pass" and failed.result == "FAIL" and "> 0" in failed.detail


def test_a_crashing_check_is_a_failed_row_and_the_exit_code_says_so(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(gpu_check, "check_throughput", lambda *a: gpu_check.guarded(
        gpu_check.CheckRow("throughput", "x", "fp32", "FAIL", ""), broken))
    monkeypatch.setattr(gpu_check, "encoder_checks", lambda *a: [])
    code = gpu_check.main(["--device", "cpu", "--json", str(tmp_path / "r.json")])
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert code == 1
    assert [r["result"] for r in rows if r["check"] == "throughput"] == ["FAIL"]
    assert "illegal memory access" in rows_of({"rows": rows}, "throughput")[0]["detail"]
