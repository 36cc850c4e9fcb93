"""The package's layout rules: a docstring per module, short functions, a public API that imports.

Modules have no line cap: a file is split because it holds two jobs, not to stay under a count."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import abag

PACKAGE = Path(abag.__file__).parent
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _builds_a_parser(node: ast.AST) -> bool:
    """argparse construction is exempt: a function most of whose calls add options (`add_argument`,
    `add_parser`, or `config_option`, which adds one generated from a config field)."""
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
    names = [c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", "") for c in calls]
    building = [n for n in names if n in ("add_argument", "add_parser", "add_mutually_exclusive_group",
                                          "add_argument_group", "config_option", "add")]
    option_types = [n for n in names if n in ("whole_number", "number")]  # the type= of an option being added
    return len(building) >= 10 and len(building) >= (len(calls) - len(option_types)) / 2


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_says_what_it_is_for(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_over_the_limit(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES and not _builds_a_parser(node)]
    assert not long, f"{path.name}: {', '.join(long)}"


def test_every_public_name_imports():
    for name in abag.__all__:
        assert getattr(abag, name) is not None, name
    namespace: dict = {}
    exec(f"from abag import {', '.join(abag.__all__)}", namespace)
    assert set(abag.__all__) <= set(namespace)


def test_every_module_imports_without_side_effects_on_torch_seed():
    import torch

    torch.manual_seed(1234)
    expected = torch.rand(1)
    torch.manual_seed(1234)
    for info in pkgutil.walk_packages(abag.__path__, "abag."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    assert torch.equal(torch.rand(1), expected), "importing an abag module touched the global RNG"


def test_the_exemption_rule_is_not_a_blanket():
    long_plain = "def f():\n" + "".join(f"    x{i} = {i}\n" for i in range(90))
    assert not _builds_a_parser(ast.parse(long_plain).body[0])
    parser = "def p(s):\n" + "".join(f"    s.add_argument('--a{i}')\n" for i in range(90))
    assert _builds_a_parser(ast.parse(parser).body[0])
