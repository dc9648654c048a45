"""What the backend dispatch needs to know about the compiled extension ``weightcast._C``.

Loading itself (and refusing a ``_C`` built against another torch) is :func:`weightcast._build.load_native`.
Import of weightcast never fails because ``_C`` is missing or broken: the reference backend serves instead, and
:func:`extension_status` says why the extension was not loaded.
"""
from __future__ import annotations

import torch

from ._build import _native, load_native

_state: dict = {"loaded": False, "error": None, "has_cuda": False}


def _load() -> None:
    if not load_native():
        _state["error"] = _native["error"]
        return
    _state["loaded"] = hasattr(torch.ops.weightcast_C, "record")
    if not _state["loaded"]:
        _state["error"] = "weightcast._C imported but registered no ops (stale build?)"
        return
    _state["has_cuda"] = torch._C._dispatch_has_kernel_for_dispatch_key("weightcast_C::lincomb_forecast", "CUDA")


_load()


def extension_loaded() -> bool:
    """True when ``weightcast._C`` imported and registered its ops."""
    return _state["loaded"]


def extension_has_cuda() -> bool:
    """True when the loaded ``weightcast._C`` was built with the CUDA kernels."""
    return _state["has_cuda"]


def extension_status() -> str:
    """One line: whether ``_C`` loaded, and if not, why and how to build it."""
    if _state["loaded"]:
        return "weightcast._C loaded (cpp" + (", cuda)" if _state["has_cuda"] else ")")
    return f"weightcast._C not loaded: {_state['error']}"
