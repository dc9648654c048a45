"""``weightcast::lincomb_forecast``: overwrite the parameters with a linear combination of history slots.

Multi-tensor: ``params`` is a list of the user's tensors, parameter i reads the columns ``offsets[i] : offsets[i]
+ numel_i`` of every history row (see :func:`weightcast.ops.record`) and gets ``sum_k coeffs[k] * history[k,
segment_i]`` (float32 accumulation), the jump of every forecaster that is linear in the history (the
least-squares line, farcast). The kernels evaluate it in difference form, ``d_0 h_0 + sum_{k>=1} d_k (h_k -
h_0)`` with ``d_0 = sum_k coeffs[k]`` (computed in float64) and ``d_k = coeffs[k]``: weights that sum to 1 then
leave a parameter that never moved bit for bit unchanged. A non-finite forecast is never written: the op returns
False and every parameter is untouched (all or nothing over the list).

How that is guaranteed without a second pass over the history in the common case: ``record`` returns each slot's
``a_k = max |history[k]|``, so every partial sum of the kernel is at most
``bound = |d_0| a_0 + sum_{k>=1} |d_k| (a_k + a_0)``. When the bound is finite and at most half the largest value
of the parameters' dtype (a margin far above float32 rounding), the result is finite and the kernel writes the
parameters directly (history read once, parameters written once). Otherwise the forecast goes to scratch
buffers, is checked, and is copied only if every value is finite. Non-contiguous parameters are written
through a contiguous staging copy of those tensors only.
"""
from __future__ import annotations

from typing import Optional

import torch

from .dispatch import kernel_for
from .limits import LINCOMB_MAX_WINDOW
from .record import KERNEL_DTYPES, check_segments, dtypes_of
from .reference import difference_form

MAX_WINDOW = LINCOMB_MAX_WINDOW  # also the largest forecast window (ops.lincomb_forecast_max_window)


def forecast_is_provably_finite(dtype: torch.dtype, coeffs: torch.Tensor, slot_absmax: Optional[torch.Tensor]) -> bool:
    """True when the bound of the module docstring is finite and <= half the max of ``dtype`` (the parameters')."""
    if slot_absmax is None:
        return False
    d = difference_form(coeffs.detach().cpu()).abs()
    a = slot_absmax.detach().to("cpu", torch.float64)
    bound = d[0] * a[0] + (d[1:] * (a[1:] + a[0])).sum()
    return bool(torch.isfinite(bound)) and float(bound) <= 0.5 * torch.finfo(dtype).max


def _check(params: list[torch.Tensor], history: torch.Tensor, offsets: list[int], coeffs: torch.Tensor,
           slot_absmax: Optional[torch.Tensor]) -> None:
    check_segments("lincomb_forecast", params, history, offsets)
    window = history.shape[0]
    if not 1 <= window <= MAX_WINDOW:
        raise ValueError(f"history holds {window} slots; lincomb_forecast supports 1..{MAX_WINDOW}")
    if coeffs.shape != (window,) or coeffs.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"coeffs must be float32 or float64 of shape ({window},), got {coeffs.dtype} "
                         f"{tuple(coeffs.shape)}")
    if slot_absmax is not None and slot_absmax.shape != (window,):
        raise ValueError(f"slot_absmax must have shape ({window},), got {tuple(slot_absmax.shape)}")


def narrowest(params: list[torch.Tensor]) -> torch.dtype:
    """The parameter dtype with the smallest range (the one a forecast overflows first)."""
    return min((p.dtype for p in params), key=lambda d: torch.finfo(d).max, default=torch.float32)


@torch.library.custom_op("weightcast::lincomb_forecast", mutates_args=("params",))
def lincomb_forecast(params: list[torch.Tensor], history: torch.Tensor, offsets: list[int], coeffs: torch.Tensor,
                     slot_absmax: Optional[torch.Tensor]) -> torch.Tensor:
    """Overwrite every ``params[i]`` with ``sum_k coeffs[k] * history[k, segment_i]`` unless a value of any of them
    would be non-finite.

    history: (W, M), 1 <= W <= 32; offsets: one per parameter (its segment's start in a row); coeffs: (W,)
    float64 (or float32) on any device, float64 keeps an exact sum of 1 for extrapolations (see the module
    docstring); slot_absmax: (W,) float32 from :func:`weightcast.ops.record`, or None (then the forecast is always
    checked through scratch buffers). Returns a CPU bool 0-dim tensor: True when the parameters were written.
    """
    _check(params, history, offsets, coeffs, slot_absmax)
    if not params:
        return torch.tensor(True)
    return torch.tensor(lincomb_forecast_trusted(list(params), history, list(offsets), coeffs, slot_absmax,
                                                 narrowest(params), all(p.is_contiguous() for p in params)))


def lincomb_forecast_trusted(params: list[torch.Tensor], history: torch.Tensor, offsets: list[int],
                             coeffs: torch.Tensor, slot_absmax: Optional[torch.Tensor], dtype: torch.dtype,
                             contiguous: bool) -> bool:
    """:func:`lincomb_forecast` without its Python checks and the custom-op dispatch, for a caller that keeps the
    layout valid itself (the optimizer's buckets: parameters of ``dtype``, all contiguous when ``contiguous``);
    the kernels still check their inputs. Returns True when the parameters were written."""
    impl = kernel_for("lincomb_forecast", history, (dtype, history.dtype), KERNEL_DTYPES)
    wide = torch.float64 if torch.float64 in (dtype, history.dtype) else torch.float32
    kernel_coeffs = difference_form(coeffs.detach().cpu()).to(device=history.device, dtype=wide)
    if forecast_is_provably_finite(dtype, coeffs, slot_absmax):
        if contiguous:
            impl(params, history, offsets, kernel_coeffs)
            return True
        staged = [i for i, p in enumerate(params) if not p.is_contiguous()]
        outs = list(params)
        for i in staged:
            outs[i] = torch.empty(params[i].shape, dtype=params[i].dtype, device=params[i].device)
        impl(outs, history, offsets, kernel_coeffs)
        torch._foreach_copy_([params[i] for i in staged], [outs[i] for i in staged])
        return True
    scratch = [torch.empty(p.shape, dtype=p.dtype, device=p.device) for p in params]
    impl(scratch, history, offsets, kernel_coeffs)
    if not bool(torch.stack([torch.isfinite(s).all() for s in scratch]).all()):
        return False
    torch._foreach_copy_(params, scratch)
    return True


@lincomb_forecast.register_fake
def _lincomb_forecast_fake(params, history, offsets, coeffs, slot_absmax):
    return torch.empty((), dtype=torch.bool, device="cpu")
