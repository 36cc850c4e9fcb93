"""Numbered chains kept on disk between runs: a folder of gzip JSON shards, one per batch written.

The folder holds one subfolder per setting (library version and species), so an upgrade or another species list
never reads old numbering. Each shard maps a hash of the sequence to its domains (or its failure), compactly (the
position numbers as hex bytes, insertion codes only where there are some). Shards are written whole (temporary file, then
rename), so a killed run leaves no half shard; a shard that cannot be read is skipped with a warning and its
chains are numbered again.

May import: abag.numbering.chains, the standard library.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from abag.numbering.chains import SPECIES, Domain, NumberedChain, library_version

__all__ = ["NumberingDiskCache"]

_FORMAT = 1


def _sequence_key(sequence: str) -> str:
    return hashlib.sha256(sequence.encode("utf-8")).hexdigest()[:32]


def _encode(chain: NumberedChain) -> list:
    domains = [[d.chain_type, d.start, d.end, d.residues, d.numbers.hex(), [list(x) for x in d.insertions]]
               for d in chain.domains]
    return [chain.failure, domains]


def _decode(sequence: str, record: list) -> NumberedChain:
    failure, domains = record
    return NumberedChain(sequence, tuple(
        Domain(chain_type, start, end, residues, bytes.fromhex(numbers), tuple((i, c) for i, c in insertions))
        for chain_type, start, end, residues, numbers, insertions in domains), failure)


class NumberingDiskCache:
    """A folder of numbered chains for one library version and species list; `get_many` and `put_many`."""

    def __init__(self, folder: str | os.PathLike, *, species: Sequence[str] = SPECIES):
        self.species = tuple(species)
        setting = json.dumps({"format": _FORMAT, "library": library_version(), "species": self.species})
        self.folder = Path(folder) / hashlib.sha256(setting.encode()).hexdigest()[:16]
        self._setting = setting
        self._records: dict[str, list] | None = None

    def _load(self) -> dict[str, list]:
        if self._records is None:
            self._records = {}
            for shard in sorted(self.folder.glob("*.json.gz")):
                try:
                    with gzip.open(shard, "rt", encoding="utf-8") as handle:
                        self._records.update(json.load(handle)["chains"])
                except (OSError, ValueError, KeyError, EOFError) as error:
                    warnings.warn(f"skipping damaged numbering cache shard {shard}: {error}", stacklevel=3)
        return self._records

    def __len__(self) -> int:
        return len(self._load())

    def get_many(self, sequences: Iterable[str]) -> dict[str, NumberedChain]:
        """The cached chains among `sequences` (absent ones are left out)."""
        records = self._load()
        found = {}
        for sequence in sequences:
            record = records.get(_sequence_key(sequence))
            if record is not None:
                found[sequence] = _decode(sequence, record)
        return found

    def put_many(self, chains: Iterable[NumberedChain]) -> int:
        """Write the chains not stored yet as one new shard; returns how many were written."""
        records = self._load()
        new = {}
        for chain in chains:
            key = _sequence_key(chain.sequence)
            if key not in records and key not in new:
                new[key] = _encode(chain)
        if not new:
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"shard-{uuid.uuid4().hex}.json.gz"
        temporary = self.folder / f".{name}.tmp"
        with gzip.open(temporary, "wt", encoding="utf-8") as handle:
            json.dump({"setting": json.loads(self._setting), "chains": new}, handle, separators=(",", ":"))
        os.replace(temporary, self.folder / name)
        records.update(new)
        return len(new)
