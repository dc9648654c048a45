"""Forecast: periodic forecast jumps on top of any torch optimizer."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

from ..schedules import Schedule
from .engine import ForecastEngine
from .mixin import SCHEDULE_ARGS, ForecastMixin

AMP_SCALING_ATTRS = ("grad_scale", "found_inf")  # what GradScaler sets on a fused optimizer for one step()


class Forecast(ForecastMixin, torch.optim.Optimizer):
    __doc__ = r"""Wrap ``optimizer`` (any ``torch.optim.Optimizer``) so that it jumps along the forecast trajectory.

    The wrapper is itself an Optimizer: ``param_groups``, ``state`` and ``defaults`` are the wrapped optimizer's,
    so LR schedulers, ``GradScaler`` and trainers that insist on an Optimizer accept it; parameters added to the
    wrapped optimizer later (``add_param_group`` on either) are forecast too. Methods the wrapped optimizer has
    beyond ``Optimizer`` (e.g. schedule-free's ``train()`` / ``eval()``) are forwarded to it. A fused wrapped
    optimizer gets ``GradScaler``'s ``grad_scale`` and ``found_inf`` for its step, so its updates (an overflowing
    step skipped) are the ones it makes without the wrapper.

    Args:
        optimizer (torch.optim.Optimizer): the optimizer whose ``step()`` makes the base update.""" + \
        SCHEDULE_ARGS.format(default="None (no jumps: the wrapper is transparent)")

    def __init__(self, optimizer: torch.optim.Optimizer, forecaster=None, *, window: int = 5,
                 record_every: int | None = None, jump_every: int | None = None, horizon: int | Schedule | None = None,
                 after_jump: str = "keep"):
        if not isinstance(optimizer, torch.optim.Optimizer):
            got = (f"the class {optimizer.__name__}" if isinstance(optimizer, type)
                   else type(optimizer).__name__)
            raise TypeError(f"Forecast wraps a torch.optim.Optimizer instance, got {got}: build the optimizer first, "
                            "e.g. Forecast(torch.optim.AdamW(model.parameters(), lr=1e-3), \"nowcast\")")
        self._check_schedule(forecaster, window, record_every, jump_every, horizon, after_jump)
        if forecaster is not None and any(g.get("capturable", False) for g in optimizer.param_groups):
            raise ValueError("forecast jumps are not CUDA-graph capturable: build the wrapped optimizer with "
                             "capturable=False, or use forecaster=None")
        self.optimizer = optimizer
        # What Optimizer.__init__ sets besides the groups, which stay the wrapped optimizer's own.
        self._optimizer_step_pre_hooks = OrderedDict()
        self._optimizer_step_post_hooks = OrderedDict()
        self._optimizer_state_dict_pre_hooks = OrderedDict()
        self._optimizer_state_dict_post_hooks = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()
        self._patch_step_function()
        self._engine: ForecastEngine | None = None
        if forecaster is not None:
            self._engine = ForecastEngine(optimizer, forecaster, window, record_every, jump_every, horizon,
                                          after_jump)

    def __getattr__(self, name: str):
        """Forward what the wrapped optimizer offers beyond Optimizer (e.g. ``train()``, ``eval()``)."""
        inner = self.__dict__.get("optimizer")
        if inner is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(inner, name)

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
        if self._engine is not None:
            self._engine.take_new_groups()

    def step(self, closure=None):
        return self._forecast_step(lambda: self._inner_step(closure))

    def _inner_step(self, closure):
        """The wrapped optimizer's step. ``GradScaler`` sets ``grad_scale`` and ``found_inf`` on this wrapper when
        the wrapped optimizer is fused (its ``_step_supports_amp_scaling`` is forwarded): they are handed to the
        wrapped optimizer for its step, so that its kernel unscales the gradients and skips an overflowing step
        exactly as without the wrapper, then taken off it again (a value it had before is put back)."""
        amp = {k: self.__dict__[k] for k in AMP_SCALING_ATTRS if k in self.__dict__}
        saved = {k: self.optimizer.__dict__[k] for k in amp if k in self.optimizer.__dict__}
        self.optimizer.__dict__.update(amp)
        try:
            return self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        finally:
            for k in amp:
                del self.optimizer.__dict__[k]
            self.optimizer.__dict__.update(saved)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def _base_state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def _base_load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the Optimizer hooks (callables), which torch optimizers leave out of pickles too, and
        what an LR scheduler attached to this instance: its wrapper of ``step`` (bound, through a weak reference,
        to this optimizer: a copy would step the original) and its ``_opt_called`` flag."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("step", "_opt_called")}
        for name in [k for k in state if k.startswith("_optimizer_") and k.endswith("_hooks")]:
            state[name] = OrderedDict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._patch_step_function()

    def __repr__(self) -> str:
        return f"Forecast({self.optimizer!r}, {self._forecast_repr()})"
