"""Multi-layer perceptron on flattened inputs."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten (B, *in_shape) -> Linear/ReLU per hidden width -> Linear -> (B, num_classes) logits.

    Parameters are ``layers.{2i}.weight``/``.bias`` (float32), in the order of the layers.
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 widths: Sequence[int] = (128, 128)):
        super().__init__()
        sizes = [math.prod(in_shape), *widths]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))
