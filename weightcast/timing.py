"""Wall-clock timing of a callable on a device, shared by the validation suite and the benchmarks."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_ms(fn: Callable[[], object], device: str, repeats: int = 20, warmup: int = 3) -> tuple[float, float, float]:
    """(median, 20th percentile, 80th percentile) milliseconds of ``fn()``.

    CUDA: ``triton.testing.do_bench`` (it synchronises and flushes the L2 cache between calls). CPU: ``warmup``
    untimed calls, then ``repeats`` calls timed with ``time.perf_counter``.
    """
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
