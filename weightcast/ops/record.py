"""``weightcast::record``: copy the parameters, as they are, into one slot of a history ring.

Multi-tensor: ``params`` is a list of the user's tensors (any shapes, one dtype family, one device); parameter i
is written to ``history[slot, offsets[i] : offsets[i] + numel_i]``. Non-contiguous parameters (channels_last,
transposed views) are read through a contiguous copy of those tensors only. The kernels live in the backends
(reference: :func:`weightcast.ops.reference.record`, C++/CUDA: ``torch.ops.weightcast_C.record``, Triton:
``weightcast.kernels.record``); this file holds the schema, the input checks, the fake implementation and the
dispatch.
"""
from __future__ import annotations

import torch

from .dispatch import kernel_for

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_flat(name: str, t: torch.Tensor, dim: int) -> None:
    """Raise a ValueError unless ``t`` is a contiguous floating tensor with ``dim`` dimensions."""
    if t.dim() != dim or not t.is_contiguous() or not t.is_floating_point():
        raise ValueError(f"{name} must be a contiguous floating {dim}-D tensor, got shape {tuple(t.shape)}, "
                         f"dtype {t.dtype}, contiguous={t.is_contiguous()}")


def check_segments(op: str, params: list[torch.Tensor], history: torch.Tensor, offsets: list[int]) -> None:
    """Raise a ValueError unless every parameter is a floating tensor on history's device whose segment
    ``[offsets[i], offsets[i] + numel)`` lies inside a history row."""
    check_flat(f"{op}: history", history, 2)
    if len(params) != len(offsets):
        raise ValueError(f"{op}: one offset per parameter, got {len(params)} parameters and {len(offsets)} offsets")
    for i, (p, offset) in enumerate(zip(params, offsets)):
        if not p.is_floating_point() or p.device != history.device:
            raise ValueError(f"{op}: params[{i}] must be a floating tensor on {history.device}, got {p.dtype} on "
                             f"{p.device}")
        if offset < 0 or offset + p.numel() > history.shape[1]:
            raise ValueError(f"{op}: the segment [{offset}, {offset + p.numel()}) of params[{i}] is outside a "
                             f"history row of {history.shape[1]} elements")


def dtypes_of(params: list[torch.Tensor], history: torch.Tensor) -> tuple[torch.dtype, ...]:
    return tuple({p.dtype for p in params}) + (history.dtype,)


def record_trusted(params: list[torch.Tensor], history: torch.Tensor, slot: int, offsets: list[int],
                   dtype: torch.dtype) -> torch.Tensor:
    """:func:`record` without its Python checks and the custom-op dispatch, for a caller that keeps the layout
    valid itself (the optimizer's buckets: contiguous parameters of ``dtype`` whose segments fit); the kernels
    still check their inputs. Costs the kernel and a few microseconds, not microseconds per tensor."""
    impl = kernel_for("record", history, (dtype, history.dtype), KERNEL_DTYPES)
    return impl(params, history, slot, offsets)


@torch.library.custom_op("weightcast::record", mutates_args=("history",))
def record(params: list[torch.Tensor], history: torch.Tensor, slot: int, offsets: list[int]) -> torch.Tensor:
    """Write every ``params[i]`` into ``history[slot, offsets[i]:offsets[i] + numel]`` of ``history`` (W, M),
    converting to ``history.dtype``.

    Returns the float32 0-dim ``max |history[slot, segments]|`` (NaN if a value is NaN, inf if one is infinite),
    which :func:`weightcast.ops.lincomb_forecast` uses to prove a forecast finite before writing it.
    """
    check_segments("record", params, history, offsets)
    if not 0 <= slot < history.shape[0]:
        raise ValueError(f"record: slot {slot} is outside the history window of {history.shape[0]}")
    impl = kernel_for("record", history, dtypes_of(params, history), KERNEL_DTYPES)
    return impl([p if p.is_contiguous() else p.contiguous() for p in params], history, slot, list(offsets))


@record.register_fake
def _record_fake(params, history, slot, offsets) -> torch.Tensor:
    return history.new_empty((), dtype=torch.float32)
