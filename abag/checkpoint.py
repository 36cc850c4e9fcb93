"""Checkpoints that hold everything a resumed run needs to continue exactly, written atomically.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(weights_only=True)` (the PyTorch ≥ 2.6 default): NumPy's RNG state is stored as a list.

Writes go to a hidden temporary file beside the target (`.last.pt.<random>.tmp`), are fsynced, and then
renamed over the target, so a process killed at any moment leaves either the previous checkpoint or the new
one, never half a file. Ctrl-C (SIGINT) is held back while a checkpoint is written and delivered right after.
Temporary files left behind by a killed writer are never loaded and are removed by the next successful save.

A checkpoint's `kind` says what it is: "single" (one training run: model, optimizer, scheduler, RNG states,
history; it predicts and resumes) or "fold_ensemble" (the averaged members of a `--folds` run: it predicts, and
holds no training state; each member's own checkpoints resume). Checkpoints written before `kind` are told
apart by their `ensemble` record.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from abag.errors import CheckpointError

FORMAT = "abag-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = (  # a single run's checkpoint: everything a resumed run needs
    "epoch", "model_state_dict", "optimizer_state_dict", "scheduler_state_dict", "best_spearman", "history",
    "config", "rng_state", "cuda_rng_state", "numpy_rng_state", "python_rng_state",
)
KIND_SINGLE = "single"
KIND_FOLD_ENSEMBLE = "fold_ensemble"
ENSEMBLE_REQUIRED_KEYS = ("model_state_dict", "config", "ensemble")
# What only a training run has; a fold ensemble's checkpoint carries none of it (its members' checkpoints do).
TRAINING_STATE_KEYS = (
    "epoch", "optimizer_state_dict", "scheduler_state_dict", "scaler_state_dict", "best_spearman", "best_epoch",
    "stale_epochs", "history", "data_order", "world_size", "rng_state", "cuda_rng_state", "numpy_rng_state",
    "python_rng_state",
)
LOAD_HINT = "Pass a best.pt or last.pt written by `abag train` (or train a new model)."
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # torch.save(_use_new_zipfile_serialization=False)


def checkpoint_kind(state: dict[str, Any]) -> str:
    """The checkpoint's `kind`; one written before that field is a fold ensemble when it has an `ensemble` record."""
    kind = state.get("kind")
    if kind is None:
        return KIND_FOLD_ENSEMBLE if "ensemble" in state else KIND_SINGLE
    return kind


def ensemble_resume_message(path: str | Path) -> str:
    """Why a fold ensemble's checkpoint cannot be resumed, and what resumes instead."""
    return (f"checkpoint {path} belongs to a fold ensemble (kind '{KIND_FOLD_ENSEMBLE}'): it averages the members "
            f"of an `abag train --folds K` run for prediction (abag predict --checkpoint) and holds no training "
            f"state. To train further, resume that run in its own folder with the same --folds K plus --resume: "
            f"each member continues from its members/member_k/checkpoints/last.pt")


