"""Pure-PyTorch reference of the latent forecaster's fused ops (the oracle of their C++, CUDA and Triton kernels).

Shapes: ``flat``/``out`` (N,) float32, ``index`` (K, T) int64 with -1 for padding (every other entry a distinct
offset below N), ``scale`` (K,) float32, ``hidden`` (K, H) float32. All arithmetic in float32.

* ``tokenize_encode(flat, index, scale, weight (H, T), bias (K, H)) -> (K, H)``:
  ``out[k, h] = bias[k, h] + sum_j weight[h, j] * x[k, j]`` with ``x[k, j] = flat[index[k, j]] * scale[k]``
  (0 where ``index[k, j] < 0``): gather + per-layer normalisation + the encoder's first linear layer.
* ``decode_overwrite(out, hidden, weight (T, H), bias (T,) or None, index, scale, accumulate) -> None``:
  ``y[k, j] = scale[k] * (sum_h weight[j, h] * hidden[k, h] + bias[j])`` (bias 0 when None), then
  ``out[index[k, j]] = (out[index[k, j]] if accumulate else 0) + y[k, j]`` for ``index[k, j] >= 0``: the
  decoder's last linear layer + de-normalisation + scatter into the parameters, in place. Elements of ``out``
  that no token covers are left untouched.
"""
from __future__ import annotations

import torch


def tokenize_encode(flat: torch.Tensor, index: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
    """See the module docstring."""
    x = flat.float()[index.clamp(min=0)] * (index >= 0) * scale[:, None]
    return bias + x @ weight.t()


def decode_overwrite(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     index: torch.Tensor, scale: torch.Tensor, accumulate: bool) -> None:
    """See the module docstring."""
    y = hidden @ weight.t()
    if bias is not None:
        y = y + bias
    y = y * scale[:, None]
    mask = index >= 0
    where = index[mask]
    values = y[mask]
    if accumulate:
        values = out[where].float() + values
    out[where] = values.to(out.dtype)
