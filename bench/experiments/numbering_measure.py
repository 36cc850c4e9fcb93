"""Numbering on real tables: speed serial and threaded, the domain span against the framework-4 regex trim, what
fails or is flagged by the column checks, and the size of the aligned one-hot.

    OMP_NUM_THREADS=1 python bench/experiments/numbering_measure.py ../shared/data/saaintdb_dev.csv \
        ../shared/data/skempi2_ab_ag.csv
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import pandas as pd

from abag.data.chain_checks import check_chain_columns
from abag.encoding.features import variable_domain
from abag.numbering import AlignedOneHotEncoder, number_chains


def _speed(chains: list[str]) -> dict[str, float]:
    """Chains per wall second, and per CPU second (what an idle core would give), serial and on 2 threads."""
    out = {}
    for workers in (1, 2):
        start, cpu = time.perf_counter(), time.process_time()
        number_chains(chains, workers=workers)
        out[f"workers={workers}"] = round(len(chains) / (time.perf_counter() - start), 1)
        out[f"workers={workers} per CPU s"] = round(len(chains) / (time.process_time() - cpu), 1)
    return out


def _verdict(sequence: str, regex: str, start: int, end: int) -> str:
    """How the numbered span [start, end) differs from the regex trim (which always starts at residue 1)."""
    if sequence[start:end] == regex:
        return "same"
    if start > 0:
        return "numbering leaves out N-terminal residues before the domain"
    if regex == sequence and end < len(sequence) - 5:
        return "regex found no motif and kept the whole chain; numbering cuts it"
    return "regex keeps more at the end" if len(regex) > end else "regex cuts earlier"


def _span_vs_regex(chains: list[str], kind: str, cache: dict) -> None:
    numbered = number_chains(chains, cache=cache)
    kinds = collections.Counter()
    examples = {}
    for chain in numbered:
        regex = variable_domain(chain.sequence, kind)
        domain = chain.domain_of(kind) if chain.ok else None
        if domain is None:
            verdict = "not numbered as " + kind
        else:
            verdict = _verdict(chain.sequence, regex, domain.start, domain.end)
        kinds[verdict] += 1
        if verdict not in examples and verdict != "same":
            tail = chain.sequence[domain.end - 12: domain.end + 12] if domain is not None else chain.sequence[:40]
            examples[verdict] = (len(chain.sequence), len(regex), (domain.start, domain.end) if domain else None,
                                 tail, chain.failure[:80])
    print(f"  {kind}: {len(chains)} distinct; span vs regex: {dict(kinds)}")
    for verdict, example in examples.items():
        print(f"    e.g. {verdict}: length {example[0]}, regex keeps {example[1]}, domain span {example[2]}, "
              f"around the domain's end {example[3]!r} {example[4]}")


def _checks(frame: pd.DataFrame, cache: dict) -> None:
    problems = check_chain_columns(frame["heavy"].tolist(), frame["light"].tolist(), cache=cache)
    by_reason = collections.Counter(p.reason.split(":")[0].split(" (")[0] for p in problems)
    print(f"  column checks: {len(problems)} problem(s) in {len({p.row for p in problems})} row(s): {dict(by_reason)}")
    for p in problems[:10]:
        print(f"    {p} [{p.value}]")


def _onehot(frame: pd.DataFrame, cache: dict, n_rows: int) -> None:
    heavy = list(number_chains(frame["heavy"].fillna(""), cache=cache))
    light = [c if c.sequence else None for c in number_chains(frame["light"].fillna(""), cache=cache)]
    encoder = AlignedOneHotEncoder().fit(heavy, light)
    repeat = int(np.ceil(n_rows / len(frame)))
    start = time.perf_counter()
    features = encoder.transform(heavy * repeat, light * repeat)
    seconds = time.perf_counter() - start
    m = features.matrix
    size = m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    print(f"  one-hot: {encoder.n_features} columns ({len(encoder.positions_['heavy'])} heavy, "
          f"{len(encoder.positions_['light'])} light positions); {m.shape[0]} rows in {seconds:.1f} s, "
          f"{size / 2**20:.0f} MiB float32 -> {size / m.shape[0] * 500_000 / 2**30:.2f} GiB for 500k pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+")
    parser.add_argument("--onehot-rows", type=int, default=50_000)
    args = parser.parse_args()
    for path in args.tables:
        frame = pd.read_csv(path)
        frame["light"] = frame["light"].fillna("")
        print(path)
        heavy = sorted(set(frame["heavy"]))
        print(f"  speed on {len(heavy)} distinct heavy chains (chains/s): {_speed(heavy)}")
        cache: dict = {}
        _span_vs_regex(heavy, "heavy", cache)
        _span_vs_regex(sorted({s for s in frame["light"] if s}), "light", cache)
        _checks(frame, cache)
        _onehot(frame, cache, args.onehot_rows)


if __name__ == "__main__":
    main()
