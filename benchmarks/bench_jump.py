"""Cost of one forecast jump against one SGD step, per backend, size and dtype.

A jump is what the optimizer does at a jump step, through its engine: record the parameters into the history
(one multi-tensor pass over the parameters as they are) and overwrite them with the linear forecast of the window
(the W history rows read once, the parameters written once), on ``--tensors`` equal parameter tensors of
``size / tensors`` elements (the optimizer's layout: the parameters stay separate tensors). It is compared with
one ``torch.optim.SGD(momentum=0.9)`` step (foreach) on the same parameters. ``--forecasters farcast wnn`` adds
the learned forecasters' whole jump on the same parameters.

    python benchmarks/bench_jump.py [--device cpu|cuda] [--sizes 1e6 11e6 25e6] [--dtypes float32]
                                    [--forecasters linear farcast wnn] [--tensors 64] [--out FILE.csv]

Results are printed; ``--out`` writes them in the one results schema (weightcast.results.write_results), e.g.
``--out benchmarks/results/jump_cpu.csv`` (the committed CPU results). Without ``--out`` nothing is written.
``--models lenet5 resnet18 gpt`` runs bench_latent_jump.py instead (real models, every forecaster), with
``--device``, ``--out``; it does not take ``--sizes``/``--dtypes``/``--tensors``/``--forecasters``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import weightcast as wc  # noqa: E402
from common import median_ms, write_results  # noqa: E402
from weightcast.cli_common import positive_count, positive_int  # noqa: E402

DEFAULTS = {"sizes": [1e6, 11e6, 25e6], "dtypes": ["float32"], "tensors": 64, "forecasters": ["linear"]}


def sgd_step_ms(params: list[torch.nn.Parameter], device: str) -> tuple[float, float, float]:
    """One SGD(momentum=0.9) step (foreach) on ``params`` (momentum buffers already built)."""
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p in twins:
        p.grad = torch.randn_like(p)
    opt = torch.optim.SGD(twins, lr=1e-3, momentum=0.9, foreach=True)
    opt.step()
    return median_ms(opt.step, device)


def make_params(n: int, tensors: int, device: str, dtype: torch.dtype) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter((torch.randn(n // tensors, generator=g) * 0.1).to(device, dtype))
              for _ in range(tensors)]
    for p in params:
        p.grad = torch.zeros_like(p)  # the jump moves parameters that got an update
    return params


def jump_ms(name: str, params: list[torch.nn.Parameter], device: str, window: int) -> tuple[float, float, float]:
    """Median (q20, q80) ms of one jump step of forecaster ``name`` on ``params``: the layout check, the record,
    the forecast and the write, as ForecastSGD's engine runs them (the parameters stay constant, so every jump
    forecasts a finite value and the timing does not drift)."""
    opt = wc.ForecastSGD(params, lr=1e-3, forecaster=name, window=window, record_every=1, jump_every=1, horizon=1)
    engine = opt.engine
    clock = [0]
    for _ in range(window):
        clock[0] += 1
        for _, bucket in engine.buckets:
            bucket.record(clock[0])

    def jump():
        clock[0] += 1
        engine.refresh()
        for _, bucket in engine.buckets:
            bucket.record(clock[0])
            bucket.filled = bucket.window  # the window stays full: every call is a jump step
        engine._jump(clock[0])

    return median_ms(jump, device)


def rows_for(args, device: str) -> list[dict]:
    kernel = {"linear": "lincomb_forecast", "farcast": "lincomb_forecast", "wnn": "wnn_forecast"}
    rows = []
    for size in args.sizes:
        n = int(size) // args.tensors * args.tensors
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            params = make_params(n, args.tensors, device, dtype)
            sgd = sgd_step_ms(params, device)
            config = {"tensors": args.tensors, "window": args.window, "dtype": dtype_name, "momentum": 0.9}
            rows.append({"benchmark": "jump", "name": "sgd_step", "metric": "time", "unit": "ms",
                         "x_name": "params", "x_value": n, "value": sgd[0], "q20": sgd[1], "q80": sgd[2],
                         "config": dict(config, backend="torch-foreach")})
            for name in args.forecasters:
                backends = [b for b in wc.ops.available_backends(device, kernel.get(name, "lincomb_forecast"))
                            if not (device == "cpu" and b == "triton")]  # the interpreter is not a benchmark
                for backend in backends:
                    with wc.ops.use_backend(backend):
                        med, q20, q80 = jump_ms(name, params, device, args.window)
                    cfg = dict(config, backend=backend, forecaster=name)
                    rows.append({"benchmark": "jump", "name": name, "metric": "time", "unit": "ms",
                                 "x_name": "params", "x_value": n, "value": med, "q20": q20, "q80": q80,
                                 "config": cfg})
                    rows.append({"benchmark": "jump", "name": name, "metric": "jump_over_sgd_step", "unit": "x",
                                 "x_name": "params", "x_value": n, "value": med / sgd[0], "config": cfg})
                    print(f"{n:>10,d} {dtype_name:9s} {name:8s} {backend:9s} jump {med:9.3f} ms "
                          f"[{q20:.3f}, {q80:.3f}]  sgd {sgd[0]:8.3f} ms  = {med / sgd[0]:.2f} x SGD", flush=True)
            del params
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=positive_count, nargs="+", default=None, help="parameters in all (default 1e6 11e6 25e6)")
    parser.add_argument("--dtypes", nargs="+", default=None, help="parameter dtypes (default float32)")
    parser.add_argument("--tensors", type=positive_int, default=None, help="parameter tensors the size is split into (64)")
    parser.add_argument("--window", type=positive_int, default=5)
    parser.add_argument("--forecasters", nargs="+", default=None,
                        help="linear (default) and/or learned ones: farcast wnn; all go to one results file")
    parser.add_argument("--out", type=Path, default=None, help="write the results to this CSV (none by default)")
    parser.add_argument("--append", action="store_true", help="add the rows to an existing --out file")
    parser.add_argument("--models", nargs="+", default=None,
                        help="real models (lenet5 resnet18 gpt): bench_latent_jump.py (every forecaster's jump "
                             "against one training step, and history memory)")
    args = parser.parse_args(argv)
    if args.models:
        given = [f"--{k}" for k in DEFAULTS if getattr(args, k) is not None]
        if given:
            parser.error(f"--models runs bench_latent_jump.py, which does not take {' '.join(given)}")
        import bench_latent_jump

        extra = ["--out", str(args.out)] if args.out else []
        return bench_latent_jump.main(["--device", args.device, "--models", *args.models, *extra])
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    rows = rows_for(args, args.device)
    if args.out:
        write_results(args.out, rows, device=args.device, append=args.append)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
