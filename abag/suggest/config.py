"""The settings of one `abag suggest` round (`SuggestConfig`) and the error it raises on bad settings or input.

Defaults that a benchmark chose say so (bench/RESULTS_suggest.md); the rest are fixed a priori, not tuned.
Imports abag.errors only.
"""

from __future__ import annotations

from dataclasses import dataclass

from abag.errors import AbagError

__all__ = ["STRATEGIES", "MODEL_NAMES", "SuggestConfig", "SuggestError"]

STRATEGIES = ("greedy", "ucb", "thompson")
"""greedy: highest predicted mean; ucb: mean + beta * std; thompson: one posterior draw per pick."""

MODEL_NAMES = ("onehot_ridge", "embedding_ridge", "gp", "checkpoint")
"""The variant models, simplest first (the order the one-standard-error rule prefers; see `selection`)."""


class SuggestError(AbagError):
    """Settings or inputs that cannot give a batch (too few candidates, nothing to rank by, bad positions)."""

    exit_code = 2


@dataclass(frozen=True)
class SuggestConfig:
    """How a batch is chosen: acquisition, diversity, and how the variant model is chosen and fitted."""

    n: int = 96                    # batch size: distinct candidate rows returned
    # greedy without the diversity rule found as many top-1% variants as any other setting on both Phillips
    # landscapes (bench/RESULTS_suggest.md), and the rule cost finds in the first rounds there.
    strategy: str = "greedy"       # one of STRATEGIES
    seed: int = 0                  # cross-validation folds, bootstrap, Thompson draws and tie-breaks
    beta: float = 2.0              # ucb: mean + beta * std (about a 98% one-sided upper bound for a normal)
    min_distance: int = 1          # diversity: picks differ at >= this many aligned positions (1 = off)
    folds: int = 5                 # K of the K-fold cross-validation that chooses the variant model
    cv_repeats: int = 2            # repeats of the K-fold split (different shuffles)
    top_fraction: float = 0.1      # the "top" the selection scores: each held-out fold's best 10%
    bootstrap: int = 32            # ridge ensemble members (seeded bootstrap resamples) for pkd_std
    models: tuple[str, ...] | None = None  # restrict the variant models (None: every one the inputs allow)

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.n, int) or self.n < 1:
            problems.append(f"n must be a whole number >= 1, got {self.n!r}")
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if not (self.beta >= 0 and self.beta < float("inf")):
            problems.append(f"beta must be a finite number >= 0, got {self.beta!r}")
        if not isinstance(self.min_distance, int) or self.min_distance < 1:
            problems.append(f"min_distance must be a whole number >= 1 (1 turns diversity off), "
                            f"got {self.min_distance!r}")
        if not isinstance(self.folds, int) or self.folds < 2:
            problems.append(f"folds must be a whole number >= 2, got {self.folds!r}")
        if not isinstance(self.cv_repeats, int) or self.cv_repeats < 1:
            problems.append(f"cv_repeats must be a whole number >= 1, got {self.cv_repeats!r}")
        if not 0 < self.top_fraction <= 1:
            problems.append(f"top_fraction must be in (0, 1], got {self.top_fraction!r}")
        if not isinstance(self.bootstrap, int) or self.bootstrap < 2:
            problems.append(f"bootstrap must be a whole number >= 2, got {self.bootstrap!r}")
        unknown = [m for m in (self.models or ()) if m not in MODEL_NAMES]
        if unknown:
            problems.append(f"unknown model(s) {', '.join(map(repr, unknown))}; choose from {', '.join(MODEL_NAMES)}")
        if problems:
            raise SuggestError("; ".join(problems))
