"""``weightcast::record``: copy the flat parameter buffer into one slot of the history ring.

The kernels live in the backends (reference: :func:`weightcast.ops.reference.record`, C++/CUDA:
``torch.ops.weightcast_C.record``, Triton: ``weightcast.kernels.record``); this file holds the schema, the input
checks, the fake implementation and the dispatch.
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


@torch.library.custom_op("weightcast::record", mutates_args=("history",))
def record(params: torch.Tensor, history: torch.Tensor, slot: int) -> torch.Tensor:
    """Write ``params`` (N,) into ``history[slot]`` of ``history`` (W, N), converting to ``history.dtype``.

    Returns the float32 0-dim ``max |history[slot]|`` (NaN if a value is NaN, inf if one is infinite), which
    :func:`weightcast.ops.lincomb_forecast` uses to prove a forecast finite before writing it.
    """
    check_flat("params", params, 1)
    check_flat("history", history, 2)
    if history.shape[1] != params.shape[0] or history.device != params.device:
        raise ValueError(f"history {tuple(history.shape)} on {history.device} does not hold params "
                         f"{tuple(params.shape)} on {params.device}")
    if not 0 <= slot < history.shape[0]:
        raise ValueError(f"slot {slot} is outside the history window of {history.shape[0]}")
    impl = kernel_for("record", params, (params.dtype, history.dtype), KERNEL_DTYPES)
    return impl(params, history[slot])


@record.register_fake
def _record_fake(params: torch.Tensor, history: torch.Tensor, slot: int) -> torch.Tensor:
    return params.new_empty((), dtype=torch.float32)
