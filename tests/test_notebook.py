"""The Colab notebook: runs in a fresh Colab without edits, drives abag without a model or loop of its own, runs end
to end, and is committed with the outputs of that run.

The run uses smoke mode (ABAG_SMOKE=1: tiny encoders, 120 example rows, 2 epochs on CPU) in a kernel started
from this interpreter, so it works in a fresh venv without a registered Jupyter kernel (tests/notebook_outputs.py,
which also writes the committed outputs).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import dataclasses
import io
import json
import re
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch
from built_wheel import built_wheel
from conftest import synthetic_frame
from notebook_outputs import (  # noqa: F401
    REPO,
    RUN_FOLDER,
    execute,
    kernel_manager,
    printed_lines,
    sanitise,
)

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "colab_training_v2.7.ipynb"
FORBIDDEN_TEXT = ("nn.Module", "optimizer.step", ".backward(", "zero_grad", "torch.optim", "clip_grad")


def read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def code_cells(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def python_source(cell_source: str) -> str:
    """The cell as IPython runs it (magics turned into calls), so `ast` can read it."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell_source)


def enclosing_ifs(tree: ast.AST, node: ast.AST) -> list[ast.If]:
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found = []
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If):
            found.append(node)
    return found


def guarded_by_colab_check(tree: ast.AST, node: ast.AST) -> bool:
    return any("IN_COLAB" in ast.unparse(branch.test) and node in list(_walk_body(branch))
               for branch in enclosing_ifs(tree, node))


def is_pip_magic(node: ast.AST) -> bool:
    """`%pip ...` / `!pip ...`, as IPython rewrites them: get_ipython().run_line_magic("pip", ...) or .system(...)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("run_line_magic", "system") and node.args):
        return False
    first = node.args[0]
    return "pip" in (first.value if isinstance(first, ast.Constant) else ast.unparse(first))


def _walk_body(branch: ast.If):
    for statement in branch.body:  # the `if` side only: an `else:` would run outside Colab
        yield from ast.walk(statement)


# ----------------------------------------------------------------------------------------------- static checks

def test_notebook_is_valid_nbformat_4_with_a_python3_kernel():
    notebook = read_notebook()
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    assert notebook.metadata.kernelspec.name == "python3"


def committed_from_a_smoke_run(notebook, images: list[str]) -> None:
    """Every code cell ran once, in order, without an error; the plots are saved; no path of the machine that ran it."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    assert sum(bool(cell.outputs) for cell in code) >= len(code) - 2  # all but the settings (and folders) print
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert [cell.get("id") for cell in code for o in cell.outputs if "image/png" in o.get("data", {})] == images
    text = json.dumps([cell.outputs for cell in code])
    assert str(REPO) not in text and "/tmp/" not in text and "site-packages/" not in text
    assert all("execution" not in cell.metadata for cell in code)


def test_notebook_is_committed_with_the_outputs_of_a_smoke_run():
    notebook = read_notebook()
    committed_from_a_smoke_run(notebook, ["histogram", "curves", "scatter", "calibration"])
    assert "smoke test: 120 rows" in "".join(o.get("text", "") for c in notebook.cells if c.get("id") == "load-data"
                                             for o in c.outputs)


def test_every_code_cell_parses_as_ipython():
    for source in code_cells(read_notebook()):
        ast.parse(python_source(source))


def test_notebook_defines_no_model_loss_or_training_loop():
    for source in code_cells(read_notebook()):
        for text in FORBIDDEN_TEXT:
            assert text not in source, f"{text!r} in a code cell:\n{source}"
        tree = ast.parse(python_source(source))
        assert not [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)], "a class in the notebook"
        assert not re.search(r"class\s+\w+\s*\(.*Module", source)


def test_notebook_drives_abag():
    sources = "\n".join(code_cells(read_notebook()))
    assert re.search(r"^\s*import abag\b", sources, re.MULTILINE)
    for call in ("abag.load_pairs(", "abag.train(", "abag.train_folds(", "abag.ModelConfig(", "abag.TrainConfig(",
                 "abag.predict_frame(",
                 "abag.evaluation.format_comparison(", "plot_training_curves(", "plot_predicted_vs_measured(",
                 "plot_pkd_histogram("):
        assert call in sources, call


