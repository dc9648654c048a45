"""Micro-benchmark of the Triton kernels record and lincomb: achieved memory bandwidth on one GPU.

    python benchmarks/bench_triton_ops.py [--sizes 1000000 11000000 25000000] [--window 5] [--out FILE | --no-save]

Times each kernel with ``triton.testing.do_bench`` (median and 20/80% quantiles) and prints GB/s, counting the
bytes each kernel must move: record reads src and writes dst; lincomb reads the W history rows once and writes
out once. ``torch copy_`` of the same number of bytes is timed as a practical bandwidth ceiling. The target is
>= 70% of the device's HBM bandwidth. Results go to ``benchmarks/results/bench_triton_ops_<device>.csv``
(weightcast.results schema; ``--out`` to write elsewhere).
Needs a CUDA GPU; on a machine without one it says so and exits 0.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import torch

from common import RESULTS, device_slug, write_results
from bench_native_ops import bandwidth_rows
from weightcast.cli_common import DocstringHelpFormatter, positive_int

REPO = pathlib.Path(__file__).resolve().parents[1]
# Nominal HBM bandwidth (GB/s) by device name, for the "% of peak" column.
PEAK_GBS = {"H200": 4800.0, "H100 SXM": 3350.0, "H100 80GB HBM3": 3350.0, "H100 PCIe": 2000.0, "H100 NVL": 3900.0,
            "A100-SXM4-80GB": 2039.0, "A100-SXM4-40GB": 1555.0, "A100-PCIE-40GB": 1555.0, "A100 80GB PCIe": 1935.0}
NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def _kernels():
    """The record and lincomb_forecast kernels of weightcast.kernels, on one tensor (a one-row history, segment 0)."""
    from weightcast.kernels.lincomb_forecast import lincomb_forecast
    from weightcast.kernels.record import record

    return (lambda src, dst: record([src], dst.view(1, -1), 0, [0]),
            lambda out, history, coeffs: lincomb_forecast([out], history, [0], coeffs))


def _peak(device_name: str) -> float | None:
    return next((v for k, v in PEAK_GBS.items() if k in device_name), None)


def _time(fn) -> tuple[float, float, float]:
    from triton.testing import do_bench

    return tuple(do_bench(fn, warmup=25, rep=200, quantiles=[0.5, 0.2, 0.8]))  # milliseconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=DocstringHelpFormatter)
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[1_000_000, 11_000_000, 25_000_000],
                        help="elements per kernel")
    parser.add_argument("--window", type=positive_int, default=5, help="history rows of lincomb")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="results CSV (default: benchmarks/results/bench_triton_ops_<device>.csv)")
    parser.add_argument("--no-save", action="store_true", help="print only; write no file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_triton_ops: a CUDA GPU is required (Triton's interpreter on CPU is not a benchmark); skipping.")
        return 0
    record, lincomb = _kernels()
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(dev)
    peak = _peak(name)
    w = args.window
    f32, bf16 = torch.float32, torch.bfloat16
    rows = []
    print(f"device: {name}  (nominal HBM {peak or '?'} GB/s)   W = {w}")
    print(f"{'op':<8} {'in':>5} {'out':>5} {'N':>11} {'ms':>8} {'GB/s':>8} {'%peak':>6} {'copy_ GB/s':>11}")
    for n in args.sizes:
        for op, din, dout in [("record", f32, f32), ("record", f32, bf16), ("record", bf16, bf16),
                              ("lincomb", f32, f32), ("lincomb", bf16, f32), ("lincomb", bf16, bf16)]:
            if op == "record":
                src = torch.randn(n, device=dev).to(din)
                dst = torch.empty(n, dtype=dout, device=dev)
                nbytes = n * (src.element_size() + dst.element_size())
                fn = lambda: record(src, dst)  # noqa: E731
            else:
                history = torch.randn(w, n, device=dev).to(din)
                coeffs = torch.randn(w, device=dev)
                out = torch.empty(n, dtype=dout, device=dev)
                nbytes = n * (w * history.element_size() + out.element_size())
                fn = lambda: lincomb(out, history, coeffs)  # noqa: E731
            ms, lo, hi = _time(fn)
            # Ceiling: torch copy_ moving the same bytes (half read, half written).
            a = torch.empty(nbytes // 8, dtype=f32, device=dev)
            b = torch.empty_like(a)
            copy_ms = _time(lambda: b.copy_(a))[0]
            del a, b
            gbs = nbytes / ms / 1e6
            row = {"op": op, "in": NAMES[din], "out": NAMES[dout], "N": n, "W": w if op == "lincomb" else None,
                   "bytes": nbytes, "ms_median": ms, "ms_q20": lo, "ms_q80": hi, "GBps": gbs,
                   "pct_of_peak": 100 * gbs / peak if peak else None, "copy_GBps": nbytes / copy_ms / 1e6}
            rows.append(row)
            pct = f"{row['pct_of_peak']:.0f}" if peak else "?"
            print(f"{op:<8} {row['in']:>5} {row['out']:>5} {n:>11} {ms:>8.4f} {gbs:>8.0f} {pct:>6} "
                  f"{row['copy_GBps']:>11.0f}")
            torch.cuda.empty_cache()
    if not args.no_save:
        path = args.out or RESULTS / f"bench_triton_ops_{device_slug('cuda')}.csv"
        write_results(path, bandwidth_rows("triton_ops", rows), device="cuda")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
