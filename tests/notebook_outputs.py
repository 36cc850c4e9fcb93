"""The notebooks' committed outputs: run both notebooks in smoke mode and save them with what they printed and drew.

    python tests/notebook_outputs.py      # rewrites notebooks/*.ipynb with the outputs of a fresh smoke run

A smoke run (`ABAG_SMOKE=1`: tiny encoders, a small slice of the example data, 2 epochs, on a CPU) in a kernel
started from this interpreter with abag imported from the wheel built from this checkout (`built_wheel`), as
tests/test_notebook.py and tests/test_notebook_maturation.py run them. The saved
outputs say nothing that depends on this machine: the run folder is written as the folder a plain run uses
(`runs/...`), the checkout as `.`, installed packages (the wheel's too) as `<site-packages>`, and cells carry no
timing metadata.
`printed_lines` is what the tests compare between the committed notebooks and a fresh run: every printed line,
with its numbers masked (timings and the last digits of a loss differ between machines; the lines do not), and
with torch's build tag and the residues of a suggested mutation masked (other releases rank near-equal mutants
in another order) and runs of spaces collapsed (column padding); table displays (a DataFrame's HTML and its
plain-text fallback) and warnings raised inside other packages are left out.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

from built_wheel import built_wheel

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
TRAINING = NOTEBOOKS / "colab_training_v2.7.ipynb"
MATURATION = NOTEBOOKS / "affinity_maturation_v2.7.ipynb"
# The run folder a smoke run outside the test would use (ABAG_RUN_DIR unset): what saved outputs show instead of
# the temporary folder the run really used.
RUN_FOLDER = {TRAINING.name: "runs/notebook_smoke", MATURATION.name: "runs/maturation/round_1"}


def kernel_manager(folder: Path):
    """A kernel running this very interpreter, from a kernelspec that exists only for this run."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = folder / "kernels" / "abag-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "abag test", "language": "python"}))
    return KernelManager(kernel_name="abag-test",
                         kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(folder / "kernels")]))


def smoke_environment(run_dir: Path) -> dict:
    """The environment of a smoke run: ABAG_SMOKE, the run folder, abag from the built wheel (first on
    PYTHONPATH), and nothing of this machine's caches."""
    site = str(built_wheel()[1])
    path = os.pathsep.join([site, *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "ABAG_SMOKE": "1", "ABAG_RUN_DIR": str(run_dir), "PYTHONPATH": path}
    for name in ("ABAG_CACHE_DIR", "HF_HOME"):  # the notebook puts the smoke cache inside the run folder
        env.pop(name, None)
    return env


def execute(path: Path, run_dir: Path, folder: Path, record_timing: bool = True, notebook=None):
    """Run the notebook at `path` (or `notebook`, read from it) top to bottom in smoke mode; returns it executed."""
    import nbclient
    import nbformat

    notebook = notebook if notebook is not None else nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, km=kernel_manager(folder), timeout=600, record_timing=record_timing,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(env=smoke_environment(run_dir))
    return notebook


def _site_packages() -> list[str]:
    import site
    import sysconfig

    found = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages(),
             str(built_wheel()[1])}
    return sorted(found, key=len, reverse=True)


def sanitise_text(text: str, run_dir: Path, name: str) -> str:
    """`text` without this machine: the run folder as a plain run names it, the checkout as `.`."""
    for real in sorted({str(run_dir), str(Path(run_dir).resolve())}, key=len, reverse=True):
        text = text.replace(real, RUN_FOLDER[name])
    for packages in _site_packages():
        text = text.replace(packages, "<site-packages>")
    return text.replace(str(REPO), ".")


def sanitise(notebook, run_dir: Path, name: str):
    """The executed `notebook` with machine-specific paths replaced in every text output (in place)."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        for output in cell.outputs:
            if "text" in output:
                output["text"] = sanitise_text(output["text"], run_dir, name)
            for kind in ("text/plain", "text/html", "text/markdown"):
                if kind in output.get("data", {}):
                    output["data"][kind] = sanitise_text(output["data"][kind], run_dir, name)
            if output.get("output_type") == "error":
                output["traceback"] = [sanitise_text(line, run_dir, name) for line in output["traceback"]]
    return notebook


_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")
# What differs between two correct runs on other library releases: torch's build tag (+cpu, +cu124) and which
# mutations a slightly different model ranks first (H:G52R and H:D31H are both "a heavy-chain substitution").
_BUILD_TAG = re.compile(r"(?<=\d)\+[a-z]+\d*")
_MUTATION = re.compile(r"\b([HL]):[A-Z](\d+[A-Z]?)[A-Z*]\b")
_LIBRARY_WARNING = re.compile(r"^(<site-packages>|/\S*site-packages)/\S+:\d+: \w*Warning: ")
_SPACES = re.compile(r" {2,}")  # column alignment: pandas releases pad tables differently


def printed_lines(notebook) -> list[tuple[str, str]]:
    """(cell id, line) for every line the code cells printed (streams and text results), numbers masked as #."""
    lines = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            if "text/html" in output.get("data", {}):
                continue  # a table display: its plain-text fallback wraps columns differently across pandas releases
            text = output.get("text", "") if "text" in output else output.get("data", {}).get("text/plain", "")
            library_warning = False
            for line in str(text).splitlines():
                # A warning raised inside another package (tqdm without widgets, pandas 2.0 casting NaN while
                # writing a CSV) and the source line Python prints under it: that package's, not abag's.
                if _LIBRARY_WARNING.match(line) or (library_warning and line.startswith(" ")):
                    library_warning = True
                    continue
                library_warning = False
                if line.strip():
                    line = _MUTATION.sub(r"\1:X\2X", _BUILD_TAG.sub("", line.rstrip()))
                    lines.append((cell.get("id"), _SPACES.sub(" ", _NUMBER.sub("#", line))))
    return lines


def refresh(path: Path) -> None:
    """Execute the notebook at `path` in smoke mode and write it back with its sanitised outputs."""
    import nbformat

    original = nbformat.read(path, as_version=4)
    metadata = json.loads(json.dumps(original.metadata))
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        executed = execute(path, run_dir, Path(folder))
        sanitise(executed, run_dir, path.name)
    executed.metadata = nbformat.from_dict(metadata)  # the kernelspec Colab reads, not this test kernel's
    nbformat.validate(executed)
    nbformat.write(executed, path)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    print(f"{path.relative_to(REPO)}: {sum(c.cell_type == 'code' for c in executed.cells)} code cells run, "
          f"{len(errors)} errors")


if __name__ == "__main__":
    for notebook_path in (TRAINING, MATURATION):
        refresh(notebook_path)
