"""Build of weightcast and its native extension weightcast._C (see csrc/BUILDING.md).

weightcast._C always holds the C++ CPU ops (OpenMP), and the CUDA ops too when torch is a CUDA build and nvcc is
found. It uses only the Python stable ABI, so the wheel is tagged cp310-abi3 and serves every CPython >= 3.10.
Without _C the package still works: every op falls back to its pure-PyTorch reference (or Triton).

Install against the torch already in the environment (an isolated build would pull a CUDA torch of several GB):

    pip install --no-build-isolation -e .         # or without -e; or: pip wheel . --no-build-isolation --no-deps

Environment switches:
    WEIGHTCAST_SKIP_CUDA_BUILD=1   C++ CPU ops only, even with a CUDA torch and nvcc
    WEIGHTCAST_FORCE_CUDA=1        fail unless the CUDA ops are built
    WEIGHTCAST_SKIP_NATIVE_BUILD=1 no _C at all (pure-Python package)
    WEIGHTCAST_LOCAL_VERSION=TAG   local version label instead of the default "cpu" / "cuXYZ" ("" for none)
    WEIGHTCAST_DEBUG=1             -O0 -g instead of -O3
    TORCH_CUDA_ARCH_LIST           GPU architectures, e.g. "8.0;9.0+PTX"; default: the visible GPUs', or
                                   "8.0;9.0" (A100, H100) when none is visible
    MAX_JOBS                       parallel compile jobs (ninja)

Every build writes weightcast/_build_info.json (backends, CUDA version, architectures, torch built against),
which ships in the package and which weightcast.build_info() reports.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
BUILD_INFO = os.path.join(ROOT, "weightcast", "_build_info.json")
DEFAULT_CUDA_ARCH_LIST = "8.0;9.0"
PY_LIMITED_API = "cp310"  # torch's cpp_extension compiles with -DPy_LIMITED_API=0x030A0000


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _base_version() -> str:
    with open(os.path.join(ROOT, "weightcast", "_version.py"), encoding="utf-8") as f:
        return re.search(r'__version__\s*=\s*"([^"]+)"', f.read()).group(1)


def _local_version(cuda_version: str | None) -> str:
    """WEIGHTCAST_LOCAL_VERSION if set, else "cuXYZ" for a CUDA build (CUDA 13.0 -> cu130), else "cpu"."""
    local = os.environ.get("WEIGHTCAST_LOCAL_VERSION")
    if local is None:
        return "cu" + "".join(cuda_version.split(".")[:2]) if cuda_version else "cpu"
    local = local.strip()
    if local and not re.fullmatch(r"[A-Za-z0-9]+(\.[A-Za-z0-9]+)*", local):
        sys.exit(f"weightcast: WEIGHTCAST_LOCAL_VERSION={local!r} is not a valid local version label "
                 "(letters and digits, dot-separated), e.g. 'cu130'")
    return local


def _cuda_arch_list(torch) -> str:
    """TORCH_CUDA_ARCH_LIST if set, else the visible GPUs' architectures, else DEFAULT_CUDA_ARCH_LIST; exported so
    that torch's cpp_extension compiles for exactly the list recorded in the build info."""
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if not archs:
        visible = sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        archs = ";".join(visible) or DEFAULT_CUDA_ARCH_LIST
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    return archs


def _sources(*patterns: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for pattern in patterns for p in glob.glob(os.path.join(ROOT, pattern)))


