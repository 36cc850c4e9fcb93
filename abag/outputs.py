"""Output folders and files: checked before work starts, written atomically."""

from __future__ import annotations

import csv
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Callable

from abag.errors import OutputNotWritableError


def _blocking_file(folder: Path) -> Path | None:
    """The nearest existing path at or above `folder` when it is a file (so `folder` cannot exist)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def ensure_writable_folder(folder: str | Path, option: str = "--out") -> Path:
    """Create `folder` if needed and prove a file can be written there, before any long job starts."""
    folder = Path(folder)
    blocking = _blocking_file(folder)
    if blocking is not None:
        where = "is a file" if blocking == folder else f"cannot be created: {blocking} is a file"
        raise OutputNotWritableError(f"output folder {folder} {where}, not a folder. Choose another {option} "
                                     f"path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".abag-write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write to output folder {folder}: {exc.strerror or exc}. "
                                     f"Choose another {option} folder, free disk space or fix its "
                                     f"permissions.") from None
    return folder


def ensure_writable_file(path: str | Path, option: str = "--out") -> Path:
    """Check that `path` can be (re)written as a file: not a folder, and its folder is writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputNotWritableError(f"{option} {path} is a folder; give a file name such as "
                                     f"{path / 'predictions.csv'}.")
    ensure_writable_folder(path.parent if str(path.parent) else Path("."), option)
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _json_safe(value.item())
    return value


def json_text(document: Any) -> str:
    """`document` as indented JSON; NaN and Inf become null, so the text is valid JSON."""
    return json.dumps(_json_safe(document), indent=2, allow_nan=False) + "\n"


def write_atomic(path: str | Path, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Call `write(file)` on a temporary file beside `path`, fsync it, then rename it over `path`.

    A reader (or a process killed half-way) sees the old file or the new one, never a partial one.
    Failures raise `OutputNotWritableError` and leave any previous file untouched.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, mode, **({"encoding": "utf-8", "newline": ""} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise OutputNotWritableError(f"could not write {path}: {exc.strerror or exc}. The previous file, if any, "
                                     f"is unchanged; free disk space or choose another location.") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_json_atomic(path: str | Path, document: dict) -> Path:
    """Write `document` as JSON (NaN/Inf become null) via a temporary file and a rename."""
    text = json_text(document)
    return write_atomic(path, lambda f: f.write(text))


def _has_carriage_return(frame) -> bool:
    texts = [str(c) for c in frame.columns]
    for column in range(frame.shape[1]):
        series = frame.iloc[:, column]
        if not (series.dtype.kind in "biufcmM"):  # text columns: object or pandas' string dtypes
            texts.extend(v for v in series if isinstance(v, str))
    return any("\r" in t for t in texts)


def write_csv_atomic(path: str | Path, frame) -> Path:
    """Write a pandas DataFrame as a UTF-8 CSV (no index) via a temporary file and a rename.

    Python's csv writer leaves a lone carriage return inside a field unquoted when lines end in "\\n", and
    every CSV reader then splits that row in two; such tables are written with every text field quoted.
    """

    quoting = csv.QUOTE_NONNUMERIC if _has_carriage_return(frame) else csv.QUOTE_MINIMAL
    return write_atomic(path, lambda f: frame.to_csv(f, index=False, quoting=quoting))
