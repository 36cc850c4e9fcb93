"""README.md and docs/*.md work as written: the Quickstart, links and anchors, Python blocks, `abag` command lines.

Conventions the pages follow (and these tests enforce):
- Every ```python block runs, in a fresh folder with `data/` linked and `ABAG_CACHE_DIR` set. A block that cannot
  run here (a GPU, a hub model, the network) starts with the line `# not run: <the reason>`.
- Every `abag …` line in a ```bash block (backslash continuations joined; the `-m abag …` part of a `torchrun` or
  `python -m abag` line; each part of an `&&` chain) is accepted by `abag.cli.build_parser()`. Lines with a
  `<placeholder>` are skipped, so write real-looking file names instead.
- Relative links point to files that exist, and an `#anchor` to a heading of that file (GitHub's anchor rules).
- Each docs page opens with `# Title`, then one line that says what it covers; the README links every page.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".ci"))

from readme_commands import quickstart_commands  # after the sys.path line

README_PATH = REPO / "README.md"
README = README_PATH.read_text(encoding="utf-8")
DOC_PAGES = sorted((REPO / "docs").glob("*.md"))
PAGES = [README_PATH, *DOC_PAGES]
README_MAX_LINES = 250
NOT_RUN = re.compile(r"#\s*not run\b(.*)")
NOT_RUN_REASON = re.compile(r"#\s*not run:\s*(\w.{4,})")   # "# not run: needs a GPU"
PLACEHOLDER = re.compile(r"<[^<>\s]+>")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# Options of other tools that the pages mention (pip, torchrun, .ci/compat); everything else that looks like
# `--option` must be an option of some abag command.
OTHER_TOOLS_OPTIONS = {"--index-url", "--standalone", "--nproc_per_node", "--nnodes", "--rdzv_backend",
                       "--rdzv_endpoint", "--full"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int          # 1-based line of the opening fence
    language: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def rel(page: Path) -> str:
    return str(page.relative_to(REPO))


def fenced_blocks(page: Path) -> list[Block]:
    blocks, opened, language, start, lines = [], None, "", 0, []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        match = FENCE.match(line)
        if opened is None and match:
            opened, language, start, lines = match.group(1), match.group(2).lower(), number, []
        elif opened is not None and line.strip().startswith(opened[0] * len(opened)) and not line.strip().strip(
                opened[0]):
            blocks.append(Block(page, start, language, "\n".join(lines) + "\n"))
            opened = None
        elif opened is not None:
            lines.append(line)
    assert opened is None, f"{rel(page)}:{start}: a code fence is never closed"
    return blocks


def prose(page: Path) -> str:
    """The page without its fenced blocks (lines kept, so numbers still match) and without HTML comments."""
    text = page.read_text(encoding="utf-8")
    for block in fenced_blocks(page):
        text = text.replace(block.code, "\n" * block.code.count("\n"), 1)
    return re.sub(r"<!--.*?-->", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.DOTALL)


def github_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: markup dropped, lower case, punctuation removed, spaces to
    hyphens, and -1, -2, … for repeats."""
    anchors, seen = set(), {}
    for line in prose(page).splitlines():
        heading = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if not heading:
            continue
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1))   # links and images: their text
        text = re.sub(r"<[^>]+>", "", text)                                    # inline HTML
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return anchors


