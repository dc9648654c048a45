"""The jump guard: a jump must not make the model worse.

Element-wise forecasts extrapolate noisy trajectories; a long horizon can land the parameters far from where
training was going, and published nowcasters lose tens of accuracy points right after a jump. With a guard, the
optimizer evaluates a loss the user supplies (e.g. on a fixed batch of training data, never the validation data
the jump is judged on) before the jump and after writing the forecast; if the loss rose by more than
``tolerance`` (relative), the horizon is multiplied by ``shrink`` (rounded down to the forecaster's horizon unit,
at least one unit) and the forecast rewritten from the same window, at most ``tries`` forecasts in all and none
twice at the same horizon; if none passes, the parameters of the jump step are put back and the
jump counts in ``num_rejected_jumps``. Each try costs one evaluation of the loss. When ``torch.distributed`` is
initialised, the criteria are averaged over the default process group before they are compared (the engine's
``_guard_criteria``), so the ranks of a DDP run, each judging on its own batch, take the same decision.

``loss_fn`` may also return several criteria (a tuple or list of scalars, e.g. the loss and the error rate on the
guard's batch): a jump passes only when none of them rises by more than the tolerance. The loss alone can fall
while the accuracy drops (early in training, when few examples sit near the decision boundary).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..schedules import as_int


@dataclass
class JumpGuard:
    """loss_fn() -> scalar loss (tensor or float) of the model with its current parameters, or a tuple/list of
    such criteria (module docstring)."""

    loss_fn: Callable[[], torch.Tensor | float | Sequence[torch.Tensor | float]]
    tolerance: float = 0.0
    shrink: float = 0.5
    tries: int = 3

    def __post_init__(self):
        if not callable(self.loss_fn):
            raise TypeError("loss_fn must be callable: loss_fn() -> loss of the model as it is now")
        self.tries = as_int("tries", self.tries, 1)   # the most forecasts judged per jump
        if self.tolerance < 0 or not 0 < self.shrink < 1:
            raise ValueError(f"need tolerance >= 0 and 0 < shrink < 1; got tolerance={self.tolerance}, "
                             f"shrink={self.shrink}")

    @torch.no_grad()
    def loss(self) -> tuple[float, ...]:
        """The criteria of the model as it is now, as a tuple of floats (one for a scalar ``loss_fn``)."""
        value = self.loss_fn()
        values = value if isinstance(value, (tuple, list)) else (value,)
        return tuple(float(v) for v in values)

    def accepts(self, before: tuple[float, ...], after: tuple[float, ...]) -> bool:
        """True when every criterion ``after`` is finite and at most its ``before`` plus the relative tolerance."""
        if len(before) != len(after):
            raise ValueError(f"loss_fn returned {len(before)} criteria before the jump and {len(after)} after")
        return all(math.isfinite(a) and a <= b + self.tolerance * abs(b) for b, a in zip(before, after))
