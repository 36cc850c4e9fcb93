"""The affinity-maturation notebook: committed clean, drives abag.suggest, and runs one round end to end.

The run uses smoke mode (ABAG_SMOKE=1: the synthetic demo, a tiny checkpoint trained in seconds) in a kernel
started from this interpreter, as tests/test_notebook.py runs the training notebook.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from test_notebook import (
    guarded_by_colab_check,
    is_pip_magic,
    kernel_manager,
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


def test_notebook_is_valid_clean_and_parses():
    notebook = read_notebook()
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.get("id")
            ast.parse(python_source(cell.source))


def test_sections_walk_through_one_round_and_link_back():
    markdown = [cell.source for cell in read_notebook().cells if cell.cell_type == "markdown"]
    assert markdown[0].startswith("# Affinity maturation with abag — v2.7")
    for link in ("../README.md", "../bench/RESULTS.md"):
        assert f"]({link})" in markdown[0] and (NOTEBOOKS / link).resolve().is_file()
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
    notebook = read_notebook()
    env = {**os.environ, "ABAG_SMOKE": "1", "ABAG_RUN_DIR": str(run_dir)}
    env.pop("ABAG_CACHE_DIR", None)
    client = nbclient.NotebookClient(notebook, km=kernel_manager(folder), timeout=600,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(env=env)
    return notebook, run_dir


def cell_text(notebook, cell_id: str) -> str:
    (cell,) = [c for c in notebook.cells if c.get("id") == cell_id]
    return "".join(output.get("text", "") for output in cell.outputs)


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
