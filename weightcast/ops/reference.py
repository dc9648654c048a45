"""Pure-PyTorch reference kernels: the oracle every backend is tested against, and the fallback on any device.

Both kernels are multi-tensor: they work on the parameters as they are (a list of tensors) and on a history
``(W, M)`` in which parameter i owns the columns ``offsets[i] : offsets[i] + numel_i`` of every row (its
segment); the tensors are read and written in their own memory order (contiguous, row-major).

* ``record(params, history, slot, offsets)``: ``history[slot, segment_i] = params[i]`` converted to
  ``history.dtype`` (round to nearest even, as ``copy_``); returns ``max |float32(history[slot, segments])|`` as a
  float32 0-dim tensor (NaN if any element is NaN, +inf if any is infinite and none is NaN, 0 when empty).
* ``lincomb_forecast(params, history, offsets, coeffs)``, in difference form: with ``h_k =
  float32(history[k, segment_i])``, ``params[i] = coeffs[0] * h_0 + sum_{k>=1} coeffs[k] * (h_k - h_0)``,
  accumulated in float32 in slot order, then converted to the parameter's dtype (:func:`lincomb` on one buffer).
  ``coeffs`` ``(W,)`` float32. A plain combination ``sum_k p_k h_k`` is ``coeffs = (sum_k p_k, p_1, ..., p_{W-1})``
  (:func:`difference_form`). Why: a forecaster whose weights sum to 1 (every extrapolation) then has
  ``coeffs[0] == 1.0`` exactly, so a trajectory that does not move (a frozen parameter) is forecast to itself
  bit for bit, and the rounding error scales with the moves ``h_k - h_0`` instead of the values.
"""
from __future__ import annotations

import torch


def record(params: list[torch.Tensor], history: torch.Tensor, slot: int, offsets: list[int]) -> torch.Tensor:
    """Copy every parameter into its segment of ``history[slot]``; return the float32 absmax of those segments."""
    row = history[slot]
    absmax = torch.zeros((), dtype=torch.float32, device=history.device)
    for p, offset in zip(params, offsets):
        segment = row[offset:offset + p.numel()]
        segment.copy_(p.reshape(-1))
        if p.numel():
            absmax = torch.maximum(absmax, segment.float().abs().amax())  # maximum and amax propagate NaN
    return absmax


def difference_form(weights: torch.Tensor) -> torch.Tensor:
    """Plain weights ``p`` (W,) of ``sum_k p_k h_k`` -> the ``coeffs`` of :func:`lincomb`, in float64."""
    coeffs = weights.to(torch.float64).clone()
    coeffs[0] = weights.to(torch.float64).sum()
    return coeffs


def lincomb(out: torch.Tensor, history: torch.Tensor, coeffs: torch.Tensor) -> None:
    """Write ``coeffs[0] * h_0 + sum_{k>=1} coeffs[k] * (h_k - h_0)`` into ``out`` (N,) from the rows of
    ``history`` (W, N) (rows may be strided), in float32 (float64 for a float64 history or output, which only this
    reference serves)."""
    wide = torch.promote_types(torch.promote_types(history.dtype, out.dtype), torch.float32)
    base = history[0].to(wide)
    acc = base * coeffs[0].to(wide)
    for k in range(1, history.shape[0]):
        acc.add_((history[k].to(wide) - base) * coeffs[k].to(wide))
    out.copy_(acc)


def lincomb_forecast(params: list[torch.Tensor], history: torch.Tensor, offsets: list[int],
                     coeffs: torch.Tensor) -> None:
    """Overwrite every parameter with the difference-form combination of its history segment (module docstring)."""
    for p, offset in zip(params, offsets):
        flat = p.view(-1)
        lincomb(flat, history[:, offset:offset + p.numel()], coeffs)


from .latent_reference import decode_overwrite, tokenize_encode  # noqa: E402,F401  (the latent forecaster's ops)
