"""Surviving kills, Ctrl-C, divergence, bad checkpoints, full disks and unwritable folders (issue 5).

Real `python -m abag train` subprocesses are killed (SIGKILL) and interrupted (SIGINT) in the middle of an
epoch; resuming must end with weights bit-identical to an uninterrupted run. Everything else runs
`abag.cli.main` in-process with the `tiny` encoder. Every failure must be one clear line, never a traceback.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import synthetic_frame, torch_threads, write_csv

from abag.checkpoint import interrupts_deferred, load_checkpoint, save_checkpoint
from abag.cli import main
from abag.errors import CheckpointError
from abag.model.losses import StableCombinedLoss

# The run that is killed and resumed: 160 training rows in micro-batches of 4, one optimizer step each, and
# the encoder run on every batch, so an epoch takes about a second on one CPU thread.
SLOW_ARGS = ["--encoder", "tiny", "--epochs", "4", "--batch-size", "4", "--gradient-accumulation", "1",
             "--split", "random", "--hidden-dim", "16", "--no-embedding-cache", "--quiet"]
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and fork")
QUICK_ARGS = ["--encoder", "tiny", "--split", "random", "--hidden-dim", "16", "--batch-size", "8",
              "--gradient-accumulation", "1", "--quiet"]


# ----------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt here even when the test runner started with SIGINT ignored (a background job
    of a non-interactive shell, `nohup`): Python then installs no handler, and the Ctrl-C tests would see nothing
    (a child process inherits the ignore too: `start_training` resets it)."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Shared data, a shared embedding cache, and one CPU thread (as in the subprocesses, for identical bits)."""
    folder = tmp_path_factory.mktemp("reliability")
    with torch_threads(1), pytest.MonkeyPatch.context() as patch:
        patch.setenv("ABAG_CACHE_DIR", str(folder / "cache"))
        yield folder


@pytest.fixture(scope="module")
def slow_csv(workdir):
    return write_csv(synthetic_frame(n=200, seed=3), workdir / "slow.csv")


@pytest.fixture(scope="module")
def quick_csv(workdir):
    return write_csv(synthetic_frame(n=48, seed=4), workdir / "quick.csv")


@pytest.fixture(scope="module")
def reference(workdir, slow_csv):
    """The uninterrupted run every interrupted-then-resumed run must reproduce bit for bit."""
    out = workdir / "reference"
    assert quiet_main(["train", "--data", slow_csv, "--out", str(out), *SLOW_ARGS])[0] == 0
    return out


@pytest.fixture(scope="module")
def trained(workdir, quick_csv):
    """A small finished run: its best.pt is the checkpoint that predict/evaluate tests start from."""
    out = workdir / "trained"
    assert quiet_main(["train", "--data", quick_csv, "--out", str(out), "--epochs", "2", *QUICK_ARGS])[0] == 0
    return out


# ----------------------------------------------------------------------------------------------- helpers

def quiet_main(args: list[str]) -> tuple[int, str]:
    """Run the CLI in-process; (exit code, stderr). No exception may escape."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("abag:")]


def assert_one_clean_error(stderr: str, *fragments: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def subprocess_env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "ABAG_CACHE_DIR": str(workdir / "cache"),
            "PYTHONUNBUFFERED": "1"}


def _ctrl_c_by_default() -> None:  # pragma: no cover - runs in the child before exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # so the child's Python installs its KeyboardInterrupt handler


def start_training(workdir: Path, args: list[str], log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "abag", *args], stdout=handle, stderr=subprocess.STDOUT,
                            env=subprocess_env(workdir), cwd=workdir,
                            preexec_fn=_ctrl_c_by_default if os.name == "posix" else None)


def wait_for_epochs(out: Path, n: int, process: subprocess.Popen, log: Path, timeout: float = 120) -> pd.DataFrame:
    """Poll history.csv (rewritten atomically after every epoch) until `n` epochs are done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training exited early ({process.returncode}):\n{log.read_text()[-3000:]}")
        history = out / "history.csv"
        if history.exists():
            frame = pd.read_csv(history)
            if len(frame) >= n:
                return frame
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"no progress within {timeout}s:\n{log.read_text()[-3000:]}")


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a)["model_state_dict"], load_checkpoint(b)["model_state_dict"]
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"weights differ: {different[:5]}"


