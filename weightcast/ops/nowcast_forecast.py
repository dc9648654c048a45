"""``weightcast::nowcast_forecast``: the multi-horizon per-element nowcaster ("nowcast",
:mod:`weightcast.forecasters.nowcast`) for several parameter tensors and several horizons in one call.

The tensors are segments of one history ``(W, N)``: segment s owns the columns ``offsets[s] .. offsets[s] +
numels[s]`` of every row (the engine's :class:`weightcast.history.Bucket` layout), ``order`` lists the history rows
in chronological order and ``types[s]`` is the segment's parameter type (index into
:data:`weightcast.forecasters.nowcast.PARAM_TYPES`). For every requested row r (horizon ``k = rows[r] + 1`` record
intervals), ``out[r, columns of s]`` is the forecast of :func:`weightcast.forecasters.nowcast.predict_tensor` for
that segment's window, converted to ``out``'s dtype; columns outside every segment are left as they are.

That function is the one definition of the math (the reference below calls it). The kernels compute the same in
two passes per segment: a reduction for ``mu``, ``sigma`` and ``s`` (:func:`~weightcast.forecasters.nowcast.
window_stats`; accumulated in float64 (C++, CUDA) or float32 blocks combined in float64 (Triton)), then one pass
per element (features, the MLP, every requested output row) with the per-segment constants (``log s`` and the
type embedding) folded into the biases. Arithmetic is float32 in a different order than the reference (and fused
multiply-add in CUDA/Triton), so backends agree to float32 rounding, not bit for bit (tests: relative and
absolute tolerance 1e-4 for float32 outputs). Cost per element and output row: see :func:`flops_per_element`.

Non-finite values are written as they come (a NaN or inf anywhere in a segment's window makes that segment's
forecast non-finite, as in the reference); the callers check finiteness before anything reaches the parameters
(the optimizer engine skips the jump, the study's jumps skip the candidate).

Backends: the reference (float64 tensors and models beyond the kernels' limits go there), C++
(``weightcast_C::nowcast_forecast``, csrc/cpu/nowcast.cpp), CUDA (csrc/cuda/nowcast.cu +
csrc/cuda/nowcast_ops_cuda.cpp) and Triton (``weightcast.kernels.nowcast_forecast``).
"""
from __future__ import annotations

import importlib
import math

import torch

from .dispatch import BackendUnavailableError, forced_backend, select_backend
from .limits import (NOWCAST_MAX_EMBED, NOWCAST_MAX_HIDDEN, NOWCAST_MAX_HORIZONS, NOWCAST_MAX_WINDOW,
                     NOWCAST_NUM_TYPES)
from .record import KERNEL_DTYPES, check_flat

KERNEL = "nowcast_forecast"
NAMES = ("type_embed", "w1", "b1", "w2", "b2", "w3", "b3", "skip")  # packing order of the model's tensors


def _shapes(window: int, hidden: int, embed: int, k_max: int) -> dict[str, tuple[int, ...]]:
    from ..forecasters.nowcast import nowcast_shapes

    return nowcast_shapes({"window": window, "hidden": hidden, "k_max": k_max, "embed": embed})


def mlp_numel(window: int, hidden: int, embed: int, k_max: int) -> int:
    """Length of the packed model (:func:`pack_mlp`) for a window of W states."""
    return sum(math.prod(s) for s in _shapes(window, hidden, embed, k_max).values())


