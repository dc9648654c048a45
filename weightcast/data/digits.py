"""scikit-learn's 8x8 digits (1797 images, ships with scikit-learn), split into train and validation by a seed."""
from __future__ import annotations

import torch

from .splits import Splits

VAL_SIZE = 360  # about 20% of the 1797 images


def load_digits(seed: int = 0) -> Splits:
    """Digits as ``train_x`` (1437, 8, 8) uint8 with values 0..16, ``train_y`` (1437,) int64, and ``val_x`` (360,
    8, 8), ``val_y`` (360,); the split is a permutation drawn from ``torch.Generator().manual_seed(seed)``.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = torch.from_numpy(bunch.images).to(torch.uint8)  # float64 with integer values 0..16
    y = torch.from_numpy(bunch.target).long()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    val, train = perm[:VAL_SIZE], perm[VAL_SIZE:]
    return Splits(x[train], y[train], x[val], y[val])
