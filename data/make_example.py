"""Write abag/resources/example_pairs.csv: a small synthetic antibody–antigen pKd table (seed 0).

The table is the Quickstart's offline example. The copy inside the package is the source (it ships in the wheel:
`abag.datasets.example_pairs()`); data/example_pairs.csv is the same file for commands run in a checkout, and
tests/test_datasets.py checks that the two are identical. It is synthetic: antigens are random sequences,
antibodies are point mutants of a few template variable domains, and pKd follows a hidden rule
(residue counts of the antibody plus an antigen offset, plus noise) so a model can learn something.

    python data/make_example.py              # writes abag/resources/example_pairs.csv and data/example_pairs.csv
    python data/make_example.py OUTPUT_CSV   # writes OUTPUT_CSV only
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

SEED = 0
N_ROWS = 240
VHH_FRACTION = 0.10
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
PKD_RANGE = (5.0, 11.5)

# Public therapeutic variable domains (trastuzumab, adalimumab) and a generic VHH framework.
HEAVY_TEMPLATES = (
    "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMDYWGQGTLVTVSS",
    "EVQLVESGGGLVQPGRSLRLSCAASGFTFDDYAMHWVRQAPGKGLEWVSAITWNSGHIDYADSVEGRFTISRDNAKNSLYLQMNSLRAEDTAVYYCAKVSYLSTASSLDYWGQGTLVTVSS",
)
LIGHT_TEMPLATES = (
    "DIQMTQSPSSLSASVGDRVTITCRASQDVNTAVAWYQQKPGKAPKLLIYSASFLYSGVPSRFSGSRSGTDFTLTISSLQPEDFATYYCQQHYTTPPTFGQGTKVEIK",
    "DIQMTQSPSSLSASVGDRVTITCRASQGIRNYLAWYQQKPGKAPKLLIYAASTLQSGVPSRFSGSGSGTDFTLTISSLQPEDVATYYCQRYNRAPYTFGQGTKVEIK",
)
VHH_TEMPLATE = "QVQLQESGGGLVQAGGSLRLSCAASGRTFSSYAMGWFRQAPGKEREFVAAISWSGGSTYYADSVKGRFTISRDNAKNTVYLQMNSLKPEDTAVYYCAAGRYGSSWYPDSYDYWGQGTQVTVSS"

# The hidden rule: weights per residue count of heavy + light (standardised below).
RESIDUE_WEIGHTS = {"Y": 0.45, "W": 0.6, "R": 0.3, "D": -0.35, "E": -0.35, "P": -0.2}


def random_protein(rng: random.Random, length: int) -> str:
    return "M" + "".join(rng.choice(AMINO_ACIDS) for _ in range(length - 1))


def make_antigens(rng: random.Random) -> list[str]:
    """Six antigens, 60–150 residues; the last has two chains joined by '|'."""
    antigens = [random_protein(rng, rng.randint(60, 150)) for _ in range(5)]
    antigens.append(random_protein(rng, rng.randint(60, 80)) + "|" + random_protein(rng, rng.randint(50, 70)))
    return antigens


def point_mutants(rng: random.Random, template: str, n_mutations: int) -> str:
    residues = list(template)
    for position in rng.sample(range(len(residues)), n_mutations):
        residues[position] = rng.choice(AMINO_ACIDS)
    return "".join(residues)


def vary_cdr3(rng: random.Random, sequence: str, shortest: int, longest: int) -> str:
    """Change the length inside CDR3 (just before the last ~11 residues), as real repertoires do."""
    target = rng.randint(shortest, longest)
    cut = len(sequence) - 11
    while len(sequence) > target:
        sequence = sequence[: cut - 1] + sequence[cut:]
        cut -= 1
    while len(sequence) < target:
        sequence = sequence[:cut] + rng.choice(AMINO_ACIDS) + sequence[cut:]
    return sequence


def make_antibody(rng: random.Random) -> tuple[str, str]:
    if rng.random() < VHH_FRACTION:
        return vary_cdr3(rng, point_mutants(rng, VHH_TEMPLATE, rng.randint(4, 12)), 114, 125), ""
    heavy = vary_cdr3(rng, point_mutants(rng, rng.choice(HEAVY_TEMPLATES), rng.randint(4, 14)), 110, 125)
    light = vary_cdr3(rng, point_mutants(rng, rng.choice(LIGHT_TEMPLATES), rng.randint(2, 8)), 105, 110)
    return heavy, light


def hidden_score(heavy: str, light: str) -> float:
    chains = heavy + light
    return sum(weight * chains.count(residue) for residue, weight in RESIDUE_WEIGHTS.items())


def make_rows(rng: random.Random) -> list[dict[str, str]]:
    antigens = make_antigens(rng)
    offsets = [rng.uniform(-1.2, 1.2) for _ in antigens]
    pairs = [(make_antibody(rng), rng.randrange(len(antigens))) for _ in range(N_ROWS)]
    scores = [hidden_score(heavy, light) for (heavy, light), _ in pairs]
    mean = sum(scores) / len(scores)
    spread = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    rows = []
    for ((heavy, light), antigen), score in zip(pairs, scores):
        pkd = 8.25 + offsets[antigen] + 1.1 * (score - mean) / spread + rng.gauss(0.0, 0.3)
        pkd = min(max(pkd, PKD_RANGE[0]), PKD_RANGE[1])
        rows.append({"heavy": heavy, "light": light, "antigen": antigens[antigen], "pkd": f"{pkd:.2f}"})
    return rows


def write_example(path: Path) -> None:
    rows = make_rows(random.Random(SEED))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["heavy", "light", "antigen", "pkd"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


PACKAGE_COPY = Path(__file__).resolve().parents[1] / "abag" / "resources" / "example_pairs.csv"
CHECKOUT_COPY = Path(__file__).resolve().with_name("example_pairs.csv")

if __name__ == "__main__":
    outputs = [Path(sys.argv[1])] if len(sys.argv) > 1 else [PACKAGE_COPY, CHECKOUT_COPY]
    for output in outputs:
        write_example(output)
        print(f"wrote {output}")
