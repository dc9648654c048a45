"""Lookahead (Zhang et al., 2019), the baseline users would pick for "jumping" optimizers.

Every ``k`` steps of the inner ("fast") optimizer the slow weights move ``alpha`` of the way to the fast ones and
the fast weights restart from them: ``slow <- slow + alpha * (fast - slow); fast <- slow``. Memory: one copy of
the parameters. Defaults k=5, alpha=0.8 as in ANCHORS.md.
"""
from __future__ import annotations

import torch


class Lookahead(torch.optim.Optimizer):
    """Lookahead around ``optimizer``; ``param_groups`` and ``state`` are the inner optimizer's."""

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.8):
        if k < 1 or not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead needs k >= 1 and 0 < alpha <= 1, got k={k}, alpha={alpha}")
        self.optimizer, self.k, self.alpha = optimizer, k, alpha
        self._steps = 0
        self._params = [p for g in optimizer.param_groups for p in g["params"]]
        self._slow = [p.detach().clone() for p in self._params]

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        self._steps += 1
        if self._steps % self.k == 0:
            fast = [p.detach() for p in self._params]
            torch._foreach_lerp_(self._slow, fast, self.alpha)
            torch._foreach_copy_(fast, self._slow)
        return loss