def test_colab_only_code_is_guarded():
    for source in code_cells(read_notebook()):
        tree = ast.parse(python_source(source))
        for node in ast.walk(tree):
            colab_import = (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("google.colab")) or \
                (isinstance(node, ast.Import) and any(a.name.startswith("google.colab") for a in node.names))
            pip_install = is_pip_magic(node)
            if colab_import or pip_install:
                assert guarded_by_colab_check(tree, node), f"not inside `if IN_COLAB`: {ast.unparse(node)}"
    sources = "\n".join(code_cells(read_notebook()))
    assert '"google.colab" in sys.modules' in sources
    assert not re.search(r"install[^\n]*\btorch\b", sources), "the notebook must not (re)install torch"


def test_each_section_has_a_markdown_cell_and_the_first_is_a_user_guide():
    notebook = read_notebook()
    markdown = [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]
    assert markdown[0].startswith("# Antibody–Antigen Binding Prediction — v2.7 (stable)")
    for part in ("**What this notebook does.**", "**How to run it**", "**What to expect.**",
                 "**How long, how much space**", "Runtime → Run all", "Cancel upload", "4.8 GB", "smoke run"):
        assert part in markdown[0], part
    assert "key improvements" not in markdown[0]  # a guide, not a changelog
    headings = [line for text in markdown for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## 1. Setup", "## 2. Data", "## 3. Model and hyperparameters", "## 4. Train",
                        "## 5. Evaluate", "## 6. Export"]


NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.name)
def test_links_work_in_colab_and_nothing_is_a_placeholder(path):
    """Colab opens a notebook alone: a relative link (../README.md) leads nowhere there. No <owner>/<repo> left."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            targets = re.findall(r"\]\(([^)]*)\)", cell.source)
            assert all(t.startswith("https://") for t in targets), (cell.get("id"), targets)
        assert "<owner>" not in cell.source and "<repo>" not in cell.source
    for document in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        assert "<owner>" not in document.read_text(), document


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.name)
def test_abag_installs_from_one_marked_variable_with_a_working_default(path):
    first = next(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")
    assignments = [line for line in first.splitlines() if line.startswith("ABAG_SOURCE =")]
    assert len(assignments) == 1
    source = ast.literal_eval(assignments[0].split("=", 1)[1].split("#")[0].strip())
    assert re.fullmatch(r"git\+https://github\.com/[\w.-]+/[\w.-]+\.git", source)
    # The default is the repository the package metadata names (one place to change it).
    repository = re.search(r'^Repository = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert source == f"git+{repository}.git"
    banner = first.splitlines()[first.splitlines().index(assignments[0]) - 1]
    assert banner.startswith("# ──") and "installs abag" in banner  # clearly marked, at the top
    sources = {nb.name: next(c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code")
               for nb in NOTEBOOK_FILES}
    assert len({re.search(r"^ABAG_SOURCE = (.*?)\s", s, re.M).group(1) for s in sources.values()}) == 1


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.name)
def test_notebooks_import_public_names_only(path):
    """`abag`, its public names and room-level modules (`abag.plots`, `abag.suggest`, `abag.policy`…), never a
    module inside a room such as `abag.folds.members`."""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(python_source(cell.source))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                assert not (name.startswith("abag.") and name.count(".") > 1), (cell.get("id"), name)
        assert not re.search(r"\babag\.[a-z_]+\.[a-z_]+\.\w", cell.source), cell.get("id")  # abag.room.module.x


def fake_colab(monkeypatch, upload=None):
    """`google.colab` as Colab has it: `drive.mount` recorded, `files.upload` returning `upload`."""
    calls = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=lambda *a, **k: calls.append(("mount", a)))
    colab.files = types.SimpleNamespace(upload=lambda: calls.append(("upload",)) or dict(upload or {}))
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    return calls


def test_in_a_fresh_colab_run_all_asks_for_no_drive_and_offers_an_upload(monkeypatch, tmp_path):
    calls = fake_colab(monkeypatch, upload={"my pairs.csv": b"heavy,light,antigen,pkd\n"})
    namespace = {"__name__": "nb"}
    printed = run_cells(["settings", "drive"], namespace)
    assert namespace["IN_COLAB"] and not namespace["USE_DRIVE"]  # no Drive mounted yet: no auth popup
    assert calls == [] and "Google Drive: not used" in printed
    namespace.update(WORK_DIR=tmp_path)
    printed = run_cells(["upload"], namespace)
    assert calls == [("upload",)] and namespace["DATA_PATH"] == str(tmp_path / "my pairs.csv")
    assert (tmp_path / "my pairs.csv").read_bytes() == b"heavy,light,antigen,pkd\n" and "uploaded my pairs.csv" in printed
    calls.clear()
    fake_colab(monkeypatch, upload={})  # Cancel upload: the packaged example
    namespace.update(DATA_PATH="")
    run_cells(["upload"], namespace)
    assert namespace["DATA_PATH"] == ""
    namespace["USE_DRIVE"] = True  # asked for: then Drive is mounted
    drive_calls = fake_colab(monkeypatch)
    run_cells(["drive"], namespace)
    assert drive_calls == [("mount", ("/content/drive",))]


def test_outside_colab_the_upload_is_skipped_and_the_example_ships_with_abag():
    import abag

    namespace = {"__name__": "nb", "abag": abag}
    printed = run_cells(["settings", "upload", "find-data"], namespace)
    assert not namespace["IN_COLAB"] and not namespace["USE_DRIVE"]
    assert "upload: skipped (not running in Colab)" in printed
    assert namespace["DATA_FILE"] == abag.datasets.example_pairs_path()


def test_a_failed_install_prints_what_to_do(monkeypatch):
    fake_colab(monkeypatch)
    magics = []
    shell = types.SimpleNamespace(run_line_magic=lambda *args: magics.append(args))
    monkeypatch.setitem(sys.modules, "abag", None)  # `import abag` fails, as before the install in a fresh runtime
    namespace = {"__name__": "nb", "get_ipython": lambda: shell}
    with pytest.raises(ImportError):
        run_cells(["settings", "install"], namespace)
    (magic,) = magics
    assert magic[0] == "pip" and "git+https://github.com/" in magic[1]
    (line,) = namespace["_printed"].splitlines()
    assert line.startswith("abag could not be installed from ABAG_SOURCE = 'git+https://github.com/") and \
        "set ABAG_SOURCE in the first code cell" in line


# ----------------------------------------------------------------------------------------------- execution

def execute_notebook(run_dir: Path, folder: Path):
    return execute(NOTEBOOK, run_dir, folder)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notebook")
    run_dir = folder / "run"
    return execute_notebook(run_dir, folder), run_dir, folder


def cell_text(notebook, cell_id: str) -> str:
    (cell,) = [c for c in notebook.cells if c.get("id") == cell_id]
    return "".join(output.get("text", "") for output in cell.outputs)


def test_smoke_run_writes_v27_metrics_with_test_metrics(executed):
    notebook, run_dir, _ = executed
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["version"] == "v2.7"
    assert metrics["encoder"]["antibody"] == metrics["encoder"]["antigen"] == "tiny"
    assert metrics["training"]["epochs_run"] == 2
    assert metrics["data"]["split"] == "antigen"
    assert metrics["data"]["n_test"] > 0 and metrics["test"]["n"] == metrics["data"]["n_test"]
    for key in ("spearman", "pearson", "rmse", "mae", "r2", "spearman_ci95"):
        assert key in metrics["test"]
    assert set(metrics["test"]["binder"]) >= {"recall", "precision", "f1", "auroc"}
    hyper = metrics["hyperparameters"]
    assert (hyper["batch_size"], hyper["gradient_accumulation"], hyper["learning_rate"], hyper["dropout"],
            hyper["weight_decay"], hyper["scheduler_factor"], hyper["scheduler_patience"],
            hyper["early_stopping_patience"], hyper["mse_weight"], hyper["class_weight"]) == \
        (16, 8, 1e-3, 0.1, 1e-5, 0.6, 10, 15, 0.7, 0.3)
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / "embedding_cache").is_dir()


def test_smoke_run_prints_reports_and_shows_three_figures(executed):
    notebook, run_dir, _ = executed
    assert "row(s) read" in cell_text(notebook, "load-data")
    assert "epoch   2 |" in cell_text(notebook, "train") and "overfit ratio" in cell_text(notebook, "train")
    assert "new run" in cell_text(notebook, "train")
    assert "train_mean" in cell_text(notebook, "metrics-table")
    images = [cell.get("id") for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if "image/png" in output.get("data", {})]
    assert images == ["histogram", "curves", "scatter", "calibration"]
    errors = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert not errors


def test_the_committed_outputs_are_what_a_fresh_run_prints(executed):
    """The saved outputs come from this code: a fresh smoke run prints the same lines (numbers aside)."""
    notebook, run_dir, _ = executed
    fresh = sanitise(copy.deepcopy(notebook), run_dir, NOTEBOOK.name)
    assert printed_lines(read_notebook()) == printed_lines(fresh)


def test_the_smoke_run_imports_abag_from_the_built_wheel(executed):
    """The smoke run is a user's run: abag comes from the wheel built from this checkout, not from the checkout."""
    notebook, _, _ = executed
    installed = cell_text(notebook, "install")
    assert f"from {built_wheel()[1] / 'abag'}" in installed and str(REPO / "abag") not in installed


