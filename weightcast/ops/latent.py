"""``weightcast::tokenize_encode`` and ``weightcast::decode_overwrite``: the fused ops of the latent forecaster.

Numerics and shapes: :mod:`weightcast.ops.latent_reference` (the reference, the test oracle). Kernels: C++/CUDA
``torch.ops.weightcast_C.tokenize_encode`` / ``decode_overwrite``, Triton ``weightcast.kernels.latent_encode`` /
``latent_decode``. The kernels take float32 parameters; other parameter dtypes (and float64) run the reference.
"""
from __future__ import annotations

from typing import Optional

import torch

from .dispatch import kernel_for

KERNEL_DTYPES = (torch.float32,)


def _check_common(name: str, flat: torch.Tensor, index: torch.Tensor, scale: torch.Tensor) -> tuple[int, int]:
    if flat.dim() != 1 or not flat.is_contiguous() or not flat.is_floating_point():
        raise ValueError(f"{name}: the parameter buffer must be a contiguous floating 1-D tensor, got shape "
                         f"{tuple(flat.shape)} {flat.dtype}")
    if index.dim() != 2 or index.dtype != torch.int64 or not index.is_contiguous():
        raise ValueError(f"{name}: index must be a contiguous (K, T) int64 tensor, got {tuple(index.shape)} "
                         f"{index.dtype}")
    K, T = index.shape
    if scale.shape != (K,) or scale.dtype != torch.float32:
        raise ValueError(f"{name}: scale must be ({K},) float32, got {tuple(scale.shape)} {scale.dtype}")
    for t in (index, scale):
        if t.device != flat.device:
            raise ValueError(f"{name}: all tensors must be on {flat.device}, got one on {t.device}")
    return K, T


def _check_f32(name: str, label: str, t: torch.Tensor, shape: tuple, device: torch.device) -> None:
    if tuple(t.shape) != shape or t.dtype != torch.float32 or not t.is_contiguous() or t.device != device:
        raise ValueError(f"{name}: {label} must be a contiguous {shape} float32 tensor on {device}, got "
                         f"{tuple(t.shape)} {t.dtype} on {t.device} (contiguous={t.is_contiguous()})")


@torch.library.custom_op("weightcast::tokenize_encode", mutates_args=())
def tokenize_encode(flat: torch.Tensor, index: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
    """(K, H) float32 first-layer pre-activations of the tokens of ``flat`` (N,): gather by ``index`` (K, T),
    multiply by ``scale`` (K,), ``bias`` (K, H) + x @ ``weight`` (H, T).T. One pass over the parameters."""
    K, T = _check_common("tokenize_encode", flat, index, scale)
    H = weight.shape[0] if weight.dim() == 2 else -1
    _check_f32("tokenize_encode", "weight", weight, (H, T), flat.device)
    _check_f32("tokenize_encode", "bias", bias, (K, H), flat.device)
    impl = kernel_for("tokenize_encode", flat, (flat.dtype,), KERNEL_DTYPES)
    return impl(flat, index, scale, weight, bias)


@tokenize_encode.register_fake
def _tokenize_encode_fake(flat, index, scale, weight, bias):
    return flat.new_empty((index.shape[0], weight.shape[0]), dtype=torch.float32)


@torch.library.custom_op("weightcast::decode_overwrite", mutates_args=("out",))
def decode_overwrite(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                     index: torch.Tensor, scale: torch.Tensor, accumulate: bool) -> None:
    """Write the decoded tokens into ``out`` (N,) in place: ``y = scale * (hidden (K, H) @ weight (T, H).T +
    bias (T,))`` scattered by ``index`` (K, T), added to ``out`` when ``accumulate`` (the residual jump), else
    replacing it. Positions no token covers are left untouched."""
    K, T = _check_common("decode_overwrite", out, index, scale)
    H = hidden.shape[1] if hidden.dim() == 2 else -1
    _check_f32("decode_overwrite", "hidden", hidden, (K, H), out.device)
    _check_f32("decode_overwrite", "weight", weight, (T, H), out.device)
    if bias is not None:
        _check_f32("decode_overwrite", "bias", bias, (T,), out.device)
    impl = kernel_for("decode_overwrite", out, (out.dtype,), KERNEL_DTYPES)
    impl(out, hidden, weight, bias, index, scale, accumulate)


@decode_overwrite.register_fake
def _decode_overwrite_fake(out, hidden, weight, bias, index, scale, accumulate):
    return None
