"""``weightcast::lincomb_forecast``: overwrite the parameters with a linear combination of history slots.

``params <- sum_k coeffs[k] * history[k]`` (float32 accumulation), the jump of every forecaster that is linear in
the history (the least-squares line, farcast). The kernels evaluate it in difference form,
``d_0 h_0 + sum_{k>=1} d_k (h_k - h_0)`` with ``d_0 = sum_k coeffs[k]`` (computed in float64) and ``d_k =
coeffs[k]``: weights that sum to 1 then leave a parameter that never moved bit for bit unchanged. A non-finite
forecast is never written: the op returns False and the parameters are untouched.

How that is guaranteed without a second pass over the history in the common case: ``record`` returns each slot's
``a_k = max |history[k]|``, so every partial sum of the kernel is at most
``bound = |d_0| a_0 + sum_{k>=1} |d_k| (a_k + a_0)``. When the bound is finite and at most half the largest value
of the parameter dtype (a margin far above float32 rounding), the result is finite and the kernel writes the
parameters directly (history read once, parameters written once). Otherwise the forecast goes to a scratch
buffer, is checked, and is copied only if every value is finite.
"""
from __future__ import annotations

from typing import Optional

import torch

from .dispatch import kernel_for
from .record import KERNEL_DTYPES, check_flat
from .reference import difference_form

MAX_WINDOW = 32  # also the largest forecast window (ops.lincomb_forecast_max_window)


def forecast_is_provably_finite(params: torch.Tensor, coeffs: torch.Tensor,
                                slot_absmax: Optional[torch.Tensor]) -> bool:
    """True when the bound of the module docstring is finite and <= half the max of ``params.dtype``."""
    if slot_absmax is None:
        return False
    d = difference_form(coeffs.detach().cpu()).abs()
    a = slot_absmax.detach().to("cpu", torch.float64)
    bound = d[0] * a[0] + (d[1:] * (a[1:] + a[0])).sum()
    return bool(torch.isfinite(bound)) and float(bound) <= 0.5 * torch.finfo(params.dtype).max


def _check(params: torch.Tensor, history: torch.Tensor, coeffs: torch.Tensor,
           slot_absmax: Optional[torch.Tensor]) -> None:
    check_flat("params", params, 1)
    check_flat("history", history, 2)
    window = history.shape[0]
    if not 1 <= window <= MAX_WINDOW:
        raise ValueError(f"history holds {window} slots; lincomb_forecast supports 1..{MAX_WINDOW}")
    if history.shape[1] != params.shape[0] or history.device != params.device:
        raise ValueError(f"history {tuple(history.shape)} on {history.device} does not hold params "
                         f"{tuple(params.shape)} on {params.device}")
    if coeffs.shape != (window,) or coeffs.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"coeffs must be float32 or float64 of shape ({window},), got {coeffs.dtype} "
                         f"{tuple(coeffs.shape)}")
    if slot_absmax is not None and slot_absmax.shape != (window,):
        raise ValueError(f"slot_absmax must have shape ({window},), got {tuple(slot_absmax.shape)}")


@torch.library.custom_op("weightcast::lincomb_forecast", mutates_args=("params",))
def lincomb_forecast(params: torch.Tensor, history: torch.Tensor, coeffs: torch.Tensor,
                     slot_absmax: Optional[torch.Tensor]) -> torch.Tensor:
    """Overwrite ``params`` (N,) with ``sum_k coeffs[k] * history[k]`` unless a value would be non-finite.

    history: (W, N), 1 <= W <= 32; coeffs: (W,) float64 (or float32) on any device, float64 keeps an exact
    sum of 1 for extrapolations (see the module docstring); slot_absmax: (W,) float32 from
    :func:`weightcast.ops.record`, or None (then the forecast is always checked through a scratch buffer).
    Returns a CPU bool 0-dim tensor: True when the parameters were written.
    """
    _check(params, history, coeffs, slot_absmax)
    impl = kernel_for("lincomb", params, (params.dtype, history.dtype), KERNEL_DTYPES)
    wide = torch.float64 if torch.float64 in (params.dtype, history.dtype) else torch.float32
    kernel_coeffs = difference_form(coeffs.detach().cpu()).to(device=params.device, dtype=wide)
    if forecast_is_provably_finite(params, coeffs, slot_absmax):
        impl(params, history, kernel_coeffs)
        return torch.tensor(True)
    scratch = torch.empty_like(params)
    impl(scratch, history, kernel_coeffs)
    if not bool(torch.isfinite(scratch).all()):
        return torch.tensor(False)
    params.copy_(scratch)
    return torch.tensor(True)


@lincomb_forecast.register_fake
def _lincomb_forecast_fake(params, history, coeffs, slot_absmax):
    return torch.empty((), dtype=torch.bool, device="cpu")
