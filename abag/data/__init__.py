"""Reading and validating affinity tables, then splitting them: read → validate → split.

`load_pairs(path)` reads a CSV/TSV, Excel, FASTA or AIRR file into the canonical table (`heavy, light, antigen,
pkd, censored, source_row`, then the input's other columns) plus a `LoadReport`; `prepare_pairs(frame)` does the
same for a DataFrame. Every problem is reported at once (`DataValidationError`: row, column, reason), or with
`drop_invalid=True` the rows are dropped and listed, never silently. The columns, aliases, units and file
conventions are in docs/data-format.md. `splits` and `folds` keep whole antigen clusters apart.

May import: abag.identity, abag.numbering, abag.outputs, abag.errors, abag.policy.
"""

from __future__ import annotations

from abag.data.chain_checks import ChainCheck
from abag.data.cells import MAX_CHAIN_LENGTH, MISSING_MARKERS, SHORT_CHAIN_RESIDUES
from abag.data.columns import OUTPUT_COLUMNS
from abag.data.formats import read_table
from abag.data.pipeline import load_pairs, prepare_pairs, write_rejected
from abag.data.replicates import REPLICATE_POLICIES
from abag.data.report import (
    PKD_MODEL_RANGE,
    DataValidationError,
    LoadReport,
    RowProblem,
)
from abag.policy import STANDARD_AMINO_ACIDS

__all__ = [
    "STANDARD_AMINO_ACIDS",
    "PKD_MODEL_RANGE",
    "MAX_CHAIN_LENGTH",
    "MISSING_MARKERS",
    "SHORT_CHAIN_RESIDUES",
    "REPLICATE_POLICIES",
    "OUTPUT_COLUMNS",
    "RowProblem",
    "DataValidationError",
    "LoadReport",
    "read_table",
    "prepare_pairs",
    "load_pairs",
    "write_rejected",
    "ChainCheck",
]