def pack_mlp(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The op's flat float32 ``mlp``: the nowcaster's tensors (``nowcast_shapes``) row-major in :data:`NAMES`
    order (the layout of csrc/nowcast.h)."""
    return torch.cat([tensors[name].detach().reshape(-1).to(torch.float32) for name in NAMES])


def unpack_mlp(mlp: torch.Tensor, window: int, hidden: int, embed: int, k_max: int) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack_mlp`: views of ``mlp`` by name."""
    shapes = _shapes(window, hidden, embed, k_max)
    parts = torch.split(mlp, [math.prod(shapes[name]) for name in NAMES])
    return {name: part.view(shapes[name]) for name, part in zip(NAMES, parts)}


def flops_per_element(window: int, hidden: int, embed: int, rows: int) -> dict[str, int]:
    """Work of the kernels per element of a segment for ``rows`` output rows: floating-point operations (a
    multiply-add counts 2, a ReLU 1; the per-segment folding of ``log s`` and the type embedding, shared by all the
    segment's elements, is not counted, so ``embed`` does not enter) and the history values read and output values
    written (bytes = values x the dtype's size). The reduction pass reads the window and then the window plus its
    first and last state again; the element pass reads the window once."""
    w, h = window, hidden
    flops = (w + 3 * w + 3  # reduction: sum; squared deviations; |v_{W-1} - v_0|
             + 2 * w + 2 * (w - 1)  # z-scores, differences over s
             + 2 * h * w + h  # first layer on the W per-element features, ReLU
             + 2 * h * h + h  # second layer, ReLU
             + rows * (2 * h + 2 * w + 4))  # each output row with its skip, and mu + sigma (z + s m)
    return {"flops": flops, "reads": 3 * w + 2, "writes": rows}

def reference(out: torch.Tensor, history: torch.Tensor, order: list[int], offsets: list[int], numels: list[int],
              types: list[int], rows: list[int], mlp: torch.Tensor, hidden: int, embed: int, k_max: int) -> None:
    """Pure-PyTorch oracle of the op (module docstring): :func:`~weightcast.forecasters.nowcast.predict_tensor`
    per segment, in float32, on a contiguous copy of the segment's window (reductions over a strided view round
    differently)."""
    from ..forecasters.nowcast import predict_tensor

    tensors = unpack_mlp(mlp.to(history.device), history.shape[0], hidden, embed, k_max)
    window = history[list(order)]
    ks = [r + 1 for r in rows]
    for start, n, ptype in zip(offsets, numels, types):
        if n:
            segment = window[:, start:start + n].float().contiguous()  # as the stacked windows of predict() are
            preds = predict_tensor(tensors, segment, ptype, ks)
            for r, pred in enumerate(preds):
                out[r, start:start + n] = pred


def _check(out, history, order, offsets, numels, types, rows, mlp, hidden, embed, k_max) -> None:
    check_flat("out", out, 2)
    check_flat("history", history, 2)
    w, n = history.shape
    if w < 2:
        raise ValueError(f"nowcast_forecast: the window W = history.shape[0] must be >= 2, got {w}")
    if hidden < 1 or embed < 0 or not 1 <= k_max:
        raise ValueError(f"nowcast_forecast: need hidden >= 1, embed >= 0, k_max >= 1, got {hidden}, {embed}, {k_max}")
    if not rows or any(not 0 <= r < k_max for r in rows) or tuple(out.shape) != (len(rows), n):
        raise ValueError(f"nowcast_forecast: rows must be a non-empty list of horizons - 1 in 0..{k_max - 1} and out "
                         f"({len(rows)}, {n}); got rows {rows}, out {tuple(out.shape)}")
    if sorted(order) != list(range(w)):
        raise ValueError(f"nowcast_forecast: order must be a permutation of 0..{w - 1}, got {order}")
    if not len(offsets) == len(numels) == len(types):
        raise ValueError(f"nowcast_forecast: offsets, numels and types need one entry per segment, got "
                         f"{len(offsets)}, {len(numels)}, {len(types)}")
    end = 0
    for start, count, ptype in zip(offsets, numels, types):
        if start < end or count < 0 or start + count > n:
            raise ValueError(f"nowcast_forecast: segment (offset {start}, numel {count}) must lie in a history row of "
                             f"{n} columns, after the previous segment")
        if not 0 <= ptype < NOWCAST_NUM_TYPES:
            raise ValueError(f"nowcast_forecast: types must be in 0..{NOWCAST_NUM_TYPES - 1}, got {ptype}")
        end = start + count
    numel = mlp_numel(w, hidden, embed, k_max)
    if mlp.dtype != torch.float32 or mlp.shape != (numel,) or not mlp.is_contiguous():
        raise ValueError(f"nowcast_forecast: mlp must be contiguous float32 of {numel} values for W = {w}, hidden = "
                         f"{hidden}, embed = {embed}, k_max = {k_max} (pack_mlp), got {mlp.dtype} {tuple(mlp.shape)}")
    if out.device != history.device or mlp.device != history.device:
        raise ValueError(f"nowcast_forecast: out, history and mlp must be on one device, got {out.device}, "
                         f"{history.device}, {mlp.device}")


def within_kernel_limits(window: int, hidden: int, embed: int, k_max: int) -> bool:
    """True when the native and Triton kernels take a model of this size (csrc/limits.h)."""
    return (window <= NOWCAST_MAX_WINDOW and hidden <= NOWCAST_MAX_HIDDEN and embed <= NOWCAST_MAX_EMBED
            and k_max <= NOWCAST_MAX_HORIZONS)


def _impl(out: torch.Tensor, history: torch.Tensor, hidden: int, embed: int, k_max: int):
    """The backend's kernel, or :func:`reference` (float64 tensors, models beyond the kernels' limits, or the
    reference backend)."""
    if out.dtype in KERNEL_DTYPES and history.dtype in KERNEL_DTYPES and \
            within_kernel_limits(history.shape[0], hidden, embed, k_max):
        backend = select_backend(KERNEL, history.device)
        if backend == "triton":
            return importlib.import_module("weightcast.kernels.nowcast_forecast").nowcast_forecast
        if backend in ("cpp", "cuda"):
            return getattr(torch.ops.weightcast_C, KERNEL)
        return reference
    if forced_backend() not in (None, "reference"):
        raise BackendUnavailableError(
            f"backend {forced_backend()!r} runs 'nowcast_forecast' on float32/float16/bfloat16 with W <= "
            f"{NOWCAST_MAX_WINDOW}, hidden <= {NOWCAST_MAX_HIDDEN}, embed <= {NOWCAST_MAX_EMBED}, k_max <= "
            f"{NOWCAST_MAX_HORIZONS} only, got {out.dtype}/{history.dtype}, W = {history.shape[0]}, hidden {hidden}, "
            f"embed {embed}, k_max {k_max}; use WEIGHTCAST_BACKEND=reference")
    return reference


@torch.library.custom_op("weightcast::nowcast_forecast", mutates_args=("out",))
def nowcast_forecast(out: torch.Tensor, history: torch.Tensor, order: list[int], offsets: list[int],
                     numels: list[int], types: list[int], rows: list[int], mlp: torch.Tensor, hidden: int,
                     embed: int, k_max: int) -> None:
    """Write the nowcaster's forecasts of every segment into ``out`` (R, N) (module docstring).

    history (W, N), W >= 2, float32/float16/bfloat16/float64; order: the W history rows, oldest first; offsets,
    numels, types: per segment its first column, its number of elements and its parameter type (0..5), segments in
    increasing order, not overlapping; rows (R,): horizons - 1 (0..k_max - 1); mlp: :func:`pack_mlp` of a model with
    ``hidden`` units, ``embed``-wide type embedding and ``k_max`` horizons, float32, on history's device. ``out``
    must not overlap ``history``. Raises ValueError on inconsistent arguments.
    """
    _check(out, history, order, offsets, numels, types, rows, mlp, hidden, embed, k_max)
    if history.shape[1] and any(numels):
        _impl(out, history, hidden, embed, k_max)(out, history, list(order), list(offsets), list(numels),
                                                  list(types), list(rows), mlp, hidden, embed, k_max)


@nowcast_forecast.register_fake
def _nowcast_forecast_fake(out, history, order, offsets, numels, types, rows, mlp, hidden, embed, k_max) -> None:
    return None
