"""The optimizers the time-to-accuracy study compares, built by name.

A forecasting method ("forecast-sgd:<forecaster>") is its base optimizer plus jumps: it runs at the base's tuned
learning rate with the task's forecast schedule, so that a speedup comes from the jumps and not from extra tuning.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..optim import Forecast, ForecastSGD
from .lookahead import Lookahead

SGD_MOMENTUM = 0.9
ADAMW_WEIGHT_DECAY = 0.01


@dataclass(frozen=True)
class Schedule:
    """Forecast schedule shared by every forecasting method of a study."""

    window: int = 5
    record_every: int = 10
    horizon: int = 25
    after_jump: str = "keep"

    @property
    def jump_every(self) -> int:
        return self.window * self.record_every


def family(method: str) -> str:
    """"sgd" or "adamw": which learning-rate grid a method uses."""
    return "adamw" if "adamw" in method else "sgd"


def base_method(method: str) -> str:
    """The optimizer a method adds jumps to: "forecast-sgd:linear" -> "sgd"; other methods are their own base."""
    return method.split(":", 1)[0].removeprefix("forecast-") if is_forecasting(method) else method


def is_forecasting(method: str) -> bool:
    return method.startswith("forecast-")


def forecaster_of(method: str) -> str | None:
    """"forecast-sgd:linear" (or "forecast-sgd:linear+guard") -> "linear"; None for methods that do not forecast."""
    return method.split(":", 1)[1].split("+", 1)[0] if is_forecasting(method) else None


def make_optimizer(method: str, params, lr: float, schedule: Schedule) -> torch.optim.Optimizer:
    """Build ``method``: "sgd", "lookahead-sgd", "adamw", "forecast-sgd:<forecaster>", "forecast-adamw:<forecaster>"
    (a "+guard" or "+guard-err" suffix on a forecasting method makes the training loop add a jump guard, see
    run.py)."""
    params = list(params)
    forecaster = forecaster_of(method)
    jump = dict(window=schedule.window, record_every=schedule.record_every, jump_every=schedule.jump_every,
                horizon=schedule.horizon, after_jump=schedule.after_jump)
    if method == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM)
    if method == "lookahead-sgd":
        return Lookahead(torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM))
    if method == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=ADAMW_WEIGHT_DECAY)
    if method.startswith("forecast-sgd:"):
        return ForecastSGD(params, lr=lr, momentum=SGD_MOMENTUM, forecaster=forecaster, **jump)
    if method.startswith("forecast-adamw:"):
        return Forecast(torch.optim.AdamW(params, lr=lr, weight_decay=ADAMW_WEIGHT_DECAY), forecaster, **jump)
    raise ValueError(f"unknown method {method!r}; e.g. sgd, lookahead-sgd, adamw, forecast-sgd:linear, "
                     "forecast-adamw:linear")
