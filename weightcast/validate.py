"""Validation suite for one device: are the kernels right and fast here?

    python -m weightcast.validate --device cuda [--out report.json] [--sizes 1e6 11e6] [--skip-study] [--quick]

Runs from an installed wheel (no source tree needed):

1. environment: device name, driver, CUDA, torch, triton, weightcast build info;
2. correctness: ``record`` and ``lincomb_forecast`` on every backend available for the device and every dtype
   pair it supports, on fresh random inputs of odd sizes, against a float64 evaluation (``record`` must be
   exact; ``lincomb_forecast`` within float32 accumulation error plus one ulp of the output dtype);
3. speed: one jump (record + linear forecast, window 5) per backend against one ``torch.optim.SGD(momentum=0.9)``
   step on the same parameters, and the lincomb pass's bandwidth against a plain device copy;
4. a short time-to-accuracy run (digits MLP, SGD against ForecastSGD) that must train and jump.

Writes one JSON report and exits non-zero when a correctness check or the short run fails. ``--quick`` (14 s on
a loaded 2-core CPU) checks correctness on the small sizes only, times one jump at 100,000 parameters (unless
``--sizes`` is given) and skips the short run.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
from pathlib import Path

import torch

from . import build_info, ops
from .cli_common import DocstringHelpFormatter, positive_count
from .forecasters import least_squares_line_coefficients
from .timing import median_ms

QUICK_SIZES = (1e5,)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
SIZES = (1, 7, 1023, 278011)
INTERPRETED = ("triton",)  # on CPU, Triton runs in its interpreter: no bf16 there, small sizes only


def environment(device: str) -> dict:
    """Names and versions of everything a result depends on."""
    env = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
           "python": platform.python_version(), "weightcast": build_info()}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if device.startswith("cuda"):
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"]
            env["driver"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    else:
        env["device_name"] = platform.processor() or "cpu"
    return env


def _dtypes_for(backend: str, device: str) -> tuple[torch.dtype, ...]:
    if backend in INTERPRETED and device == "cpu":
        return (torch.float32, torch.float16)
    return DTYPES


def check_backend(backend: str, device: str, sizes: tuple[int, ...] = SIZES, seed: int = 0) -> list[dict]:
    """Correctness cases of one backend; each row says what was compared and whether it passed."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    if backend in INTERPRETED and device == "cpu":
        sizes = tuple(n for n in sizes if n < 10_000)
    dtypes = _dtypes_for(backend, device)
    for n in sizes:
        for pdtype in dtypes:
            for hdtype in dtypes:
                params = (torch.randn(n, generator=g) * 3).to(device, pdtype)
                history = torch.zeros(5, n, dtype=hdtype, device=device)
                with ops.use_backend(backend):
                    absmax = [ops.record([params + k * 0.01], history, k, [0]) for k in range(5)]
                stored = torch.stack([(params + k * 0.01).to(hdtype) for k in range(5)])
                rec_ok = torch.equal(history, stored) and all(
                    float(a) == float(stored[k].float().abs().max()) for k, a in enumerate(absmax))
                coeffs = least_squares_line_coefficients([1, 2, 3, 4, 5], 9)
                out = torch.empty(n, dtype=pdtype, device=device)
                with ops.use_backend(backend):
                    written = bool(ops.lincomb_forecast([out], history, [0], coeffs, torch.stack(absmax)))
                exact = (coeffs.to(device)[:, None] * history.double()).sum(0)
                scale = (coeffs.abs().to(device)[:, None] * history.double().abs()).sum(0)
                tol = 2 * 5 * torch.finfo(torch.float32).eps * scale + torch.finfo(pdtype).eps * exact.abs() + 1e-30
                err = (out.double() - exact).abs()
                lin_ok = written and bool((err <= tol).all())
                rows.append({"backend": backend, "n": n, "params": str(pdtype)[6:], "history": str(hdtype)[6:],
                             "record_exact": rec_ok, "lincomb_within_tolerance": lin_ok,
                             "lincomb_max_err_over_tol": float((err / tol).max()) if n else 0.0})
    return rows


