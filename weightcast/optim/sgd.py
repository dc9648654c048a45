"""ForecastSGD: ``torch.optim.SGD`` plus periodic forecast jumps."""
from __future__ import annotations

from typing import Any

import torch

from .engine import ForecastEngine
from .mixin import JumpCounters


class ForecastSGD(JumpCounters, torch.optim.SGD):
    """Drop-in for ``torch.optim.SGD`` that jumps the parameters along their forecast trajectory.

    With ``forecaster=None`` it is ``torch.optim.SGD`` (same arguments, same updates bit for bit, same state_dict).
    Otherwise, at the end of the t-th ``step()`` the parameters are recorded when ``t % record_every == 0``, and when
    ``t % jump_every == 0`` and the window of ``window`` snapshots is full, they are overwritten with the forecast for
    step ``t + horizon`` (defaults: ``jump_every = window * record_every``, ``horizon = jump_every``); the window
    then refills. ``after_jump`` ("keep" | "reset" | "scale") says what happens to the momentum buffers, see
    :meth:`weightcast.optim.engine.ForecastEngine._adjust_momentum`.

    The parameters stay the user's tensors; the recorded window lives in the optimizer's own buffers, and record
    and jump are multi-tensor kernels over the parameters (see :mod:`weightcast.history`).
    """

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None,
                 forecaster=None, window: int = 5, record_every: int = 1, jump_every: int | None = None,
                 horizon: int | None = None, after_jump: str = "keep"):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                         fused=fused)
        self._engine: ForecastEngine | None = None
        if forecaster is not None:
            if differentiable:
                raise ValueError("differentiable=True cannot be combined with a forecaster (jumps are not "
                                 "differentiable); use forecaster=None")
            self._engine = ForecastEngine(self, forecaster, window, record_every, jump_every, horizon, after_jump)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.refresh()

    def step(self, closure=None):
        if self._engine is not None:
            self._engine.check_grads()
        loss = super().step(closure)
        if self._engine is not None:
            self._engine.after_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._engine is not None:
            state["forecast"] = self._engine.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        forecast = state_dict.pop("forecast", None)
        if forecast is not None and self._engine is None:
            raise ValueError(f"this state_dict was saved with forecaster {forecast['forecaster'].get('name')!r}, "
                             "this optimizer has none (forecaster=None); build it with that forecaster")
        if forecast is not None:
            self._engine.check_state(forecast)
        super().load_state_dict(state_dict)
        if forecast is not None:
            self._engine.load_state_dict(forecast)
        elif self._engine is not None:  # a plain SGD checkpoint: continue from it with an empty window
            self._engine.reset()
