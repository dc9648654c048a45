"""nowcast_forecast(out, history, order, offsets, numels, types, rows, mlp, hidden, embed, k_max): the multi-horizon
per-element nowcaster for several tensors (segments of one history) and several horizons in one call.

Numerics: ``weightcast.ops.nowcast_forecast`` (the oracle is its ``reference``, which calls
``weightcast.forecasters.nowcast.predict_tensor``). Work items are (segment, BLOCK columns) pairs of a table, so
each of the three launches covers every segment at once (the multi-tensor pattern):

1. ``_sum_kernel``: per item the float32 sum of its W x BLOCK window values; combined per segment in float64
   (``mu``);
2. ``_spread_kernel``: per item the sums of ``(v - mu)^2`` and ``|v_{W-1} - v_0|`` (``sigma``, ``s``);
3. ``_forecast_kernel``: per element the features, ``h1`` as W rank-1 updates of a (BLOCK, H) tile, ``h2 =
   relu(h1 @ w2^T + b2)`` and the requested output rows ``h2 @ w3[rows]^T`` by ``tl.dot`` (IEEE float32), plus the
   skip; the per-segment constants (``log s``, the type embedding) are folded into the biases by torch beforehand.

W, H and the number of rows are compile-time constants.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_device, check_flat, dot_block

from weightcast.ops.limits import NOWCAST_MAX_EMBED as MAX_EMBED  # noqa: E402  (csrc/limits.h)
from weightcast.ops.limits import NOWCAST_MAX_HIDDEN as MAX_HIDDEN  # noqa: E402
from weightcast.ops.limits import NOWCAST_MAX_HORIZONS as MAX_HORIZONS  # noqa: E402
from weightcast.ops.limits import NOWCAST_MAX_WINDOW as MAX_WINDOW  # noqa: E402
from weightcast.ops.limits import NOWCAST_NUM_TYPES as NUM_TYPES  # noqa: E402

BLOCK = 128
D_CLAMP, EPS = 20.0, 1e-12  # weightcast.forecasters.nowcast.D_CLAMP, EPS (checked equal by the tests)


@triton.jit
def _sum_kernel(partial_ptr, history_ptr, items_ptr, N, W: tl.constexpr, BLOCK: tl.constexpr):
    item = tl.program_id(0)
    begin = tl.load(items_ptr + 3 * item + 1)
    end = tl.load(items_ptr + 3 * item + 2)
    cols = begin + tl.arange(0, BLOCK)
    mask = cols < end
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(W):
        acc += tl.load(history_ptr + k * tl.cast(N, tl.int64) + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(partial_ptr + item, tl.sum(acc, axis=0))


@triton.jit
def _spread_kernel(partial_ptr, history_ptr, items_ptr, order_ptr, mu_ptr, N, W: tl.constexpr, BLOCK: tl.constexpr):
    item = tl.program_id(0)
    seg = tl.load(items_ptr + 3 * item)
    begin = tl.load(items_ptr + 3 * item + 1)
    end = tl.load(items_ptr + 3 * item + 2)
    cols = begin + tl.arange(0, BLOCK)
    mask = cols < end
    mu = tl.load(mu_ptr + seg)
    row = tl.cast(N, tl.int64)
    sq = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(W):
        v = tl.load(history_ptr + k * row + cols, mask=mask, other=0.0).to(tl.float32)
        sq += tl.where(mask, (v - mu) * (v - mu), 0.0)
    first = tl.load(history_ptr + tl.load(order_ptr) * row + cols, mask=mask, other=0.0).to(tl.float32)
    last = tl.load(history_ptr + tl.load(order_ptr + W - 1) * row + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(partial_ptr + 2 * item, tl.sum(sq, axis=0))
    tl.store(partial_ptr + 2 * item + 1, tl.sum(tl.abs(last - first), axis=0))


@triton.jit
def _forecast_kernel(out_ptr, history_ptr, items_ptr, order_ptr, stats_ptr, bias1_ptr, bias_out_ptr, w1_ptr, w2_ptr,
                     b2_ptr, w3_ptr, skip_ptr, N, W: tl.constexpr, H: tl.constexpr, HP: tl.constexpr, FE: tl.constexpr,
                     F: tl.constexpr, R: tl.constexpr, RP: tl.constexpr, DCLAMP: tl.constexpr, BLOCK: tl.constexpr):
    # w3_ptr (R, H) and skip_ptr (R, F): the requested rows of w3 and skip, gathered by the launcher
    item = tl.program_id(0)
    seg = tl.load(items_ptr + 3 * item)
    begin = tl.load(items_ptr + 3 * item + 1)
    end = tl.load(items_ptr + 3 * item + 2)
    cols = begin + tl.arange(0, BLOCK)
    mask = cols < end
    row = tl.cast(N, tl.int64)
    mu = tl.load(stats_ptr + 3 * seg)
    sigma = tl.load(stats_ptr + 3 * seg + 1)
    scale = tl.load(stats_ptr + 3 * seg + 2)
    hs = tl.arange(0, HP)
    hmask = hs < H
    rs = tl.arange(0, RP)
    rmask = rs < R
    h1 = tl.zeros([BLOCK, HP], dtype=tl.float32) + tl.load(bias1_ptr + seg * H + hs, mask=hmask, other=0.0)[None, :]
    m = tl.zeros([BLOCK, RP], dtype=tl.float32) + tl.load(bias_out_ptr + seg * R + rs, mask=rmask, other=0.0)[None, :]
    prev = (tl.load(history_ptr + tl.load(order_ptr) * row + cols, mask=mask, other=0.0).to(tl.float32) - mu) / sigma
    for k in tl.static_range(1, W):
        v = tl.load(history_ptr + tl.load(order_ptr + k) * row + cols, mask=mask, other=0.0).to(tl.float32)
        z = (v - mu) / sigma
        d = (z - prev) / scale
        d = tl.where(d < -DCLAMP, -DCLAMP, tl.where(d > DCLAMP, DCLAMP, d))
        h1 += d[:, None] * tl.load(w1_ptr + hs * FE + (k - 1), mask=hmask, other=0.0)[None, :]
        m += d[:, None] * tl.load(skip_ptr + rs * F + (k - 1), mask=rmask, other=0.0)[None, :]
        prev = z
    h1 += prev[:, None] * tl.load(w1_ptr + hs * FE + (W - 1), mask=hmask, other=0.0)[None, :]
    m += prev[:, None] * tl.load(skip_ptr + rs * F + (W - 1), mask=rmask, other=0.0)[None, :]
    h1 = tl.where(h1 < 0.0, 0.0, h1)
    w2t = tl.load(w2_ptr + hs[None, :] * H + hs[:, None], mask=hmask[:, None] & hmask[None, :], other=0.0)
    h2 = tl.dot(h1, w2t, input_precision="ieee") + tl.load(b2_ptr + hs, mask=hmask, other=0.0)[None, :]
    h2 = tl.where(h2 < 0.0, 0.0, h2)
    w3t = tl.load(w3_ptr + rs[None, :] * H + hs[:, None], mask=hmask[:, None] & rmask[None, :], other=0.0)
    m += tl.dot(h2, w3t, input_precision="ieee")
    y = mu + sigma * (prev[:, None] + scale * m)
    tl.store(out_ptr + rs[None, :] * row + cols[:, None], y.to(out_ptr.dtype.element_ty),
             mask=mask[:, None] & rmask[None, :])


def _items(offsets: list[int], numels: list[int], device) -> torch.Tensor:
    """(I, 3) int64 work items (segment, first column, end column) of at most BLOCK columns."""
    items = [(s, b, min(b + BLOCK, start + n)) for s, (start, n) in enumerate(zip(offsets, numels))
             for b in range(start, start + n, BLOCK)]
    return torch.tensor(items, dtype=torch.int64).to(device)


def segment_stats(history: torch.Tensor, order: torch.Tensor, items: torch.Tensor, numels: list[int]) -> torch.Tensor:
    """(S, 3) float32 (mu, sigma, s) of every segment: the two reduction launches, combined per segment in float64."""
    w, n = history.shape
    segs = items[:, 0]
    count = torch.tensor(numels, dtype=torch.float64, device=history.device).clamp_min(1)
    partial = torch.empty(items.shape[0], dtype=torch.float32, device=history.device)
    _sum_kernel[(items.shape[0],)](partial, history, items, n, W=w, BLOCK=BLOCK)
    total = torch.zeros(len(numels), dtype=torch.float64, device=history.device).index_add_(0, segs, partial.double())
    mu = (total / (w * count)).float()
    spread = torch.empty(items.shape[0], 2, dtype=torch.float32, device=history.device)
    _spread_kernel[(items.shape[0],)](spread, history, items, order, mu, n, W=w, BLOCK=BLOCK)
    sums = torch.zeros(len(numels), 2, dtype=torch.float64, device=history.device).index_add_(0, segs, spread.double())
    sigma = (sums[:, 0] / (w * count)).sqrt().float().clamp_min(EPS)
    scale = (sums[:, 1] / count / sigma / (w - 1)).float().clamp_min(EPS)
    return torch.stack([mu, sigma, scale], dim=1).contiguous()


def nowcast_forecast(out: torch.Tensor, history: torch.Tensor, order: list[int], offsets: list[int],
                     numels: list[int], types: list[int], rows: list[int], mlp: torch.Tensor, hidden: int, embed: int,
                     k_max: int) -> None:
    """Write the nowcaster's forecasts into ``out`` (R, N) in place (``weightcast.ops.nowcast_forecast``).

    history: (W, N) contiguous float32/float16/bfloat16, 2 <= W <= 16; out (R, N) of those dtypes; hidden <= 64,
    embed <= 64, k_max <= 64 (csrc/limits.h); one device (cuda, or cpu under TRITON_INTERPRET=1). The values of
    order/offsets/types/rows and the size of mlp are checked by the public op.
    """
    check_flat("nowcast_forecast", "out", out, ndim=2)
    check_flat("nowcast_forecast", "history", history, ndim=2)
    w, n = history.shape
    if not 2 <= w <= MAX_WINDOW or not 1 <= hidden <= MAX_HIDDEN or not 0 <= embed <= MAX_EMBED or \
            not 1 <= k_max <= MAX_HORIZONS:
        raise ValueError(f"nowcast_forecast: the Triton kernel takes 2 <= W <= {MAX_WINDOW}, hidden <= {MAX_HIDDEN}, "
                         f"embed <= {MAX_EMBED}, k_max <= {MAX_HORIZONS}; got W = {w}, hidden {hidden}, embed {embed}, "
                         f"k_max {k_max}")
    if tuple(out.shape) != (len(rows), n) or mlp.dtype != torch.float32:
        raise ValueError(f"nowcast_forecast: out must be ({len(rows)}, {n}) and mlp float32, got {tuple(out.shape)} "
                         f"and {mlp.dtype}")
    check_device("nowcast_forecast", _forecast_kernel, out, history, mlp)
    if not any(numels):
        return
    from weightcast.ops.nowcast_forecast import unpack_mlp

    device = history.device
    t = unpack_mlp(mlp, w, hidden, embed, k_max)
    order_t = torch.tensor(order, dtype=torch.int64, device=device)
    rows_t = torch.tensor(rows, dtype=torch.int64, device=device)
    items = _items(offsets, numels, device)
    stats = segment_stats(history, order_t, items, numels)
    log_s = stats[:, 2].log()
    types_t = torch.tensor(types, dtype=torch.int64, device=device)
    f = w + 1
    w1 = t["w1"].contiguous()
    bias1 = (t["b1"] + log_s[:, None] * w1[:, w] + t["type_embed"][types_t] @ w1[:, f:].T).contiguous()
    skip = t["skip"][rows_t].contiguous()
    bias_out = (t["b3"][rows_t] + log_s[:, None] * skip[:, w]).contiguous()
    r = len(rows)
    _forecast_kernel[(items.shape[0],)](
        out, history, items, order_t, stats, bias1, bias_out, w1, t["w2"].contiguous(), t["b2"].contiguous(),
        t["w3"][rows_t].contiguous(), skip, n, W=w, H=hidden, HP=dot_block(hidden), FE=f + embed, F=f, R=r,
        RP=dot_block(r), DCLAMP=D_CLAMP, BLOCK=BLOCK, num_warps=4)