def test_smoke_run_exports_predictions(executed):
    _, run_dir, _ = executed
    test_predictions = pd.read_csv(run_dir / "test_predictions.csv")
    new_predictions = pd.read_csv(run_dir / "new_predictions.csv")
    assert len(new_predictions) == len(test_predictions) > 0
    assert new_predictions["pkd_pred"].between(4.0, 14.0).all()
    assert new_predictions["binder_prob"].between(0.0, 1.0).all()


def test_running_all_again_resumes_instead_of_retraining(executed):
    _, run_dir, folder = executed
    first = json.loads((run_dir / "metrics.json").read_text())
    again = execute_notebook(run_dir, folder / "again")
    assert "resuming" in cell_text(again, "train")
    assert "epoch   1 |" not in cell_text(again, "train")  # both epochs were done; nothing is retrained
    second = json.loads((run_dir / "metrics.json").read_text())
    assert second["test"]["spearman"] == pytest.approx(first["test"]["spearman"])
    assert second["training"]["epochs_run"] == 2


# ----------------------------------------------------------------------------------------------- cells run in-process

def run_cells(cell_ids: list[str], namespace: dict) -> str:
    """Execute the named code cells, in order, in `namespace` (as the kernel would); returns what they printed
    (also kept in namespace["_printed"], for a cell that raises)."""
    sources = {cell.get("id"): cell.source for cell in read_notebook().cells if cell.cell_type == "code"}
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            for cell_id in cell_ids:
                exec(compile(python_source(sources[cell_id]), f"<cell {cell_id}>", "exec"), namespace)
    finally:
        namespace["_printed"] = printed.getvalue()
    return printed.getvalue()


