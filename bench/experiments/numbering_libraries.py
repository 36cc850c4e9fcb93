"""Which numbering library abag uses: agreement with ANARCI (the field's reference), speed and install.

Numbers the distinct heavy and light chains of a table with each library that is installed (anarcism, riot-na,
ANARCI itself; ANARCI needs HMMER's hmmscan on PATH) in IMGT, and prints, per library, chains per second on one
thread and the share of chains whose chain type and (position, insertion) -> residue map equal ANARCI's. Run it in a
separate virtual environment: riot-na and ANARCI are not abag dependencies.

    OMP_NUM_THREADS=1 python bench/experiments/numbering_libraries.py ../shared/data/saaintdb_dev.csv
"""

from __future__ import annotations

import argparse
import re
import time

import pandas as pd

Numbering = tuple[str, dict[tuple[int, str], str], int]  # chain type, map, number of domains


def _anarcism(chains: list[str], workers: int = 1) -> list[Numbering | None]:
    import anarcism

    results = anarcism.number_sequences([(str(i), s) for i, s in enumerate(chains)], workers=workers,
                                        allowed_chains=["H", "K", "L"])
    out: list[Numbering | None] = []
    for result in results:
        if not result.domains:
            out.append(None)
            continue
        domain = result.domains[0]
        mapping = {(r.position, r.insertion_code.strip()): r.amino_acid for r in domain.numbering if r.amino_acid != "-"}
        out.append((domain.chain_type, mapping, len(result.domains)))
    return out


def _anarci(chains: list[str]) -> list[Numbering | None]:
    from anarci import anarci

    numbered, details, _ = anarci([(str(i), s) for i, s in enumerate(chains)], scheme="imgt", output=False,
                                  allow={"H", "K", "L"}, ncpu=1)
    out: list[Numbering | None] = []
    for domains, info in zip(numbered, details):
        if not domains:
            out.append(None)
            continue
        mapping = {(p, i.strip()): aa for (p, i), aa in domains[0][0] if aa != "-"}
        out.append((info[0]["chain_type"], mapping, len(domains)))
    return out


_POSITION = re.compile(r"^(\d+)(?:\.(\d+))?$")  # AIRR style: 111.1, 112.2


def _riot(chains: list[str]) -> list[Numbering | None]:
    from riot_na import Scheme, create_riot_aa

    riot = create_riot_aa()
    out: list[Numbering | None] = []
    for i, sequence in enumerate(chains):
        result = riot.run_on_sequence(str(i), sequence, scheme=Scheme.IMGT)
        if not result.scheme_residue_mapping:
            out.append(None)
            continue
        mapping = {}
        for key, aa in result.scheme_residue_mapping.items():
            number, extra = _POSITION.match(key).groups()
            mapping[(int(number), chr(ord("A") + int(extra) - 1) if extra else "")] = aa
        locus = str(result.locus or "")
        out.append(({"IGH": "H", "IGK": "K", "IGL": "L"}.get(locus.split(".")[-1].upper(), locus), mapping, 1))
    return out


def _timed(function, chains):
    start = time.perf_counter()
    result = function(chains)
    return result, len(chains) / (time.perf_counter() - start)


def _agreement(result: list[Numbering | None], reference: list[Numbering | None]) -> dict[str, float]:
    both = [(a, b) for a, b in zip(result, reference) if a is not None and b is not None]
    return {
        "failed": sum(a is None for a in result),
        "reference_failed": sum(b is None for b in reference),
        "same_type": sum(a[0] == b[0] for a, b in both) / max(len(both), 1),
        "same_numbering": sum(a[1] == b[1] for a, b in both) / max(len(both), 1),
        "same_domain_count": sum(a[2] == b[2] for a, b in both) / max(len(both), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    frame = pd.read_csv(args.table)
    for column in ("heavy", "light"):
        chains = sorted({s for s in frame[column].fillna("").astype(str) if s})[: args.limit]
        print(f"{column}: {len(chains)} distinct chains")
        tools = {"anarci": _anarci, "anarcism": _anarcism, "anarcism_2_threads": lambda c: _anarcism(c, 2),
                 "riot_na": _riot}
        results = {}
        for name, function in tools.items():
            try:
                results[name], speed = _timed(function, chains)
            except ImportError as error:
                print(f"  {name}: not installed ({error})")
                continue
            print(f"  {name}: {speed:.0f} chains/s")
        if "anarci" in results:
            for name, result in results.items():
                print(f"  {name} vs anarci: {_agreement(result, results['anarci'])}")


if __name__ == "__main__":
    main()
