"""LeNet-5 with ReLU and max-pooling, for 28x28 (MNIST) and small inputs such as 8x8 digits."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class LeNet5(nn.Module):
    """conv 5x5 (6w) -> pool 2 -> conv 5x5 (16w) -> pool 2 -> fc 120w -> fc 84w -> fc num_classes.

    Input (B, C, H, W) float32 -> logits (B, num_classes). ``width`` multiplies every hidden size (width 1 is the
    classic 6/16 conv, 120/84 fc; 61,706 parameters on 1x28x28 with 10 classes). conv1 pads by 2 (keeps H, W).
    conv2 is unpadded, as in LeNet-5, when the input is at least 28 pixels high and wide (28 -> 14 -> 10 -> 5);
    smaller inputs pad it by 2 so it keeps the size (8x8 digits: 8 -> 4 -> 4 -> 2), instead of resizing them.
    ``batch_norm=True`` puts a BatchNorm2d after each convolution (conv-BN-ReLU-pool; the convs then have no bias).
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, width: float = 1.0,
                 batch_norm: bool = False):
        super().__init__()
        channels, height, wide = in_shape
        c1, c2, f1, f2 = (_scaled(n, width) for n in (6, 16, 120, 84))
        pad2 = 0 if min(height, wide) >= 28 else 2
        h, w = (height // 2 + 2 * pad2 - 4) // 2, (wide // 2 + 2 * pad2 - 4) // 2
        if h < 1 or w < 1:
            raise ValueError(f"LeNet5 needs inputs of at least 4x4 pixels, got {height}x{wide}")
        norm = (lambda c: [nn.BatchNorm2d(c)]) if batch_norm else (lambda c: [])
        self.features = nn.Sequential(
            nn.Conv2d(channels, c1, 5, padding=2, bias=not batch_norm), *norm(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=pad2, bias=not batch_norm), *norm(c2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * h * w, f1), nn.ReLU(), nn.Linear(f1, f2), nn.ReLU(), nn.Linear(f2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
