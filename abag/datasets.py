"""Example data shipped inside the package, so examples run without a checkout of the repository.

`example_pairs()` is the synthetic table of the README and the Quickstart (240 rows; data/README.md describes
it), read and validated like any file; `example_pairs_path()` is the file itself, for the command line
(`abag train --data "$(python -c 'import abag; print(abag.datasets.example_pairs_path())')" …`). The packaged
file, abag/resources/example_pairs.csv, is the source; data/make_example.py writes it (and the checkout's
data/example_pairs.csv copy, which a test keeps identical).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from abag.data import load_pairs

__all__ = ["example_pairs", "example_pairs_path"]

_EXAMPLE = "example_pairs.csv"


def example_pairs_path() -> Path:
    """The path of the packaged example table (a CSV with heavy, light, antigen, pkd)."""
    return Path(str(resources.files("abag") / "resources" / _EXAMPLE))


def example_pairs() -> pd.DataFrame:
    """The README's example table, loaded like `abag.load_pairs` does (canonical columns, `source_row`)."""


    with resources.as_file(resources.files("abag") / "resources" / _EXAMPLE) as path:
        frame, _ = load_pairs(path, source=_EXAMPLE)
    return frame
