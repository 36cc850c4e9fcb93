"""Parsing one cell: sequences (whitespace, case, residues, length, antigen chains joined with `|`), affinities
(pKd, or Kd in a unit → pKd, with censoring qualifiers `<` / `>`) and censored flags.

Each parser takes the cell's text and returns the parsed value with the reasons it is invalid (empty: valid);
where in the table the cell sits is `abag.data.rows`' business. May import: abag.policy, abag.data.columns,
the standard library.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from abag.data.columns import KD_UNITS_TEXT, kd_unit_exponent
from abag.policy import AMINO_ACIDS

__all__ = [
    "MAX_CHAIN_LENGTH",
    "MISSING_MARKERS",
    "SHORT_CHAIN_RESIDUES",
    "missing_marker",
    "is_missing",
    "Affinity",
    "normalize_sequence",
    "parse_pkd_cell",
    "parse_kd_cell",
    "parse_censored_flag",
]

MAX_CHAIN_LENGTH = 20_000  # longer chains are rejected with a reason

# What pandas.read_csv reads as missing by default, compared case-insensitively after stripping whitespace, so
# that a file and a frame read by pandas (with or without keep_default_na) load identically. An empty cell is
# missing too. '#N/A' is what a spreadsheet writes for an error cell; '<NA>' is str(pandas.NA).
MISSING_MARKERS = frozenset(
    {"na", "n/a", "nan", "-nan", "none", "null", "#n/a", "#n/a n/a", "#na", "<na>",
     "1.#ind", "-1.#ind", "1.#qnan", "-1.#qnan"}
)

_LONGEST_MARKER = max(map(len, MISSING_MARKERS))  # longer cells skip the lower-casing (sequences are long)

# Chains shorter than this are kept but counted in a warning. An antibody variable domain (VH, VL or VHH) has
# about 105-130 residues, so under 70 is shorter than any of them, however short its CDR3; an antigen chain under
# 5 residues is shorter than a linear epitope. Both usually mean a truncated or mis-pasted sequence.
SHORT_CHAIN_RESIDUES = {"heavy": 70, "light": 70, "antigen": 5}

_ALLOWED_RESIDUES_TEXT = "allowed: the 20 standard amino acids"
_WHITESPACE = re.compile(r"\s+")
_NON_RESIDUE = re.compile(f"[^{AMINO_ACIDS}{AMINO_ACIDS.lower()}]")
# Python's float() also takes "1_0", "infinity" and non-ASCII digits; a table must not.
_DECIMAL_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_QUALIFIER = re.compile(r"(<=|>=|≤|≥|<|>)\s*(.*)", re.DOTALL)
_TRUE_TEXTS = frozenset({"true", "1", "yes"})
_FALSE_TEXTS = frozenset({"false", "0", "no", ""})


def _show_char(char: str) -> str:
    return repr(char) if char.isprintable() else f"U+{ord(char):04X}"


def _chain_problems(chain: str) -> list[str]:
    """Reasons a whitespace-free chain is invalid (empty list: valid)."""
    reasons = []
    if len(chain) > MAX_CHAIN_LENGTH:
        reasons.append(f"sequence too long: {len(chain):,} residues (maximum {MAX_CHAIN_LENGTH:,})")
    first_bad = _NON_RESIDUE.search(chain)
    if first_bad:
        n_more = len(_NON_RESIDUE.findall(chain)) - 1
        more = f" and {n_more} more invalid character(s)" if n_more else ""
        reasons.append(
            f"invalid character {_show_char(first_bad.group())} at position {first_bad.start() + 1}{more} "
            f"({_ALLOWED_RESIDUES_TEXT})"
        )
    return reasons


def missing_marker(text: str) -> str | None:
    """The stripped text of a cell that holds a missing-value marker (`NA`, ` nan `, `NULL`, …), else None."""
    stripped = text.strip()
    return stripped if len(stripped) <= _LONGEST_MARKER and stripped.lower() in MISSING_MARKERS else None


def is_missing(text: str) -> bool:
    """True for an empty (or whitespace-only) cell and for a missing-value marker."""
    stripped = text.strip()
    return not stripped or (len(stripped) <= _LONGEST_MARKER and stripped.lower() in MISSING_MARKERS)


def normalize_sequence(raw: str, *, required: bool, multi_chain: bool) -> tuple[str, list[str]]:
    """Remove whitespace, upper-case, validate. Returns (normalised, reasons); a missing cell gives ""."""
    marker = missing_marker(raw)
    if marker is not None:
        return "", ([f"missing value {marker!r} (a sequence is required)"] if required else [])
    sequence = _WHITESPACE.sub("", raw)
    if not sequence:
        return "", (["missing sequence (required)"] if required else [])
    chains = sequence.split("|") if multi_chain else [sequence]
    reasons = []
    for number, chain in enumerate(chains, start=1):
        prefix = f"chain {number} of {len(chains)}: " if len(chains) > 1 else ""
        if not chain:
            reasons.append(f"empty chain {number} of {len(chains)} (antigen chains are separated by '|')")
        reasons += [prefix + reason for reason in _chain_problems(chain)]
    # ASCII upper-casing only after validation: str.upper() maps 'ß' or 'ﬀ' to valid letters.
    return "|".join(chain.upper() for chain in chains), reasons


def _parse_decimal(text: str) -> float | None:
    return float(text) if _DECIMAL_NUMBER.fullmatch(text) else None


def _is_non_finite_word(text: str) -> bool:
    """'nan', '-inf', 'Infinity': worth a clearer message than 'not a number'."""
    return text.strip().lower().lstrip("+-") in {"nan", "inf", "infinity"}


def _number_problem(label: str, text: str, number: str) -> str | None:
    value = _parse_decimal(number)
    if value is None and _is_non_finite_word(number):
        return f"{label} {text!r} is not a finite number"
    if value is None:
        hint = " (use '.' as the decimal separator)" if re.fullmatch(r"[+-]?[0-9]+,[0-9]+", number) else ""
        return f"{label} {text!r} is not a number{hint}"
    if not math.isfinite(value):
        return f"{label} {text!r} is not a finite number"
    return None


@dataclass
class Affinity:
    """A parsed affinity cell: the pKd (NaN when absent), whether a qualifier censored it, and why it is invalid."""

    pkd: float = math.nan
    censored_by_qualifier: bool = False
    reason: str | None = None
    reason_column: Any = None


def _split_qualifier(text: str) -> tuple[str, str]:
    match = _QUALIFIER.fullmatch(text)
    return (match.group(1), match.group(2).strip()) if match else ("", text)


def parse_pkd_cell(text: str) -> Affinity:
    """Parse a non-empty pKd cell: a decimal, optionally after `<`, `<=` or `≤` (censored)."""
    qualifier, number = _split_qualifier(text)
    if qualifier[:1] in (">", "≥"):
        return Affinity(
            reason=f"right-censored values are not supported: pKd {text!r} (only '<' for pKd, "
            "meaning the true pKd is at most the value)"
        )
    reason = _number_problem("pKd", text, number)
    if reason:
        return Affinity(reason=reason)
    return Affinity(pkd=float(number), censored_by_qualifier=bool(qualifier))


def parse_kd_cell(text: str, exponent: int | None, unit_text: str, unit_column: Any) -> Affinity:
    """Parse a non-empty Kd cell into a pKd; the unit is `exponent` (from the column name) or `unit_text`."""
    qualifier, number = _split_qualifier(text)
    if qualifier[:1] in ("<", "≤"):
        return Affinity(
            reason=f"right-censored values are not supported: Kd {text!r} (only '>' for Kd, "
            "meaning the true Kd is at least the value)"
        )
    reason = _number_problem("Kd", text, number)
    if reason:
        return Affinity(reason=reason)
    kd = float(number)
    if kd <= 0:
        return Affinity(reason=f"Kd must be positive, got {text!r}")
    if exponent is None:
        exponent = kd_unit_exponent(unit_text)
        if exponent is None:
            shown = "missing Kd unit" if is_missing(unit_text) else f"unknown Kd unit {unit_text!r}"
            return Affinity(reason=f"{shown} (accepted: {KD_UNITS_TEXT})", reason_column=unit_column)
    # log10(kd) + exponent instead of log10(kd * 10**exponent): no underflow for tiny Kd.
    return Affinity(pkd=-(math.log10(kd) + exponent), censored_by_qualifier=bool(qualifier))


def parse_censored_flag(text: str) -> bool | None:
    """True/False for a censored-flag cell (a missing cell is False), None when it is not a recognised flag."""
    if is_missing(text):
        return False
    lowered = text.strip().lower()
    if lowered in _TRUE_TEXTS:
        return True
    if lowered in _FALSE_TEXTS:
        return False
    return None


def bool_mask(values: Any, n: int) -> np.ndarray:
    """1-D bool mask of length `n` from a column of flags: None -> all False, a missing value -> False."""
    if values is None:
        return np.zeros(n, dtype=bool)
    values = np.ravel(np.asarray(values, dtype=object))
    present = pd.notna(values)
    mask = np.zeros(values.size, dtype=bool)
    mask[present] = values[present].astype(bool)
    return mask
