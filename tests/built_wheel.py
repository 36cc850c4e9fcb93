"""abag as a user installs it: the wheel built from this checkout, installed apart from it (once per test process).

The notebooks' smoke runs and the pretrained-model test import abag from this folder (put first on PYTHONPATH),
so they exercise what the wheel ships (package data included), not the checkout.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def built_wheel() -> tuple[Path, Path]:
    """(the wheel file, the folder it is installed in with `pip install --target`), built on first use."""
    scratch = Path(tempfile.mkdtemp(prefix="abag-wheel-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    wheels, site = scratch / "wheels", scratch / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(wheels)],
                   check=True, capture_output=True, timeout=600)
    [wheel] = wheels.glob("abag-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return wheel, site
