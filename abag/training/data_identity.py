"""Which data a run was trained on, row by row, so that `--resume` can refuse different data and say how.

`RowRecord` holds, per row: a hash of its sequences (heavy, light, antigen), its file row number
(`source_row`), pKd, the censored flag, a hash of the group column's value (when the run has one) and the
split part it was assigned to. Its `to_checkpoint()` is tensors and strings only (it loads with
`torch.load(weights_only=True)`), 26 to 42 bytes per row (at most 7 MB for 160k pairs). `differences()` names what
changed between the checkpoint's data and this data. `data_fingerprint` is the one-string summary saved
in the checkpoint's config.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

PARTS = ("train", "val", "test")
SEQUENCE_COLUMNS = ["heavy", "light", "antigen"]
_EXAMPLES = 5  # row numbers quoted per difference


def censored_flags(frame: pd.DataFrame) -> np.ndarray:
    """The censored flag of every row (all False for a table without a `censored` column)."""
    if "censored" not in frame:
        return np.zeros(len(frame), dtype=bool)
    return frame["censored"].to_numpy(dtype=bool)


def _hash_rows(columns: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(columns.astype(str), index=False).to_numpy().view(np.int64)


def data_fingerprint(frame: pd.DataFrame, group_column: str | None = None) -> str:
    """Hash of the training table (sequences, pKd, censored flags and the group column), in row order."""
    columns = frame[SEQUENCE_COLUMNS + ["pkd"]].astype(str).assign(censored=censored_flags(frame))
    if group_column is not None and group_column in frame:
        columns["group"] = frame[group_column]
    return hashlib.sha1(_hash_rows(columns).tobytes()).hexdigest()


def legacy_data_fingerprint(frame: pd.DataFrame) -> str:
    """The fingerprint of checkpoints written before row records existed (sequences and pKd only)."""
    columns = frame[SEQUENCE_COLUMNS + ["pkd"]].astype(str)
    return hashlib.sha1(pd.util.hash_pandas_object(columns, index=False).values.tobytes()).hexdigest()


@dataclass
class RowRecord:
    """Per-row identity, labels and (once split) part of a run's data."""

    key: np.ndarray = field(repr=False)          # int64 hash of (heavy, light, antigen)
    source_row: np.ndarray = field(repr=False)   # int64 data-row number in the file (1-based)
    pkd: np.ndarray = field(repr=False)          # float64
    censored: np.ndarray = field(repr=False)     # bool
    group_column: str | None = None
    group: np.ndarray | None = field(default=None, repr=False)   # int64 hash of the group value
    part: np.ndarray | None = field(default=None, repr=False)    # uint8 index into PARTS
    split_method: str = ""
    split_description: str = ""
    split_groups: np.ndarray | None = field(default=None, repr=False)  # the split's integer group labels

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, group_column: str | None = None) -> "RowRecord":
        """The record of a validated table; the group column is recorded when the run names one."""
        n = len(frame)
        source = frame["source_row"].to_numpy(dtype=np.int64) if "source_row" in frame else np.arange(1, n + 1)
        group = None
        if group_column is not None and group_column in frame:
            group = _hash_rows(frame[[group_column]])
        return cls(_hash_rows(frame[SEQUENCE_COLUMNS]), source, frame["pkd"].to_numpy(dtype=np.float64),
                   censored_flags(frame), group_column, group)

    def with_split(self, split) -> "RowRecord":
        """This record plus the part each row was assigned to by `split` (a `SplitResult`)."""
        assignment = np.asarray(split.assignment).astype(str)
        unknown = sorted(set(np.unique(assignment)) - set(PARTS))
        if unknown:
            raise ValueError(f"split parts must be {PARTS}, not {unknown}")
        part = np.zeros(len(assignment), dtype=np.uint8)
        for code, name in enumerate(PARTS):
            part[assignment == name] = code
        groups = None if split.groups is None else np.asarray(split.groups)
        if groups is not None and not np.issubdtype(groups.dtype, np.integer):
            groups = None
        return dataclasses.replace(self, part=part, split_method=str(split.method),
                                   split_description=str(split.description), split_groups=groups)

    def assignment(self) -> np.ndarray:
        """The stored split assignment as part names ("train", "val", "test")."""
        return np.asarray(PARTS)[self.part]

    def to_checkpoint(self) -> dict:
        record = {"key": torch.from_numpy(self.key.copy()), "source_row": torch.from_numpy(self.source_row.copy()),
                  "pkd": torch.from_numpy(self.pkd.copy()), "censored": torch.from_numpy(self.censored.copy()),
                  "group_column": self.group_column or "", "split_method": self.split_method,
                  "split_description": self.split_description}
        for name in ("group", "part", "split_groups"):
            value = getattr(self, name)
            if value is not None:
                record[name] = torch.from_numpy(np.asarray(value).copy())
        return record

    @classmethod
    def from_checkpoint(cls, record: dict) -> "RowRecord":
        """Inverse of `to_checkpoint` (raises KeyError, TypeError or ValueError when it is damaged)."""
        arrays = {name: record[name].numpy() for name in ("key", "source_row", "pkd", "censored")}
        optional = {name: record[name].numpy() for name in ("group", "part", "split_groups") if name in record}
        lengths = {len(a) for a in [*arrays.values(), *(v for k, v in optional.items() if k != "split_groups")]}
        if len(lengths) != 1:
            raise ValueError("its per-row arrays differ in length")
        return cls(**arrays, **optional, group_column=record["group_column"] or None,
                   split_method=str(record["split_method"]), split_description=str(record["split_description"]))

    def differences(self, current: "RowRecord") -> list[str]:
        """What changed from this (the checkpoint's) record to `current`, one phrase per kind; [] if nothing."""
        rows = _row_differences(self, current)
        if rows:
            return [rows]
        changed = [_changed("pKd values", _differs(self.pkd, current.pkd), current.source_row),
                   _changed("censored flags", _differs(self.censored, current.censored), current.source_row)]
        if self.group is not None and current.group is None:
            changed.append(f"the group column {self.group_column!r} is missing")
        elif self.group is not None:
            changed.append(_changed(f"the group column {self.group_column!r}", _differs(self.group, current.group),
                                    current.source_row))
        return [phrase for phrase in changed if phrase]


