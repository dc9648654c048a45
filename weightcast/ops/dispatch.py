"""Choice of the backend that runs a kernel: reference | cpp | cuda | triton.

Order of precedence: :func:`use_backend` (a context manager, used by tests), then the environment variable
``WEIGHTCAST_BACKEND``, then the automatic choice for the tensor's device:

* CUDA tensors: ``cuda`` (weightcast._C built with CUDA), else ``triton``, else ``reference``;
* CPU tensors: ``cpp`` (weightcast._C), else ``reference``;
* any other device: ``reference``.

A forced backend that cannot serve the tensor raises :class:`BackendUnavailableError` saying why and how to get it;
nothing falls back silently when a backend was asked for by name.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
from typing import Callable, Iterator

import torch

from .. import _extension
from . import reference

BACKENDS = ("reference", "cpp", "cuda", "triton")
_local = threading.local()


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run the kernel on this tensor."""


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Force backend ``name`` (or restore automatic choice with None) inside the ``with`` block."""
    if name is not None and name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    previous = getattr(_local, "forced", None)
    _local.forced = name
    try:
        yield
    finally:
        _local.forced = previous


def forced_backend() -> str | None:
    """The backend forced by :func:`use_backend` or ``WEIGHTCAST_BACKEND``; None when the choice is automatic."""
    name = getattr(_local, "forced", None) or os.environ.get("WEIGHTCAST_BACKEND") or None
    if name is not None and name not in BACKENDS:
        raise ValueError(f"WEIGHTCAST_BACKEND={name!r} is not a backend; choose one of {BACKENDS}")
    return name


def _triton_kernel(kernel: str) -> Callable:
    module = importlib.import_module(f"weightcast.kernels.{kernel}")
    return getattr(module, kernel)


def why_unavailable(backend: str, device: torch.device, kernel: str) -> str | None:
    """None when ``backend`` can run ``kernel`` on ``device``; otherwise the reason and the remedy."""
    if backend == "reference":
        return None
    if backend == "cpp":
        if device.type != "cpu":
            return f"the cpp backend runs CPU tensors only, got a {device.type} tensor; use 'cuda' or 'triton'"
        if not _extension.extension_loaded():
            return _extension.extension_status()
        return None if hasattr(torch.ops.weightcast_C, kernel) else f"weightcast._C has no kernel {kernel!r}; rebuild it"
    if backend == "cuda":
        if device.type != "cuda":
            return f"the cuda backend runs CUDA tensors only, got a {device.type} tensor"
        if not _extension.extension_has_cuda():
            return ("weightcast._C has no CUDA kernels: " + _extension.extension_status() +
                    "; a CUDA build needs a CUDA build of torch and nvcc (see csrc/BUILDING.md)")
        return None
    if backend == "triton":
        if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            return "triton runs CPU tensors only in its interpreter: set TRITON_INTERPRET=1 before importing weightcast"
        if device.type not in ("cpu", "cuda"):
            return f"triton kernels run on cuda (or cpu under TRITON_INTERPRET=1), got a {device.type} tensor"
        try:
            _triton_kernel(kernel)
        except Exception as exc:  # triton missing or broken: report it
            return f"cannot import the triton kernel {kernel!r} ({type(exc).__name__}: {exc}); `pip install triton`"
        return None
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


def _auto_order(device: torch.device) -> tuple[str, ...]:
    if device.type == "cuda":
        return ("cuda", "triton", "reference")
    if device.type == "cpu":
        return ("cpp", "reference")
    return ("reference",)


def select_backend(kernel: str, device: torch.device) -> str:
    """Name of the backend that runs ``kernel`` for tensors on ``device`` (see the module docstring)."""
    forced = forced_backend()
    if forced is not None:
        reason = why_unavailable(forced, device, kernel)
        if reason is not None:
            raise BackendUnavailableError(f"backend {forced!r} cannot run weightcast kernel {kernel!r}: {reason}")
        return forced
    for name in _auto_order(device):
        if why_unavailable(name, device, kernel) is None:
            return name
    return "reference"


def backend_impl(kernel: str, tensor: torch.Tensor) -> Callable:
    """The function implementing ``kernel`` for ``tensor``'s device on the selected backend."""
    backend = select_backend(kernel, tensor.device)
    if backend == "reference":
        return getattr(reference, kernel)
    if backend == "triton":
        return _triton_kernel(kernel)
    return getattr(torch.ops.weightcast_C, kernel)


def available_backends(device: torch.device | str, kernel: str = "lincomb_forecast") -> list[str]:
    """Backends that can run ``kernel`` on ``device`` here (used by tests to parametrise)."""
    device = torch.device(device)
    return [b for b in BACKENDS if why_unavailable(b, device, kernel) is None]


def kernel_for(kernel: str, tensor: torch.Tensor, dtypes: tuple[torch.dtype, ...],
               kernel_dtypes: tuple[torch.dtype, ...]) -> Callable:
    """Like :func:`backend_impl`, but dtypes the kernels do not cover (e.g. float64) go to the reference."""
    if all(d in kernel_dtypes for d in dtypes):
        return backend_impl(kernel, tensor)
    forced = forced_backend()
    if forced not in (None, "reference"):
        names = ", ".join(str(d) for d in kernel_dtypes)
        raise BackendUnavailableError(f"backend {forced!r} runs {kernel!r} on {names} only, got {dtypes}; "
                                      "use WEIGHTCAST_BACKEND=reference for other dtypes")
    return getattr(reference, kernel)
