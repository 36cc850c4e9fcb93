"""The IMGT numbering scheme itself: its seven regions, how a position is written, and the order positions take.

IMGT numbers a variable domain 1–128. Loops longer than the scheme's slots get insertion codes: at most positions
they follow the number in alphabetical order (111, 111A, 111B), but at 33, 61 and 112, the second half of CDR1,
CDR2 and CDR3, they come before it in reverse order (112B, 112A, 112), so that a loop grows symmetrically from its
middle. `position_key` encodes that order; `region_of` gives the region of a position number.

Imports nothing from abag.
"""

from __future__ import annotations

__all__ = ["REGIONS", "REGION_NAMES", "CDR_NAMES", "region_of", "insertion_rank", "position_key", "position_label"]

REGIONS: tuple[tuple[str, int, int], ...] = (
    ("FR1", 1, 26),
    ("CDR1", 27, 38),
    ("FR2", 39, 55),
    ("CDR2", 56, 65),
    ("FR3", 66, 104),
    ("CDR3", 105, 117),
    ("FR4", 118, 128),
)
"""(region, first IMGT position, last IMGT position), in domain order."""

REGION_NAMES: tuple[str, ...] = tuple(name for name, _, _ in REGIONS)
CDR_NAMES: tuple[str, ...] = ("CDR1", "CDR2", "CDR3")

_DESCENDING = frozenset({33, 61, 112})  # insertion codes run backwards before these numbers
_REGION_BY_NUMBER = {n: name for name, first, last in REGIONS for n in range(first, last + 1)}


def region_of(number: int) -> str:
    """The IMGT region (FR1, CDR1, …, FR4) of a position number; ValueError outside 1–128."""
    try:
        return _REGION_BY_NUMBER[int(number)]
    except KeyError:
        raise ValueError(f"IMGT positions run from 1 to 128, got {number!r}") from None


def insertion_rank(code: str) -> int:
    """0 for no insertion code, 1 for 'A' … 26 for 'Z', longer codes after every shorter one (base 27)."""
    rank = 0
    for letter in code:
        if not "A" <= letter <= "Z":
            raise ValueError(f"insertion codes are capital letters, got {code!r}")
        rank = rank * 27 + (ord(letter) - ord("A") + 1)
    return rank


def position_key(number: int, code: str = "") -> tuple[int, int]:
    """A sort key that puts IMGT positions in domain order (111 < 111A < 112A < 112)."""
    rank = insertion_rank(code)
    return (int(number), -rank if int(number) in _DESCENDING else rank)


def position_label(number: int, code: str = "") -> str:
    """How a position is written: '111', '111A'."""
    return f"{int(number)}{code}"
