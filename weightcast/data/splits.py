"""The train/validation tensors every image loader returns."""
from __future__ import annotations

from typing import NamedTuple

import torch


class Splits(NamedTuple):
    """Images and labels of one dataset, split into train and validation.

    ``train_x``/``val_x`` are (N, H, W) or (N, C, H, W) tensors (uint8 as read, float32 once normalised);
    ``train_y``/``val_y`` are (N,) int64 class indices.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
