"""``weightcast::generate_write``: the weight generator's last layer, scaled, written into a layer's weight in place.

    out[k, j] = (out[k, j] if accumulate else 0) + scale * (sum_h hidden[k, h] * weight[j, h] + bias[j])

``out`` (K, T) float32 is a weight tensor viewed as one row of T values (a kernel, or a flattened channel's
positions) per (output, input) channel pair; ``hidden`` (K, H) the generator's last hidden layer at those pairs;
``weight`` (T, H), ``bias`` (T,) or None its output layer; ``scale`` the layer's weight scale. ``accumulate=True``
is the residual form (the change is added to the pretrained weights already in ``out``), False the full form.
One pass: nothing (K, T)-sized is materialised besides ``out``.

Backends (chosen as for the package's other ops, :mod:`weightcast.ops.dispatch`): the pure-PyTorch reference
below (the oracle; float64 runs here), C++ ``torch.ops.weightcast_C.generate_write`` (csrc/cpu/slim.cpp) and
Triton ``weightcast.kernels.slim.generate_write``.
"""
from __future__ import annotations

import importlib
from typing import Callable, Optional

import torch

from ..ops import dispatch

KERNEL = "generate_write"


def generate_write_reference(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor,
                             bias: Optional[torch.Tensor], scale: float, accumulate: bool) -> None:
    """The reference: float32 (or the tensors' dtype) ``addmm``, then the scaled write."""
    y = hidden @ weight.t()
    if bias is not None:
        y = y + bias
    y = y * scale
    if accumulate:
        out.add_(y)
    else:
        out.copy_(y)


def _triton_generate_write() -> Callable:
    return importlib.import_module("weightcast.kernels.slim").generate_write


def _why_not(backend: str, device: torch.device) -> str | None:
    if backend == "cuda":
        return "generate_write has no CUDA C++ kernel; the triton backend serves CUDA tensors"
    if backend == "triton":
        reason = dispatch.why_unavailable("triton", device, "record")  # the interpreter/device rules, shared
        if reason is None:
            try:
                _triton_generate_write()
            except Exception as exc:
                return f"cannot import weightcast.kernels.slim ({type(exc).__name__}: {exc}); `pip install triton`"
        return reason
    return dispatch.why_unavailable(backend, device, KERNEL)


def available_backends(device: torch.device | str) -> list[str]:
    """Backends that can run ``generate_write`` on ``device`` here."""
    device = torch.device(device)
    return [b for b in dispatch.BACKENDS if _why_not(b, device) is None]


def _impl(out: torch.Tensor) -> Callable:
    """The kernel for ``out``: the forced backend (error if it cannot serve), else cpp on CPU, triton on CUDA,
    else the reference; dtypes other than float32 run the reference."""
    forced = dispatch.forced_backend()
    if out.dtype != torch.float32:
        if forced not in (None, "reference"):
            raise dispatch.BackendUnavailableError(
                f"backend {forced!r} runs generate_write on float32 only, got {out.dtype}; use "
                "WEIGHTCAST_BACKEND=reference for other dtypes")
        return generate_write_reference
    if forced is not None:
        reason = _why_not(forced, out.device)
        if reason is not None:
            raise dispatch.BackendUnavailableError(f"backend {forced!r} cannot run generate_write: {reason}")
        name = forced
    else:
        name = next((b for b in ("cpp", "triton") if _why_not(b, out.device) is None), "reference")
    if name == "cpp":
        return torch.ops.weightcast_C.generate_write
    return _triton_generate_write() if name == "triton" else generate_write_reference


def _check(out, hidden, weight, bias) -> None:
    def bad(label, t, shape):
        return (tuple(t.shape) != shape or t.dtype != out.dtype or not t.is_contiguous()
                or t.device != out.device) and (label, t, shape)

    if out.dim() != 2 or not out.is_contiguous() or not out.is_floating_point():
        raise ValueError(f"generate_write: out must be a contiguous floating (K, T) tensor, got "
                         f"{tuple(out.shape)} {out.dtype} (contiguous={out.is_contiguous()}); view the weight "
                         "as (pairs, values per pair)")
    K, T = out.shape
    H = hidden.shape[-1] if hidden.dim() == 2 else -1
    for problem in (bad("hidden", hidden, (K, H)), bad("weight", weight, (T, H)),
                    bias is not None and bad("bias", bias, (T,))):
        if problem:
            label, t, shape = problem
            raise ValueError(f"generate_write: {label} must be a contiguous {shape} {out.dtype} tensor on "
                             f"{out.device}, got {tuple(t.shape)} {t.dtype} on {t.device}")


@torch.library.custom_op("weightcast::generate_write", mutates_args=("out",))
def generate_write(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                   scale: float, accumulate: bool) -> None:
    """In place on ``out`` (K, T): see the module docstring. Raises ValueError for mismatched shapes, dtypes,
    devices or non-contiguous tensors."""
    _check(out, hidden, weight, bias)
    _impl(out)(out, hidden, weight, bias, float(scale), bool(accumulate))


@generate_write.register_fake
def _generate_write_fake(out, hidden, weight, bias, scale, accumulate):
    return None