def capture_rng_state() -> dict[str, Any]:
    """torch CPU, every CUDA device, NumPy and Python `random` states."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "rng_state": torch.get_rng_state(),
        "cuda_rng_state": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_rng_state": {"kind": kind, "keys": keys.tolist(), "pos": int(position),
                            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python_rng_state": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state` (CUDA states are restored when the devices exist)."""
    torch.set_rng_state(state["rng_state"])
    if state.get("cuda_rng_state") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng_state"])
    n = state["numpy_rng_state"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python_rng_state"]
    random.setstate((version, tuple(internal), gauss))


# ----------------------------------------------------------------------------------------------- Ctrl-C

_deferring = threading.local()


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) inside the block; a Ctrl-C pressed meanwhile is delivered when it ends.

    Used around checkpoint writes so that an interrupted run always has its newest epoch on disk and
    `last.pt`/`best.pt` never disagree. Nested blocks defer to the outermost one. Outside the main thread
    (where Python cannot set signal handlers) the block runs unchanged.
    """
    if getattr(_deferring, "active", False) or threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGINT)
    except (ValueError, OSError):  # pragma: no cover - exotic embeddings without signal support
        yield
        return
    received: list[int] = []

    def hold(signum, frame):  # noqa: ARG001 - signal handler signature
        received.append(signum)

    signal.signal(signal.SIGINT, hold)
    _deferring.active = True
    try:
        yield
    finally:
        _deferring.active = False
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


# ----------------------------------------------------------------------------------------------- saving

def _temporary_names(path: Path) -> Iterator[Path]:
    """Temporary files of earlier writes of `path` (left behind when a writer was killed)."""
    return path.parent.glob(f".{path.name}.*.tmp")


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system lets a folder be fsynced)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` (plus format tags) to a temporary file beside `path`, fsync, then rename over it.

    A failure (disk full, permission) raises `CheckpointError` and leaves any previous file untouched;
    a Ctrl-C during the write is delivered once the write is complete.
    """
    path = Path(path)
    kind = checkpoint_kind(state)
    if kind == KIND_FOLD_ENSEMBLE:
        stray = [k for k in TRAINING_STATE_KEYS if k in state]
        if stray:  # empty or ensemble-wide values here would read as a training run's state
            raise ValueError(f"a fold ensemble's checkpoint holds no training state, but has {stray}")
    elif kind != KIND_SINGLE:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    missing = [k for k in _required_keys(kind) if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with interrupts_deferred():
        try:
            with open(temporary, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except (OSError, RuntimeError) as exc:  # torch's zip writer reports a failed write as RuntimeError
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200] or type(exc).__name__
            raise CheckpointError(
                f"could not write checkpoint {path}: {reason}. The previous checkpoint, if any, is unchanged. "
                f"Free disk space or fix the folder's permissions, then continue with --resume.") from None
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_folder(path.parent)
        for leftover in _temporary_names(path):
            leftover.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------------------------- loading

def _describe_unreadable(head: bytes, size: int) -> str | None:
    """What a file that is not a PyTorch zip archive is, in words (None when it looks like one)."""
    if size == 0:
        return "is empty (0 bytes): its write or copy was cut short"
    if head.startswith(_ZIP_MAGIC):
        return None
    if head.startswith(_LEGACY_TORCH_MAGIC):
        return "is a PyTorch file in the legacy (pre-1.6) format, not a checkpoint written by abag train"
    if head[:1] == b"\x80":
        return "is a Python pickle, not a checkpoint written by abag train (abag never unpickles arbitrary objects)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # (a multi-byte character cut at the end of `head` is still text)
        text = head[:-3].decode("utf-8", errors="replace") if len(head) > 3 else "\ufffd"
    if "\ufffd" not in text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "is a text file, not a PyTorch checkpoint"
    return "is not a PyTorch checkpoint (unknown binary format)"


def _required_keys(kind: str) -> tuple[str, ...]:
    return ENSEMBLE_REQUIRED_KEYS if kind == KIND_FOLD_ENSEMBLE else REQUIRED_KEYS


def _check_structure(state: dict[str, Any], kind: str) -> str | None:
    """A reason when a tagged checkpoint's contents have the wrong shape (hand-edited or damaged)."""
    if kind == KIND_FOLD_ENSEMBLE:
        record = state.get("ensemble")
        if not isinstance(record, dict) or not isinstance(record.get("n_folds"), int):
            return "its fold-ensemble record ('ensemble') lacks the number of folds"
    elif not isinstance(state.get("epoch"), int):
        return "'epoch' is not a whole number"
    weights = state.get("model_state_dict")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        return "'model_state_dict' is not a table of tensors"
    config = state.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) \
            or not isinstance(config.get("train"), dict):
        return "'config' lacks the model and training settings"
    if kind == KIND_SINGLE and not isinstance(state.get("history"), list):
        return "'history' is not a list of epochs"
    return None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    hint: str = LOAD_HINT, resumable: bool = False) -> dict[str, Any]:
    """Load and check an abag checkpoint (`resumable`: one that holds a training state, i.e. not a fold ensemble's).

    A missing, empty, truncated, foreign (text, pickle, other PyTorch file), newer or damaged file raises
    `CheckpointError` naming the file, what is wrong with it and `hint` (what to do next).
    """
    path = Path(path)

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} {problem}. {hint}")

    if path.is_dir():
        raise fail("is a folder, not a checkpoint file")
    if not path.is_file():
        raise fail("does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
        size = path.stat().st_size
    except OSError as exc:
        raise fail(f"cannot be read ({exc.strerror or exc})") from None
    problem = _describe_unreadable(head, size)
    if problem:
        raise fail(problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError… for bad files
        text = str(exc)
        if "Weights only load failed" in text:
            raise fail("holds Python objects besides tensors and plain data, so it was not written by "
                       "abag train (abag never unpickles arbitrary objects)") from None
        reason = text.splitlines()[0][:160] if text else type(exc).__name__
        raise fail(f"is truncated or damaged (PyTorch could not read it: {reason}); this happens when a copy "
                   f"or download was cut short") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise fail(f"is a PyTorch file but not an abag checkpoint (no '{FORMAT}' format tag)")
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version}; this abag reads version "
                              f"{FORMAT_VERSION}. Use the abag release that wrote it, or retrain.")
    kind = checkpoint_kind(state)
    if kind not in (KIND_SINGLE, KIND_FOLD_ENSEMBLE):
        raise CheckpointError(f"checkpoint {path} is of kind {kind!r}, which this abag does not know. Use the abag "
                              f"release that wrote it, or retrain.")
    if resumable and kind == KIND_FOLD_ENSEMBLE:  # older ensemble files had (empty) training-state keys: refuse first
        raise CheckpointError(ensemble_resume_message(path))
    missing = [k for k in _required_keys(kind) if k not in state]
    if missing:
        raise fail(f"is incomplete: missing {', '.join(missing)}")
    damaged = _check_structure(state, kind)
    if damaged:
        raise fail(f"is damaged: {damaged}")
    return state


