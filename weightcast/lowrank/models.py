"""The DLRT paper's LeNet-5 for MNIST (Schotthöfer et al., NeurIPS 2022, Table 1)."""
from __future__ import annotations

import torch
from torch import nn


class ReferenceLeNet5(nn.Module):
    """conv 5x5 (20) -> ReLU -> pool 2 -> conv 5x5 (50) -> ReLU -> pool 2 -> fc 800->500 -> ReLU -> fc 500->10.

    Input (B, 1, 28, 28) float32 -> logits (B, 10); no padding (28 -> 24 -> 12 -> 8 -> 4). 430,500 weights
    without biases, the dense count of the paper's table. The paper trains conv1, conv2 and fc1 in low rank
    (``LOW_RANK_LAYERS``) and keeps fc2 dense.
    """

    LOW_RANK_LAYERS = ("conv1", "conv2", "fc1")

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))
