"""The "linear" forecaster: a least-squares line per element through the window, evaluated at the target step."""
from __future__ import annotations

import torch

from .base import Forecaster


def least_squares_line_coefficients(steps: list[int], target: int) -> torch.Tensor:
    """Coefficients ``c`` (W,) float64 such that ``sum_k c[k] * y_k`` is the least-squares line through the
    points ``(steps[k], y_k)`` evaluated at ``target``: ``c_k = 1/W + (x_k - mean)(target - mean) / S_xx``.

    Needs at least two distinct steps. ``sum_k c_k = 1`` (a constant trajectory forecasts itself) and
    ``sum_k c_k x_k = target`` (a straight line is extrapolated exactly).
    """
    x = torch.tensor(steps, dtype=torch.float64)
    centred = x - x.mean()
    sxx = float((centred * centred).sum())
    if len(steps) < 2 or sxx == 0.0:
        raise ValueError(f"a line needs at least two distinct steps, got {steps}")
    return 1.0 / len(steps) + centred * (float(target) - float(x.mean())) / sxx


class LinearForecaster(Forecaster):
    """Per-element least-squares line through the recorded window (see :func:`least_squares_line_coefficients`)."""

    name = "linear"

    def coefficients(self, steps: list[int], target: int) -> torch.Tensor:
        return least_squares_line_coefficients(steps, target)
