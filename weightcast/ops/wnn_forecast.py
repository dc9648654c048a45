"""``weightcast::wnn_forecast``: evaluate the per-element WNN nowcaster for every element in one pass.

For element i of segment s (a parameter tensor; ``offsets`` (S + 1,) int64 gives each segment's element range,
the last segment may cover the bucket's zero padding), with ``v_k = float32(history[order[k], i])`` the window in
chronological order (k = 0 .. W-1) and ``stats[s] = (a, c, e, g)`` float32:

    x  = [v_0 a + c, ..., v_{W-1} a + c,  (v_1 - v_0) e, ..., (v_{W-1} - v_{W-2}) e]     F = 2W - 1 features
    z1 = relu(W1 x + B1[kinds[s]])          W1 (H, F), B1 (3, H): one first-layer bias per parameter kind
    z2 = relu(W2 z1 + b2)                   W2 (H, H), b2 (H,)
    out[i] = convert(v_{W-1} + g (w3 . z2 + b3))

``mlp`` packs ``W1, B1, W2, b2, w3, b3`` row-major in that order, float32 (``pack_mlp``/``unpack_mlp``); H =
``hidden`` <= 32 (64 for the reference). Accumulation is float32 (fused multiply-add allowed in the kernels), so
backends agree to float32 rounding, not bit for bit. Memory traffic: each history row read once, ``out`` written
once; the per-segment tables and the MLP (a few KiB) are read from cache. The op does not check finiteness: the
forecaster does, before anything is written to the parameters.

Backends: the reference below (the oracle, and the fallback for float64 or any device), C++
(``weightcast_C::wnn_forecast``, csrc/cpu/wnn.cpp), CUDA (csrc/cuda/wnn.cu) and Triton
(``weightcast.kernels.wnn_forecast``).
"""
from __future__ import annotations

import importlib

import torch

from .dispatch import BackendUnavailableError, forced_backend, select_backend
from .limits import WNN_MAX_HIDDEN, WNN_MAX_WINDOW, WNN_NUM_KINDS
from .record import KERNEL_DTYPES, check_flat

KERNEL = "wnn_forecast"
NUM_KINDS = WNN_NUM_KINDS
MAX_HIDDEN = WNN_MAX_HIDDEN  # the native and Triton kernels keep H values per element in registers
MAX_WINDOW = WNN_MAX_WINDOW
REFERENCE_MAX_HIDDEN = 64  # the reference's own bound (temporary memory per chunk)


def mlp_numel(window: int, hidden: int) -> int:
    """Length of the packed MLP for a window of W snapshots and H hidden units."""
    f = 2 * window - 1
    return hidden * f + NUM_KINDS * hidden + hidden * hidden + 2 * hidden + 1


def pack_mlp(w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, w3: torch.Tensor,
             b3: torch.Tensor) -> torch.Tensor:
    """The flat float32 ``mlp`` of the op from W1 (H, F), B1 (3, H), W2 (H, H), b2 (H,), w3 (H,), b3 (1,)."""
    return torch.cat([t.detach().reshape(-1).to(torch.float32) for t in (w1, b1, w2, b2, w3, b3)])


def unpack_mlp(mlp: torch.Tensor, window: int, hidden: int) -> tuple[torch.Tensor, ...]:
    """Inverse of :func:`pack_mlp`: views W1 (H, F), B1 (3, H), W2 (H, H), b2 (H,), w3 (H,), b3 (1,)."""
    h, f = hidden, 2 * window - 1
    sizes = [h * f, NUM_KINDS * h, h * h, h, h, 1]
    w1, b1, w2, b2, w3, b3 = torch.split(mlp, sizes)
    return w1.view(h, f), b1.view(NUM_KINDS, h), w2.view(h, h), b2, w3, b3


def mlp_residual(x: torch.Tensor, kind: torch.Tensor, w1, b1, w2, b2, w3, b3) -> torch.Tensor:
    """``w3 . relu(W2 relu(W1 x + B1[kind]) + b2) + b3`` for features x (n, F) and kinds (n,) int -> (n,).
    Differentiable (used for training as well)."""
    z1 = torch.relu(x @ w1.T + b1[kind])
    z2 = torch.relu(z1 @ w2.T + b2)
    return z2 @ w3 + b3


