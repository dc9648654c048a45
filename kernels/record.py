"""record(params, history, slot, offsets) -> absmax: copy the parameters into their segments of one history row
with dtype conversion and return the NaN-aware absmax.

Numerics: ``history[slot, offsets[i] + j] = params[i].flatten()[j]`` converted to ``history.dtype`` with round to
nearest even (as ``Tensor.copy_``). The absmax is taken over the values *as stored*, ``max |float32(dst)|``,
returned as a float32 0-dim tensor: NaN if any stored element is NaN, +inf if any is infinite and none is NaN,
0.0 when there is nothing to copy. One launch per parameter (the per-tensor kernel below); the partial maxima of
all launches go to one buffer, reduced once.

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
    """Launch over one tensor; returns the (programs,) int32 partial maxima (empty for an empty tensor)."""
    n = src.numel()
    block, num_warps = config(src.dtype, dst.dtype)
    grid = triton.cdiv(n, block)
    partials = torch.zeros(grid, dtype=torch.int32, device=dst.device)
    if n:
        _record_kernel[(grid,)](src, dst, partials, n, BLOCK=block, num_warps=num_warps, enable_fp_fusion=True)
    return partials


def record(params: list[torch.Tensor], history: torch.Tensor, slot: int, offsets: list[int]) -> torch.Tensor:
    """Copy every ``params[i]`` (contiguous, any shape) into ``history[slot, offsets[i]:offsets[i] + numel]``
    converting to ``history.dtype``; return the float32 0-dim absmax of what was stored (module docstring).

    history: (W, M) contiguous; all float32/float16/bfloat16 on one device (cuda, or cpu under TRITON_INTERPRET=1);
    dtypes may differ.
    """
    check_flat("record", "history", history, ndim=2)
    partials = [torch.zeros(1, dtype=torch.int32, device=history.device)]
    for i, (p, offset) in enumerate(zip(params, offsets)):
        src = p.view(-1)
        check_flat("record", f"params[{i}]", src)
        if offset < 0 or offset + src.numel() > history.shape[1]:
            raise ValueError(f"record: params[{i}] does not fit its segment at {offset} of a row of {history.shape[1]}")
        check_device("record", _record_kernel, src, history)
        partials.append(_record_launch(src, history[slot, offset:offset + src.numel()]))
    return torch.cat(partials).amax().view(torch.float32)
