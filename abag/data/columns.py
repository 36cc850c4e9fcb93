"""Which input column plays which role: names and their aliases, the Kd unit (in a unit column or in the
Kd column's name), and the names of the output columns.

`resolve_columns(names, require_pkd)` returns a `ColumnPlan` (which input column is heavy, light, antigen,
pKd or Kd, unit, censored) and the problems found. When labels are not required (`predict`), a problem with a
label column (a Kd without unit, two Kd columns) is no problem: the label columns are ignored instead
(`ColumnPlan.ignored`) and passed through unchanged. May import: abag.data.report, the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from abag.data.report import RowProblem

__all__ = [
    "OUTPUT_COLUMNS",
    "KD_UNITS_TEXT",
    "ColumnPlan",
    "resolve_columns",
    "kd_unit_exponent",
    "free_column_name",
    "column_role",
    "KD_UNIT_EXPONENTS",
]

OUTPUT_COLUMNS = ("heavy", "light", "antigen", "pkd", "censored", "source_row")

_SEQUENCE_ALIASES = {  # canonical name first: it wins over an alias
    "heavy": ("heavy", "heavy_chain", "heavy_sequence", "vh", "antibody_sequence"),
    "light": ("light", "light_chain", "light_sequence", "vl"),
    "antigen": ("antigen", "antigen_sequence", "antigen_seq"),
}
_PKD_ALIASES = ("pkd",)
_CENSORED_ALIASES = ("censored", "at_lower_bound")
_KD_UNIT_COLUMN_ALIASES = ("kd_unit", "unit")
_KD_UNIT_EXPONENTS = {"m": 0, "mm": -3, "um": -6, "µm": -6, "μm": -6, "nm": -9, "pm": -12, "fm": -15}
KD_UNIT_EXPONENTS = {"M": 0, "mM": -3, "uM": -6, "nM": -9, "pM": -12, "fM": -15}  # as written in column names
KD_UNITS_TEXT = "M, mM, uM, µM, nM, pM, fM"
_KD_NAME_WITH_UNIT = re.compile(r"kd_?[(\[]?(?P<unit>m|mm|um|µm|μm|nm|pm|fm)[)\]]?")


def _column_key(name: object) -> str:
    """How a column name is compared: case, BOM, surrounding space and separators ignored."""
    key = str(name).replace("\ufeff", "").strip().lower()
    return re.sub(r"[\s\-]+", "_", key)


@dataclass
class ColumnPlan:
    """Which input column (its label in the frame) fills each role; None where the input has none."""

    heavy: Any = None
    light: Any = None
    antigen: Any = None
    affinity: Any = None  # the pkd or kd column
    affinity_is_kd: bool = False
    kd_exponent: int | None = None  # set when the unit is in the Kd column's name
    kd_unit_column: Any = None
    censored: Any = None
    warnings: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)  # label column -> why it is not read (no labels needed)

    def drop_labels(self, reasons: dict[str, str]) -> None:
        """Stop reading the label columns (pKd or Kd, unit, censored): they pass through unchanged, in `ignored`."""
        for column, reason in reasons.items():
            self.ignored.setdefault(column, reason)
        for column in (self.affinity, self.kd_unit_column, self.censored):
            if column is not None:
                self.ignored.setdefault(str(column), "read together with the ignored label column(s)")
        self.affinity = self.kd_unit_column = self.censored = self.kd_exponent = None
        self.affinity_is_kd = False

    def consumed(self) -> list[Any]:
        """The input columns this plan reads; every other column is passed through unchanged."""
        used = [self.heavy, self.light, self.antigen, self.affinity, self.kd_unit_column, self.censored]
        return [c for c in used if c is not None]

    def column_map(self) -> dict[str, str]:
        """Role → input column name, as shown in `LoadReport.column_map`."""
        mapping = {"heavy": self.heavy, "light": self.light, "antigen": self.antigen}
        mapping = {k: str(v) for k, v in mapping.items() if v is not None}
        if self.affinity is not None:
            mapping["pkd"] = f"{self.affinity} (converted)" if self.affinity_is_kd else str(self.affinity)
        if self.kd_unit_column is not None:
            mapping["kd_unit"] = str(self.kd_unit_column)
        if self.censored is not None:
            mapping["censored"] = str(self.censored)
        return mapping


def _pick_column(
    columns: list[Any], aliases: tuple[str, ...], role: str, plan: ColumnPlan
) -> tuple[Any, list[RowProblem]]:
    """Find the column for one role; the canonical name beats aliases, two aliases are ambiguous."""
    candidates = [c for c in columns if _column_key(c) in aliases]
    canonical = [c for c in candidates if _column_key(c) == aliases[0]]
    if len(canonical) == 1:
        others = [c for c in candidates if c is not canonical[0]]
        if others:
            plan.warnings.append(
                f"column(s) {_names(others)} also look like {role!r}; using {canonical[0]!r} "
                "and keeping the others as ordinary columns"
            )
        return canonical[0], []
    if len(candidates) == 1:
        return candidates[0], []
    if not candidates:
        return None, []
    reason = f"several columns could be {role!r}: {_names(candidates)}; rename or remove all but one"
    return None, [RowProblem(None, str(candidates[0]), reason)]


def _names(columns: Sequence[Any], limit: int = 30) -> str:
    shown = ", ".join(repr(str(c)) for c in columns[:limit])
    return shown + (f", … ({len(columns) - limit} more)" if len(columns) > limit else "")


def _missing_column_problem(role: str, accepted: str, columns: list[Any]) -> RowProblem:
    found = _names(columns) if columns else "none"
    reason = f"missing required column {role!r} (accepted names: {accepted}; columns found: {found})"
    return RowProblem(None, None, reason)


def resolve_columns(columns: list[Any], require_pkd: bool) -> tuple[ColumnPlan, list[RowProblem]]:
    """Assign the input columns to roles; problems are missing, ambiguous or unit-less columns."""
    plan = ColumnPlan()
    problems: list[RowProblem] = []
    for role, aliases in _SEQUENCE_ALIASES.items():
        chosen, found_problems = _pick_column(columns, aliases, role, plan)
        setattr(plan, role, chosen)
        problems += found_problems
        if chosen is None and role != "light" and not found_problems:
            problems.append(_missing_column_problem(role, ", ".join(aliases), columns))
    if plan.light is None and not problems:
        plan.warnings.append("no light-chain column: every light chain is empty (single-domain antibodies)")
    plan.censored, label_problems = _pick_column(columns, _CENSORED_ALIASES, "censored", plan)
    label_problems += _resolve_affinity(columns, plan, require_pkd)
    if label_problems and not require_pkd:  # labels are not needed: a bad label column must not block
        plan.drop_labels({p.column or "pkd": p.reason for p in label_problems})
        return plan, problems
    return plan, problems + label_problems


def _kd_columns(columns: list[Any]) -> list[Any]:
    return [c for c in columns if _column_key(c) == "kd" or _KD_NAME_WITH_UNIT.fullmatch(_column_key(c))]


def _resolve_affinity(columns: list[Any], plan: ColumnPlan, require_pkd: bool) -> list[RowProblem]:
    pkd_column, problems = _pick_column(columns, _PKD_ALIASES, "pkd", plan)
    if problems:
        return problems
    kd_columns = _kd_columns(columns)
    if pkd_column is not None:
        plan.affinity = pkd_column
        if kd_columns:
            plan.warnings.append(
                f"both a pKd column ({pkd_column!r}) and Kd column(s) ({_names(kd_columns)}) are present: "
                "using the pKd column; the Kd column(s) are kept as ordinary columns"
            )
        return []
    if len(kd_columns) > 1:
        reason = f"several Kd columns: {_names(kd_columns)}; keep only one (or add a 'pkd' column)"
        return [RowProblem(None, str(kd_columns[0]), reason)]
    if kd_columns:
        return _resolve_kd(columns, kd_columns[0], plan)
    if require_pkd:
        accepted = f"pkd, or a Kd column with its unit: kd + kd_unit/unit, kd_nM, 'Kd (nM)', … (units {KD_UNITS_TEXT})"
        return [_missing_column_problem("pkd", accepted, columns)]
    return []


def _resolve_kd(columns: list[Any], kd_column: Any, plan: ColumnPlan) -> list[RowProblem]:
    plan.affinity, plan.affinity_is_kd = kd_column, True
    name_match = _KD_NAME_WITH_UNIT.fullmatch(_column_key(kd_column))
    if name_match:
        plan.kd_exponent = _KD_UNIT_EXPONENTS[name_match["unit"]]
        return []
    unit_column, problems = _pick_column(columns, _KD_UNIT_COLUMN_ALIASES, "kd_unit", plan)
    if problems:
        return problems
    if unit_column is None:
        reason = (
            f"Kd column {str(kd_column)!r} has no unit: add a 'kd_unit' column ({KD_UNITS_TEXT}) "
            "or put the unit in the column name, e.g. 'kd_nM' or 'Kd (nM)'"
        )
        return [RowProblem(None, str(kd_column), reason)]
    plan.kd_unit_column = unit_column
    return []


def column_role(name: object) -> str | None:
    """The role a column name would play: heavy, light, antigen, pkd, kd, kd_unit, censored; None for others."""
    key = _column_key(name)
    for role, aliases in _SEQUENCE_ALIASES.items():
        if key in aliases:
            return role
    if key in _PKD_ALIASES:
        return "pkd"
    if key == "kd" or _KD_NAME_WITH_UNIT.fullmatch(key):
        return "kd"
    if key in _KD_UNIT_COLUMN_ALIASES:
        return "kd_unit"
    return "censored" if key in _CENSORED_ALIASES else None


def kd_unit_exponent(unit_text: str) -> int | None:
    """The power of ten of a Kd unit cell (`nM` → -9), or None for an unknown unit."""
    return _KD_UNIT_EXPONENTS.get(unit_text.strip().lower())


def free_column_name(name: str, taken: Iterable[object]) -> str:
    """`name`, or `name` with `_input` appended until it clashes with none of the `taken` column names."""
    taken_names = {str(c) for c in taken}
    while name in taken_names:
        name += "_input"
    return name