def config_namespace(*, gpu: bool, in_colab: bool) -> dict:
    import abag

    return {"abag": abag, "torch": torch, "pd": pd, "SMOKE": False, "IN_COLAB": in_colab, "USE_DRIVE": in_colab,
            "GPU": gpu, "frame": synthetic_frame(n=48, n_antigens=4), "__name__": "nb"}


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA GPU of a given name and compute capability, as torch.cuda reports it (no GPU needed)."""
    def install(name: str, capability: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: capability)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: True)  # true on a T4 too (emulated)

    return install


def test_the_precision_comes_from_the_policy_not_from_is_bf16_supported():
    sources = "\n".join(code_cells(read_notebook()))
    assert "is_bf16_supported" not in sources
    assert "choose_precision(" in sources


@pytest.mark.parametrize("name, capability, says", [
    ("NVIDIA A100-SXM4-40GB", (8, 0), "abag trains in bf16"),
    ("NVIDIA H100 80GB HBM3", (9, 0), "abag trains in bf16"),
])
def test_on_a_gpu_the_notebook_says_the_precision_it_trains_in(fake_gpu, name, capability, says):
    fake_gpu(name, capability)
    namespace = config_namespace(gpu=True, in_colab=True)
    printed = run_cells(["config"], namespace)
    assert says in printed and name in printed
    assert namespace["PRECISION"].name == "bf16" and not namespace["PRECISION"].needs_scaler
    assert (namespace["ANTIBODY_ENCODER"], namespace["ANTIGEN_ENCODER"]) == \
        ("Exscientia/IgT5_unpaired", "facebook/esm2_t33_650M_UR50D")
    assert namespace["ENCODERS"] == ["Exscientia/IgT5_unpaired"]  # the antibody-only head loads no antigen encoder
    assert "antigen encoder: none (the antibody_only head does not read the antigen" in printed
    assert "NOTE" not in printed and "WARNING" not in printed


def test_a_t4_with_a_t5_encoder_warns_and_trains_in_fp32_before_any_download(fake_gpu, monkeypatch):
    fake_gpu("Tesla T4", (7, 5))
    namespace = config_namespace(gpu=True, in_colab=True)
    printed = run_cells(["config"], namespace)
    warning = printed.splitlines()[0]
    assert warning.startswith("WARNING: Exscientia/IgT5_unpaired is a T5 encoder, and T5 encoders overflow in fp16")
    assert "trains in fp32 instead" in warning and "facebook/esm2_t33_650M_UR50D" in warning
    assert "Nothing has been downloaded yet" in warning
    assert namespace["PRECISION"].name == "fp32" and namespace["train_config"].mixed_precision is False
    assert "abag trains in fp32 on the Tesla T4" in printed
    # An ESM-2 antibody encoder keeps fp16 with a gradient scaler on the same GPU.
    source = dict((c.get("id"), c.source) for c in read_notebook().cells)["config"]
    monkeypatch.setattr(sys.modules[__name__], "read_notebook", lambda: _with_cell(
        "config", source.replace('ANTIBODY_ENCODER = "Exscientia/IgT5_unpaired"',
                                 'ANTIBODY_ENCODER = "facebook/esm2_t33_650M_UR50D"')))
    namespace = config_namespace(gpu=True, in_colab=True)
    printed = run_cells(["config"], namespace)
    assert "WARNING" not in printed and "abag trains in fp16 with a gradient scaler" in printed
    assert namespace["PRECISION"].name == "fp16" and namespace["PRECISION"].needs_scaler


def _with_cell(cell_id: str, source: str):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    next(cell for cell in notebook.cells if cell.get("id") == cell_id).source = source
    return notebook


def test_colab_without_a_gpu_falls_back_to_antiberty_and_says_so():
    namespace = config_namespace(gpu=False, in_colab=True)
    printed = run_cells(["config"], namespace)
    assert namespace["ANTIBODY_ENCODER"] == namespace["ANTIGEN_ENCODER"] == "antiberty"
    assert printed.startswith("NOTE: this Colab runtime has no GPU") and "Change runtime type" in printed
    assert "abag trains in fp32 on the CPU" in printed


def test_outside_colab_without_a_gpu_uses_antiberty_without_the_colab_note():
    namespace = config_namespace(gpu=False, in_colab=False)
    printed = run_cells(["config"], namespace)
    assert namespace["ANTIBODY_ENCODER"] == "antiberty" and "NOTE" not in printed


def test_colab_without_a_gpu_installs_the_offline_extra():
    namespace = {"Path": Path, "SMOKE": False, "IN_COLAB": False, "__name__": "nb"}
    source = python_source(dict((c.get("id"), c.source) for c in read_notebook().cells)["install"])
    definitions = ast.parse(source)
    definitions.body = [node for node in definitions.body if isinstance(node, ast.FunctionDef)]
    exec(compile(definitions, "<install>", "exec"), namespace)
    namespace["NEEDS_ANTIBERTY"] = True
    assert namespace["pip_requirement"]("git+https://github.com/lab/abag.git@dev") == \
        "abag[offline] @ git+https://github.com/lab/abag.git@dev"
    assert namespace["pip_requirement"]("/content/drive/MyDrive/abag-repo") == \
        "abag[offline] @ file:///content/drive/MyDrive/abag-repo"
    namespace["NEEDS_ANTIBERTY"] = False
    assert namespace["pip_requirement"]("git+https://github.com/lab/abag.git") == "git+https://github.com/lab/abag.git"


def test_the_drive_estimate_counts_the_encoders_the_head_reads_and_one_vector_per_distinct_chain(fake_gpu):
    fake_gpu("Tesla T4", (7, 5))
    namespace = config_namespace(gpu=True, in_colab=True)
    printed = run_cells(["config", "storage"], namespace)
    space, frame = namespace["space"], namespace["frame"]
    antibody = set(frame["heavy"]) | {c for c in frame["light"] if c}
    antigen = {c for a in frame["antigen"] for c in a.split("|")}
    # The default antibody-only head: IgT5 alone (fp32), no antigen encoder, no antigen chains in the cache; region
    # pooling keeps five vectors per antibody chain (the domain, its frameworks, CDR1, CDR2, CDR3).
    assert namespace["model_config"].pooling == "regions"
    assert space.loc["models (HF_HOME)", "bytes"] == pytest.approx(1.21e9 * 4)
    assert space.loc["models (HF_HOME)", "size"] == "4.8 GB"
    assert space.loc["embedding cache", "bytes"] == len(antibody) * 1024 * 5 * 4
    assert "models to download: Exscientia/IgT5_unpaired\n" in printed
    assert set(space["where"]) == {"Google Drive"}
    # A head that reads the antigen adds ESM-2 650M and the antigen chains.
    namespace["model_config"] = dataclasses.replace(namespace["model_config"], fusion="interaction", pooling="mean")
    run_cells(["storage"], namespace)
    space = namespace["space"]
    assert space.loc["models (HF_HOME)", "bytes"] == pytest.approx((1.21e9 + 0.65e9) * 4)
    assert space.loc["models (HF_HOME)", "size"] == "7.4 GB"
    assert space.loc["embedding cache", "bytes"] == (len(antibody) * 1024 + len(antigen) * 1280) * 4


# ----------------------------------------------------------------------------------------------- export edge cases

EXPORT_CELLS = ["split-sizes", "metrics-table", "curves", "scatter", "outputs", "predict-new"]


def trained_run(folder: Path, encoders: dict, fractions: tuple[float, float, float]):
    import abag

    frame = synthetic_frame(n=48, n_antigens=6, seed=4)
    result = abag.train(frame, folder, abag.ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny"),
                        abag.TrainConfig(epochs=1, split="random", split_fractions=fractions, progress=False,
                                         cache_dir=None),
                        encoders=encoders, log=lambda _: None)
    return frame, result


def export_namespace(run_dir: Path, frame, result) -> dict:
    import abag
    from abag.plots import (
        plot_pkd_histogram,
        plot_predicted_vs_measured,
        plot_training_curves,
    )

    return {"abag": abag, "pd": pd, "RUN_DIR": run_dir, "frame": frame, "result": result, "display": lambda *_: None,
            "plot_pkd_histogram": plot_pkd_histogram, "plot_training_curves": plot_training_curves,
            "plot_predicted_vs_measured": plot_predicted_vs_measured}


def test_evaluate_and_export_cells_survive_a_split_without_a_test_set(tmp_path, monkeypatch, tiny_encoders):
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    frame, result = trained_run(run_dir, tiny_encoders, (0.7, 0.3, 0.0))
    assert result.metrics["test"] is None and not (run_dir / "test_predictions.csv").exists()  # really no test set
    printed = run_cells(EXPORT_CELLS, export_namespace(run_dir, frame, result))
    assert "no test set" in printed and "not written: the split has no test set" in printed
    assert "val Spearman" in printed  # the summary falls back to validation
    new_predictions = pd.read_csv(run_dir / "new_predictions.csv")
    assert len(new_predictions) == (result.split_assignment == "val").sum() > 0  # validation pairs instead
    assert new_predictions["pkd_pred"].between(4.0, 14.0).all()


def test_export_cell_survives_metrics_without_a_spearman_interval(tmp_path, monkeypatch, tiny_encoders):
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    frame, result = trained_run(run_dir, tiny_encoders, (0.6, 0.2, 0.2))
    saved = json.loads((run_dir / "metrics.json").read_text())
    for part in ("val", "test"):  # e.g. a metrics.json from a run evaluated without bootstrap
        assert "spearman_ci95" in saved[part]
        del saved[part]["spearman_ci95"]
        result.metrics[part].pop("spearman_ci95", None)
    (run_dir / "metrics.json").write_text(json.dumps(saved))
    printed = run_cells(["metrics-table", "outputs"], export_namespace(run_dir, frame, result))
    summary = [line for line in printed.splitlines() if line.startswith("metrics.json (version")]
    assert len(summary) == 1 and "test Spearman" in summary[0] and "[" not in summary[0]


def train_namespace(run_dir: Path, frame, folds) -> dict:
    """What the train cell reads: the run folder, the table, its load report, the configs and FOLDS."""
    import abag

    report = type("Report", (), {"n_rows_read": len(frame), "rejected": [], "n_outside_model_range": 0,
                                 "n_censored": 0})()
    return {"abag": abag, "RUN_DIR": run_dir, "frame": frame, "report": report, "DATA_FILE": "pairs.csv",
            "FOLDS": folds, "model_config": abag.ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny",
                                                             hidden_dim=16),
            "train_config": abag.TrainConfig(epochs=1, progress=False)}


def test_train_cell_falls_back_to_one_split_and_resumes_a_run_as_its_kind(tmp_path, monkeypatch):
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    few = synthetic_frame(n=48, n_antigens=4)  # 4 antigen clusters: too few for FOLDS = 5
    namespace = train_namespace(tmp_path / "few", few, 5)
    printed = run_cells(["train"], namespace)
    assert "cannot make 5 folds" in printed and namespace["FOLDS"] is None
    assert (tmp_path / "few" / "checkpoints" / "last.pt").exists() and not (tmp_path / "few" / "folds.json").exists()
    # Run all again with the default FOLDS = 5: the single-split run is resumed as one, not refused.
    again = train_namespace(tmp_path / "few", few, 5)
    printed = run_cells(["train"], again)
    assert "resuming" in printed and again["FOLDS"] is None and "folds" not in again["result"].metrics
