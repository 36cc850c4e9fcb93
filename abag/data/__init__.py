"""Loading and validating antibody–antigen affinity tables (the `abag.data` package).

`load_pairs(path)` reads a CSV/TSV, Excel (.xlsx), FASTA or AIRR rearrangement file and returns a canonical
table plus a `LoadReport` (docs/data-format.md describes the formats and their conventions);
`prepare_pairs(df)` does the same for a DataFrame already in memory. Every problem in the input
is collected and reported at once (`DataValidationError`), or, with `drop_invalid=True`, the
offending rows are dropped and listed in `LoadReport.rejected` — never silently.

Output columns, in this order: `heavy, light, antigen, pkd, censored, source_row` (plus `replicate`
with `replicates="flag"`), then every other column of the input, unchanged. `source_row` is the
1-based data row number in the input (the first row after the header is 1).

Accepted columns (names are case-insensitive; surrounding whitespace is ignored, and spaces or
hyphens inside a name count as underscores, so `Heavy Chain` = `heavy_chain`):

| canonical | accepted column names | notes |
|---|---|---|
| `heavy` | `heavy`, `heavy_chain`, `heavy_sequence`, `vh`, `antibody_sequence` | required, non-empty |
| `light` | `light`, `light_chain`, `light_sequence`, `vl` | optional; a missing value or a missing column means a single-domain antibody (VHH) |
| `antigen` | `antigen`, `antigen_sequence`, `antigen_seq` | required; several chains joined with `\\|` |
| `pkd` | `pkd` (e.g. `pKd`) | −log10(Kd / M); required unless `require_pkd=False`; `<6` means censored (true pKd ≤ 6) |
| `pkd` from Kd | `kd` together with a unit column `kd_unit` or `unit` | unit values `M`, `mM`, `uM`, `µM`, `μM`, `nM`, `pM`, `fM` (any case); pKd = −log10(Kd in M) |
| `pkd` from Kd | unit in the name: `kd_M`, `kd_mM`, `kd_uM`, `kd_µM`, `kd_nM`, `kd_pM`, `kd_fM`, `Kd (nM)`, `Kd [nM]`, `Kd nM` | `>10000` means censored (Kd ≥ 10000, so pKd ≤ the converted value) |
| `censored` | `censored`, `at_lower_bound` | `true/false/1/0/yes/no` or missing (= false); true: the real pKd is at most the value (assay floor) |

Rules worth knowing:
- Missing values: an empty cell and the markers `NA`, `N/A`, `NaN`, `None`, `null`, `#N/A`, `<NA>`, … (every
  value pandas.read_csv treats as missing by default, `MISSING_MARKERS`; any case, surrounding whitespace
  ignored) mean "no value" in every column abag reads, whether the table comes from a file or from a
  DataFrame read with or without pandas' `keep_default_na`. A missing heavy chain or antigen is a row
  problem (`missing value 'NA' …`); a missing light chain is a single-domain antibody, counted in
  `LoadReport.n_single_domain`; a missing pKd is a row problem unless `require_pkd=False`. The other
  columns are passed through as they are.
- When both a pKd and a Kd column are present, the pKd column is used (with a warning) and the Kd
  column is kept as an ordinary column. When the canonical name and an alias are both present
  (`heavy` and `vh`), the canonical one is used (with a warning); two aliases and no canonical
  name is an error, because guessing could silently pick the wrong sequences.
- Sequences: all whitespace is removed and letters are upper-cased; only the 20 standard amino
  acids are accepted; each chain may hold at most `MAX_CHAIN_LENGTH` residues. Implausibly short chains
  (`SHORT_CHAIN_RESIDUES`: heavy or light under 70 residues, shorter than any variable domain; an antigen
  chain under 5) are kept and counted in a warning (`LoadReport.n_short_chains`).
- Censoring qualifiers: `<`, `<=`, `≤` before a pKd and `>`, `>=`, `≥` before a Kd mark the row
  censored. `pkd >x` and `Kd <x` (true affinity above the reported value) are rejected:
  right-censored values are not supported.
- Numbers are plain decimals (`7.5`, `1e-9`); `inf`, `7,5` and `1_0` are rejected (`nan` is missing).
- Replicates (same heavy, light, antigen after normalisation): `keep` all rows (default), `flag`
  them in a bool column `replicate`, or `mean` them into one row (the first row's other columns):
  exact values are averaged and censored ones ignored; if all are censored, the row stays censored
  with the smallest bound (the true pKd is below every bound).
- Rows whose cells are all missing are skipped with a warning; they are not counted as data rows.
- A pKd cannot lie outside [0, 20] (`PKD_POSSIBLE_RANGE`): such a value is a row problem, and a column that
  looks like Kd as a whole (median outside [1, 20], or impossible values with half the column outside the
  model range) stops the load with one message naming the rows and the likely unit (`kd_nM`, …).
- Labels not required (`require_pkd=False`, as `abag predict`): a problem in a label column (pKd or Kd, unit,
  censored) does not stop the load; the label columns are ignored instead, passed through unchanged, and
  listed in `LoadReport.ignored_columns` and the summary's warnings.

Modules, one job each (a module imports only from those above it):

- `report`: `RowProblem`, `DataValidationError`, `LoadReport`;
- `reading`: a delimited text file into a frame of text cells (compression, encoding, delimiter);
- `columns`: which column is which (aliases, Kd units in names or a unit column), output column names;
- `cells`: one cell (sequences, pKd/Kd with censoring qualifiers, censored flags);
- `rows`: every row of a table checked against the column plan;
- `input_table`: `InputTable`, a table read from a file and where each of its rows came from;
- `xlsx`, `fasta`, `airr`: a workbook's sheet, FASTA records grouped by ID, AIRR chains paired by cell;
- `formats`: which kind of file it is (`read_table`, `read_input`) and the `antigen=` option;
- `pkd_range`: pKd values that cannot be pKd (a Kd typed into `pkd`), with the likely unit;
- `replicates`: the replicate policies;
- `pipeline`: `prepare_pairs`, `load_pairs`, `write_rejected`;
- `check`: `check_file`, the text `abag check` prints.

May import: its own modules only (this file re-exports the public names).
"""

from __future__ import annotations

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
]
