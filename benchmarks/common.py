"""Helpers shared by the benchmarks: device names, result paths, and median timing (weightcast.timing)."""
from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

from weightcast.timing import median_ms  # noqa: F401  (re-exported for the benchmark scripts)

RESULTS = Path(__file__).resolve().parent / "results"


def device_name(device: str) -> str:
    """Human name of the device: the GPU's name, or the CPU model."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def device_slug(device: str) -> str:
    """Short file-name key for results: 'cpu' or the GPU name in lower case with dashes."""
    if not device.startswith("cuda"):
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")
