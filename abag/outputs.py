"""Output folders and files: checked before work starts, written atomically."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

from .errors import OutputNotWritableError


def ensure_writable_folder(folder: str | Path) -> Path:
    """Create `folder` if needed and prove a file can be written there, before any long job starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".abag-write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write to output folder {folder}: {exc.strerror or exc}. "
                                     f"Choose another --out folder or fix its permissions.") from None
    return folder


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


def write_json_atomic(path: str | Path, document: dict) -> Path:
    """Write `document` as JSON (NaN/Inf become null) via a temporary file and a rename."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_text(json.dumps(_json_safe(document), indent=2, allow_nan=False) + "\n")
        os.replace(temporary, path)
    except OSError as exc:
        raise OutputNotWritableError(f"could not write {path}: {exc.strerror or exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path
