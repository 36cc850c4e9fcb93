"""Every third-party module the package imports is declared in pyproject.toml: at module level in the core
dependencies (a fresh `pip install abag` must import), inside a function in the core or an extra."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

REPO = Path(__file__).resolve().parents[1]


def third_party_imports() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level imports, imports inside functions): top-level module name -> the files importing it."""
    module_level: dict[str, set[str]] = {}
    inside: dict[str, set[str]] = {}
    for path in sorted((REPO / "abag").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root == "abag" or root in sys.stdlib_module_names or root == "__future__":
                    continue
                (module_level if id(node) in top else inside).setdefault(root, set()).add(
                    str(path.relative_to(REPO)))
    return module_level, inside


def declared() -> tuple[set[str], set[str]]:
    """(core dependency names, names in any extra), canonicalised."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    extras = {canonicalize_name(Requirement(r).name)
              for group in project.get("optional-dependencies", {}).values() for r in group}
    return core, extras


def distributions(module: str) -> set[str]:
    found = packages_distributions().get(module)
    assert found, f"{module} is imported by abag but no installed distribution provides it"
    return {canonicalize_name(name) for name in found}


def test_module_level_imports_are_core_dependencies():
    module_level, _ = third_party_imports()
    core, _ = declared()
    assert {"numpy", "torch", "threadpoolctl"} <= set(module_level)  # the walk finds what abag really imports
    missing = {module: sorted(files) for module, files in module_level.items() if not distributions(module) & core}
    assert not missing, f"imported at module level but not in [project].dependencies: {missing}"


def test_imports_inside_functions_are_declared_somewhere():
    _, inside = third_party_imports()
    core, extras = declared()
    assert "openpyxl" in inside  # the optional readers import their library where they need it
    missing = {module: sorted(files) for module, files in inside.items()
               if not distributions(module) & (core | extras)}
    assert not missing, f"imported but declared nowhere in pyproject.toml: {missing}"
