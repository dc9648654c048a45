"""Pure-PyTorch reference of the latent forecaster's fused ops (the oracle of their C++, CUDA and Triton kernels).

Shapes: ``flat``/``out`` (N,) float32, ``spans`` (K, 3) int64, ``scale`` (K,) float32, ``hidden`` (K, H) float32.
Token k holds the values ``flat[start_k : start_k + count_k]`` in its slots ``0 .. count_k - 1`` and, when
``bias_k >= 0``, ``flat[bias_k]`` in slot ``count_k`` (see :mod:`weightcast.wsl.tokenizer`); the other slots
are padding (0). Every covered offset is below N and covered once. All arithmetic in float32.

* ``tokenize_encode(flat, spans, scale, weight (H, T), bias (K, H)) -> (K, H)``:
  ``out[k, h] = bias[k, h] + sum_j weight[h, j] * x[k, j]`` with ``x[k, j] = token value * scale[k]``
  (0 in padding): gather + per-layer normalisation + the encoder's first linear layer.
* ``decode_overwrite(out, hidden, weight (T, H), bias (T,) or None, spans, scale, accumulate) -> None``:
  ``y[k, j] = scale[k] * (sum_h weight[j, h] * hidden[k, h] + bias[j])`` (bias 0 when None), then for every
  covered slot ``out[offset] = (out[offset] if accumulate else 0) + y[k, j]``: the decoder's last linear layer +
  de-normalisation + scatter into the parameters, in place. Elements of ``out`` no token covers are untouched.
"""
from __future__ import annotations

import torch

from ..wsl.tokenizer import spans_to_index


def tokenize_encode(flat: torch.Tensor, spans: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
    """See the module docstring."""
    index = spans_to_index(spans, weight.shape[1])
    x = flat.float()[index.clamp(min=0)] * (index >= 0) * scale[:, None]
    return bias + x @ weight.t()


def decode_overwrite(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     spans: torch.Tensor, scale: torch.Tensor, accumulate: bool) -> None:
    """See the module docstring."""
    y = hidden @ weight.t()
    if bias is not None:
        y = y + bias
    y = y * scale[:, None]
    index = spans_to_index(spans, weight.shape[0])
    mask = index >= 0
    where = index[mask]
    values = y[mask]
    if accumulate:
        values = out[where].float() + values
    out[where] = values.to(out.dtype)
