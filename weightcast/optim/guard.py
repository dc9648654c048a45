"""The jump guard: a jump must not make the model worse.

Element-wise forecasts extrapolate noisy trajectories; a long horizon can land the parameters far from where
training was going, and published nowcasters lose tens of accuracy points right after a jump. With a guard, the
optimizer evaluates a loss the user supplies (e.g. on a fixed batch of training data, never the validation data
the jump is judged on) before the jump and after writing the forecast; if the loss rose by more than
``tolerance`` (relative), the horizon is multiplied by ``shrink`` and the forecast rewritten from the same
window, at most ``tries`` forecasts in all; if none passes, the parameters of the jump step are put back and the
jump counts in ``num_rejected_jumps``. Each try costs one evaluation of the loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class JumpGuard:
    """loss_fn() -> scalar loss (tensor or float) of the model with its current parameters."""

    loss_fn: Callable[[], torch.Tensor | float]
    tolerance: float = 0.0
    shrink: float = 0.5
    tries: int = 3

    def __post_init__(self):
        if not callable(self.loss_fn):
            raise TypeError("loss_fn must be callable: loss_fn() -> loss of the model as it is now")
        if self.tolerance < 0 or not 0 < self.shrink < 1 or self.tries < 1:
            raise ValueError(f"need tolerance >= 0, 0 < shrink < 1 and tries >= 1; got tolerance={self.tolerance}, "
                             f"shrink={self.shrink}, tries={self.tries}")

    @torch.no_grad()
    def loss(self) -> float:
        return float(self.loss_fn())

    def accepts(self, before: float, after: float) -> bool:
        """True when ``after`` is finite and at most ``before`` plus the relative tolerance."""
        return math.isfinite(after) and after <= before + self.tolerance * abs(before)
