"""Helpers shared by the benchmarks: device names, result paths, the one results writer (weightcast.results) and
median timing (weightcast.timing)."""
from __future__ import annotations

import re
from pathlib import Path


from weightcast.results import device_name, write_results  # noqa: F401  (re-exported for the scripts)
from weightcast.timing import median_ms  # noqa: F401  (re-exported for the benchmark scripts)

RESULTS = Path(__file__).resolve().parent / "results"


def device_slug(device: str) -> str:
    """Short file-name key for results: 'cpu' or the GPU name in lower case with dashes."""
    if not device.startswith("cuda"):
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")
