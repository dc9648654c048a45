"""Pure-PyTorch reference kernels: the oracle every backend is tested against, and the fallback on any device.

Both kernels work on flat buffers:

* ``record(src, dst)``: ``dst[i] = src[i]`` converted to ``dst.dtype`` (round to nearest even, as ``copy_``);
  returns ``max_i |float32(dst[i])|`` as a float32 0-dim tensor (NaN if any element is NaN, +inf if any is
  infinite and none is NaN, 0 for an empty buffer).
* ``lincomb(out, history, coeffs)``, in difference form: with ``h_k = float32(history[k, i])``,
  ``out[i] = coeffs[0] * h_0 + sum_{k>=1} coeffs[k] * (h_k - h_0)``, accumulated in float32 in slot order,
  then converted to ``out.dtype``. ``history`` is ``(W, N)``, ``coeffs`` ``(W,)`` float32, ``out`` ``(N,)``.
  A plain combination ``sum_k p_k h_k`` is ``coeffs = (sum_k p_k, p_1, ..., p_{W-1})``
  (:func:`difference_form`). Why: a forecaster whose weights sum to 1 (every extrapolation) then has
  ``coeffs[0] == 1.0`` exactly, so a trajectory that does not move (a frozen parameter) is forecast to itself
  bit for bit, and the rounding error scales with the moves ``h_k - h_0`` instead of the values.
"""
from __future__ import annotations

import torch


def record(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Copy ``src`` (N,) into ``dst`` (N,) with dtype conversion; return the float32 absmax of ``dst``."""
    dst.copy_(src)
    if dst.numel() == 0:
        return torch.zeros((), dtype=torch.float32, device=dst.device)
    return dst.float().abs().amax()  # amax propagates NaN


def difference_form(weights: torch.Tensor) -> torch.Tensor:
    """Plain weights ``p`` (W,) of ``sum_k p_k h_k`` -> the ``coeffs`` of :func:`lincomb`, in float64."""
    coeffs = weights.to(torch.float64).clone()
    coeffs[0] = weights.to(torch.float64).sum()
    return coeffs


def lincomb(out: torch.Tensor, history: torch.Tensor, coeffs: torch.Tensor) -> None:
    """Write ``coeffs[0] * h_0 + sum_{k>=1} coeffs[k] * (h_k - h_0)`` into ``out`` (N,), in float32 (float64 for a
    float64 history, which only this reference serves)."""
    base = history[0].to(torch.promote_types(history.dtype, torch.float32))
    acc = base * coeffs[0]
    for k in range(1, history.shape[0]):
        acc.add_((history[k].to(base.dtype) - base) * coeffs[k])
    out.copy_(acc)


from .latent_reference import decode_overwrite, tokenize_encode  # noqa: E402,F401  (the latent forecaster's ops)
