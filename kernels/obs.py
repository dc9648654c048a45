"""obs_trace(W, Hinv, steps): the greedy loop of layer-wise OBS, fused, one program per row.

Numerics and reference: weightcast/prune/obs_kernel.py (``obs_trace_ref``). Each program keeps its row of W and
the removed flags in registers (d <= BLOCK_D) and its own copy of Hinv in a (R, d, d) float32 workspace; a step
selects the next weight (argmin of w^2 / Hinv_jj, lowest index on ties), updates the row, and downdates the
workspace tile by tile (BLOCK_R rows at a time), all in one launch.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device

BLOCK_R = 16


@triton.jit
def _obs_trace_kernel(w_ptr, h_ptr, order_ptr, loss_ptr, d, steps, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_D)
    valid = offs < d
    w = tl.load(w_ptr + row * d + offs, mask=valid, other=0.0)
    removed = offs >= d
    H = h_ptr + row * d * d
    for t in range(steps):
        diag = tl.load(H + offs * d + offs, mask=valid, other=1.0)
        scores = tl.where(removed, float("inf"), w * w / tl.where(removed, 1.0, diag))
        best = tl.min(scores, axis=0)
        p = tl.argmin(scores, axis=0)
        tl.store(order_ptr + row * steps + t, p.to(tl.int64))
        tl.store(loss_ptr + row * steps + t, best)
        hp = tl.load(H + p * d + offs, mask=valid, other=0.0)
        is_p = offs == p
        hpp = tl.sum(tl.where(is_p, hp, 0.0), axis=0)
        wp = tl.sum(tl.where(is_p, w, 0.0), axis=0)
        w = tl.where(is_p, 0.0, w - (wp / hpp) * hp)
        removed = removed | is_p
        tl.debug_barrier()
        for i0 in range(0, d, BLOCK_R):
            rows = i0 + tl.arange(0, BLOCK_R)
            tile_ok = (rows < d)[:, None] & valid[None, :]
            ptrs = H + rows[:, None] * d + offs[None, :]
            tile = tl.load(ptrs, mask=tile_ok, other=0.0)
            hi = tl.sum(tl.where(is_p[None, :], tile, 0.0), axis=1)       # H[rows, p], read before the update
            tile = tile - hi[:, None] * (hp / hpp)[None, :]
            tl.store(ptrs, tile, mask=tile_ok)
        tl.debug_barrier()
    tl.store(w_ptr + row * d + offs, w, mask=valid)


def obs_trace(W: torch.Tensor, Hinv: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton launcher of obs_trace (float32; see the module docstring). Returns (order, losses, W_out)."""
    check_device("obs_trace", _obs_trace_kernel, W, Hinv)
    if W.dtype != torch.float32 or Hinv.dtype != torch.float32:
        raise ValueError(f"obs_trace (triton) runs float32 only, got {W.dtype} and {Hinv.dtype}")
    R, d = W.shape
    w = W.contiguous().clone()
    workspace = Hinv.contiguous().expand(R, d, d).contiguous()
    order = torch.empty(R, steps, dtype=torch.int64, device=W.device)
    losses = torch.empty(R, steps, dtype=torch.float32, device=W.device)
    if R and d and steps:
        _obs_trace_kernel[(R,)](w, workspace, order, losses, d, steps, BLOCK_D=triton.next_power_of_2(d),
                                BLOCK_R=BLOCK_R)
    return order, losses, w
