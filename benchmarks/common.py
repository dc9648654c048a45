"""Timing helpers shared by the benchmarks: median over repeats, device names, result paths."""
from __future__ import annotations

import platform
import re
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

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


def median_ms(fn: Callable[[], object], device: str, repeats: int = 20, warmup: int = 3) -> tuple[float, float, float]:
    """(median, 20th percentile, 80th percentile) milliseconds of ``fn()`` over ``repeats`` timed calls."""
    if device.startswith("cuda"):
        from triton.testing import do_bench

        q20, med, q80 = do_bench(fn, warmup=25, rep=200, quantiles=[0.2, 0.5, 0.8])
        return med, q20, q80
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    q = statistics.quantiles(times, n=5)
    return statistics.median(times), q[0], q[3]