def relative_links(page: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(prose(page).splitlines(), 1):
        line = re.sub(r"`[^`]*`", "", line)  # code spans are not links
        found += [(number, target) for target in LINK.findall(line) if not SCHEME.match(target)]
    return found


def section(title: str) -> str:
    return README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def python_blocks() -> list[Block]:
    return [b for page in PAGES for b in fenced_blocks(page) if b.language in ("python", "py")]


def runnable(block: Block) -> bool:
    return not NOT_RUN.match(block.code.lstrip().splitlines()[0] if block.code.strip() else "")


def abag_command_lines() -> list[tuple[Block, str]]:
    """(block, line) for every bash line that runs abag, continuations joined."""
    found = []
    for page in PAGES:
        for block in fenced_blocks(page):
            if block.language not in ("bash", "sh", "shell", "console"):
                continue
            for line in re.sub(r"\\\n\s*", " ", block.code).splitlines():
                line = line.strip().removeprefix("$ ")
                if line and not line.startswith("#"):
                    found += [(block, part.strip()) for part in line.split("&&") if invokes_abag(part)]
    return found


def invokes_abag(command: str) -> bool:
    words = command.split()
    return bool(words) and (words[0] == "abag" or ("-m" in words and "abag" in words))


def abag_arguments(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    if words[0] == "abag":
        return words[1:]
    module = next(i for i in range(len(words) - 1) if words[i] == "-m" and words[i + 1] == "abag")
    return words[module + 2:]


def abag_options() -> set[str]:
    from abag.cli import build_parser

    parser = build_parser()
    options = set(parser._option_string_actions)
    for action in parser._subparsers._group_actions:
        for subparser in action.choices.values():
            options |= set(subparser._option_string_actions)
    return options


# --- the README ------------------------------------------------------------------------------------------------

def test_readme_is_short():
    lines = README.count("\n") + (not README.endswith("\n"))
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES}: move detail to docs/"


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


def test_readme_shows_one_cli_and_one_python_block_near_the_top():
    head = "\n".join(README.splitlines()[:80])
    assert re.search(r"```bash\n(abag \w+ .*\n){4}```", head), "the CLI block (train, predict, evaluate, suggest)"
    assert {line.split()[1] for line in re.search(r"```bash\n((?:abag .*\n)+)```", head).group(1).splitlines()} == {
        "train", "predict", "evaluate", "suggest"}
    assert "```python\nimport abag" in head


def test_readme_links_every_docs_page():
    linked = {(README_PATH.parent / target.split("#")[0]).resolve() for _, target in relative_links(README_PATH)}
    missing = [rel(page) for page in DOC_PAGES if page.resolve() not in linked]
    assert DOC_PAGES and not missing, f"docs pages the README does not link: {missing}"


def test_package_map_names_the_module_for_each_newcomer_question():
    table = section("Package map")
    for question, modules in {
        "reading a CSV": ("data/pipeline.py", "data/reading.py"),
        "clustering antigens": ("identity/clustering.py",),
        "caching embeddings": ("encoding/embedding_cache.py",),
        "the network": ("model/network.py",),
        "the epoch loop": ("training/loop.py",),
        "the intervals": ("posthoc/intervals.py",),
        "the predict command": ("cli/predict.py",),
    }.items():
        assert any(f"`{module}" in table for module in modules), f"the package map does not say where {question} is"
    for module in re.findall(r"`(\w+/[\w/]+\.py)", table):
        assert (REPO / "abag" / module).is_file(), f"the package map names abag/{module}, which does not exist"


# --- every page ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", DOC_PAGES, ids=rel)
def test_docs_page_opens_with_a_title_and_one_line_saying_what_it_covers(page):
    lines = page.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 4 and lines[0].startswith("# ") and lines[1] == "" and lines[3] == "", \
        f"{rel(page)}: start with '# Title', a blank line, one line saying what the page covers, a blank line"
    assert lines[2] and not re.match(r"[#|\-*`<>]", lines[2]), f"{rel(page)}:3 should be a plain sentence"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_point_to_existing_files_and_headings(page):
    broken = []
    for number, target in relative_links(page):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{rel(page)}:{number}: {target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in github_anchors(destination):
            broken.append(f"{rel(page)}:{number}: {target} (no heading with anchor #{anchor})")
        elif destination.exists() and REPO not in destination.parents and destination != REPO:
            broken.append(f"{rel(page)}:{number}: {target} (outside the repository)")
    assert not broken, "broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_code_spans_naming_repository_files_exist(page):
    """`abag/…`, `bench/…`, `notebooks/…`, `tests/…`, `.ci/…` and `docs/…` paths in the text exist (package-map
    paths count from `abag/`)."""
    missing = []
    for span in re.findall(r"`([\w./-]+\.(?:py|ipynb|md|csv|toml))`", prose(page)):
        output = "/" not in span or span.startswith(("OUT/", "runs/", "RUN_DIR/", "MyDrive/"))
        if not output and not ((REPO / span).exists() or (REPO / "abag" / span).exists()):
            missing.append(span)
    assert not missing, f"{rel(page)} names files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_option_mentioned_is_an_abag_option(page):
    options = abag_options()
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", page.read_text(encoding="utf-8")))
    unknown = sorted(mentioned - options - OTHER_TOOLS_OPTIONS)
    assert not unknown, f"{rel(page)} mentions options no abag command has: {unknown}"


# --- code blocks -----------------------------------------------------------------------------------------------

def test_there_are_python_blocks_and_command_lines_to_check():
    assert any(b.page == README_PATH for b in python_blocks()) and len(python_blocks()) >= 3
    assert len(abag_command_lines()) >= 10


@pytest.mark.parametrize("block", [b for b in python_blocks() if not runnable(b)], ids=lambda b: b.name)
def test_python_blocks_not_run_say_why(block):
    first = block.code.lstrip().splitlines()[0]
    assert NOT_RUN_REASON.fullmatch(first.strip()), \
        f"{block.name}: a block that is not run starts with '# not run: <why>' (e.g. '# not run: needs a GPU')"


@pytest.mark.parametrize("block", [b for b in python_blocks() if runnable(b)], ids=lambda b: b.name)
def test_python_blocks_run(block, tmp_path, monkeypatch):
    (tmp_path / "data").symlink_to(REPO / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    namespace: dict = {"__name__": "__docs__"}
    exec(compile(block.code, block.name, "exec"), namespace)  # noqa: S102 - the page's own example
    if block.page == README_PATH:  # the README's Python example: what it promises
        assert len(namespace["predictions"]) == 5
        assert namespace["predictions"]["pkd_pred"].between(4, 14).all()
        assert namespace["result"].metrics["data"]["split"] == "antigen"
        assert namespace["members"].shape == (3, 5)


@pytest.mark.parametrize("command", abag_command_lines(), ids=lambda c: f"{c[0].name}:{c[1][:60]}")
def test_abag_command_lines_parse(command):
    from abag.cli import build_parser

    block, line = command
    if PLACEHOLDER.search(line):
        pytest.skip(f"{block.name}: a placeholder in {line!r}")
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            build_parser().parse_args(abag_arguments(line))
    except (SystemExit, Exception) as exc:  # noqa: BLE001 - argparse exits; abag's parser raises UsageError
        pytest.fail(f"{block.name}: `{line}` is not accepted by the abag CLI: {errors.getvalue().strip() or exc}")