def resume_hint(last_path: str | Path) -> str:
    """What to do when `--resume` finds an unusable `last.pt`."""
    last_path = Path(last_path)
    best = last_path.with_name("best.pt")
    hint = (f"To start this run over, delete {last_path} (or choose a new --out folder) and train again "
            f"without --resume.")
    if best.is_file() and best != last_path:
        hint += f" {best} may still be intact: copying it to {last_path} resumes from the best epoch instead."
    return hint


def load_model_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], expected_keys,
                       path: str | Path, *, hint: str = "") -> None:
    """Load `weights` into `module`, refusing keys outside `expected_keys` and any of those the module still lacks
    after loading (it may fill what older checkpoints did not write).

    A checkpoint holds only the weights that train (`AbAgModel.trainable_state_dict`), so loading is not
    strict; this check makes sure nothing the model trains is missing and nothing foreign is present.
    """
    expected, given = set(expected_keys), set(weights)
    tail = f" {hint}" if hint else ""

    def refuse(missing: list[str], unexpected: list[str]) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} does not match the model it describes (missing "
                               f"{missing[:3]}{' …' if len(missing) > 3 else ''}, unexpected "
                               f"{unexpected[:3]}{' …' if len(unexpected) > 3 else ''}).{tail}")

    if given - expected:
        raise refuse(sorted(expected - given), sorted(given - expected))
    try:
        loaded = module.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # shape mismatches: weights of another architecture
        detail = " ".join(line.strip() for line in str(exc).splitlines())[:300]
        raise CheckpointError(f"checkpoint {path} does not match the model it describes: {detail}.{tail}") from None
    # Counted after loading: a module may fill what older checkpoints lack (`abag.model.wide.WideSlot`: a wide
    # part written before its within scale or local term existed reads scale 1 and no term).
    missing = sorted(set(loaded.missing_keys) & expected)
    if missing:
        raise refuse(missing, [])
