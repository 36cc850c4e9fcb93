"""Numbering many chains: each distinct chain once, caches (memory and disk), threads, failures kept in place."""

from __future__ import annotations

import gzip

import anarcism
import pytest
from numbering_sequences import JUNK, SCFV, TRASTUZUMAB_VH, TRASTUZUMAB_VL, VHH

from abag.numbering import NumberingDiskCache, number_chain, number_chains

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def _variants(n: int) -> list[str]:
    """n distinct single mutants of trastuzumab's HCDR3 and LCDR3 (deterministic)."""
    out = []
    for i in range(n):
        base, site = (TRASTUZUMAB_VH, 100 + i % 8) if i % 2 == 0 else (TRASTUZUMAB_VL, 90 + i % 6)
        out.append(base[:site] + AMINO[(i // 2) % 20] + base[site + 1:])
    return list(dict.fromkeys(out))


@pytest.fixture
def calls(monkeypatch):
    """Every sequence the library is asked to number, in order."""
    seen: list[str] = []
    original = anarcism.number_sequences

    def counting(inputs, **kwargs):
        inputs = list(inputs)
        seen.extend(s for _, s in inputs)
        return original(inputs, **kwargs)

    monkeypatch.setattr(anarcism, "number_sequences", counting)
    return seen


def test_each_distinct_chain_is_numbered_once_and_the_cache_is_reused(calls):
    cache: dict = {}
    first = number_chains([TRASTUZUMAB_VH, TRASTUZUMAB_VL, TRASTUZUMAB_VH, VHH, TRASTUZUMAB_VL], cache=cache)
    assert sorted(calls) == sorted([TRASTUZUMAB_VH, TRASTUZUMAB_VL, VHH])
    assert (first.n_distinct, first.n_numbered, first.n_from_cache) == (3, 3, 0)
    assert first[0] is first[2] and first[1] is first[4]
    second = number_chains([VHH, TRASTUZUMAB_VH, SCFV], cache=cache)
    assert calls.count(TRASTUZUMAB_VH) == 1 and calls.count(VHH) == 1 and calls.count(SCFV) == 1
    assert (second.n_numbered, second.n_from_cache) == (1, 2) and second[0] is first[3]
    assert set(cache) == {TRASTUZUMAB_VH, TRASTUZUMAB_VL, VHH, SCFV}


def test_failures_stay_in_place_with_their_reason():
    result = number_chains([TRASTUZUMAB_VH, "", JUNK, None, "EVQ*L", TRASTUZUMAB_VL])
    assert len(result) == 6
    assert [c.ok for c in result] == [True, False, False, False, False, True]
    assert "empty" in result[1].failure and result[3].failure == result[1].failure
    assert "no antibody variable domain" in result[2].failure and "'*'" in result[4].failure
    assert set(result.failures) == {"", JUNK, "EVQ*L"}


def test_parallel_and_serial_numbering_agree():
    chains = _variants(80) + [SCFV, VHH, JUNK, "EVQ*L"]
    serial = number_chains(chains, workers=1)
    parallel = number_chains(chains, workers=2)
    assert serial.chains == parallel.chains
    assert sum(c.ok for c in serial) == len(chains) - 2


def test_a_library_error_in_a_batch_is_isolated_to_its_chain(monkeypatch):
    def failing(inputs, **kwargs):
        raise anarcism.AnarcismError("simulated")

    monkeypatch.setattr(anarcism, "number_sequences", failing)
    result = number_chains([TRASTUZUMAB_VH, JUNK], workers=1)
    assert result[0] == number_chain(TRASTUZUMAB_VH) and result[0].ok and not result[1].ok


def test_the_disk_cache_survives_the_process_and_never_renumbers(tmp_path, calls):
    chains = [TRASTUZUMAB_VH, SCFV, JUNK]
    first = number_chains(chains, disk_cache=NumberingDiskCache(tmp_path))
    assert len(calls) == 3
    again = number_chains(chains + [VHH], disk_cache=NumberingDiskCache(tmp_path))
    assert len(calls) == 4 and calls[-1] == VHH
    assert again.chains[:3] == first.chains and again.n_from_cache == 3
    assert len(NumberingDiskCache(tmp_path)) == 4


def test_a_damaged_shard_is_skipped_with_a_warning_and_its_chains_renumbered(tmp_path):
    number_chains([TRASTUZUMAB_VH], disk_cache=NumberingDiskCache(tmp_path))
    for shard in tmp_path.rglob("*.json.gz"):
        shard.write_bytes(gzip.compress(b"{not json"))
    with pytest.warns(UserWarning, match="damaged numbering cache shard"):
        result = number_chains([TRASTUZUMAB_VH], disk_cache=NumberingDiskCache(tmp_path))
    assert result.n_numbered == 1 and result[0].ok


def test_a_disk_cache_for_other_species_is_refused(tmp_path):
    with pytest.raises(ValueError, match="species"):
        number_chains([VHH], disk_cache=NumberingDiskCache(tmp_path, species=("alpaca",)))
