"""generate_write(out, hidden, weight, bias, scale, accumulate): the slimmable weight generator's output layer,
scaled and written into a layer's weight in place.

Numerics (as :mod:`weightcast.slim.ops`, whose reference is the oracle): ``y[k, j] = scale * (sum_h hidden[k, h]
* weight[j, h] + bias[j])`` (float32, ``tl.dot`` in IEEE float32), then ``out[k, j] = (out[k, j] if accumulate
else 0) + y[k, j]``. Each program takes BLOCK_K rows: one (BLOCK_K, H) x (H, T) product and one (read-modify-)
write of its rows of ``out``; no two programs touch the same element.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device, dot_block, linear_rows


@triton.jit
def _generate_write_kernel(out_ptr, hidden_ptr, weight_ptr, bias_ptr, scale, K, T, H,
                           HAS_BIAS: tl.constexpr, ACCUMULATE: tl.constexpr,
                           BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)
    cols = tl.arange(0, BLOCK_T)
    hs = tl.arange(0, BLOCK_H)
    row_ok = rows < K
    y = linear_rows(hidden_ptr, weight_ptr, bias_ptr, rows, row_ok, cols, hs, T, H, HAS_BIAS)
    y = y * scale
    ok = row_ok[:, None] & (cols[None, :] < T)
    where = out_ptr + rows[:, None] * T + cols[None, :]
    if ACCUMULATE:
        y += tl.load(where, mask=ok, other=0.0)
    tl.store(where, y, mask=ok)


def generate_write(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   scale: float, accumulate: bool) -> None:
    """In place on ``out`` (K, T) float32; hidden (K, H), weight (T, H), bias (T,) or None, all contiguous
    float32 on one device (cuda, or cpu under TRITON_INTERPRET=1)."""
    check_device("generate_write", _generate_write_kernel, out, hidden, weight)
    K, T = out.shape
    H = hidden.shape[1]
    if K == 0 or T == 0:
        return
    block_t, block_h = dot_block(T), dot_block(H)
    block_k = 32 if block_t * block_h <= 128 * 128 else 16
    _generate_write_kernel[(triton.cdiv(K, block_k),)](
        out, hidden, weight, bias if bias is not None else weight, float(scale), K, T, H,
        HAS_BIAS=bias is not None, ACCUMULATE=bool(accumulate), BLOCK_K=block_k, BLOCK_T=block_t, BLOCK_H=block_h,
        num_warps=4)
