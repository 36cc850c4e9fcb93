"""`abag info`: the version, and the card of the model that ships inside abag."""

from __future__ import annotations

import argparse

from abag.errors import AbagError
from abag.pretrained import describe
from abag.version import __version__


def add_info_parser(commands) -> argparse.ArgumentParser:
    """Add the `info` subcommand to `commands`; returns its parser."""
    info = commands.add_parser("info", help="the abag version and the shipped pretrained model's card",
                               description="Print the abag version and the model card of the pretrained model that "
                                           "`abag predict` uses without --checkpoint (docs/model-card.md).")
    info.set_defaults(handler=run_info)
    return info


def run_info(args: argparse.Namespace) -> int:
    """Print the version and the model card (or why there is none)."""
    print(f"abag {__version__}")
    try:
        print(describe())
    except AbagError as exc:
        print(f"no pretrained model: {exc}")
    return 0
