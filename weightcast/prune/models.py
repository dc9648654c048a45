"""The bias-free MLP of the pruning literature (784-40-20-10 on MNIST), registered with :mod:`weightcast.models`.

The OBS/WoodFisher/CHITA papers prune "MLPNet": Linear layers without bias and ReLU between them. Zoo runs
(:class:`weightcast.zoo.RunSpec`) name their model by its registry key, so :func:`registered` puts it in the
model registry as ``"mlp_nobias"`` for the duration of a ``with`` block (the registry itself stays as it is).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
from torch import nn

from .. import models


class BiasFreeMLP(nn.Module):
    """Flatten (B, *in_shape) -> [Linear (no bias) -> ReLU] per hidden width -> Linear (no bias) -> logits.

    Parameters ``layers.{2i}.weight`` (float32), one per layer; default widths (40, 20): 784-40-20-10 on MNIST,
    32,360 weights.
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 widths: Sequence[int] = (40, 20)):
        super().__init__()
        sizes = [math.prod(in_shape), *widths, num_classes]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(fan_in, fan_out, bias=False))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


NAME = "mlp_nobias"


@contextlib.contextmanager
def registered() -> Iterator[None]:
    """``weightcast.models.get("mlp_nobias", ...)`` builds a :class:`BiasFreeMLP` inside the block."""
    added = NAME not in models.MODELS
    if added:
        models.MODELS[NAME] = BiasFreeMLP
    try:
        yield
    finally:
        if added:
            del models.MODELS[NAME]
