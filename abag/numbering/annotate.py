"""IMGT annotation of antibody tables: the chain type and the CDRs of every heavy and light cell, as columns."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

import pandas as pd

from abag.numbering.batch import number_chains
from abag.numbering.chains import NumberedChain
from abag.numbering.imgt import CDR_NAMES

ANNOTATION_COLUMNS = ("heavy_domain", "cdr_h1", "cdr_h2", "cdr_h3", "light_domain", "cdr_l1", "cdr_l2", "cdr_l3")


def _describe(chain: NumberedChain | None) -> str:
    if chain is None:
        return ""
    if not chain.ok:
        return f"not numbered: {chain.failure}"
    return " + ".join(domain.describe() for domain in chain.domains)


def annotate(heavy: Sequence[str], light: Sequence[str],
             cache: MutableMapping[str, NumberedChain] | None = None) -> pd.DataFrame:
    """One row per (heavy, light) pair: each chain's domains and its IMGT CDRs ("" where there is none).

    A cell holding several domains (an scFv) gets the CDRs of the domain of its own kind."""
    cells = [str(c or "") for c in list(heavy) + list(light)]
    numbered = {c.sequence: c for c in number_chains([c for c in cells if c], cache=cache)}
    rows = []
    for h, lt in zip(heavy, light):
        row = {}
        for kind, text, prefix in (("heavy", str(h or ""), "cdr_h"), ("light", str(lt or ""), "cdr_l")):
            chain = numbered.get(text)
            domain = chain.domain_of(kind) if chain is not None and chain.ok else None
            cdrs = domain.cdrs() if domain is not None else {}
            row[f"{kind}_domain"] = _describe(chain)
            row.update({f"{prefix}{i}": cdrs.get(name, "") for i, name in enumerate(CDR_NAMES, start=1)})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(ANNOTATION_COLUMNS))
