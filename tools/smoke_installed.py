#!/usr/bin/env python
"""Smoke test of an installed weightcast (run by tools/build_wheel.sh from outside the source tree).

Checks that the installed package (not a source checkout) is imported, that its version matches the wheel's
metadata and its build info, that the native extension loads when the build info says it was built, and that
the native kernels agree with the pure-PyTorch reference on a small problem. Exits 1 on any failure.
"""
from __future__ import annotations

import importlib.metadata
import os
import sys


def main() -> int:
    import torch

    import weightcast
    from weightcast import _build, _extension, ops
    from weightcast.ops import reference

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
    try:
        import weightcast.kernels  # noqa: F401  (the Triton folder, shipped as weightcast.kernels)
    except ImportError as exc:
        print(f"note: weightcast.kernels not importable here ({exc})")
    print("smoke test " + ("passed" if not failed else f"FAILED ({failed})"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
