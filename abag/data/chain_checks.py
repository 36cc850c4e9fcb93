"""Does each antibody column hold the chain it claims? Problems per row, found by numbering every cell.

`check_chain_columns(heavy, light)` numbers the distinct chains of both columns and returns one `RowProblem` per
finding, naming the row, the column and the reason: a light chain in the heavy column, a heavy chain in the light
column, heavy and light swapped, several variable domains in one cell (an scFv: VH + linker + VL), or a chain that
cannot be numbered. It raises nothing: the data pipeline decides what to do with the problems. Empty cells are
not checked (a missing light chain is a single-domain antibody; a missing heavy chain is the row validator's).
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field

from abag.data.report import RowProblem
from abag.numbering.batch import number_chains
from abag.numbering.chains import CHAIN_NAMES, SPECIES, NumberedChain
from abag.numbering.disk_cache import NumberingDiskCache
from abag.numbering.domains import SHARED_NUMBERING, numbered_by_default

__all__ = ["check_chain_columns", "cell_problem", "ChainCheck"]


@dataclass(frozen=True)
class ChainCheck:
    """Whether reading a table numbers its antibody columns (`prepare_pairs(check_chains=...)`).

    when: "always", "never", or "auto": when the table has at most `NUMBERING_MAX_CHAINS` distinct antibody chains
    (above that a warning says the columns were not checked). disk_cache: keep numbered chains there too.
    """

    when: str = "auto"
    disk_cache: NumberingDiskCache | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.when not in ("always", "never", "auto"):
            raise ValueError(f"ChainCheck.when must be 'always', 'never' or 'auto', got {self.when!r}")

    @classmethod
    def of(cls, value: "bool | ChainCheck") -> "ChainCheck":
        """True -> always, False -> never; a ChainCheck as it is."""
        return value if isinstance(value, ChainCheck) else cls("always" if value else "never")

    def applies(self, n_chains: int) -> bool:
        """Whether a table with `n_chains` distinct antibody chains is checked."""
        return self.when == "always" or (self.when == "auto" and numbered_by_default(n_chains))


def _cell(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _type_name(chain: NumberedChain) -> str:
    return CHAIN_NAMES.get(chain.domains[0].chain_type, chain.domains[0].chain_type)


UNNUMBERED = "cannot be numbered as an antibody variable domain"
"""How a cell-problem reason starts when the numbering could not read the chain at all."""


def cell_problem(chain: NumberedChain, kind: str) -> str:
    """Why one numbered cell does not hold a single `kind` ('heavy' or 'light') domain; '' when it does."""
    if not chain.ok:
        return f"{UNNUMBERED}: {chain.failure}"
    if chain.is_multi_domain:
        parts = " + ".join(d.describe() for d in chain.domains)
        return (f"holds {len(chain.domains)} variable domains ({parts}): an scFv or another multi-domain "
                f"construct; give its heavy and light domains in their own columns")
    is_heavy = chain.domains[0].is_heavy
    if kind == "heavy" and not is_heavy:
        return f"holds a {_type_name(chain)} chain, not a heavy chain"
    if kind == "light" and is_heavy:
        return "holds a heavy chain, not a light chain"
    return ""


def _swapped(heavy: NumberedChain | None, light: NumberedChain | None) -> bool:
    single = [c is not None and c.ok and not c.is_multi_domain for c in (heavy, light)]
    return all(single) and not heavy.domains[0].is_heavy and light.domains[0].is_heavy


def check_chain_columns(heavy: Sequence[object], light: Sequence[object] | None = None, *,
                        heavy_column: str = "heavy", light_column: str = "light",
                        rows: Sequence[int] | None = None,
                        cache: MutableMapping[str, NumberedChain] | None = None, workers: int | None = None,
                        species: Sequence[str] = SPECIES,
                        disk_cache: NumberingDiskCache | None = None) -> list[RowProblem]:
    """Problems of the heavy and light cells, row by row; rows are `rows[i]` (default: 1-based positions).

    Swapped chains give one problem on the heavy column; every other finding names its own column. Numbered
    chains go to `cache` (default: the process-wide `SHARED_NUMBERING`, which IMGT trimming reads later) and to
    `disk_cache` when given.
    """
    if cache is None and tuple(species) == SPECIES:
        cache = SHARED_NUMBERING
    light = [""] * len(heavy) if light is None else light
    if len(light) != len(heavy):
        raise ValueError(f"heavy has {len(heavy)} rows but light has {len(light)}")
    row_numbers = list(rows) if rows is not None else list(range(1, len(heavy) + 1))
    heavy_cells, light_cells = [_cell(v) for v in heavy], [_cell(v) for v in light]
    numbered = number_chains([c for c in heavy_cells + light_cells if c], cache=cache, workers=workers,
                             species=species, disk_cache=disk_cache)
    by_sequence = {c.sequence: c for c in numbered}
    problems: list[RowProblem] = []
    for row, h_text, l_text in zip(row_numbers, heavy_cells, light_cells):
        h_chain, l_chain = by_sequence.get(h_text), by_sequence.get(l_text)
        if _swapped(h_chain, l_chain):
            reason = (f"heavy and light chains are swapped: {heavy_column!r} holds a {_type_name(h_chain)} chain "
                      f"and {light_column!r} holds a heavy chain")
            problems.append(RowProblem(row, heavy_column, reason, h_text))
            continue
        for column, kind, text, chain in ((heavy_column, "heavy", h_text, h_chain),
                                          (light_column, "light", l_text, l_chain)):
            reason = cell_problem(chain, kind) if chain is not None else ""
            if reason:
                problems.append(RowProblem(row, column, reason, text))
    return problems
