"""CIFAR-style ResNet-18: 3x3 stem, no max-pool, four stages of two basic blocks, with a width multiplier."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """Input (B, C, H, W) float32 -> logits (B, num_classes); C = ``in_shape[0]`` (H, W are free).

    Stage widths are 64, 128, 256, 512 times ``width`` (at least 1), strides 1, 2, 2, 2, then global average
    pooling and a linear head. Width 1 with 10 classes has 11,173,962 parameters.
    """

    def __init__(self, in_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, width: float = 1.0):
        super().__init__()
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(nn.Conv2d(in_shape[0], widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, in_channels = [], widths[0]
        for channels, stride in zip(widths, (1, 2, 2, 2)):
            blocks += [BasicBlock(in_channels, channels, stride), BasicBlock(channels, channels, 1)]
            in_channels = channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))
