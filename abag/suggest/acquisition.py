"""Acquisition: the score each remaining candidate gets when the next pick of a batch is made.

- greedy: the predicted mean pKd (EVOLVEpro's top-n rule);
- ucb: mean + beta * std (`SuggestConfig.beta`, 2 by default);
- thompson: one posterior draw per pick: a random member of the model's bootstrap ensemble when it has
  one (ridge models; the draw is coherent across candidates), else mean + std * z with an independent
  standard normal z per candidate (the GP's marginal posterior; a joint draw over tens of thousands of
  candidates would cost a dense Cholesky of their covariance). Draws come from the seeded generator.

Greedy and ucb give the same scores at every pick; the diversity rule (`abag.suggest.diversity`, off by
default) can spread the batch. Imports numpy and abag.suggest.variant_models (types only).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from abag.suggest.variant_models import Prediction

__all__ = ["needs_std", "acquisition"]


def needs_std(strategy: str) -> bool:
    """Whether `strategy` reads the std of every candidate (greedy reads only the mean)."""
    return strategy != "greedy"


def acquisition(strategy: str, prediction: Prediction, *, beta: float, rng: np.random.Generator
                ) -> Callable[[int], np.ndarray]:
    """A function `pick -> scores of all candidates` for the given strategy."""
    mean = prediction.mean
    if strategy == "greedy":
        return lambda pick: mean
    std = prediction.std if prediction.std is not None else np.zeros_like(mean)
    if strategy == "ucb":
        upper = mean + beta * std
        return lambda pick: upper
    if strategy == "thompson":
        draws = prediction.draws
        if draws is not None and len(draws):
            return lambda pick: draws[rng.integers(len(draws))]
        return lambda pick: mean + std * rng.standard_normal(len(mean))
    raise ValueError(f"unknown strategy {strategy!r}")
