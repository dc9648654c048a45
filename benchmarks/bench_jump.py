"""Cost of one forecast jump against one SGD step, per backend and size.

A jump is what ForecastSGD does at a jump step: record the parameters into the history (one pass) and overwrite
them with the linear forecast of the window (W history rows read, parameters written once). It is compared with
one ``torch.optim.SGD(momentum=0.9)`` step (foreach) on the same parameters.

    python benchmarks/bench_jump.py [--device cpu|cuda] [--sizes 1e6 11e6 25e6] [--window 5]

writes ``benchmarks/results/jump_<device>.csv``. ``--forecasters farcast wnn`` also times the learned
forecasters' whole jump (record + forecast + write, through the optimizer's engine, on a bucket of 64 equal
tensors) against the SGD step and writes ``benchmarks/results/jump_learned_<device>.csv``. On CUDA, the effective bandwidth of the lincomb pass
(bytes = W slots read + parameters written) is reported against the bandwidth of a plain device copy.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import weightcast as wc  # noqa: E402
from common import RESULTS, device_name, device_slug, median_ms  # noqa: E402
from weightcast.forecasters import least_squares_line_coefficients  # noqa: E402

FIELDS = ["device", "backend", "params", "dtype", "history_dtype", "window", "sgd_step_ms", "record_ms",
          "lincomb_ms", "jump_ms", "jump_over_sgd", "jump_ms_q20", "jump_ms_q80", "lincomb_GBps", "copy_GBps",
          "lincomb_fraction_of_copy_bw"]


def sgd_step_ms(n: int, device: str, dtype: torch.dtype) -> float:
    """One SGD(momentum=0.9) step on a single flat parameter of n elements (momentum buffer already built)."""
    p = torch.nn.Parameter(torch.randn(n, device=device, dtype=dtype))
    p.grad = torch.randn_like(p)
    opt = torch.optim.SGD([p], lr=1e-3, momentum=0.9, foreach=True)
    opt.step()
    return median_ms(opt.step, device)[0]


def copy_bandwidth_GBps(n: int, device: str) -> float:
    """Bandwidth of ``dst.copy_(src)`` over n float32 elements: the practical ceiling for streaming kernels."""
    src, dst = torch.randn(n, device=device), torch.empty(n, device=device)
    ms = median_ms(lambda: dst.copy_(src), device)[0]
    return 2 * n * 4 / (ms * 1e-3) / 1e9


def bench_backend(backend: str, n: int, device: str, dtype: torch.dtype, history_dtype: torch.dtype,
                  window: int) -> dict:
    """Times record, lincomb_forecast and the two together on backend ``backend``."""
    flat = torch.randn(n, device=device, dtype=dtype)
    history = torch.randn(window, n, device=device).to(history_dtype)
    absmax = history.float().abs().amax(dim=1)
    steps = list(range(1, window + 1))
    coeffs = least_squares_line_coefficients(steps, window + window)  # float64, as the optimizer passes them
    with wc.ops.use_backend(backend):
        record = lambda: wc.ops.record([flat], history, window - 1, [0])  # noqa: E731
        lincomb = lambda: wc.ops.lincomb_forecast([flat], history, [0], coeffs, absmax)  # noqa: E731

        def jump():
            absmax[window - 1] = record()
            lincomb()

        record_ms = median_ms(record, device)[0]
        lincomb_ms = median_ms(lincomb, device)[0]
        jump_ms, q20, q80 = median_ms(jump, device)
    moved = window * n * history.element_size() + n * flat.element_size()
    return {"backend": backend, "params": n, "dtype": str(dtype).replace("torch.", ""),
            "history_dtype": str(history_dtype).replace("torch.", ""), "window": window,
            "record_ms": round(record_ms, 4), "lincomb_ms": round(lincomb_ms, 4), "jump_ms": round(jump_ms, 4),
            "jump_ms_q20": round(q20, 4), "jump_ms_q80": round(q80, 4),
            "lincomb_GBps": round(moved / (lincomb_ms * 1e-3) / 1e9, 1)}


LEARNED_FIELDS = ["device", "backend", "forecaster", "params", "tensors", "window", "sgd_step_ms", "jump_ms",
                  "jump_over_sgd", "jump_ms_q20", "jump_ms_q80"]


def bench_learned(name: str, backend: str, n: int, device: str, window: int, tensors: int = 64) -> dict:
    """Whole jump of forecaster ``name`` as ForecastSGD runs it: record, forecast (farcast: one lincomb pass over
    the window and w_0; wnn: per-tensor statistics, then the fused MLP op, then the finiteness check and the
    write) on ``tensors`` equal parameters of n elements in all."""
    params = [torch.nn.Parameter(torch.randn(n // tensors, device=device) * 0.1) for _ in range(tensors)]
    opt = wc.ForecastSGD(params, lr=1e-3, forecaster=name, window=window, record_every=1, jump_every=10 ** 9)
    engine = opt.engine
    bucket = engine.buckets[0][1]
    clock = [0]
    for _ in range(window):
        clock[0] += 10
        bucket.record(clock[0])

    def jump():  # the jump step's record, then the forecast 25 steps ahead (the study's schedule)
        clock[0] += 10
        bucket.record(clock[0])
        engine._forecast_all([(0, bucket, list(range(len(bucket.params))))], clock[0] + 25)

    with wc.ops.use_backend(backend):
        jump_ms, q20, q80 = median_ms(jump, device)
    return {"backend": backend, "forecaster": name, "params": bucket.numel, "tensors": tensors, "window": window,
            "jump_ms": round(jump_ms, 4), "jump_ms_q20": round(q20, 4), "jump_ms_q80": round(q80, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 11e6, 25e6])
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", default=["float32"], help="parameter dtypes, e.g. float32 bfloat16")
    parser.add_argument("--out", type=Path, default=None, help="CSV path (default results/jump_<device>.csv)")
    parser.add_argument("--forecasters", nargs="+", default=["linear"],
                        help="linear (the op benchmark above) and/or learned ones: farcast wnn")
    parser.add_argument("--models", nargs="+", default=None,
                        help="real models (lenet5 resnet18 gpt): every registered forecaster's jump (latent included) "
                             "against one training step, and history memory; see bench_latent_jump.py")
    args = parser.parse_args(argv)
    if args.models:
        import bench_latent_jump

        return bench_latent_jump.main(["--device", args.device, "--models", *args.models])
    learned = [f for f in args.forecasters if f != "linear"]
    if learned:
        return main_learned(args, learned)
    device = args.device
    backends = [b for b in wc.ops.available_backends(device) if not (device == "cpu" and b == "triton")]
    rows = []
    for size in args.sizes:
        n = int(size)
        copy_bw = copy_bandwidth_GBps(n, device)
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            sgd_ms = sgd_step_ms(n, device, dtype)
            for backend in backends:
                row = bench_backend(backend, n, device, dtype, dtype, args.window)
                row.update(device=device_name(device), sgd_step_ms=round(sgd_ms, 4),
                           jump_over_sgd=round(row["jump_ms"] / sgd_ms, 3), copy_GBps=round(copy_bw, 1),
                           lincomb_fraction_of_copy_bw=round(row["lincomb_GBps"] / copy_bw, 3))
                rows.append(row)
                print(f"{n:>10,d} {dtype_name:9s} {backend:9s} sgd {sgd_ms:8.3f} ms  record {row['record_ms']:8.3f}"
                      f"  lincomb {row['lincomb_ms']:8.3f}  jump {row['jump_ms']:8.3f} ms  "
                      f"= {row['jump_over_sgd']:.2f} x SGD  ({row['lincomb_GBps']} GB/s, copy {copy_bw:.1f} GB/s)",
                      flush=True)
    out = args.out or RESULTS / f"jump_{device_slug(device)}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0


def main_learned(args, names: list[str]) -> int:
    """The learned forecasters' jump against one SGD step, per backend and size (CSV jump_learned_<device>)."""
    device = args.device
    backends = [b for b in wc.ops.available_backends(device, "wnn") if not (device == "cpu" and b == "triton")]
    rows = []
    for size in args.sizes:
        n = int(size)
        sgd_ms = sgd_step_ms(n, device, torch.float32)
        for name in names:
            for backend in backends:
                row = bench_learned(name, backend, n, device, args.window)
                row.update(device=device_name(device), sgd_step_ms=round(sgd_ms, 4),
                           jump_over_sgd=round(row["jump_ms"] / sgd_ms, 3))
                rows.append(row)
                print(f"{n:>10,d} {name:8s} {backend:9s} sgd {sgd_ms:8.3f} ms  jump {row['jump_ms']:9.3f} ms "
                      f"= {row['jump_over_sgd']:.2f} x SGD", flush=True)
    out = args.out or RESULTS / f"jump_learned_{device_slug(device)}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LEARNED_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
