"""Forecast: periodic forecast jumps on top of any torch optimizer."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

from .engine import ForecastEngine
from .mixin import JumpCounters


class Forecast(JumpCounters, torch.optim.Optimizer):
    """Wrap ``optimizer`` (any ``torch.optim.Optimizer``) so that it jumps along the forecast trajectory.

    The wrapper is itself an Optimizer: ``param_groups``, ``state`` and ``defaults`` are the wrapped optimizer's,
    so LR schedulers, ``GradScaler`` and trainers that insist on an Optimizer accept it. The schedule arguments
    mean the same as in :class:`weightcast.ForecastSGD`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, forecaster="linear", *, window: int = 5,
                 record_every: int = 1, jump_every: int | None = None, horizon: int | None = None,
                 after_jump: str = "keep"):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"Forecast wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if forecaster is None:
            raise ValueError("Forecast needs a forecaster (e.g. 'linear'); use the optimizer itself for none")
        self.optimizer = optimizer
        # What Optimizer.__init__ sets besides the groups, which stay the wrapped optimizer's own.
        self._optimizer_step_pre_hooks = OrderedDict()
        self._optimizer_step_post_hooks = OrderedDict()
        self._optimizer_state_dict_pre_hooks = OrderedDict()
        self._optimizer_state_dict_post_hooks = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()
        self._patch_step_function()
        self._engine = ForecastEngine(optimizer, forecaster, window, record_every, jump_every, horizon, after_jump)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:
        return self.optimizer.defaults

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)
        self._engine.refresh()

    def step(self, closure=None):
        self._engine.check_grads()
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        self._engine.after_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        state = self.optimizer.state_dict()
        state["forecast"] = self._engine.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        forecast = state_dict.pop("forecast", None)
        if forecast is not None:
            self._engine.check_state(forecast)
        self.optimizer.load_state_dict(state_dict)
        if forecast is None:  # a checkpoint of the plain optimizer: continue from it with an empty window
            self._engine.reset()
        else:
            self._engine.load_state_dict(forecast)

    def __repr__(self) -> str:
        return f"Forecast({self.optimizer!r}, forecaster={self._engine.forecaster.name!r})"
