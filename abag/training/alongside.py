"""What the end of training needs that the trained network does not change, computed while the epochs run.

On the CPU the epoch loop trains the head with one thread (`abag.model.apply.head_threads`), so the second core
is idle for most of a large run. `final_inputs` needs only the split: the training references with the validation
and test rows' nearest training antigens and antibodies (the search behind intervals and applicability), the
evaluation groups, the k-mer ridge design of the training rows (shared by the familiar-antigen correction and the
k-mer baseline) and the baselines' test metrics. `abag.training.run` starts it in a background thread
(`Alongside`) before the epochs and `abag.training.finalize` waits for it; nothing in it depends on when it runs,
so the results are those of computing it after training (tested).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

import numpy as np
import pandas as pd

from abag.data.splits import row_groups
from abag.evaluation.baselines import evaluate_baselines
from abag.model.ridge import RidgeDesign, training_rows
from abag.posthoc.intervals import PredictionSupport, nearest_identities
from abag.training.config import RunInputs

__all__ = ["Alongside", "FinalInputs", "final_inputs", "training_support", "evaluation_groups", "has_labels"]

T = TypeVar("T")


class Alongside(Generic[T]):
    """`work()` started in a daemon thread (a Ctrl-C or an error in the main thread does not wait for it)."""

    def __init__(self, work: Callable[[], T]):
        self.seconds = 0.0  # the work's own wall time, once it has finished
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), name="abag-alongside", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], T]) -> None:
        started = time.perf_counter()
        try:
            self._value = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._error = exc
        self.seconds = time.perf_counter() - started

    def result(self) -> T:
        """Wait for the work; its value, or its exception raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class FinalInputs:
    """`final_inputs`' result."""

    support: PredictionSupport   # references over the training rows; held-out rows' identities in their memo
    clusters: np.ndarray         # per row: antigen cluster (the split's groups when it has them)
    antibodies: np.ndarray       # per row: antibody
    labelled: bool               # some training row has a finite, uncensored pKd (else no ridge can fit)
    design: RidgeDesign | None = field(default=None, repr=False)  # the training rows' k-mer ridge design
    baselines: dict = field(default_factory=dict)                 # the baselines' test metrics


def final_inputs(run: RunInputs, correcting: bool) -> FinalInputs:
    """Everything `finalize` needs that does not depend on the trained network. `correcting`: the model fits a
    familiar-antigen correction (whose k-mer ridge shares its design with the k-mer baseline)."""
    frame, parts, config = run.frame, run.parts, run.config
    support = training_support(frame, parts)
    clusters, antibodies = evaluation_groups(run)
    labelled = has_labels(frame.iloc[parts["train"]])
    tested = len(parts["test"]) > 0
    # The correction's k-mer ridge (on the network's residuals) and the k-mer baseline (on pKd) fit the same
    # training rows: they share one design (features, XᵀX, eigenpairs), built once.
    design = RidgeDesign.of(frame.iloc[parts["train"]]) if correcting and labelled and tested else None
    baselines = {}
    if tested and labelled:
        baselines = evaluate_baselines(frame.iloc[parts["train"]], frame.iloc[parts["test"]], design=design,
                                       threshold=config.binder_threshold, seed=config.seed,
                                       groups=clusters[parts["test"]], antibody_groups=antibodies[parts["test"]])
    return FinalInputs(support, clusters, antibodies, labelled, design, baselines)


def training_support(frame: pd.DataFrame, parts: dict[str, np.ndarray]) -> PredictionSupport:
    """References over the training rows (no calibration yet), with the validation and test rows' nearest
    identities already in their memo (one search per reference), as `abag.training.finalize` reads them."""
    support = PredictionSupport.from_training(frame.iloc[parts["train"]], None, "")
    nearest_identities(frame.iloc[np.concatenate([parts["val"], parts["test"]])], support.antigen_reference,
                       support.antibody_reference)
    return support


def evaluation_groups(run: RunInputs) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the antigen cluster (the split's groups when it has them) and the antibody, for the
    within-cluster and within-antibody metrics and the cluster bootstrap."""
    split = run.split
    if split.groups is not None and split.method == "antigen":
        clusters = np.asarray(split.groups)
    else:
        clusters = row_groups(run.frame, "antigen", identity=run.config.split_identity).labels
    return np.asarray(clusters), np.asarray(row_groups(run.frame, "antibody").labels)


def has_labels(train_frame: pd.DataFrame) -> bool:
    """Whether any training row has a finite, uncensored pKd (what the ridges and the baselines fit on)."""
    try:
        training_rows(train_frame)
    except ValueError:
        return False
    return True