def wnn_features(window: torch.Tensor, a: torch.Tensor, c: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Features (n, 2W - 1) of the module docstring from the chronological window (n, W) and per-element
    normalisation a, c, e (n,)."""
    values = window * a[:, None] + c[:, None]
    diffs = (window[:, 1:] - window[:, :-1]) * e[:, None]
    return torch.cat([values, diffs], dim=1)


def reference(out: torch.Tensor, history: torch.Tensor, order: torch.Tensor, offsets: torch.Tensor,
              stats: torch.Tensor, kinds: torch.Tensor, mlp: torch.Tensor, hidden: int) -> None:
    """Pure-PyTorch oracle of the op (module docstring), in float32 (float64 for float64 tensors), by chunks of
    2**20 elements to bound the temporary memory."""
    wide = torch.promote_types(history.dtype, torch.float32)
    lengths = (offsets[1:] - offsets[:-1]).to(history.device)
    seg = torch.repeat_interleave(torch.arange(len(lengths), device=history.device), lengths)
    params = [t.to(wide) for t in unpack_mlp(mlp.to(history.device), history.shape[0], hidden)]
    st = stats.to(history.device, wide)
    rows = order.to(history.device, torch.int64)
    chunk = 1 << 20
    for lo in range(0, history.shape[1], chunk):
        hi = min(lo + chunk, history.shape[1])
        s = seg[lo:hi]
        window = history[rows, lo:hi].to(wide).T  # (n, W), chronological
        x = wnn_features(window, st[s, 0], st[s, 1], st[s, 2])
        r = mlp_residual(x, kinds.to(history.device, torch.int64)[s], *params)
        out[lo:hi] = window[:, -1] + st[s, 3] * r


def _check(out, history, order, offsets, stats, kinds, mlp, hidden) -> None:
    check_flat("out", out, 1)
    check_flat("history", history, 2)
    w, n = history.shape
    if not 2 <= w <= MAX_WINDOW:
        raise ValueError(f"wnn_forecast: the window W = history.shape[0] must be in [2, {MAX_WINDOW}], got {w}")
    if out.shape[0] != n or out.device != history.device:
        raise ValueError(f"wnn_forecast: out {tuple(out.shape)} on {out.device} does not match history "
                         f"{tuple(history.shape)} on {history.device}")
    if order.dtype != torch.int64 or order.shape != (w,) or sorted(order.tolist()) != list(range(w)):
        raise ValueError(f"wnn_forecast: order must be a permutation of 0..{w - 1} (int64, shape ({w},)), got {order}")
    segments = offsets.shape[0] - 1
    if offsets.dtype != torch.int64 or offsets.dim() != 1 or segments < 1 or int(offsets[0]) != 0 or \
            int(offsets[-1]) != n or bool((offsets[1:] < offsets[:-1]).any()):
        raise ValueError(f"wnn_forecast: offsets must be non-decreasing int64 from 0 to N = {n}, got {offsets}")
    if stats.dtype != torch.float32 or stats.shape != (segments, 4) or not stats.is_contiguous():
        raise ValueError(f"wnn_forecast: stats must be contiguous float32 ({segments}, 4), got {stats.dtype} "
                         f"{tuple(stats.shape)}")
    if kinds.dtype != torch.int32 or kinds.shape != (segments,) or \
            (segments and (int(kinds.min()) < 0 or int(kinds.max()) >= NUM_KINDS)):
        raise ValueError(f"wnn_forecast: kinds must be int32 ({segments},) with values in 0..{NUM_KINDS - 1}")
    if not 1 <= hidden <= REFERENCE_MAX_HIDDEN:
        raise ValueError(f"wnn_forecast: hidden must be in [1, {REFERENCE_MAX_HIDDEN}], got {hidden}")
    if mlp.dtype != torch.float32 or mlp.shape != (mlp_numel(w, hidden),) or not mlp.is_contiguous():
        raise ValueError(f"wnn_forecast: mlp must be contiguous float32 of {mlp_numel(w, hidden)} values for "
                         f"W = {w}, H = {hidden}, got {mlp.dtype} {tuple(mlp.shape)}")
    for name, t in (("order", order), ("offsets", offsets), ("stats", stats), ("kinds", kinds), ("mlp", mlp)):
        if t.device != history.device:
            raise ValueError(f"wnn_forecast: {name} is on {t.device}, history on {history.device}")


def _impl(out: torch.Tensor, history: torch.Tensor, hidden: int):
    """The backend's kernel, or :func:`reference` (float64 tensors, hidden > 32, or the reference backend)."""
    if out.dtype in KERNEL_DTYPES and history.dtype in KERNEL_DTYPES and hidden <= MAX_HIDDEN:
        backend = select_backend(KERNEL, history.device)
        if backend == "triton":
            return importlib.import_module("weightcast.kernels.wnn_forecast").wnn_forecast
        if backend in ("cpp", "cuda"):
            return getattr(torch.ops.weightcast_C, KERNEL)
        return reference
    if forced_backend() not in (None, "reference"):
        raise BackendUnavailableError(f"backend {forced_backend()!r} runs 'wnn_forecast' on float32/float16/bfloat16 with "
                                      f"hidden <= {MAX_HIDDEN} only, got {out.dtype}/{history.dtype}, hidden "
                                      f"{hidden}; use WEIGHTCAST_BACKEND=reference")
    return reference


@torch.library.custom_op("weightcast::wnn_forecast", mutates_args=("out",))
def wnn_forecast(out: torch.Tensor, history: torch.Tensor, order: torch.Tensor, offsets: torch.Tensor,
                 stats: torch.Tensor, kinds: torch.Tensor, mlp: torch.Tensor, hidden: int) -> None:
    """Write the WNN forecast of every element into ``out`` (N,) (module docstring).

    history (W, N), 2 <= W <= 16, float32/float16/bfloat16/float64; order (W,) int64 (chronological slot
    indices); offsets (S + 1,) int64, 0 .. N; stats (S, 4) float32; kinds (S,) int32 in 0..2; mlp packed float32
    (:func:`pack_mlp`); all on history's device. ``out`` must not overlap ``history``.
    """
    _check(out, history, order, offsets, stats, kinds, mlp, hidden)
    if history.shape[1]:
        _impl(out, history, hidden)(out, history, order, offsets, stats, kinds, mlp, hidden)


@wnn_forecast.register_fake
def _wnn_forecast_fake(out, history, order, offsets, stats, kinds, mlp, hidden) -> None:
    return None