def assert_same_run(run: Path, reference: Path) -> None:
    for name in ("last.pt", "best.pt"):
        assert_same_weights(run / "checkpoints" / name, reference / "checkpoints" / name)
    ours, theirs = pd.read_csv(run / "history.csv"), pd.read_csv(reference / "history.csv")
    assert list(ours["train_loss"]) == list(theirs["train_loss"])
    assert list(ours["val_loss"]) == list(theirs["val_loss"])
    import json

    assert json.loads((run / "metrics.json").read_text())["test"] == \
        json.loads((reference / "metrics.json").read_text())["test"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


# ----------------------------------------------------------------------------------------------- 1. SIGKILL

@posix_only
def test_sigkill_mid_epoch_leaves_a_loadable_checkpoint_and_resume_is_bit_identical(workdir, slow_csv, reference):
    out, log = workdir / "killed", workdir / "killed.log"
    process = start_training(workdir, ["train", "--data", slow_csv, "--out", str(out), *SLOW_ARGS], log)
    history = wait_for_epochs(out, 2, process, log)
    # Somewhere inside epoch 3 (or, rarely, during its checkpoint write): a power cut, a Colab disconnect.
    time.sleep(random.uniform(0.1, 0.7) * float(history["seconds"].iloc[-1]))
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL

    state = load_checkpoint(out / "checkpoints" / "last.pt")     # never a half-written file
    assert state["epoch"] in (2, 3)                              # the last completed epoch, not a partial one
    assert len(pd.read_csv(out / "history.csv")) == state["epoch"] == len(state["history"])
    load_checkpoint(out / "checkpoints" / "best.pt")

    resumed = subprocess.run([sys.executable, "-m", "abag", "train", "--data", slow_csv, "--out", str(out),
                              *SLOW_ARGS, "--resume"], capture_output=True, text=True,
                             env=subprocess_env(workdir), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {out / 'checkpoints' / 'last.pt'} (epoch {state['epoch']})" in resumed.stdout
    assert_same_run(out, reference)
    assert not temporaries(out / "checkpoints")


def _save_forever(path: Path, state: dict) -> None:  # pragma: no cover - runs in a forked child
    epoch = 1
    while True:
        state["epoch"] = epoch
        state["model_state_dict"]["marker"] = torch.tensor([epoch])
        save_checkpoint(state, path)
        epoch += 1


@posix_only
def test_sigkill_during_checkpoint_writes_never_leaves_a_broken_file(trained, tmp_path):
    """A writer killed at random moments (almost always inside a write): the file always loads whole."""
    state = load_checkpoint(trained / "checkpoints" / "last.pt")
    state["model_state_dict"]["padding"] = torch.zeros(3_000_000)  # ~12 MB: writes dominate the child's time
    state["model_state_dict"]["marker"] = torch.tensor([0])
    state["epoch"] = 0
    path = tmp_path / "last.pt"
    save_checkpoint(state, path)
    rng = random.Random(5)
    leftovers_seen, epochs_seen = 0, set()
    for _ in range(8):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                _save_forever(path, state)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.05, 0.35))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        leftovers_seen += len(temporaries(tmp_path))
        loaded = load_checkpoint(path)                                 # loads, whole and consistent
        assert int(loaded["model_state_dict"]["marker"][0]) == loaded["epoch"]
        assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["last.pt"]
        epochs_seen.add(loaded["epoch"])
    assert leftovers_seen > 0      # kills did land inside writes: their temporary files were left behind …
    save_checkpoint(state, path)   # … and are never loaded; the next successful save removes them
    assert not temporaries(tmp_path)


# ----------------------------------------------------------------------------------------------- 2. Ctrl-C

