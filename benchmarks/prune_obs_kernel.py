"""The fused OBS kernel against the torch reference loop on the first layer of the MLP 784-40-20-10.

    python benchmarks/prune_obs_kernel.py --data-dir ../shared/data

The layer's real problem: W (40, 784) of the benchmark MLP (its committed weights, benchmarks/prune_models.py),
H = 2 X^T X / N from the first 1,024 MNIST training images, relative damping 0.01, the greedy trace (``--steps``,
default all 784 steps per row). Each backend available here runs in the same process, side by side (median and
20/80 % quantiles of ``--repeats`` calls after one warm-up call; the slow reference ``--reference-repeats`` calls,
without warm-up); the load average is recorded with the rows. Writes benchmarks/results/prune/obs_kernel_cpu.csv
(weightcast.results schema) and prints the speed-ups.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from common import RESULTS, write_results
from prune_models import load_all
from weightcast.data import get_task
from weightcast.ops.dispatch import use_backend
from weightcast.prune.layers import layer_inputs
from weightcast.prune.obs_kernel import obs_trace, why_unavailable


def problem(data_dir, calibration: int = 1024, rel_damp: float = 0.01):
    _, model = load_all(names=("mlp",))["mlp"]
    x, _ = get_task("mnist", data_dir).eval_tensors("train", calibration)
    X = layer_inputs(model, x)["layers.0"]
    H = 2 * X.T @ X / len(X)
    dead = H.diagonal() == 0
    H[dead, dead] = 1.0
    H += rel_damp * H.diagonal().mean() * torch.eye(len(H), dtype=H.dtype)
    W = model.layers[0].weight.detach().double().clone()
    W[:, dead] = 0
    return W.float(), torch.cholesky_inverse(torch.linalg.cholesky(H)).float()


def timed(fn, repeats: int, warmup: bool = True) -> tuple[float, float, float]:
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    q = statistics.quantiles(times, n=5) if len(times) > 1 else times * 4
    return statistics.median(times), q[0], q[3]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each kernel (after a warm-up call)")
    parser.add_argument("--reference-repeats", type=int, default=1, help="timed calls of the slow reference "
                        "(no warm-up: each call is hundreds of steps)")
    parser.add_argument("--steps", type=int, default=0, help="greedy steps per row (default 0: all d = 784); "
                        "fewer steps keep the largest active sets, where the compact kernel gains least")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    W, Hinv = problem(args.data_dir)
    steps = args.steps or W.shape[1]
    backends = ["reference"] + [b for b in ("cpp", "triton") if why_unavailable(b, W.device) is None
                                and not (b == "triton" and W.device.type == "cpu")]
    results, rows = {}, []
    for backend in backends:
        with use_backend(backend):
            load_before = os.getloadavg()[0]
            repeats = args.reference_repeats if backend == "reference" else args.repeats
            med, q20, q80 = timed(lambda: obs_trace(W, Hinv, steps), repeats, warmup=backend != "reference")
            load = (load_before + os.getloadavg()[0]) / 2
        results[backend] = med
        rows.append(dict(benchmark="obs_trace", name=backend, metric="time", unit="s", x_name="d",
                         x_value=W.shape[1], value=med, q20=q20, q80=q80,
                         config={"rows": W.shape[0], "steps": steps, "threads": args.threads, "repeats": repeats,
                                 "load_average_1min": round(load, 2)}))
        print(f"{backend}: median {med:.3f} s (q20 {q20:.3f}, q80 {q80:.3f}), load {load:.1f}", flush=True)
    for backend in backends[1:]:
        rows.append(dict(benchmark="obs_trace", name=backend, metric="speedup_vs_reference", unit="x",
                         x_name="d", x_value=W.shape[1],
                         value=results["reference"] / results[backend], config={"threads": args.threads}))
        print(f"{backend}: {results['reference'] / results[backend]:.1f}x the reference")
    write_results(RESULTS / "prune" / "obs_kernel_cpu.csv", rows, device="cpu")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
