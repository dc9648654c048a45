"""record(src, dst) -> absmax: copy a flat buffer with dtype conversion and return the NaN-aware absmax.

Numerics: ``dst[i] = src[i]`` converted to ``dst.dtype`` with round to nearest even (as ``Tensor.copy_``). The
absmax is taken over the values *as stored*, ``max_i |float32(dst[i])|``, returned as a float32 0-dim tensor:
NaN if any element of dst is NaN, +inf if any is infinite and none is NaN, 0.0 for N == 0.

NaN-awareness for free: with the sign bit cleared, the int32 bit pattern of a float32 is monotone in its magnitude
for finite values and +inf, and every NaN compares greater than +inf. So each program takes the max of those bits
over its block and writes it to a partials buffer; one ``amax`` over the partials, bit-cast back to float32, gives
the result. Memory traffic: src read once, dst written once, 4 bytes per program.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device, check_flat, config


@triton.jit
def _record_kernel(src_ptr, dst_ptr, partial_ptr, N, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # 64-bit: N may exceed 2**31
    mask = offs < N
    x = tl.load(src_ptr + offs, mask=mask, other=0.0)
    y = x.to(dst_ptr.dtype.element_ty)  # round to nearest even
    tl.store(dst_ptr + offs, y, mask=mask)
    bits = y.to(tl.float32).to(tl.int32, bitcast=True) & 0x7FFFFFFF  # |y| as ordered int32, NaN > inf
    bits = tl.where(mask, bits, 0)
    tl.store(partial_ptr + pid, tl.max(bits, axis=0))


def _record_launch(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    n = src.numel()
    if n == 0:
        return torch.zeros((), dtype=torch.float32, device=dst.device)
    block, num_warps = config(src.dtype, dst.dtype)
    grid = triton.cdiv(n, block)
    partials = torch.empty(grid, dtype=torch.int32, device=dst.device)
    _record_kernel[(grid,)](src, dst, partials, n, BLOCK=block, num_warps=num_warps,
                        enable_fp_fusion=True)
    return partials.amax().view(torch.float32)


def record(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Copy ``src`` (N,) into ``dst`` (N,) converting to ``dst.dtype``; return ``max |float32(dst)|`` (float32, 0-dim).

    Both are 1-D contiguous float32/float16/bfloat16 tensors on one device (cuda, or cpu under TRITON_INTERPRET=1);
    their dtypes may differ. The result is NaN if dst holds a NaN, +inf if it holds an inf and no NaN, 0 if N == 0.
    """
    check_flat("record", "src", src)
    check_flat("record", "dst", dst)
    if src.numel() != dst.numel():
        raise ValueError(f"record: src and dst must have the same length, got {src.numel()} and {dst.numel()}")
    check_device("record", _record_kernel, src, dst)
    return _record_launch(src, dst)
