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


def _check_common(name: str, flat: torch.Tensor, spans: torch.Tensor, scale: torch.Tensor) -> int:
    """Checks shared by both ops; returns K."""
    if flat.dim() != 1 or not flat.is_contiguous() or not flat.is_floating_point():
        raise ValueError(f"{name}: the parameter buffer must be a contiguous floating 1-D tensor, got shape "
                         f"{tuple(flat.shape)} {flat.dtype}")
    if spans.dim() != 2 or spans.shape[1] != 3 or spans.dtype != torch.int64 or not spans.is_contiguous():
        raise ValueError(f"{name}: spans must be a contiguous (K, 3) int64 tensor (Tokenizer.spans), got "
                         f"{tuple(spans.shape)} {spans.dtype}")
    K = spans.shape[0]
    if scale.shape != (K,) or scale.dtype != torch.float32:
        raise ValueError(f"{name}: scale must be ({K},) float32, got {tuple(scale.shape)} {scale.dtype}")
    for t in (spans, scale):
        if t.device != flat.device:
            raise ValueError(f"{name}: all tensors must be on {flat.device}, got one on {t.device}")
    return K


# attribute of a spans table whose every row was checked: (token_size, numel, the table's version at the check);
# views (the blocks a forecaster passes) are looked up through their base, so one check serves every block until
# the table is modified in place
CHECKED_ATTR = "_weightcast_spans_checked"


def _check_spans_fit(name: str, spans: torch.Tensor, token_size: int, numel: int) -> None:
    """Every span lies inside the buffer and fits a token of ``token_size`` slots: the kernels read and write
    through the spans without bounds checks. One reduction and one host sync per spans tensor (and after each
    in-place change of it), not per call."""
    if spans.numel() == 0:
        return
    whole = spans if spans._base is None else spans._base
    rows_of_whole = (whole.dim() == 2 and whole.shape[1] == 3 and whole.is_contiguous()
                     and (spans.storage_offset() - whole.storage_offset()) % 3 == 0)
    if not rows_of_whole:  # a view that is not a block of rows of a spans table: check the view itself
        whole = spans
    if getattr(whole, CHECKED_ATTR, None) == (token_size, numel, whole._version):
        return
    start, count, bias = whole.unbind(1)
    bad = (start < 0) | (count < 0) | (start + count > numel) | (bias >= numel) | \
          (count + (bias >= 0).long() > token_size)
    if bool(bad.any()):
        raise ValueError(f"{name}: spans do not fit a buffer of {numel} values and tokens of {token_size} slots; "
                         "build them with a weightcast.wsl.Tokenizer of this token size for these parameters")
    setattr(whole, CHECKED_ATTR, (token_size, numel, whole._version))


def _check_f32(name: str, label: str, t: torch.Tensor, shape: tuple, device: torch.device) -> None:
    if tuple(t.shape) != shape or t.dtype != torch.float32 or not t.is_contiguous() or t.device != device:
        raise ValueError(f"{name}: {label} must be a contiguous {shape} float32 tensor on {device}, got "
                         f"{tuple(t.shape)} {t.dtype} on {t.device} (contiguous={t.is_contiguous()})")


@torch.library.custom_op("weightcast::tokenize_encode", mutates_args=())
def tokenize_encode(flat: torch.Tensor, spans: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
    """(K, H) float32 first-layer pre-activations of the tokens of ``flat`` (N,): gather the K tokens described by
    ``spans`` (K, 3), multiply by ``scale`` (K,), ``bias`` (K, H) + x @ ``weight`` (H, T).T (T = token size).
    One pass over the parameters."""
    K = _check_common("tokenize_encode", flat, spans, scale)
    H, T = weight.shape if weight.dim() == 2 else (-1, -1)
    _check_f32("tokenize_encode", "weight", weight, (H, T), flat.device)
    _check_f32("tokenize_encode", "bias", bias, (K, H), flat.device)
    _check_spans_fit("tokenize_encode", spans, T, flat.numel())
    impl = kernel_for("tokenize_encode", flat, (flat.dtype,), KERNEL_DTYPES)
    return impl(flat, spans, scale, weight, bias)


@tokenize_encode.register_fake
def _tokenize_encode_fake(flat, spans, scale, weight, bias):
    return flat.new_empty((spans.shape[0], weight.shape[0]), dtype=torch.float32)


@torch.library.custom_op("weightcast::decode_overwrite", mutates_args=("out",))
def decode_overwrite(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                     spans: torch.Tensor, scale: torch.Tensor, accumulate: bool) -> None:
    """Write the decoded tokens into ``out`` (N,) in place: ``y = scale * (hidden (K, H) @ weight (T, H).T +
    bias (T,))`` scattered into the token slots described by ``spans`` (K, 3), added to ``out`` when
    ``accumulate`` (the residual jump), else replacing it. Positions no token covers are left untouched."""
    K = _check_common("decode_overwrite", out, spans, scale)
    H = hidden.shape[1] if hidden.dim() == 2 else -1
    T = weight.shape[0] if weight.dim() == 2 else -1
    _check_f32("decode_overwrite", "hidden", hidden, (K, H), out.device)
    _check_f32("decode_overwrite", "weight", weight, (T, H), out.device)
    if bias is not None:
        _check_f32("decode_overwrite", "bias", bias, (T,), out.device)
    _check_spans_fit("decode_overwrite", spans, T, out.numel())
    impl = kernel_for("decode_overwrite", out, (out.dtype,), KERNEL_DTYPES)
    impl(out, hidden, weight, bias, spans, scale, accumulate)


@decode_overwrite.register_fake
def _decode_overwrite_fake(out, hidden, weight, bias, spans, scale, accumulate):
    return None
