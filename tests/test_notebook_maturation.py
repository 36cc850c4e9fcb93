"""The affinity-maturation notebook: drives abag.suggest, runs one round end to end, suggests mutants of the right
antibody, and is committed with the outputs of that run.

The run uses smoke mode (ABAG_SMOKE=1: the synthetic demo, a tiny checkpoint trained in seconds) in a kernel
started from this interpreter, as tests/test_notebook.py runs the training notebook (tests/notebook_outputs.py).
"""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from built_wheel import built_wheel
from notebook_outputs import execute, printed_lines, sanitise
from test_notebook import (
    committed_from_a_smoke_run,
    guarded_by_colab_check,
    is_pip_magic,
    python_source,
)

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "affinity_maturation_v2.7.ipynb"


def read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def code_sources(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_notebook_is_valid_parses_and_is_committed_with_its_smoke_outputs():
    notebook = read_notebook()
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            ast.parse(python_source(cell.source))
    committed_from_a_smoke_run(notebook, ["plot"])


def test_sections_walk_through_one_round_after_a_user_guide():
    markdown = [cell.source for cell in read_notebook().cells if cell.cell_type == "markdown"]
    assert markdown[0].startswith("# Affinity maturation with abag — v2.7")
    for part in ("**What this notebook does.**", "**How to run it**", "**What to expect.**", "Cancel upload",
                 "closest to the consensus", "smoke run"):
        assert part in markdown[0], part
    headings = [line for text in markdown for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## 1. Setup", "## 2. Measured variants", "## 3. Train", "## 4. Suggest", "## 5. Export"]


def test_notebook_drives_abag_suggest_and_guards_colab_code():
    sources = "\n".join(code_sources(read_notebook()))
    for call in ("suggest_batch(", "SuggestConfig(", "single_mutants(", "combine_helpful(", "abag.load_pairs(",
                 "abag.load_trained_model("):
        assert call in sources, call
    assert "class " not in sources and "RidgeCV" not in sources  # the models live in abag, not here
    for source in code_sources(read_notebook()):
        tree = ast.parse(python_source(source))
        for node in ast.walk(tree):
            colab = isinstance(node, ast.ImportFrom) and (node.module or "").startswith("google.colab")
            if colab or is_pip_magic(node):
                assert guarded_by_colab_check(tree, node), ast.unparse(node)
    assert '"google.colab" in sys.modules' in sources
    assert not re.search(r"install[^\n]*\btorch\b", sources), "the notebook must not (re)install torch"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maturation")
    run_dir = folder / "round"
    return execute(NOTEBOOK, run_dir, folder), run_dir


def cell_text(notebook, cell_id: str) -> str:
    (cell,) = [c for c in notebook.cells if c.get("id") == cell_id]
    return "".join(output.get("text", "") for output in cell.outputs)


def test_the_smoke_round_imports_abag_from_the_built_wheel(executed):
    notebook, _ = executed
    imported = "".join(cell_text(notebook, c.get("id")) for c in notebook.cells if c.cell_type == "code")
    assert f"from {built_wheel()[1] / 'abag'}" in imported


def test_smoke_round_exports_a_batch_of_distinct_new_candidates(executed):
    notebook, run_dir = executed
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    batch = pd.read_csv(run_dir / "batch.csv", keep_default_na=False)
    assert len(batch) == 12 and batch["heavy"].is_unique and list(batch["pick"]) == list(range(1, 13))
    assert batch["mutations"].str.len().gt(0).all()  # the parent itself was measured, never suggested
    report = json.loads((run_dir / "report.json").read_text())
    assert report["measured"]["n"] == 25 and report["candidates"]["measured_dropped"] == 24
    assert [s["name"] for s in report["model"]["scores"]] == ["onehot_ridge", "embedding_ridge", "gp", "checkpoint"]
    assert "variant model:" in cell_text(notebook, "suggest") and "tiny (smoke test)" in cell_text(notebook,
                                                                                                    "checkpoint")
    images = [c.get("id") for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images == ["plot"]


def test_the_committed_outputs_are_what_a_fresh_run_prints(executed):
    notebook, run_dir = executed
    fresh = sanitise(copy.deepcopy(notebook), run_dir, NOTEBOOK.name)
    assert printed_lines(read_notebook()) == printed_lines(fresh)


def with_settings(**values) -> object:
    """The notebook with values set in its first code cell, as a user types them."""
    notebook = read_notebook()
    settings = next(cell for cell in notebook.cells if cell.get("id") == "settings")
    for name, value in values.items():
        settings.source, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", settings.source, flags=re.M)
        assert n == 1, name
    return notebook


OTHER_HEAVY = ("QVQLQESGPGLVKPSETLSLTCTVSGGSISSYYWSWIRQPPGKGLEWIGYIYYSGSTNYNPSLKSRVTISVDTSKNQFSLKLSSVTAADTAVYYC"
               "ARDRGYSSGWYFDYWGQGTLVTVSS")  # a human VH unlike the demo parent (EVQLVFSGGG…); CDR-H3 ARDRGYSSGWYFDY


def another_antibody_scan(path: Path) -> pd.DataFrame:
    """Measured single mutants of OTHER_HEAVY in its CDR-H3 (residues 96-109), the antibody itself not measured."""
    import abag

    example = abag.datasets.example_pairs()
    rng = np.random.default_rng(3)
    rows = []
    for place in range(95, 109):
        residue = next(a for a in "WYFHKRDE" if a != OTHER_HEAVY[place])
        rows.append({"heavy": OTHER_HEAVY[:place] + residue + OTHER_HEAVY[place + 1:], "light": example["light"].iloc[5],
                     "antigen": example["antigen"].iloc[5], "pkd": float(7.0 + rng.normal(0, 0.5))})
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False)
    return frame


def test_measured_variants_without_a_parent_give_mutants_of_their_own_antibody(tmp_path):
    """Issue 22: with MEASURED_PATH set and PARENT_PATH empty the notebook made mutants of the demo parent
    (EVQLVFSGGG…) for variants of another antibody. The parent now comes from the measured variants."""
    measured = another_antibody_scan(tmp_path / "measured.csv")
    notebook = execute(NOTEBOOK, tmp_path / "round", tmp_path, notebook=with_settings(
        MEASURED_PATH=str(tmp_path / "measured.csv"), CHECKPOINT_PATH="", PARENT_PATH=""))
    assert not [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    said = cell_text(notebook, "load-measured")
    assert "parent: the measured variant closest to the consensus of 14 measured variants" in said
    assert "1 residue(s) from the consensus" in said and "set PARENT_PATH to choose it yourself" in said
    assert "14 of 14 measured rows are variants of the parent" in said
    assert "(mutants of the parent at H105-H117)" in cell_text(notebook, "candidates")
    batch = pd.read_csv(tmp_path / "round" / "batch.csv", keep_default_na=False)
    assert len(batch) == 12 and not batch["heavy"].isin(measured["heavy"]).any()
    for heavy in batch["heavy"]:  # every pick is a mutant of the measured antibody: one measured mutation away
        assert len(heavy) == len(OTHER_HEAVY) and sum(a != b for a, b in zip(heavy, OTHER_HEAVY)) <= 3
    assert not batch["heavy"].str.startswith("EVQLVFSGGG").any()


def test_a_parent_that_the_measured_variants_do_not_come_from_stops_the_notebook(tmp_path):
    another_antibody_scan(tmp_path / "measured.csv")
    demo_parent = tmp_path / "parent.csv"
    __import__("abag").datasets.example_pairs().iloc[[0]][["heavy", "light", "antigen"]].to_csv(demo_parent,
                                                                                               index=False)
    notebook = with_settings(MEASURED_PATH=str(tmp_path / "measured.csv"), PARENT_PATH=str(demo_parent))
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="none of the measured rows is a variant of "
                                                                      "the parent"):
        execute(NOTEBOOK, tmp_path / "round", tmp_path, notebook=notebook)
    assert not (tmp_path / "round" / "batch.csv").exists()