@posix_only
def test_ctrl_c_mid_epoch_exits_130_with_one_resume_message_and_resume_is_bit_identical(workdir, slow_csv,
                                                                                        reference):
    out, log = workdir / "interrupted", workdir / "interrupted.log"
    process = start_training(workdir, ["train", "--data", slow_csv, "--out", str(out), *SLOW_ARGS], log)
    history = wait_for_epochs(out, 1, process, log)
    time.sleep(random.uniform(0.1, 0.7) * float(history["seconds"].iloc[-1]))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    output = log.read_text()
    message = assert_one_clean_error(output, "interrupted", "--resume", str(out / "checkpoints" / "last.pt"))
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] in (1, 2, 3) and len(pd.read_csv(out / "history.csv")) == state["epoch"]
    assert f"state after epoch {state['epoch']}" in message
    assert not temporaries(out / "checkpoints")

    # The message's own command continues the run, to the same bits as never stopping.
    command = shlex.split(message.split("Continue with: ", 1)[1])
    assert command[0] == "abag" and command[-1] == "--resume"
    resumed = subprocess.run([sys.executable, "-m", "abag", *command[1:]], capture_output=True, text=True,
                             env=subprocess_env(workdir), cwd=workdir, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(out, reference)


@posix_only
def test_ctrl_c_during_a_checkpoint_write_is_delivered_after_the_write(trained, tmp_path, monkeypatch):
    state = load_checkpoint(trained / "checkpoints" / "last.pt")
    path = tmp_path / "last.pt"
    save_checkpoint({**state, "epoch": 1}, path)
    original = torch.save

    def save_and_get_interrupted(obj, f, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of writing
        time.sleep(0.05)
        return original(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_and_get_interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({**state, "epoch": 2}, path)
    assert load_checkpoint(path)["epoch"] == 2  # the write finished before the interrupt took effect
    assert not temporaries(tmp_path)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C behaves normally again


@posix_only
def test_ctrl_c_while_saving_an_epoch_finishes_the_save_and_resume_is_exact(workdir, slow_csv, reference,
                                                                          monkeypatch):
    """SIGINT arrives as epoch 2's checkpoints are being written: they are completed, then the run stops (130)."""
    train_module = importlib.import_module("abag.training.run")  # `abag.train` is also the train() function

    out = workdir / "interrupted-in-save"
    original = train_module.save_checkpoint
    sent = []

    def save(state, path):
        if state["epoch"] == 2 and not sent:
            sent.append(Path(path).name)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        return original(state, path)

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "save_checkpoint", save)
        code, err = quiet_main(["train", "--data", slow_csv, "--out", str(out), *SLOW_ARGS])
    assert sent and code == 130
    assert_one_clean_error(err, "interrupted", "state after epoch 2", "--resume")
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 2
    assert len(pd.read_csv(out / "history.csv")) == 2
    assert quiet_main(["train", "--data", slow_csv, "--out", str(out), *SLOW_ARGS, "--resume"])[0] == 0
    assert_same_run(out, reference)


def test_ctrl_c_before_the_first_epoch_says_there_is_nothing_to_resume(workdir, quick_csv, monkeypatch):
    train_module = importlib.import_module("abag.training.run")  # `abag.train` is also the train() function

    def interrupted_encoding(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "build_part_data", interrupted_encoding)
    code, err = quiet_main(["train", "--data", quick_csv, "--out", str(workdir / "early"), "--epochs", "2",
                            *QUICK_ARGS])
    assert code == 130
    assert_one_clean_error(err, "before the first epoch", "nothing to resume", "Run the same command again")


def test_ctrl_c_in_epoch_2_in_process(workdir, quick_csv, monkeypatch):
    train_module = importlib.import_module("abag.training.loop")  # the epoch loop calls _train_epoch from here

    original = train_module._train_epoch

    def epoch(*args, **kwargs):
        if args[8] == 2:  # the epoch number
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "_train_epoch", epoch)
    out = workdir / "ctrl-c-2"
    code, err = quiet_main(["train", "--data", quick_csv, "--out", str(out), "--epochs", "3", *QUICK_ARGS])
    assert code == 130
    line = assert_one_clean_error(err, "epoch 2 was in progress", "state after epoch 1", "Continue with: abag train")
    assert line.endswith("--resume")
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1


# ----------------------------------------------------------------------------------------------- 3. divergence

def test_a_truly_diverging_run_stops_with_exit_3_and_a_good_checkpoint(workdir, quick_csv):
    out = workdir / "diverged"
    code, err = quiet_main(["train", "--data", quick_csv, "--out", str(out), "--epochs", "3",
                            "--learning-rate", "1e6", *QUICK_ARGS])
    assert code == 3
    line = assert_one_clean_error(err, "abag: error:", "epoch 1, step", "Last good checkpoint")
    assert ("NaN" in line) or ("Inf" in line)
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 0 and all(torch.isfinite(t).all() for t in state["model_state_dict"].values())
    assert not (out / "metrics.json").exists()


def _finished_epoch_1(workdir, quick_csv, name) -> tuple[Path, str]:
    out = workdir / name
    assert quiet_main(["train", "--data", quick_csv, "--out", str(out), "--epochs", "1", *QUICK_ARGS])[0] == 0
    return out, digest(out / "checkpoints" / "last.pt")


def test_nan_loss_in_epoch_2_keeps_the_epoch_1_checkpoint(workdir, quick_csv, monkeypatch):
    out, before = _finished_epoch_1(workdir, quick_csv, "nan-loss")
    original = StableCombinedLoss.forward
    monkeypatch.setattr(StableCombinedLoss, "forward", lambda self, *a, **k: original(self, *a, **k) * float("nan"))
    code, err = quiet_main(["train", "--data", quick_csv, "--out", str(out), "--epochs", "3", "--resume",
                            *QUICK_ARGS])
    assert code == 3
    assert_one_clean_error(err, "training loss is NaN at epoch 2, step 1", str(out / "checkpoints" / "last.pt"),
                           "--learning-rate")
    assert digest(out / "checkpoints" / "last.pt") == before
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1


class _InfiniteGradient(torch.autograd.Function):
    """Adds nothing to the loss; its backward pass returns Inf (an overflow no loss check can see)."""

    @staticmethod
    def forward(ctx, x):
        return x * 0

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


def test_infinite_gradients_with_a_finite_loss_stop_before_the_step(workdir, quick_csv, monkeypatch):
    out, before = _finished_epoch_1(workdir, quick_csv, "inf-grad")
    original = StableCombinedLoss.forward

    def forward(self, pred, *args, **kwargs):
        return original(self, pred, *args, **kwargs) + _InfiniteGradient.apply(pred.sum())

    monkeypatch.setattr(StableCombinedLoss, "forward", forward)
    code, err = quiet_main(["train", "--data", quick_csv, "--out", str(out), "--epochs", "3", "--resume",
                            *QUICK_ARGS])
    assert code == 3
    assert_one_clean_error(err, "gradient norm is", "at epoch 2, step 1")
    assert digest(out / "checkpoints" / "last.pt") == before


def test_nan_validation_loss_is_never_saved_over_a_good_checkpoint(workdir, quick_csv, monkeypatch):
    import numpy as np

    train_module = importlib.import_module("abag.training.loop")  # validation calls predict_data from here

    out, before = _finished_epoch_1(workdir, quick_csv, "nan-val")
    original = train_module.predict_data

    def poisoned(*args, **kwargs):
        pkd, logits = original(*args, **kwargs)
        return np.full_like(pkd, np.nan), logits

    monkeypatch.setattr(train_module, "predict_data", poisoned)
    code, err = quiet_main(["train", "--data", quick_csv, "--out", str(out), "--epochs", "3", "--resume",
                            *QUICK_ARGS])
    assert code == 3
    assert_one_clean_error(err, "validation loss is NaN", "epoch 2", "before saving")
    assert digest(out / "checkpoints" / "last.pt") == before


# ----------------------------------------------------------------------------------------------- 4. checkpoints

def _write_variant(kind: str, source: Path, target: Path) -> str:
    """Write a bad checkpoint of `kind` to `target`; returns a phrase the error must contain."""
    import pickle

    if kind == "missing":
        return "does not exist"
    if kind == "folder":
        target.mkdir()
        return "is a folder"
    if kind == "empty":
        target.write_bytes(b"")
        return "is empty"
    if kind == "text":
        target.write_text("heavy,light,antigen\nEVQL,DIQM,MKT\n")
        return "is a text file"
    if kind == "pickle":
        target.write_bytes(pickle.dumps({"model_state_dict": {}}))
        return "is a Python pickle"
    if kind == "legacy-torch":
        torch.save({"a": torch.zeros(2)}, target, _use_new_zipfile_serialization=False)
        return "legacy"
    if kind == "foreign-torch":
        torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 3}, target)
        return "not an abag checkpoint"
    if kind == "objects":
        torch.save({"format": "abag-checkpoint", "thing": pd.DataFrame({"a": [1]})}, target)
        return "holds Python objects"
    if kind == "truncated":
        data = source.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        return "is truncated or damaged"
    if kind == "random-bytes":
        target.write_bytes(b"\x01\xff" + bytes(random.Random(1).getrandbits(8) for _ in range(4096)))
        return "not a PyTorch checkpoint"
    state = torch.load(source, weights_only=True)
    if kind == "newer-version":
        state["format_version"] = 99
        phrase = "format version 99"
    elif kind == "incomplete":
        del state["optimizer_state_dict"]
        phrase = "missing optimizer_state_dict"
    elif kind == "damaged-weights":
        state["model_state_dict"] = {"head.pkd_out.weight": "not a tensor"}
        phrase = "is damaged"
    elif kind == "wrong-shapes":
        state["model_state_dict"] = {k: torch.zeros(2) for k in state["model_state_dict"]}
        phrase = "does not match the model"
    elif kind == "unknown-setting":
        state["config"]["model"]["wings"] = 2
        phrase = "no usable model configuration"
    else:  # pragma: no cover
        raise AssertionError(kind)
    torch.save(state, target)
    return phrase


