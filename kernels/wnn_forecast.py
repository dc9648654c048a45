"""wnn_forecast(out, history, order, offsets, stats, kinds, mlp, hidden): the per-element WNN MLP for every element.

Numerics (the oracle is ``weightcast.ops.wnn_forecast.reference``): for element i of segment s, with
``v_k = float32(history[order[k], i])`` and ``stats[s] = (a, c, e, g)``,
``x = [v_k a + c, (v_k - v_{k-1}) e]`` (F = 2W - 1), ``z1 = relu(W1 x + B1[kinds[s]])``, ``z2 = relu(W2 z1 + b2)``,
``out[i] = convert(v_{W-1} + g (w3 . z2 + b3))``, float32 throughout (multiply-add may be fused).

One program handles BLOCK elements: it finds each element's segment by a binary search of ``offsets`` (a few
cached loads), reads each history row once, keeps the (BLOCK, H) hidden layer in registers and writes ``out`` once.
The MLP weights (a few KiB) come from cache. W and H are compile-time constants.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device, check_flat

from weightcast.ops.limits import WNN_MAX_HIDDEN as MAX_HIDDEN  # noqa: E402  (csrc/limits.h)
from weightcast.ops.limits import WNN_MAX_WINDOW as MAX_WINDOW  # noqa: E402
from weightcast.ops.limits import WNN_NUM_KINDS as KINDS  # noqa: E402


@triton.jit
def _wnn_kernel(out_ptr, history_ptr, order_ptr, offsets_ptr, stats_ptr, kinds_ptr, mlp_ptr, N, S,
                W: tl.constexpr, H: tl.constexpr, HP: tl.constexpr, LOG_S: tl.constexpr, BLOCK: tl.constexpr):
    F: tl.constexpr = 2 * W - 1
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    row = tl.cast(N, tl.int64)
    # segment of each element: the largest s < S with offsets[s] <= i
    seg = tl.zeros([BLOCK], dtype=tl.int64)
    for b in tl.static_range(LOG_S):
        cand = seg + (1 << (LOG_S - 1 - b))
        start = tl.load(offsets_ptr + tl.minimum(cand, S - 1), mask=mask, other=0)
        seg = tl.where((cand < S) & (start <= offs), cand, seg)
    a = tl.load(stats_ptr + 4 * seg, mask=mask, other=0.0)
    c = tl.load(stats_ptr + 4 * seg + 1, mask=mask, other=0.0)
    e = tl.load(stats_ptr + 4 * seg + 2, mask=mask, other=0.0)
    g = tl.load(stats_ptr + 4 * seg + 3, mask=mask, other=0.0)
    kind = tl.load(kinds_ptr + seg, mask=mask, other=0).to(tl.int64)
    cols = tl.arange(0, HP)
    cmask = cols < H
    b1_ptr = mlp_ptr + H * F
    w2_ptr = b1_ptr + KINDS * H
    b2_ptr = w2_ptr + H * H
    w3_ptr = b2_ptr + H
    z1 = tl.load(b1_ptr + kind[:, None] * H + cols[None, :], mask=mask[:, None] & cmask[None, :], other=0.0)
    prev = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(W):
        r = tl.load(order_ptr + k)
        v = tl.load(history_ptr + (r * row + offs), mask=mask, other=0.0).to(tl.float32)
        wk = tl.load(mlp_ptr + cols * F + k, mask=cmask, other=0.0)
        z1 += (v * a + c)[:, None] * wk[None, :]
        if k > 0:
            wd = tl.load(mlp_ptr + cols * F + (W + k - 1), mask=cmask, other=0.0)
            z1 += ((v - prev) * e)[:, None] * wd[None, :]
        prev = v
    z1 = tl.maximum(z1, 0.0)
    acc = tl.zeros([BLOCK], dtype=tl.float32) + tl.load(w3_ptr + H)
    for j in tl.static_range(H):
        w2j = tl.load(w2_ptr + j * H + cols, mask=cmask, other=0.0)
        zj = tl.sum(z1 * w2j[None, :], axis=1) + tl.load(b2_ptr + j)
        acc += tl.maximum(zj, 0.0) * tl.load(w3_ptr + j)
    tl.store(out_ptr + offs, (prev + g * acc).to(out_ptr.dtype.element_ty), mask=mask)


def _wnn_launch(out, history, order, offsets, stats, kinds, mlp, hidden: int) -> None:
    w, n = history.shape
    s = offsets.numel() - 1
    block = 128
    _wnn_kernel[(triton.cdiv(n, block),)](out, history, order, offsets, stats, kinds, mlp, n, s, W=w, H=hidden,
                                           HP=triton.next_power_of_2(hidden), LOG_S=max(1, s.bit_length()),
                                           BLOCK=block, num_warps=4)


def wnn_forecast(out: torch.Tensor, history: torch.Tensor, order: torch.Tensor, offsets: torch.Tensor, stats: torch.Tensor,
        kinds: torch.Tensor, mlp: torch.Tensor, hidden: int) -> None:
    """Write the WNN forecast of every element into ``out`` (N,) in place (module docstring).

    history: (W, N) contiguous float32/float16/bfloat16, 2 <= W <= 16; order (W,) int64 chronological slots;
    offsets (S + 1,) int64 from 0 to N; stats (S, 4) float32; kinds (S,) int32 in 0..2; mlp float32 packed as in
    ``weightcast.ops.wnn_forecast.pack_mlp``; 1 <= hidden <= 32. One device (cuda, or cpu under
    TRITON_INTERPRET=1). The values of order/offsets/kinds are checked by the public op.
    """
    check_flat("wnn_forecast", "out", out)
    check_flat("wnn_forecast", "history", history, ndim=2)
    w, n = history.shape
    if not 2 <= w <= MAX_WINDOW:
        raise ValueError(f"wnn_forecast: the window W = history.shape[0] must be in [2, {MAX_WINDOW}], got {w}")
    if out.numel() != n:
        raise ValueError(f"wnn_forecast: out must have N = {n} elements, got {out.numel()}")
    if not 1 <= hidden <= MAX_HIDDEN:
        raise ValueError(f"wnn_forecast: hidden must be in [1, {MAX_HIDDEN}], got {hidden}")
    for name, t, dtype in (("order", order, torch.int64), ("offsets", offsets, torch.int64),
                           ("stats", stats, torch.float32), ("kinds", kinds, torch.int32),
                           ("mlp", mlp, torch.float32)):
        if t.dtype != dtype or not t.is_contiguous():
            raise TypeError(f"wnn_forecast: {name} must be contiguous {dtype}, got {t.dtype}")
    check_device("wnn_forecast", _wnn_kernel, out, history, order, offsets, stats, kinds, mlp)
    if n:
        _wnn_launch(out, history, order, offsets, stats, kinds, mlp, hidden)
