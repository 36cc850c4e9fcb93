"""What every benchmark prints about the machine it ran on."""

from __future__ import annotations

import os
from pathlib import Path


def machine() -> str:
    """CPU model and core count (from /proc/cpuinfo where there is one) and the current load."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, load average {load_average()}"


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