CHECKPOINT_KINDS = ["missing", "folder", "empty", "text", "pickle", "legacy-torch", "foreign-torch", "objects",
                    "truncated", "random-bytes", "newer-version", "incomplete", "damaged-weights", "wrong-shapes",
                    "unknown-setting"]


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_bad_checkpoints_give_one_clear_error_naming_the_file(kind, trained, quick_csv, tmp_path):
    target = tmp_path / f"{kind}.pt"
    phrase = _write_variant(kind, trained / "checkpoints" / "best.pt", target)
    for command in (["predict", "--out", str(tmp_path / "pred.csv")], ["evaluate"]):
        code, err = quiet_main([command[0], "--checkpoint", str(target), "--data", quick_csv, *command[1:]])
        assert code == 2, err
        assert_one_clean_error(err, "abag: error:", str(target), phrase)
    assert not (tmp_path / "pred.csv").exists()


def test_load_checkpoint_raises_checkpoint_error_with_a_next_step(trained, tmp_path):
    target = tmp_path / "x.pt"
    _write_variant("truncated", trained / "checkpoints" / "best.pt", target)
    with pytest.raises(CheckpointError, match=r"x\.pt is truncated or damaged.*abag train"):
        load_checkpoint(target)


@pytest.mark.parametrize("kind", ["text", "truncated", "empty", "unknown-setting"])
def test_resume_from_a_corrupt_last_pt_names_the_file_and_what_to_do(kind, workdir, quick_csv, tmp_path):
    out, _ = _finished_epoch_1(workdir, quick_csv, f"corrupt-{kind}")
    last = out / "checkpoints" / "last.pt"
    good = tmp_path / "good.pt"
    good.write_bytes(last.read_bytes())
    last.unlink()
    phrase = _write_variant(kind, good, last)
    if kind == "unknown-setting":
        phrase = "settings this abag cannot use"
    code, err = quiet_main(["train", "--data", quick_csv, "--out", str(out), "--epochs", "2", "--resume",
                            *QUICK_ARGS])
    assert code == 2
    assert_one_clean_error(err, str(last), phrase, "delete", "best.pt may still be intact")


