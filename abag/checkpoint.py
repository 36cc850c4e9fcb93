"""Checkpoints that hold everything a resumed run needs to continue exactly, written atomically.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(weights_only=True)` (the PyTorch ≥ 2.6 default): NumPy's RNG state is stored as a list.
"""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError

FORMAT = "abag-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "epoch", "model_state_dict", "optimizer_state_dict", "scheduler_state_dict", "best_spearman", "history",
    "config", "rng_state", "cuda_rng_state", "numpy_rng_state", "python_rng_state",
)


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


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` (plus format tags) to a temporary file beside `path`, fsync, then rename over it.

    A failure (disk full, permission) raises `CheckpointError` and leaves any previous file untouched.
    """
    path = Path(path)
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise CheckpointError(f"could not write checkpoint {path}: {exc.strerror or exc}; "
                              f"the previous checkpoint, if any, is unchanged") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check an abag checkpoint; a missing, truncated, foreign or newer file raises `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError… for bad files
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated, corrupt or not a PyTorch file): "
                              f"{reason}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an abag checkpoint (no '{FORMAT}' format tag)")
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version}; this abag reads version "
                              f"{FORMAT_VERSION}. Use the abag release that wrote it, or retrain.")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    return state
