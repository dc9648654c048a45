"""How weightcast was built, and loading of its native extension ``weightcast._C``.

setup.py writes the build facts into ``weightcast/_build_info.json`` (shipped in the package). :func:`load_native`
imports ``weightcast._C`` once, refusing a ``_C`` compiled against another torch major.minor (its C++ ABI would not
match: an import error at best, a crash at worst); :func:`build_info` reports the build facts with what happened at
run time. Import of weightcast never fails because ``_C`` is missing or unusable: the reference (or Triton) kernels
serve instead.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import warnings

import torch

BUILD_INFO_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_build_info.json")
REBUILD = "pip install --no-build-isolation --force-reinstall --no-deps ."
_native: dict = {}  # filled once by load_native(): loaded, error, torch_mismatch


def read_build_info() -> dict:
    """The build facts written by setup.py; {} when weightcast was not built (e.g. run from a bare checkout)."""
    try:
        with open(BUILD_INFO_FILE, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def _major_minor(version: str) -> tuple[int, ...] | None:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def torch_mismatch(built_against: str | None, now: str = torch.__version__) -> str | None:
    """The warning text when ``_C`` was compiled against a torch of another major.minor than ``now``; else None."""
    if not built_against or _major_minor(built_against) == _major_minor(now):
        return None
    return (f"weightcast._C was compiled against torch {built_against} but torch {now} is installed; its C++ ABI "
            "does not match, so the native (C++/CUDA) kernels are disabled and the reference/Triton kernels run "
            f"instead. Rebuild weightcast against this torch: `{REBUILD}` from its source tree, or install the "
            f"weightcast wheel built for torch {'.'.join(map(str, _major_minor(now) or ()))}.")


def load_native() -> bool:
    """Import ``weightcast._C`` (registering ``torch.ops.weightcast_C``) unless it is missing or built against
    another torch; True when loaded. Runs once; warns when a ``_C`` exists but cannot be used."""
    if _native:
        return _native["loaded"]
    _native.update(loaded=False, error=None, torch_mismatch=None)
    if importlib.util.find_spec("weightcast._C") is None:
        _native["error"] = f"weightcast._C is not built; build it with `{REBUILD}` (or `-e .`) from the source tree"
        return False
    mismatch = torch_mismatch(read_build_info().get("torch_built_against"))
    if mismatch is not None:
        _native.update(error=mismatch, torch_mismatch=mismatch)
        warnings.warn(mismatch, RuntimeWarning, stacklevel=2)
        return False
    try:
        importlib.import_module("weightcast._C")
    except Exception as exc:  # a broken or foreign binary: fall back, and say so
        _native["error"] = (f"weightcast._C failed to load ({type(exc).__name__}: {exc}); the reference/Triton "
                            f"kernels run instead. Rebuild it with `{REBUILD}` from the source tree.")
        warnings.warn(_native["error"], RuntimeWarning, stacklevel=2)
        return False
    _native["loaded"] = True
    return True


def build_info() -> dict:
    """Build facts and run-time state, e.g.::

        {"version": "0.1.0+cpu", "local_version": "cpu", "backends": ["cpp"], "cuda_version": None,
         "cuda_arch_list": None, "torch_built_against": "2.13.0+cpu", "py_limited_api": "cp310",
         "torch_version": "2.13.0+cpu", "native_loaded": True, "native_error": None, "torch_mismatch": None,
         "gpus_visible": 0}

    ``backends`` lists what ``weightcast._C`` was compiled with ("cpp", "cuda"); ``native_loaded`` whether it is in
    use now, else ``native_error`` says why and how to fix it; ``gpus_visible`` the CUDA GPUs torch sees (with
    none, CUDA kernels in ``_C`` stay idle and the C++/reference kernels run).
    """
    info = read_build_info()
    load_native()
    info.update(torch_version=torch.__version__, native_loaded=_native["loaded"], native_error=_native["error"],
                torch_mismatch=_native["torch_mismatch"], gpus_visible=torch.cuda.device_count())
    return info
