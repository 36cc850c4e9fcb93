"""The example table ships inside the package (`abag.datasets`), identical to the checkout's data/ copy."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_example_pairs_ship_inside_the_package():
    import abag

    path = abag.datasets.example_pairs_path()
    assert path.parent == Path(abag.__file__).parent / "resources"
    assert path.read_bytes() == (REPO / "data" / "example_pairs.csv").read_bytes()  # the checkout's copy
    frame = abag.datasets.example_pairs()
    assert len(frame) == 240 and list(frame.columns[:4]) == ["heavy", "light", "antigen", "pkd"]
    assert frame["pkd"].between(5, 11.5).all()

