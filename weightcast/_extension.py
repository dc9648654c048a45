"""What the backend dispatch needs to know about the compiled extension ``weightcast._C``.

Loading itself (and refusing a ``_C`` built against another torch) is :func:`weightcast._build.load_native`.
Import of weightcast never fails because ``_C`` is missing or broken: the reference backend serves instead, and
:func:`extension_status` says why the extension was not loaded. A ``_C`` with CUDA kernels on a machine where no GPU
is visible loads as usual; every op then runs on its C++ (CPU) or reference kernel, and one warning says so.
"""
from __future__ import annotations

import warnings

import torch

from ._build import _native, load_native, read_build_info

_state: dict = {"loaded": False, "error": None, "has_cuda": False, "no_gpu": None}


def no_gpu_message(info: dict) -> str:
    """The one message for a ``_C`` built with CUDA kernels (build facts ``info``) when no CUDA GPU is visible."""
    archs = info.get("cuda_arch_list") or "unknown architectures"
    return (f"weightcast._C holds CUDA {info.get('cuda_version')} kernels (TORCH_CUDA_ARCH_LIST={archs}), but no "
            "CUDA GPU is visible (torch.cuda.device_count() == 0): every weightcast op runs on its C++ (CPU) kernel, "
            "or on its reference kernel where there is none. If a GPU was expected, check the NVIDIA driver "
            "(nvidia-smi) and CUDA_VISIBLE_DEVICES.")


def _load() -> None:
    if not load_native():
        _state["error"] = _native["error"]
        return
    _state["loaded"] = hasattr(torch.ops.weightcast_C, "record")
    if not _state["loaded"]:
        _state["error"] = "weightcast._C imported but registered no ops (stale build?)"
        return
    _state["has_cuda"] = torch._C._dispatch_has_kernel_for_dispatch_key("weightcast_C::lincomb_forecast", "CUDA")
    _note_idle_cuda_kernels()


def _note_idle_cuda_kernels() -> None:
    """With CUDA kernels in ``_C`` but no GPU visible, warn once that every op runs on its C++/reference kernel."""
    if _state["has_cuda"] and torch.cuda.device_count() == 0:  # device_count asks NVML first: no CUDA context
        _state["no_gpu"] = no_gpu_message(read_build_info())
        warnings.warn(_state["no_gpu"], RuntimeWarning, stacklevel=3)


_load()


def extension_loaded() -> bool:
    """True when ``weightcast._C`` imported and registered its ops."""
    return _state["loaded"]


def extension_has_cuda() -> bool:
    """True when the loaded ``weightcast._C`` was built with the CUDA kernels."""
    return _state["has_cuda"]


def cuda_kernels_idle() -> str | None:
    """The message saying why ``_C``'s CUDA kernels cannot run (no GPU visible); None when they can or do not exist."""
    return _state["no_gpu"]


def extension_status() -> str:
    """One line: whether ``_C`` loaded, and if not, why and how to build it; with CUDA kernels but no GPU, that too."""
    if _state["loaded"]:
        status = "weightcast._C loaded (cpp" + (", cuda)" if _state["has_cuda"] else ")")
        return status + (f"; {_state['no_gpu']}" if _state["no_gpu"] else "")
    return f"weightcast._C not loaded: {_state['error']}"