def _native() -> tuple[list, dict, dict]:
    """The weightcast._C extension, the build_ext command and the build facts; ([], {}, facts) when skipped."""
    facts = {"backends": [], "cuda_version": None, "cuda_arch_list": None, "torch_built_against": None,
             "py_limited_api": None}
    if _flag("WEIGHTCAST_SKIP_NATIVE_BUILD"):
        print("weightcast: WEIGHTCAST_SKIP_NATIVE_BUILD is set; building no native extension")
        return [], {}, facts
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        sys.exit("weightcast: building weightcast._C needs torch in the build environment.\n"
                 "  Install torch first, then: pip install --no-build-isolation .\n"
                 "  (or set WEIGHTCAST_SKIP_NATIVE_BUILD=1 for a pure-Python install)")

    with_cuda = (torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
                 and not _flag("WEIGHTCAST_SKIP_CUDA_BUILD"))
    if _flag("WEIGHTCAST_FORCE_CUDA") and not with_cuda:
        sys.exit("weightcast: WEIGHTCAST_FORCE_CUDA=1 but the CUDA ops cannot be built: "
                 f"torch.version.cuda={torch.version.cuda!r} (needs a CUDA build of torch), "
                 f"CUDA_HOME={cpp_extension.CUDA_HOME!r} (needs nvcc), "
                 f"WEIGHTCAST_SKIP_CUDA_BUILD={os.environ.get('WEIGHTCAST_SKIP_CUDA_BUILD', '')!r}")

    if with_cuda and not os.path.isfile(os.path.join(cpp_extension.CUDA_HOME, "include", "cuda_runtime.h")):
        sys.exit(f"weightcast: CUDA_HOME={cpp_extension.CUDA_HOME!r} (torch takes it from $CUDA_HOME, else from the "
                 "nvcc on the PATH) has no include/cuda_runtime.h; set CUDA_HOME to the CUDA toolkit, e.g. "
                 "CUDA_HOME=/usr/local/cuda-13.0, or WEIGHTCAST_SKIP_CUDA_BUILD=1 for the C++ kernels only")

    opt = ["-O0", "-g"] if _flag("WEIGHTCAST_DEBUG") else ["-O3"]
    macros = [("WEIGHTCAST_TORCH_VERSION", f'"{torch.__version__}"')]
    no_debug = [] if _flag("WEIGHTCAST_DEBUG") else ["-g0"]  # Python's CFLAGS bring -g (a 6x larger _C)
    # -ffp-contract=off: the CPU kernels match the reference bit for bit only without fused multiply-add
    args = {"cxx": opt + no_debug + ["-fopenmp", "-ffp-contract=off", "-Wall", "-Wno-unknown-pragmas"]}
    sources = _sources("csrc/*.cpp", "csrc/cpu/*.cpp")
    facts.update(backends=["cpp"], torch_built_against=torch.__version__, py_limited_api=PY_LIMITED_API)
    kwargs = dict(define_macros=macros, extra_compile_args=args, extra_link_args=["-fopenmp"],
                  py_limited_api=True)
    if with_cuda:
        facts.update(backends=["cpp", "cuda"], cuda_version=torch.version.cuda, cuda_arch_list=_cuda_arch_list(torch))
        macros += [("WEIGHTCAST_WITH_CUDA", None), ("WEIGHTCAST_CUDA_VERSION", f'"{torch.version.cuda}"')]
        args["nvcc"] = opt + ["-lineinfo"]
        extension = cpp_extension.CUDAExtension(
            "weightcast._C", sources + _sources("csrc/cuda/*.cu", "csrc/cuda/*.cpp"), **kwargs)
        print(f"weightcast: building _C with C++ and CUDA {torch.version.cuda} ops for "
              f"TORCH_CUDA_ARCH_LIST={facts['cuda_arch_list']}")
    else:
        extension = cpp_extension.CppExtension("weightcast._C", sources, **kwargs)
        print("weightcast: building _C with C++ (CPU) ops only")
    cmdclass = {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}
    return [extension], cmdclass, facts


def _write_build_info(facts: dict, version: str, local: str) -> None:
    info = {"version": version, "local_version": local, **facts}
    with open(BUILD_INFO, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")


def _packages() -> tuple[list[str], dict[str, str]]:
    """weightcast.* from weightcast/, and the Triton folder kernels/ installed as weightcast.kernels (PyPI has an
    unrelated top-level package named `kernels`, so it is never shipped as one)."""
    packages = find_packages(include=["weightcast", "weightcast.*"]) + ["weightcast.kernels"]
    package_dir = {"weightcast.kernels": "kernels"}
    for sub in find_packages(where="kernels"):
        packages.append(f"weightcast.kernels.{sub}")
        package_dir[f"weightcast.kernels.{sub}"] = os.path.join("kernels", *sub.split("."))
    return packages, package_dir


ext_modules, cmdclass, facts = _native()
local = _local_version(facts["cuda_version"])
version = _base_version() + (f"+{local}" if local else "")
_write_build_info(facts, version, local)
packages, package_dir = _packages()

setup(
    version=version,
    packages=packages,
    package_dir=package_dir,
    package_data={"weightcast": ["_build_info.json", "**/*.safetensors", "**/*.json"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    options={"bdist_wheel": {"py_limited_api": PY_LIMITED_API}} if ext_modules else {},
)