def test_predict_refuses_a_checkpoint_whose_encoder_package_is_missing(trained, quick_csv, tmp_path, monkeypatch):
    import importlib.util

    state = torch.load(trained / "checkpoints" / "best.pt", weights_only=True)
    state["config"]["model"]["antibody_encoder"] = state["config"]["model"]["antigen_encoder"] = "antiberty"
    checkpoint = tmp_path / "antiberty.pt"
    torch.save(state, checkpoint)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "antiberty" else real_find_spec(name, *a, **k))
    code, err = quiet_main(["predict", "--checkpoint", str(checkpoint), "--data", quick_csv,
                            "--out", str(tmp_path / "p.csv")])
    assert code == 2
    assert_one_clean_error(err, str(checkpoint), "encoder is unavailable", "antiberty", "pip install")


def test_predict_refuses_a_hub_encoder_offline(trained, quick_csv, tmp_path, workdir):
    state = torch.load(trained / "checkpoints" / "best.pt", weights_only=True)
    # The antibody encoder: the default antibody-only head never loads its antigen encoder, so an unavailable
    # one there does not stop predict (tests/test_generalisation.py checks that it is never loaded).
    state["config"]["model"]["antibody_encoder"] = "org/unavailable-model"
    checkpoint = tmp_path / "hub.pt"
    torch.save(state, checkpoint)
    env = {**subprocess_env(workdir), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-m", "abag", "predict", "--checkpoint", str(checkpoint),
                             "--data", quick_csv, "--out", str(tmp_path / "p.csv")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("abag: error:")
    assert_one_clean_error(result.stderr, str(checkpoint), "org/unavailable-model", "--encoder antiberty")


# ----------------------------------------------------------------------------------------------- 6. rejected rows

def test_skip_invalid_accounts_for_every_input_row(trained, tmp_path):
    frame = synthetic_frame(n=30, seed=9).drop(columns=["censored"]).astype({"pkd": object})
    frame.loc[2, "heavy"] = "EVQLX1"              # bad residue
    frame.loc[7, "antigen"] = ""                 # missing antigen
    frame.loc[11, "pkd"] = "abc"                 # bad number: predict needs no labels, so the column is ignored
    frame.loc[12, "light"] = "ACD*"              # stop codon
    frame.loc[20, "heavy"] = "A" * 30_000        # huge field
    frame.loc[25, "heavy"] = " evql vqsg "       # harmless: lower case and spaces
    source = tmp_path / "mixed.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "pred.csv"
    code, err = quiet_main(["predict", "--checkpoint", str(trained / "checkpoints" / "best.pt"),
                            "--data", str(source), "--out", str(out), "--skip-invalid"])
    assert code == 0, err
    predicted = pd.read_csv(out, keep_default_na=False)
    rejected = pd.read_csv(tmp_path / "pred.csv.rejected.csv", keep_default_na=False)
    assert len(predicted) + len(rejected) == len(frame)
    assert sorted(list(predicted["source_row"]) + list(rejected["row"])) == list(range(1, len(frame) + 1))
    assert set(rejected["row"]) == {3, 8, 13, 21}  # row 12's bad pKd only makes predict ignore the pkd column
    assert rejected["reason"].str.len().min() > 0 and set(rejected["column"]) == {"heavy", "antigen", "light"}
    assert "26 valid + 4 rejected = 30 data rows" in err

    custom = tmp_path / "elsewhere" / "bad.csv"
    code, err = quiet_main(["predict", "--checkpoint", str(trained / "checkpoints" / "best.pt"),
                            "--data", str(source), "--out", str(out), "--skip-invalid", "--rejected", str(custom)])
    assert code == 0 and len(pd.read_csv(custom)) == 4


def test_invalid_rows_without_skip_invalid_fail_with_row_column_reason_and_a_hint(trained, tmp_path):
    frame = synthetic_frame(n=6).drop(columns=["censored"])
    frame.loc[3, "heavy"] = "EVQLZ"
    source = tmp_path / "bad.csv"
    frame.to_csv(source, index=False)
    code, err = quiet_main(["predict", "--checkpoint", str(trained / "checkpoints" / "best.pt"),
                            "--data", str(source), "--out", str(tmp_path / "p.csv")])
    assert code == 2 and err.startswith("abag: error:") and "Traceback" not in err
    assert "row 4" in err and "'heavy'" in err and "--skip-invalid" in err
    assert not (tmp_path / "p.csv").exists()


# ----------------------------------------------------------------------------------------------- 7. outputs

def _forbid(monkeypatch, *targets: str) -> None:
    """Make the slow steps fail loudly if they are reached: the error must come before them."""
    for target in targets:
        module, name = target.rsplit(".", 1)

        def reached(*args, _target=target, **kwargs):
            raise AssertionError(f"{_target} ran before the output problem was reported")

        monkeypatch.setattr(importlib.import_module(module), name, reached)


def test_unwritable_train_output_fails_before_reading_data_or_training(quick_csv, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    _forbid(monkeypatch, "abag.data.load_pairs", "abag.training.run.train", "abag.encoding.loader.load_encoder")
    started = time.monotonic()
    for out, phrase in ((blocker / "run", f"{blocker} is a file"), (blocker, "is a file"),
                        (Path("/proc/abag-run"), "cannot write to output folder")):
        code, err = quiet_main(["train", "--data", quick_csv, "--out", str(out), *QUICK_ARGS])
        assert code == 2
        assert_one_clean_error(err, "abag: error:", str(out), phrase, "--out")
    assert time.monotonic() - started < 5


def test_unwritable_predict_output_fails_before_loading_the_model(trained, quick_csv, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _forbid(monkeypatch, "abag.inference.load_trained_model", "abag.data.load_pairs")
    checkpoint = str(trained / "checkpoints" / "best.pt")
    for args, phrase in ((["--out", str(blocker / "p.csv")], "is a file"),
                         (["--out", str(tmp_path)], "is a folder"),
                         (["--out", str(tmp_path / "p.csv"), "--skip-invalid", "--rejected", str(blocker / "r.csv")],
                          "is a file")):
        code, err = quiet_main(["predict", "--checkpoint", checkpoint, "--data", quick_csv, *args])
        assert code == 2
        assert_one_clean_error(err, "abag: error:", phrase)


@pytest.mark.parametrize("failure", ["oserror", "torch-writer"])
def test_disk_full_while_saving_keeps_the_previous_checkpoint(failure, workdir, slow_csv, reference, monkeypatch):
    """ENOSPC on the epoch-3 save: clear error (2), last.pt still epoch 2; after freeing space --resume is exact."""
    out = workdir / f"disk-full-{failure}"
    original = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 3:
            f.write(b"PK\x03\x04 partial")  # half a file reached the disk
            if failure == "oserror":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")
        return original(obj, f, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", full_disk)
        code, err = quiet_main(["train", "--data", slow_csv, "--out", str(out), *SLOW_ARGS])
    assert code == 2
    line = assert_one_clean_error(err, "could not write checkpoint", "unchanged", "--resume")
    if failure == "oserror":
        assert "No space left on device" in line
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 2
    assert not temporaries(out / "checkpoints")
    # Space freed: the same command plus --resume finishes the run exactly.
    assert quiet_main(["train", "--data", slow_csv, "--out", str(out), *SLOW_ARGS, "--resume"])[0] == 0
    assert_same_run(out, reference)


def test_a_failed_results_write_keeps_the_previous_file(tmp_path, monkeypatch):
    from abag.errors import OutputNotWritableError
    from abag.outputs import write_csv_atomic, write_json_atomic

    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"a": 1.0, "b": float("nan")})
    assert target.read_text().count("null") == 1

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OutputNotWritableError, match="No space left on device.*unchanged"):
        write_json_atomic(target, {"a": 2})
    with pytest.raises(OutputNotWritableError, match="history.csv"):
        write_csv_atomic(tmp_path / "history.csv", pd.DataFrame({"x": [1]}))
    assert '"a": 1.0' in target.read_text() and not temporaries(tmp_path)


def test_train_refuses_to_overwrite_an_existing_run_without_resume(workdir, quick_csv):
    out, before = _finished_epoch_1(workdir, quick_csv, "existing")
    code, err = quiet_main(["train", "--data", quick_csv, "--out", str(out), "--epochs", "1", *QUICK_ARGS])
    assert code == 2
    assert_one_clean_error(err, "already holds a training run", "--resume", "nothing was overwritten")
    assert digest(out / "checkpoints" / "last.pt") == before


@posix_only
def test_interrupts_deferred_is_reentrant_and_restores_the_handler():
    handler = signal.getsignal(signal.SIGINT)
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
            reached.append("inner block ended, interrupt still held by the outer one")
    assert len(reached) == 1
    assert signal.getsignal(signal.SIGINT) is handler
