"""decode_overwrite(out, hidden, weight, bias, spans, scale, accumulate): the decoder's last layer, de-normalised
and scattered into the parameter buffer in place.

Numerics (as :mod:`weightcast.ops.latent_reference`): ``y[k, j] = scale[k] * (sum_h weight[j, h] * hidden[k, h] +
bias[j])`` (float32, ``tl.dot`` in IEEE float32), then ``out[slot(k, j)] = (out[...] if accumulate else 0) +
y[k, j]`` for every non-padding slot (slots from ``spans``, see ``_common.token_slots``). Each program takes
BLOCK_K tokens: one (BLOCK_K, H) x (H, T) product, and one scatter (read-modify-write when accumulating); the
tokens partition the parameters, so no two programs write the same element.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device, dot_block, linear_rows, token_slots


@triton.jit
def _decode_overwrite_kernel(out_ptr, hidden_ptr, weight_ptr, bias_ptr, spans_ptr, scale_ptr, K, T, H,
                             HAS_BIAS: tl.constexpr, ACCUMULATE: tl.constexpr,
                             BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)
    cols = tl.arange(0, BLOCK_T)
    hs = tl.arange(0, BLOCK_H)
    row_ok = rows < K
    y = linear_rows(hidden_ptr, weight_ptr, bias_ptr, rows, row_ok, cols, hs, T, H, HAS_BIAS)
    s = tl.load(scale_ptr + rows, mask=row_ok, other=0.0)
    y = y * s[:, None]
    idx = token_slots(spans_ptr, rows, cols, row_ok)
    ok = idx >= 0
    where = out_ptr + tl.maximum(idx, 0)
    if ACCUMULATE:
        y += tl.load(where, mask=ok, other=0.0).to(tl.float32)
    tl.store(where, y.to(out_ptr.dtype.element_ty), mask=ok)


def decode_overwrite(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     spans: torch.Tensor, scale: torch.Tensor, accumulate: bool) -> None:
    """In place on ``out`` (N,) float32; hidden (K, H), weight (T, H), bias (T,) or None, spans (K, 3) int64,
    scale (K,), all contiguous on one device (cuda, or cpu under TRITON_INTERPRET=1)."""
    check_device("decode_overwrite", _decode_overwrite_kernel, out, hidden, weight, spans, scale)
    K = spans.shape[0]
    T, H = weight.shape
    if K == 0:
        return
    block_t, block_h = dot_block(T), dot_block(H)
    block_k = 32 if block_t * block_h <= 128 * 128 else 16
    _decode_overwrite_kernel[(triton.cdiv(K, block_k),)](
        out, hidden, weight, bias if bias is not None else scale, spans, scale, K, T, H,
        HAS_BIAS=bias is not None, ACCUMULATE=bool(accumulate), BLOCK_K=block_k, BLOCK_T=block_t, BLOCK_H=block_h,
        num_warps=4)
