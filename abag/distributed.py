"""Thin wrappers over torch.distributed so the same code runs in one process or under `torchrun`."""

from __future__ import annotations

import datetime
import gc
import os
import sys

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def init_from_environment() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); returns whether distributed."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # A bounded wait: a process that died or hangs makes the others fail with a clear error instead of waiting
    # forever (ABAG_DIST_TIMEOUT_S, default 30 minutes: long enough for a first encoding pass).
    timeout = datetime.timedelta(seconds=int(os.environ.get("ABAG_DIST_TIMEOUT_S", "1800")))
    dist.init_process_group(backend=backend, timeout=timeout)
    global _JOINED
    _JOINED = True
    return True


_JOINED = False  # whether this process ever joined a process group (see `exit_process`)


def shutdown() -> None:
    """Leave the process group (no-op in a single process), and release it while the interpreter is alive."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def exit_process(code: int) -> None:
    """End the process with `code`. A torchrun worker ends with `os._exit` after flushing its output: it has
    written everything atomically by now, and skipping interpreter finalization avoids gloo's C++ threads being
    torn down during it, which aborts the process ("terminate called without an active exception", SIGABRT)
    now and then, so that torchrun reports a failed run that had succeeded. One process exits normally."""
    if not _JOINED:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def local_device() -> torch.device:
    """This process's device: its own GPU under torchrun on CUDA, else the first GPU, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def all_gather_objects(obj):
    """List of `obj` from every process (a one-element list in a single process)."""
    if not is_distributed():
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj):
    """Process 0's `obj`, on every process."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return local_device()
    return torch.device(name)
