"""The README's examples run as written."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".ci"))

from readme_commands import quickstart_commands  # noqa: E402

README = (REPO / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    return README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_quickstart_has_exactly_two_commands_install_then_train_and_test():
    first, second = quickstart_commands(README)
    assert len(quickstart_commands(README)) == 2
    assert first.startswith("pip install") and "abag train --data data/example_pairs.csv" in first
    assert "--encoder antiberty" in first or "--encoder tiny" in first
    assert second.startswith("pip install") and "pytest" in second
    assert (REPO / "data" / "example_pairs.csv").exists()


def test_quickstart_train_arguments_are_accepted_by_the_cli():
    from abag.cli import build_parser

    first = quickstart_commands(README)[0]
    arguments = shlex.split(first.split("&&", 1)[1])
    assert arguments[0] == "abag"
    parsed = build_parser().parse_args(arguments[1:])
    assert parsed.command == "train" and Path(REPO / parsed.data).exists()


def test_python_api_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", section("Python API"), re.S).group(1)
    (tmp_path / "data").symlink_to(REPO / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    assert len(namespace["predictions"]) == 5
    assert namespace["predictions"]["pkd_pred"].between(4, 14).all()
    assert namespace["result"].metrics["data"]["split"] == "antigen"
