"""Shared fixtures: tiny synthetic complexes and the seeded `tiny` encoder (no downloads)."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest

AMINO = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def random_sequence(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(AMINO, size=length))


def mutate(rng: np.random.Generator, sequence: str, n: int) -> str:
    chars = list(sequence)
    for position in rng.choice(len(chars), size=n, replace=False):
        chars[position] = rng.choice(AMINO)
    return "".join(chars)


def synthetic_frame(n: int = 96, n_antigens: int = 8, seed: int = 0, pkd_low: float = 5.0,
                    pkd_high: float = 11.0) -> pd.DataFrame:
    """Complexes of mutated antibodies against unrelated random antigens; pKd follows a hidden rule."""
    rng = np.random.default_rng(seed)
    antigens = [random_sequence(rng, int(rng.integers(40, 90))) for _ in range(n_antigens)]
    heavy_template, light_template = random_sequence(rng, 60), random_sequence(rng, 50)
    rows = []
    for i in range(n):
        heavy = mutate(rng, heavy_template, 6)
        light = "" if i % 7 == 0 else mutate(rng, light_template, 4)
        antigen_index = i % n_antigens
        score = heavy.count("W") + heavy.count("Y") - heavy.count("D") + 0.3 * antigen_index
        pkd = float(np.clip(7.5 + 0.5 * score + rng.normal(0, 0.3), pkd_low, pkd_high))
        rows.append({"heavy": heavy, "light": light, "antigen": antigens[antigen_index], "pkd": pkd})
    frame = pd.DataFrame(rows)
    frame["censored"] = False
    return frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return synthetic_frame()


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to `n` inside, restored on exit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: a second thread only adds contention (40x slower on a busy 2-core machine)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_encoders():
    from abag.encoding.loader import load_tiny_encoder

    return {"tiny": load_tiny_encoder()}


def write_csv(frame: pd.DataFrame, path) -> str:
    frame[["heavy", "light", "antigen", "pkd"]].to_csv(path, index=False)
    return str(path)
