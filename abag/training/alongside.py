"""Work that does not need the trained network, run in a background thread while the epochs run.

On the CPU the epoch loop trains the head with one thread (`abag.model.apply.head_threads`), so the second core
is idle for most of a large run; the search for the validation and test rows' nearest training antigens and
antibodies (`training_support`) needs only the split, and runs there meanwhile. `Alongside.result()` waits for it
and re-raises whatever it raised; nothing it computes depends on when it runs, so the results are those of
computing it after training.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

import numpy as np
import pandas as pd

from abag.posthoc.intervals import PredictionSupport, nearest_identities

__all__ = ["Alongside", "training_support"]

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


def training_support(frame: pd.DataFrame, parts: dict[str, np.ndarray]) -> PredictionSupport:
    """References over the training rows (no calibration yet), with the validation and test rows' nearest
    identities already in their memo (one search per reference), as `abag.training.finalize` reads them."""
    support = PredictionSupport.from_training(frame.iloc[parts["train"]], None, "")
    nearest_identities(frame.iloc[np.concatenate([parts["val"], parts["test"]])], support.antigen_reference,
                       support.antibody_reference)
    return support
