"""Where a run's time goes: wall seconds per named stage, printed at the end of `abag train`.

`recording()` opens a `StageTimes` for the block it wraps (the CLI wraps a whole `abag train`); inside it, library
code marks its stages with `stage("encode")`. Without an open recording `stage` only runs its block, so the library
times nothing unless asked. A stage's seconds exclude those of stages opened inside it (a stage nested in another
is subtracted from the outer one), and repeated names add up (a fold run's members each encode and train, and the
summary shows the totals), so the stages never count a second twice and their sum is at most the run's wall time;
what no stage covers is reported as "other". Work run in a background thread meanwhile is reported apart
(`beside`), since its seconds overlap the stages'. Imports the standard library only.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

__all__ = ["StageTimes", "recording", "stage", "beside"]


@dataclass
class StageTimes:
    """Wall seconds per stage (in the order stages first started) and the wall time of the whole recording."""

    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # this process's CPU time (all threads) per stage
    total: float = 0.0
    # Work that ran in a background thread beside the stages (`beside`): its wall seconds, not part of any stage's
    # (the stage that waited for it counts only the wait).
    beside_seconds: dict[str, float] = field(default_factory=dict)
    _open: list[list] = field(default_factory=list, repr=False)  # [start wall, start CPU, nested wall, nested CPU]

    def add(self, name: str, seconds: float, cpu_seconds: float = 0.0) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + cpu_seconds

    @property
    def other(self) -> float:
        """Wall time outside every stage (start-up, imports, argument checks, …)."""
        return max(self.total - sum(self.seconds.values()), 0.0)

    def summary(self) -> str:
        """One line, e.g. "stage times: load 3.1 s, split 2.0 s, encode 58 s, … (other 4.0 s; total 81 s)"."""
        parts = [f"{name} {_seconds(value)}" for name, value in self.seconds.items()]
        beside = "".join(f"; {name} {_seconds(value)} beside the other stages"
                         for name, value in self.beside_seconds.items())
        return (f"stage times: {', '.join(parts) or 'none'} (other {_seconds(self.other)}{beside}; "
                f"total {_seconds(self.total)})")


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


_current: ContextVar[StageTimes | None] = ContextVar("abag_stage_times", default=None)


@contextmanager
def recording() -> Iterator[StageTimes]:
    """Record the stages run inside the block; the `StageTimes` it yields has `total` set on exit."""
    times = StageTimes()
    token = _current.set(times)
    started = time.perf_counter()
    try:
        yield times
    finally:
        times.total = time.perf_counter() - started
        _current.reset(token)


def beside(name: str, seconds: float) -> None:
    """Record `seconds` of work named `name` that ran in a background thread (call it from the recording thread)."""
    times = _current.get()
    if times is not None:
        times.beside_seconds[name] = times.beside_seconds.get(name, 0.0) + seconds


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as stage `name` in the open recording (if any), less the stages nested inside it."""
    times = _current.get()
    if times is None:
        yield
        return
    times.add(name, 0.0)  # listed in the order stages start
    entry = [time.perf_counter(), time.process_time(), 0.0, 0.0]
    times._open.append(entry)
    try:
        yield
    finally:
        times._open.pop()
        elapsed, cpu = time.perf_counter() - entry[0], time.process_time() - entry[1]
        times.add(name, elapsed - entry[2], cpu - entry[3])
        if times._open:
            times._open[-1][2] += elapsed
            times._open[-1][3] += cpu