def _differs(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Row-wise inequality; for floats NaN equals NaN."""
    if before.dtype.kind == "f":
        return ~((before == after) | (np.isnan(before) & np.isnan(after)))
    return before != after


def _changed(what: str, mask: np.ndarray, source_row: np.ndarray) -> str | None:
    rows = source_row[mask]
    if len(rows) == 0:
        return None
    return f"{what} changed for {len(rows)} row{'s' if len(rows) != 1 else ''} ({_examples(rows)})"


def _examples(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:_EXAMPLES])
    return f"row{'s' if len(rows) != 1 else ''} {shown}{', …' if len(rows) > _EXAMPLES else ''}"


def _row_differences(before: RowRecord, after: RowRecord) -> str | None:
    """'rows added/removed …' or 'the same rows in a different order', or None when the rows match."""
    if len(before.key) == len(after.key) and np.array_equal(before.key, after.key):
        return None
    old = pd.Series(before.key).value_counts()
    new = pd.Series(after.key).value_counts()
    surplus = new.sub(old, fill_value=0)
    added, removed = surplus[surplus > 0], -surplus[surplus < 0]
    if added.empty and removed.empty:
        return "the same rows are in a different order (the split and the data order follow row positions)"
    changes = []
    if not added.empty:
        new_rows = after.source_row[_surplus_rows(after.key, added)]
        changes.append(f"{_rows(int(added.sum()))} new ({_examples(new_rows)} of this data)")
    if not removed.empty:
        gone = before.source_row[_surplus_rows(before.key, removed)]
        changes.append(f"{_rows(int(removed.sum()))} gone ({_examples(gone)} of the checkpoint's data)")
    return (f"rows added/removed (the checkpoint's data had {len(before.key)} rows, this data has "
            f"{len(after.key)}): {', '.join(changes)}")


def _surplus_rows(keys: np.ndarray, surplus: pd.Series) -> np.ndarray:
    """Positions of the last `surplus[key]` occurrences of each key (the copies the other side lacks)."""
    series = pd.Series(keys)
    from_end = series.groupby(series).cumcount(ascending=False).to_numpy()
    return np.flatnonzero(from_end < series.map(surplus).fillna(0).to_numpy())


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''} {'are' if n != 1 else 'is'}"
