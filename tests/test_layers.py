"""The package's layering: rooms import only downwards (import-linter's contract in pyproject.toml), no import
circles, imports at module top, and the 2.7 module paths still import for one release."""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

import abag

PACKAGE = Path(abag.__file__).parent  # the imported package: the checkout's, or an installed copy (.ci/compat)
REPO = Path(__file__).resolve().parents[1]  # where the contract (pyproject.toml) lives


def test_the_layers_contract_holds(monkeypatch):
    monkeypatch.chdir(REPO)
    assert lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True) == 0


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root), on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child), on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_circles():
    assert _cycles(grimp.build_graph("abag")) == []


def test_the_cycle_finder_finds_a_circle(tmp_path, monkeypatch):
    for name, imports in {"a": "from loopy import b", "b": "from loopy import c", "c": "from loopy import a"}.items():
        (tmp_path / "loopy").mkdir(exist_ok=True)
        (tmp_path / "loopy" / f"{name}.py").write_text(imports + "\n")
    (tmp_path / "loopy" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("loopy", cache_dir=None)) == [["loopy.a", "loopy.b", "loopy.c"]]


def _function_imports(path: Path) -> list[str]:
    """Imports inside functions whose line (or the line above) does not say why they are lazy."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    said = " ".join(lines[max(0, inner.lineno - 2):inner.lineno]).lower()
                    if "lazy" not in said:
                        found.append(f"{path.relative_to(PACKAGE)}:{inner.lineno}")
    return found


def test_imports_sit_at_module_top_unless_a_comment_says_why_they_are_lazy():
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in _function_imports(path)]
    assert found == []


@pytest.mark.parametrize("old, new", [("abag.kfold", "abag.folds.members"), ("abag.train", "abag.training.run"),
                                      ("abag.splits", "abag.data.splits"), ("abag.encoders", "abag.encoding.loader")])
def test_old_module_paths_import_with_a_deprecation_warning(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new):
        module = importlib.import_module(old)
    assert set(importlib.import_module(new).__all__ if hasattr(importlib.import_module(new), "__all__") else []) \
        <= set(vars(module))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert callable(abag.train) and abag.train.__call__  # the function stays usable after `import abag.train`