def time_jump(backend: str, n: int, device: str, window: int = 5) -> dict:
    """One jump (record + lincomb_forecast) against one SGD(momentum=0.9) step, fp32, n parameters."""
    flat = torch.randn(n, device=device)
    history = torch.randn(window, n, device=device)
    absmax = history.abs().amax(dim=1)
    coeffs = least_squares_line_coefficients(list(range(1, window + 1)), 2 * window)
    p = torch.nn.Parameter(torch.randn(n, device=device))
    p.grad = torch.randn_like(p)
    sgd = torch.optim.SGD([p], lr=1e-3, momentum=0.9, foreach=True)
    sgd.step()
    src, dst = torch.randn(n, device=device), torch.empty(n, device=device)
    with ops.use_backend(backend):
        record_ms = median_ms(lambda: ops.record([flat], history, 0, [0]), device)[0]
        lincomb_ms = median_ms(lambda: ops.lincomb_forecast([flat], history, [0], coeffs, absmax), device)[0]
    sgd_ms = median_ms(sgd.step, device)[0]
    copy_ms = median_ms(lambda: dst.copy_(src), device)[0]
    lincomb_gbps = (window + 1) * n * 4 / (lincomb_ms * 1e-3) / 1e9
    copy_gbps = 2 * n * 4 / (copy_ms * 1e-3) / 1e9
    return {"backend": backend, "n": n, "sgd_step_ms": sgd_ms, "record_ms": record_ms, "lincomb_ms": lincomb_ms,
            "jump_over_sgd": (record_ms + lincomb_ms) / sgd_ms, "lincomb_GBps": lincomb_gbps,
            "copy_GBps": copy_gbps, "lincomb_fraction_of_copy": lincomb_gbps / copy_gbps}


def short_study(device: str) -> dict:
    """200 steps of the digits MLP with SGD and ForecastSGD("linear"): both must train, the latter jump."""
    from .study import STUDY_TASKS, train_run
    from . import data, models

    study = STUDY_TASKS["digits-mlp"]
    task = data.get_task(study.task, device=device)
    make = lambda: models.get(study.arch, **task.model_kwargs(), **study.model_kwargs).to(device)  # noqa: E731
    out = {}
    for method in ("sgd", "forecast-sgd:linear"):
        r = train_run(task, make, method, 0.03, 1, study.goal, 200, 50, study.batch_size, study.schedule)
        out[method] = {"final_acc": r.final, "jumps": len(r.jumps), "train_seconds": r.train_seconds}
    out["ok"] = out["sgd"]["final_acc"] > 0.8 and out["forecast-sgd:linear"]["jumps"] > 0 and \
        out["forecast-sgd:linear"]["final_acc"] > 0.5
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weightcast.validate", description=__doc__,
                                     formatter_class=DocstringHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device to validate")
    parser.add_argument("--out", type=Path, default=Path("weightcast-validate.json"), help="JSON report")
    parser.add_argument("--sizes", type=positive_count, nargs="+", default=None,
                        help="parameter counts of the timed jumps (1e6 style accepted); default 1e6 11e6, "
                             "or 1e5 with --quick")
    parser.add_argument("--skip-study", action="store_true", help="skip the short time-to-accuracy run")
    parser.add_argument("--quick", action="store_true",
                        help="correctness on small sizes only, one small timed size, no short run")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA build of torch and a visible GPU")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a directory; pass a file name for the JSON report")
    sizes = args.sizes or [int(s) for s in (QUICK_SIZES if args.quick else (1e6, 11e6))]
    skip_study = args.skip_study or args.quick
    backends = ops.available_backends(args.device)
    report = {"environment": environment(args.device), "backends": backends, "correctness": [], "speed": []}
    for backend in backends:
        report["correctness"] += check_backend(backend, args.device, SIZES[:3] if args.quick else SIZES)
    timed = [b for b in backends if not (b in INTERPRETED and args.device == "cpu")]
    for n in sizes:
        for backend in timed:
            row = time_jump(backend, n, args.device)
            report["speed"].append(row)
            print(f"{backend:9s} n={n:>10,d} jump {row['record_ms'] + row['lincomb_ms']:.3f} ms = "
                  f"{row['jump_over_sgd']:.2f} x SGD; lincomb {row['lincomb_GBps']:.0f} GB/s "
                  f"({100 * row['lincomb_fraction_of_copy']:.0f}% of copy)", flush=True)
    if not skip_study:
        report["study"] = short_study(args.device)
    failed = [r for r in report["correctness"] if not (r["record_exact"] and r["lincomb_within_tolerance"])]
    report["passed"] = not failed and report.get("study", {"ok": True})["ok"]
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"{len(report['correctness']) - len(failed)}/{len(report['correctness'])} correctness cases passed on "
          f"{report['environment']['device_name']} ({', '.join(backends)}); report: {args.out}")
    for row in failed[:10]:
        print("FAILED", row)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
