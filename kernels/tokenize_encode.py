"""tokenize_encode(flat, spans, scale, weight, bias) -> (K, H): gather + normalise + the encoder's first layer.

Numerics (as :mod:`weightcast.ops.latent_reference`): ``out[k, h] = bias[k, h] + sum_j weight[h, j] * x[k, j]``,
``x[k, j] = flat[slot(k, j)] * scale[k]`` (0 in padding; slots from ``spans``, see ``_common.token_slots``),
float32 throughout (the product is a ``tl.dot`` in IEEE float32, no TF32). Each program takes BLOCK_K tokens:
one gather of their (BLOCK_K, T) values from the parameter buffer, one (BLOCK_K, T) x (T, H) product with the
weight (padded to powers of two, masked), one store.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device, dot_block, token_slots


@triton.jit
def _tokenize_encode_kernel(flat_ptr, spans_ptr, scale_ptr, weight_ptr, bias_ptr, out_ptr, K, T, H,
                            BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)
    cols = tl.arange(0, BLOCK_T)
    hs = tl.arange(0, BLOCK_H)
    row_ok = rows < K
    idx = token_slots(spans_ptr, rows, cols, row_ok)
    x = tl.load(flat_ptr + tl.maximum(idx, 0), mask=idx >= 0, other=0.0).to(tl.float32)
    s = tl.load(scale_ptr + rows, mask=row_ok, other=0.0)
    x = x * s[:, None]
    # weight is (H, T): read it as its transpose (T, H)
    w = tl.load(weight_ptr + hs[None, :] * T + cols[:, None], mask=(cols[:, None] < T) & (hs[None, :] < H),
                other=0.0)
    acc = tl.dot(x, w, input_precision="ieee")
    out_mask = row_ok[:, None] & (hs[None, :] < H)
    b = tl.load(bias_ptr + rows[:, None] * H + hs[None, :], mask=out_mask, other=0.0)
    tl.store(out_ptr + rows[:, None] * H + hs[None, :], acc + b, mask=out_mask)


def tokenize_encode(flat: torch.Tensor, spans: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
    """(K, H) float32; flat (N,) float32, spans (K, 3) int64, scale (K,), weight (H, T), bias (K, H),
    all contiguous on one device (cuda, or cpu under TRITON_INTERPRET=1). Shapes are checked by the public op."""
    check_device("tokenize_encode", _tokenize_encode_kernel, flat, spans, scale, weight, bias)
    K = spans.shape[0]
    H, T = weight.shape
    out = torch.empty(K, H, dtype=torch.float32, device=flat.device)
    if K == 0:
        return out
    block_t, block_h = dot_block(T), dot_block(H)
    block_k = 32 if block_t * block_h <= 128 * 128 else 16
    _tokenize_encode_kernel[(triton.cdiv(K, block_k),)](flat, spans, scale, weight, bias, out, K, T, H,
                                                       BLOCK_K=block_k, BLOCK_T=block_t, BLOCK_H=block_h,
                                                       num_warps=4)
    return out
