#!/usr/bin/env python
"""Smoke test of an installed weightcast (run by tools/build_wheel.sh from outside the source tree).

Checks that the installed package (not a source checkout) is imported, that its version matches the wheel's
metadata and its build info, that the native extension loads when the build info says it was built, and that
the native kernels agree with the pure-PyTorch reference on a small problem. For a wheel built with CUDA kernels:
that they are registered, that the installed torch has the CUDA major they were built for, and, where no GPU is
visible, that import gave exactly one warning saying so and that a short ForecastSGD run takes the C++ kernels and
matches the reference kernels. Exits 1 on any failure.
"""
from __future__ import annotations

import importlib.metadata
import os
import sys
import warnings


def forecast_sgd_run(steps: int = 12) -> "torch.Tensor":
    """Parameters of a small linear model after ``steps`` ForecastSGD steps with a linear jump every 6 steps."""
    import torch

    import weightcast

    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(37, 11)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x, y = torch.randn(64, 37, generator=g), torch.randn(64, 11, generator=g)
    opt = weightcast.ForecastSGD(model.parameters(), lr=0.05, momentum=0.9, forecaster="linear", window=3,
                                 record_every=1, jump_every=6)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    assert opt.num_jumps > 0, "the run made no jump"
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def check_cuda_build(info: dict, import_warnings: list) -> int:
    """Checks of a wheel built with CUDA kernels; the number of failures."""
    import torch

    import weightcast
    from weightcast import _extension, ops

    failed = 0
    gpus = weightcast.build_info()["gpus_visible"]
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); GPUs visible: {gpus}; "
          f"built for CUDA {info.get('cuda_version')}, TORCH_CUDA_ARCH_LIST={info.get('cuda_arch_list')}")
    if not info.get("cuda_arch_list"):
        print("FAIL the build info lists no CUDA architectures")
        failed += 1
    if not _extension.extension_has_cuda():
        print("FAIL the wheel was built with CUDA kernels but weightcast._C registered none")
        failed += 1
    if (torch.version.cuda or "").split(".")[0] != str(info.get("cuda_version")).split(".")[0]:
        print(f"FAIL torch's CUDA {torch.version.cuda} is not the CUDA major {info.get('cuda_version')} the wheel "
              "was built for: install the torch build for that CUDA")
        failed += 1
    if gpus:
        return failed
    ours = [str(w.message) for w in import_warnings if "weightcast._C holds CUDA" in str(w.message)]
    print(f"no GPU visible; weightcast's import warnings: {ours}")
    if len(ours) != 1 or ours[0] != _extension.cuda_kernels_idle():
        print(f"FAIL expected exactly one 'no GPU' warning at import, got {len(ours)}")
        failed += 1
    cpu = torch.device("cpu")
    chosen = {kernel: ops.select_backend(kernel, cpu) for kernel in ("record", "lincomb_forecast")}
    print(f"backends chosen for CPU tensors: {chosen}")
    if set(chosen.values()) != {"cpp"}:
        print("FAIL with no GPU the CPU tensors should run on the C++ kernels")
        failed += 1
    native = forecast_sgd_run()
    with ops.use_backend("reference"):
        ref = forecast_sgd_run()
    if not torch.allclose(native, ref, rtol=1e-5, atol=1e-5):
        print(f"FAIL ForecastSGD on the C++ kernels differs from the reference kernels by "
              f"{(native - ref).abs().max().item():.3g}")
        failed += 1
    return failed


def main() -> int:
    with warnings.catch_warnings(record=True) as import_warnings:
        warnings.simplefilter("always")
        import torch

        import weightcast
        from weightcast import _build, _extension, ops
        from weightcast.ops import reference
    for w in import_warnings:
        print(f"import warning: {w.category.__name__}: {w.message}")

    where = os.path.dirname(os.path.abspath(weightcast.__file__))
    source = os.environ.get("WEIGHTCAST_SOURCE_TREE")
    if source and where.startswith(os.path.abspath(source)):
        print(f"FAIL imported weightcast from the source tree {where}, not from the installed wheel")
        return 1
    info = _build.read_build_info()
    meta_version = importlib.metadata.version("weightcast")
    print(f"weightcast {meta_version} from {where}")
    print(f"build info: {info}")
    print(f"extension: {_extension.extension_status()}")
    failed = 0
    if info.get("version") != meta_version:
        print(f"FAIL build info version {info.get('version')} != installed {meta_version}")
        failed += 1
    if "cpp" in info.get("backends", []) and not _extension.extension_loaded():
        print("FAIL the wheel was built with weightcast._C but it does not load")
        failed += 1
    if _extension.extension_loaded():
        g = torch.Generator().manual_seed(0)
        history = torch.randn(5, 10_007, generator=g)
        coeffs = torch.randn(5, generator=g)
        out, ref = torch.empty(10_007), torch.empty(10_007)
        torch.ops.weightcast_C.lincomb_forecast([out], history, [0], coeffs)
        reference.lincomb(ref, history, coeffs)
        if not torch.allclose(out, ref, rtol=1e-6, atol=1e-6):
            print("FAIL weightcast_C.lincomb_forecast disagrees with the reference")
            failed += 1
        dst = torch.empty(10_007, dtype=torch.bfloat16)
        absmax = torch.ops.weightcast_C.record([history[0]], dst.view(1, -1), 0, [0])
        if not (torch.equal(dst, history[0].bfloat16()) and float(absmax) == float(dst.float().abs().max())):
            print("FAIL weightcast_C.record disagrees with the reference")
            failed += 1
        print(f"backends for cpu: {ops.available_backends('cpu')}")
        if torch.cuda.is_available():
            print(f"backends for cuda: {ops.available_backends('cuda')}")
    if "cuda" in info.get("backends", []):
        failed += check_cuda_build(info, import_warnings)
    try:
        import weightcast.kernels  # noqa: F401  (the Triton folder, shipped as weightcast.kernels)
    except ImportError as exc:
        print(f"note: weightcast.kernels not importable here ({exc})")
    print("smoke test " + ("passed" if not failed else f"FAILED ({failed})"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
