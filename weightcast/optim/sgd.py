"""ForecastSGD: ``torch.optim.SGD`` plus periodic forecast jumps."""
from __future__ import annotations

from typing import Any

import torch

from ..schedules import Schedule
from .engine import ForecastEngine
from .mixin import SCHEDULE_ARGS, ForecastMixin


class ForecastSGD(ForecastMixin, torch.optim.SGD):
    __doc__ = r"""Drop-in for ``torch.optim.SGD`` that jumps the parameters along their forecast trajectory.

    The base update is ``torch.optim.SGD``'s own (foreach and fused paths): with ``forecaster=None`` this is
    ``torch.optim.SGD`` (same arguments, same updates bit for bit, same state_dict). With a forecaster, every
    ``jump_every`` steps the parameters are overwritten with the forecaster's prediction ``horizon`` steps ahead
    from a window of recorded snapshots (the least-squares line per element for "linear"; weight forecasting
    after Sinha et al. 2017 "Introspection" and Jang et al. 2023 "WNN"; farcast after Shou et al. 2025).

    Args:
        params (iterable): parameters or named parameters to optimize, or dicts defining parameter groups.
        lr (float | Tensor, optional): learning rate. Default: 1e-3.
        momentum (float, optional): momentum factor. Default: 0.
        dampening (float, optional): dampening for momentum. Default: 0.
        weight_decay (float, optional): weight decay (L2 penalty). Default: 0.
        nesterov (bool, optional): enables Nesterov momentum. Default: False.
        maximize (bool, optional): maximize the objective instead of minimizing it. Default: False.
        foreach (bool, optional): whether the foreach implementation of the base update is used. Default: None.
        differentiable (bool, optional): as in torch.optim.SGD; refused together with a forecaster (jumps are not
            differentiable). Default: False.
        fused (bool, optional): whether the fused implementation of the base update is used. Default: None.""" + \
        SCHEDULE_ARGS.format(default="None (plain SGD)")

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None,
                 forecaster=None, window: int = 5, record_every: int | None = None, jump_every: int | None = None,
                 horizon: int | Schedule | None = None, after_jump: str = "keep"):
        self._check_schedule(forecaster, window, record_every, jump_every, horizon, after_jump)
        if forecaster is not None and differentiable:
            raise ValueError("differentiable=True cannot be combined with a forecaster (jumps are not "
                             "differentiable); use forecaster=None")
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                         fused=fused)
        self._engine: ForecastEngine | None = None
        if forecaster is not None:
            self._engine = ForecastEngine(self, forecaster, window, record_every, jump_every, horizon, after_jump)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.take_new_groups()

    def step(self, closure=None):
        # torch.optim.SGD.step itself, not the hook-running wrapper that torch puts around SGD.step once any SGD
        # exists: this step is wrapped already, and its hooks must run once
        sgd_step = torch.optim.SGD.step
        sgd_step = sgd_step.__wrapped__ if getattr(sgd_step, "hooked", False) else sgd_step
        return self._forecast_step(lambda: sgd_step(self, closure))

    def _base_state_dict(self) -> dict[str, Any]:
        return torch.optim.SGD.state_dict(self)

    def _base_load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.optim.SGD.load_state_dict(self, state_dict)

    def __getstate__(self) -> dict[str, Any]:
        return dict(super().__getstate__(), _engine=self._engine)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + self._forecast_repr() + "\n)"
