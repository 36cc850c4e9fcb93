"""The `abag` command line: one module per verb (`train`, `predict` and `evaluate`, `suggest`) plus the shared
helpers in `common`; `main` parses and maps every error to one message and an exit code.

May import every other room.
"""

from abag.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
