"""Print command line N (1-based) of the first code block under README's `## Quickstart`."""

import re
import sys


def quickstart_commands(text: str) -> list[str]:
    section = text.split("## Quickstart", 1)[1]
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


if __name__ == "__main__":
    lines = quickstart_commands(open(sys.argv[1], encoding="utf-8").read())
    print(lines[int(sys.argv[2]) - 1])
