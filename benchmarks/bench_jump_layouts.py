"""The jump step of this checkout against another checkout (e.g. the flat-buffer layout before the parameters
stayed the user's tensors), measured side by side: two long-lived worker processes, one per checkout, take turns
on each size (the order alternates between rounds), so both see the same machine load.

    git worktree add --detach /tmp/flat <commit> && (cd /tmp/flat && python setup.py build_ext --inplace)
    python benchmarks/bench_jump_layouts.py --baseline /tmp/flat --out benchmarks/results/jump_layout_cpu.csv

A jump step = what the engine does at a jump: record the parameters into the window and write the linear
forecast (window 5) into them, on 1 or 64 equal fp32 parameter tensors, one thread (``OMP_NUM_THREADS=1``). The
ratio rows are the median over rounds of (this / baseline) of the per-round medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
SIZES = (1_000_000, 11_000_000, 25_000_000)
TENSORS = (1, 64)


def worker() -> None:
    """Reads 'n tensors' lines, prints one JSON line per request (works on both engine layouts)."""
    import torch

    import weightcast as wc
    from weightcast.timing import median_ms

    torch.set_num_threads(1)
    for line in sys.stdin:
        n, tensors = map(int, line.split())
        g = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(n // tensors, generator=g)) for _ in range(tensors)]
        for p in params:
            p.grad = torch.zeros_like(p)
        opt = wc.ForecastSGD(params, lr=1e-3, forecaster="linear", window=5, record_every=1, jump_every=1)
        engine = getattr(opt, "engine", None) or opt._engine
        layout_check = getattr(engine, "refresh", None)  # the flat layout checks bindings inside record
        clock = [0]
        for _ in range(5):
            clock[0] += 1
            for _, b in engine.buckets:
                b.record(clock[0])

        def jump():  # constant parameters: every forecast is finite, the timing does not drift
            clock[0] += 1
            if layout_check is not None:
                layout_check()
            for _, b in engine.buckets:
                b.record(clock[0])
                b.filled = b.window
            engine._jump(clock[0])

        med, q20, q80 = median_ms(jump, "cpu", repeats=15, warmup=2)
        print(json.dumps({"median_ms": med, "q20": q20, "q80": q80}), flush=True)
        del opt, params, engine


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="checkout (with its _C built) to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    roots = {"this": HERE.parents[1], "baseline": args.baseline.resolve()}
    procs = {label: subprocess.Popen([sys.executable, str(HERE), "--worker"], cwd=root, text=True,
                                     env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root)),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
             for label, root in roots.items()}
    baseline_commit = subprocess.run(["git", "-C", str(roots["baseline"]), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip() or "unknown"
    times = {}
    loads = []
    for rnd in range(args.rounds):
        for n in SIZES:
            for tensors in TENSORS:
                for label in (("this", "baseline") if rnd % 2 == 0 else ("baseline", "this")):
                    procs[label].stdin.write(f"{n} {tensors}\n")
                    procs[label].stdin.flush()
                    times.setdefault((label, n, tensors), []).append(json.loads(procs[label].stdout.readline()))
                    loads.append(os.getloadavg()[0])
    for p in procs.values():
        p.stdin.close()
        p.wait()
    rows = []
    for n in SIZES:
        for tensors in TENSORS:
            this, base = times[("this", n, tensors)], times[("baseline", n, tensors)]
            config = {"tensors": tensors, "window": 5, "rounds": args.rounds, "threads": 1,
                      "baseline_commit": baseline_commit,
                      "load1": [round(min(loads), 1), round(max(loads), 1)]}
            for label, runs in (("this", this), ("baseline", base)):
                meds = sorted(r["median_ms"] for r in runs)
                rows.append({"benchmark": "jump_layout", "name": label, "metric": "time", "unit": "ms",
                             "x_name": "params", "x_value": n, "value": statistics.median(meds),
                             "q20": meds[len(meds) // 5], "q80": meds[(4 * len(meds)) // 5], "config": config})
            ratios = [a["median_ms"] / b["median_ms"] for a, b in zip(this, base)]
            rows.append({"benchmark": "jump_layout", "name": "this_over_baseline", "metric": "ratio", "unit": "x",
                         "x_name": "params", "x_value": n, "value": statistics.median(ratios),
                         "q20": sorted(ratios)[len(ratios) // 5], "q80": sorted(ratios)[(4 * len(ratios)) // 5],
                         "config": config})
            print(f"{n:>10,d} params, {tensors:>2} tensors: this {statistics.median(r['median_ms'] for r in this):8.2f}"
                  f" ms, baseline {statistics.median(r['median_ms'] for r in base):8.2f} ms, ratio "
                  f"{statistics.median(ratios):.3f} (rounds {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)
    if args.out:
        sys.path.insert(0, str(HERE.parent))
        from common import write_results

        write_results(args.out, rows, device="cpu")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        raise SystemExit(main())
