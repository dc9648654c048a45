"""lincomb_forecast(params, history, offsets, coeffs): the element-wise forecast in one pass, in difference form.

Numerics: with ``h_k = float32(history[k, offsets[i] + j])``, ``params[i].flatten()[j] = convert(coeffs[0] * h_0 +
sum_{k=1}^{W-1} coeffs[k] * (h_k - h_0))``, accumulated in float32 in slot order (the compiler may fuse
multiply-add), converted to the parameter's dtype with round to nearest even (see weightcast/ops/reference.py for
why the difference form). One launch per parameter.
Non-finite results are written as they come; the public op one level up guards against writing them.

Memory traffic: each of the W history rows read once, out written once; coeffs (W floats) are loaded once per
program. W is a compile-time constant (one specialisation per window size), so the loop over slots is unrolled.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device, check_flat, config

from weightcast.ops.limits import LINCOMB_MAX_WINDOW as MAX_WINDOW  # noqa: E402  (csrc/limits.h)


@triton.jit
def _lincomb_kernel(out_ptr, history_ptr, coeffs_ptr, N, ROW, W: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # 64-bit: W * N may exceed 2**31
    mask = offs < N
    row = tl.cast(ROW, tl.int64)  # ROW may be specialised to a constexpr (ROW == 1)
    base = tl.load(history_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    acc = tl.load(coeffs_ptr) * base
    for k in tl.static_range(1, W):
        c = tl.load(coeffs_ptr + k)
        h = tl.load(history_ptr + (k * row + offs), mask=mask, other=0.0)
        acc += c * (h.to(tl.float32) - base)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


def _lincomb_launch(out: torch.Tensor, history: torch.Tensor, row: int, coeffs: torch.Tensor) -> None:
    """One launch: ``out`` (n,) from the n columns starting at ``history`` (a segment view), rows ``row`` apart."""
    w, n = history.shape[0], out.numel()
    if n == 0:
        return
    block, num_warps = config(history.dtype, out.dtype)
    _lincomb_kernel[(triton.cdiv(n, block),)](out, history, coeffs, n, row, W=w, BLOCK=block,
                                                 num_warps=num_warps, enable_fp_fusion=True)  # fma allowed


def lincomb_forecast(params: list[torch.Tensor], history: torch.Tensor, offsets: list[int],
                     coeffs: torch.Tensor) -> None:
    """Overwrite every ``params[i]`` (contiguous, any shape) with ``coeffs[0] * h_0 + sum_{k>=1} coeffs[k] * (h_k -
    h_0)`` of its segment ``history[:, offsets[i]:offsets[i] + numel]`` in place.

    history: (W, M) contiguous float32/float16/bfloat16, 1 <= W <= 32. coeffs: (W,) contiguous float32.
    params: float32/float16/bfloat16 (independent of history's dtype), not overlapping history. All on one device
    (cuda, or cpu under TRITON_INTERPRET=1).
    """
    check_flat("lincomb_forecast", "history", history, ndim=2)
    if not isinstance(coeffs, torch.Tensor) or coeffs.dim() != 1 or coeffs.dtype != torch.float32:
        got = f"{coeffs.dtype} of shape {tuple(coeffs.shape)}" if isinstance(coeffs, torch.Tensor) else type(coeffs)
        raise TypeError(f"lincomb_forecast: coeffs must be a 1-D float32 tensor, got {got}")
    if not coeffs.is_contiguous():
        raise ValueError("lincomb_forecast: coeffs must be contiguous (call .contiguous() first)")
    w, m = history.shape
    if not 1 <= w <= MAX_WINDOW:
        raise ValueError(f"lincomb_forecast: the window W = history.shape[0] must be in [1, {MAX_WINDOW}], got {w}")
    if coeffs.numel() != w:
        raise ValueError(f"lincomb_forecast: coeffs must have W = {w} elements (one per history row), "
                         f"got {coeffs.numel()}")
    for i, (p, offset) in enumerate(zip(params, offsets)):
        out = p.view(-1)
        check_flat("lincomb_forecast", f"params[{i}]", out)
        if offset < 0 or offset + out.numel() > m:
            raise ValueError(f"lincomb_forecast: params[{i}] does not fit its segment at {offset} of a row of {m}")
        check_device("lincomb_forecast", _lincomb_kernel, out, history, coeffs)
        if out.numel() and _overlap(out, history):
            raise ValueError("lincomb_forecast: params must not overlap history")
        _lincomb_launch(out, history[:, offset:], m, coeffs)


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    a0, b0 = a.data_ptr(), b.data_ptr()
    return a0 < b0 + b.numel() * b.element_size() and b0 < a0 + a.numel() * a.element_size()
