"""Micro-benchmark of the native kernels weightcast_C.record and weightcast_C.lincomb_forecast (C++ on CPU, CUDA
on GPU), each on one tensor (a one-row history, segment 0): achieved memory bandwidth against torch's own copy_ of the same bytes.

    python benchmarks/bench_native_ops.py [--device cpu|cuda] [--sizes 1000000 11000000 25000000] [--window 5]
                                          [--out FILE | --no-save]

Bytes counted: record reads src and writes dst; lincomb reads the W history rows once and writes out once.
Times are the median (and 20/80% quantiles) of triton's do_bench on CUDA, of timed calls on CPU
(benchmarks/common.py). The target on a GPU is >= 70% of the device's HBM bandwidth. Results go to
benchmarks/results/bench_native_ops_<device>.csv (weightcast.results schema; ``--out`` to write elsewhere).
Needs weightcast._C (and its CUDA kernels for --device cuda);
without them it says so and exits 0.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from common import RESULTS, device_name, device_slug, long_rows, median_ms, write_results
from weightcast.cli_common import DocstringHelpFormatter, positive_int

PEAK_GBS = {"H200": 4800.0, "H100 80GB HBM3": 3350.0, "H100 SXM": 3350.0, "H100 PCIe": 2000.0, "H100 NVL": 3900.0,
            "A100-SXM4-80GB": 2039.0, "A100-SXM4-40GB": 1555.0}
NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def bandwidth_rows(benchmark: str, rows: list[dict], threads: int | None = None, cpu_isa: str | None = None) -> list:
    """Results rows (weightcast.results schema) of the ops' wide rows: time (median, q20, q80), GB/s, % of the
    nominal peak and torch copy_'s GB/s, x = elements."""
    for row in rows:
        row.update(threads=threads, cpu_isa=cpu_isa)
    return long_rows(benchmark, rows, "{op} {in}->{out}", "elements", "N",
                     {"ms_median": "ms", "GBps": "GB/s", "pct_of_peak": "%", "copy_GBps": "GB/s"},
                     config_keys=("W", "bytes", "threads", "cpu_isa"), quantiles={"ms_median": ("ms_q20", "ms_q80")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=DocstringHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[1_000_000, 11_000_000, 25_000_000],
                        help="elements per op")
    parser.add_argument("--window", type=positive_int, default=5, help="history rows of lincomb")
    parser.add_argument("--out", type=Path, default=None,
                        help="results CSV (default: benchmarks/results/bench_native_ops_<device>.csv)")
    parser.add_argument("--no-save", action="store_true", help="print only; write no file")
    args = parser.parse_args(argv)

    from weightcast import _extension

    if not _extension.extension_loaded():
        print(f"bench_native_ops: {_extension.extension_status()}; skipping.")
        return 0
    if args.device == "cuda" and not (torch.cuda.is_available() and _extension.extension_has_cuda()):
        print("bench_native_ops: --device cuda needs a GPU and weightcast._C built with CUDA; skipping.")
        return 0
    import weightcast._C as C

    ops = torch.ops.weightcast_C
    dev = torch.device(args.device)
    name = device_name(args.device)
    peak = next((v for k, v in PEAK_GBS.items() if k in name), None) if dev.type == "cuda" else None
    w = args.window
    f32, bf16 = torch.float32, torch.bfloat16
    rows = []
    print(f"device: {name} (nominal {peak or '?'} GB/s)  threads {torch.get_num_threads()}  W = {w}  "
          f"cpu_isa {getattr(C, 'cpu_isa', '?')}")
    print(f"{'op':<8} {'in':>5} {'out':>5} {'N':>11} {'ms':>9} {'GB/s':>8} {'%peak':>6} {'copy_ GB/s':>11}")
    for n in args.sizes:
        for op, din, dout in [("record", f32, f32), ("record", f32, bf16), ("record", bf16, bf16),
                              ("lincomb", f32, f32), ("lincomb", bf16, f32), ("lincomb", bf16, bf16)]:
            if op == "record":
                src = torch.randn(n, device=dev).to(din)
                dst = torch.empty(n, dtype=dout, device=dev)
                nbytes = n * (src.element_size() + dst.element_size())
                fn = lambda: ops.record([src], dst.view(1, -1), 0, [0])  # noqa: E731
            else:
                history = torch.randn(w, n, device=dev).to(din)
                coeffs = torch.randn(w, device=dev)
                out = torch.empty(n, dtype=dout, device=dev)
                nbytes = n * (w * history.element_size() + out.element_size())
                fn = lambda: ops.lincomb_forecast([out], history, [0], coeffs)  # noqa: E731
            ms, lo, hi = median_ms(fn, args.device)
            a = torch.empty(nbytes // 8, dtype=f32, device=dev)  # copy_ moving the same bytes: half read, half written
            b = torch.empty_like(a)
            copy_ms = median_ms(lambda: b.copy_(a), args.device)[0]
            del a, b
            gbs = nbytes / ms / 1e6
            row = {"op": op, "in": NAMES[din], "out": NAMES[dout], "N": n, "W": w if op == "lincomb" else None,
                   "bytes": nbytes, "ms_median": ms, "ms_q20": lo, "ms_q80": hi, "GBps": gbs,
                   "pct_of_peak": 100 * gbs / peak if peak else None, "copy_GBps": nbytes / copy_ms / 1e6}
            rows.append(row)
            pct = f"{row['pct_of_peak']:.0f}" if peak else "-"
            print(f"{op:<8} {row['in']:>5} {row['out']:>5} {n:>11} {ms:>9.4f} {gbs:>8.1f} {pct:>6} "
                  f"{row['copy_GBps']:>11.1f}")
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    if not args.no_save:
        path = args.out or RESULTS / f"bench_native_ops_{device_slug(args.device)}.csv"
        write_results(path, bandwidth_rows("native_ops", rows, torch.get_num_threads(),
                                           getattr(C, "cpu_isa", None)), device=args.device)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
