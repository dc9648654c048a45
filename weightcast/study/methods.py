"""The optimizers the time-to-accuracy study compares, built by name.

Baselines a user would pick instead of forecasting, each tuned on its family's learning-rate grid:
"sgd" (momentum 0.9), "adamw", "adamw-cosine" (cosine decay to 0 over the budget), "lookahead-adamw" and
"lookahead-sgd" (Zhang et al., 2019), "schedulefree-adamw" (Defazio et al., 2024, the ``schedulefree`` package;
evaluated at its averaged point), "ema-adamw" (AdamW, evaluated on an exponential moving average of the weights,
decay 0.99) and "slow-ema-adamw" (the same with decay 1 - 1 / (10 R), R the task's record spacing: 0.999 on
MNIST and the GPT, where R = 100; less noise, a lag of about ten record intervals). A suffix "+lag<N>" sets the
slow average's lag to N record intervals instead (decay 1 - 1 / (N R)), for it and for the jumps on it below.

Forecasting methods run at their base optimizer's tuned learning rate with the task's schedule, so that a speedup
comes from the jumps and not from extra tuning:

* "jump-adamw:<predictor>" (predictor "linear", "nowcast" or "nowcast-graph"): jumps driven from the training loop
  (:mod:`.jumps`) with the long decaying schedule; suffixes "+guard" (score k, k/2, k/4, 0 on a training batch
  and keep the best) and "+clip" (clip each tensor's moves at 3 standard deviations), combinable;
* "jump-ema-adamw:<predictor>": the same jumps on AdamW, judged on an EMA of its weights that moves by each jump's
  displacement (forecasting and weight averaging are complementary: one moves along the trajectory, the other
  removes its noise);
* "jump-slow-ema-adamw:<forecaster>" ("nowcast" or "nowcast-graph"): :class:`weightcast.ForecastEMA`, the slow
  average jumping along its own forecast trajectory (records of the average, not of the noisy weights:
  ``benchmarks/forecastability.py`` finds it far more forecastable), judged on the average; the weights AdamW
  trains are left as they are. The forecast makes up the lag of a slow average (about 1,000 steps at decay 0.999)
  while keeping its low noise; "+guard" scores k, k/2, k/4 and staying on a training batch, as above;
* "forecast-adamw:<forecaster>" / "forecast-sgd:<forecaster>": the optimizer engine's jumps (any registered
  forecaster), the horizon of each jump set from the same schedule.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from ..averaging import SLOW_EMA_LAG
from ..optim import Forecast, ForecastSGD
from ..schedules import Decaying
from .lookahead import Lookahead

SGD_MOMENTUM = 0.9
ADAMW_WEIGHT_DECAY = 0.01
EMA_DECAY = 0.99
CLIP_STD = 3.0


@dataclass(frozen=True)
class Schedule:
    """Forecast schedule shared by every forecasting method of a study: ``window`` states ``record_every`` steps
    apart, a jump every ``window * record_every`` steps; horizon ``k_max`` record intervals at the first jump
    decaying to 1 (``power``), or a constant ``horizon`` steps when ``k_max`` is None."""

    window: int = 5
    record_every: int = 10
    horizon: int = 25
    k_max: int | None = None
    power: float = 2.0
    after_jump: str = "keep"

    @property
    def jump_every(self) -> int:
        return self.window * self.record_every

    def ks(self, budget: int) -> list[int]:
        """Horizon of each jump of a ``budget``-step run, in record intervals (steps / record_every for a constant
        horizon)."""
        n = budget // self.jump_every
        if self.k_max is None:
            return [self.horizon / self.record_every] * n
        decaying = self.horizon_schedule(budget)
        decaying.bind(self.record_every, self.jump_every)
        return [decaying.k(j) for j in range(n)]

    def horizon_schedule(self, budget: int) -> int | Decaying:
        """The horizon argument of the optimizer engine and of ForecastEMA over ``budget`` steps: the constant
        horizon (steps), or the decaying schedule (unbound)."""
        if self.k_max is None:
            return self.horizon
        return Decaying(self.k_max, self.power, max(budget, self.jump_every))


def family(method: str) -> str:
    """"sgd" or "adamw": which learning-rate grid a method uses."""
    return "adamw" if "adamw" in method else "sgd"


def is_forecasting(method: str) -> bool:
    """Engine jumps ("forecast-...")."""
    return method.startswith("forecast-")


def is_jumping(method: str) -> bool:
    """Training-loop jumps ("jump-...")."""
    return method.startswith("jump-")


def base_method(method: str) -> str:
    """The optimizer a method adds jumps to ("jump-adamw:nowcast+guard" -> "adamw"); others are their own base,
    without options ("slow-ema-adamw+lag3" -> "slow-ema-adamw")."""
    if is_forecasting(method) or is_jumping(method):
        return method.split(":", 1)[0].split("-", 1)[1]
    return method.split("+", 1)[0]


def forecaster_of(method: str) -> str | None:
    """"forecast-sgd:linear+guard" -> "linear"; None for methods that do not jump."""
    return method.split(":", 1)[1].split("+", 1)[0] if is_forecasting(method) or is_jumping(method) else None


def options_of(method: str) -> set[str]:
    """The "+" suffixes of a method: {"guard", "clip", ...}."""
    return set(method.split("+")[1:])


BASELINES = ("sgd", "adamw", "adamw-cosine", "lookahead-sgd", "lookahead-adamw", "schedulefree-adamw", "ema-adamw",
             "slow-ema-adamw")
JUMP_BASES = ("sgd", "adamw", "ema-adamw", "slow-ema-adamw")  # "jump-<base>:<predictor>"
JUMP_PREDICTORS = ("linear", "nowcast", "nowcast-graph")
FORECAST_BASES = ("sgd", "adamw")  # "forecast-<base>:<registered forecaster>"
# a suffix on a forecasting method adds a jump guard; its criteria on the guard batch: the loss ("+guard"), or the
# loss and the error rate ("+guard-err": a jump must lower neither, see weightcast.optim.guard)
GUARD_OPTIONS = {"guard": False, "guard-err": True}
LAG_OPTION = "lag<N>, N >= 1"  # how check_method names the slow average's lag option


def check_method(method: str) -> None:
    """Raise ValueError, saying what is wrong and which names are valid, for a method the study cannot run (the
    study checks every name before its first run)."""
    from ..forecasters import names as forecaster_names

    head = method.split("+", 1)[0]
    if is_jumping(method) or is_forecasting(method):
        kind = head.split("-", 1)[0]
        if ":" not in head:
            raise ValueError(f"{method}: a {kind} method names its forecaster after a colon, e.g. {head}:nowcast")
        bases, predictors = (JUMP_BASES, JUMP_PREDICTORS) if kind == "jump" else (FORECAST_BASES, forecaster_names())
        if base_method(method) not in bases or forecaster_of(method) not in predictors:
            raise ValueError(f"{method}: {kind}-<base>:<forecaster> takes a base in {list(bases)} and a forecaster "
                             f"in {list(predictors)}")
        allowed = ({"guard", LAG_OPTION} if base_method(method) == "slow-ema-adamw" else
                   {*GUARD_OPTIONS, "clip"} if kind == "jump" else set(GUARD_OPTIONS))
    elif head in BASELINES:
        allowed = {LAG_OPTION} if head == "slow-ema-adamw" else set()
    else:
        raise ValueError(f"unknown method {method!r}; baselines {list(BASELINES)}, or jump-<base>:<predictor> "
                         f"(bases {list(JUMP_BASES)}, predictors {list(JUMP_PREDICTORS)}) and "
                         f"forecast-<base>:<forecaster> (bases {list(FORECAST_BASES)}), e.g. jump-adamw:nowcast+guard")
    bad = sorted(o for o in options_of(method)
                 if o not in allowed and not (LAG_OPTION in allowed and re.fullmatch(r"lag[1-9]\d*", o)))
    if bad:
        raise ValueError(f"{method}: options {bad} do not apply; {head} takes "
                         f"{sorted('+' + o for o in allowed) or 'no options'}")
    lag_of(method)


def lag_of(method: str) -> int:
    """The slow average's lag in record intervals: N of a "+lag<N>" suffix, else ``SLOW_EMA_LAG``."""
    lags = [option for option in options_of(method) if re.fullmatch(r"lag\d+", option)]
    if lags and base_method(method) != "slow-ema-adamw":
        raise ValueError(f"{method}: '+lag<N>' applies to the slow average only, e.g. slow-ema-adamw+lag3 or "
                         "jump-slow-ema-adamw:nowcast+lag3")
    if len(lags) > 1 or lags == ["lag0"]:
        raise ValueError(f"{method}: give one '+lag<N>' with N >= 1 record intervals, e.g. slow-ema-adamw+lag3")
    return int(lags[0][3:]) if lags else SLOW_EMA_LAG


def ema_decay(method: str, schedule: Schedule) -> float | None:
    """Decay of the weight average a method is judged on (its base's; module docstring), None when it is judged on
    the weights themselves."""
    lag, base = lag_of(method), base_method(method)
    if base == "ema-adamw":
        return EMA_DECAY
    if base == "slow-ema-adamw":
        return 1.0 - 1.0 / (lag * schedule.record_every)
    return None


def make_optimizer(method: str, params, lr: float, schedule: Schedule, budget: int = 0):
    """Build ``method`` (module docstring). Returns ``(optimizer, lr_scheduler or None)``; ValueError for a name
    :func:`check_method` refuses."""
    check_method(method)
    params = list(params)
    if is_jumping(method):
        return make_optimizer(base_method(method), params, lr, schedule, budget)
    if is_forecasting(method):
        jump = dict(window=schedule.window, record_every=schedule.record_every, jump_every=schedule.jump_every,
                    horizon=schedule.horizon_schedule(budget), after_jump=schedule.after_jump)
        if method.startswith("forecast-sgd:"):
            return ForecastSGD(params, lr=lr, momentum=SGD_MOMENTUM, forecaster=forecaster_of(method), **jump), None
        base = torch.optim.AdamW(params, lr=lr, weight_decay=ADAMW_WEIGHT_DECAY)
        return Forecast(base, forecaster_of(method), **jump), None
    method = base_method(method)  # options such as "+lag3" change the average, not the optimizer
    if method == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM), None
    if method == "lookahead-sgd":
        return Lookahead(torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM)), None
    if method in ("adamw", "ema-adamw", "slow-ema-adamw"):
        return torch.optim.AdamW(params, lr=lr, weight_decay=ADAMW_WEIGHT_DECAY), None
    if method == "lookahead-adamw":
        return Lookahead(torch.optim.AdamW(params, lr=lr, weight_decay=ADAMW_WEIGHT_DECAY)), None
    if method == "adamw-cosine":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=ADAMW_WEIGHT_DECAY)
        total = max(budget, 1)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total)
                                                                                          / total)))
    if method == "schedulefree-adamw":
        import schedulefree

        opt = schedulefree.AdamWScheduleFree(params, lr=lr, weight_decay=ADAMW_WEIGHT_DECAY,
                                             warmup_steps=budget // 20)
        opt.train()
        return opt, None
    raise ValueError(f"make_optimizer does not build {method!r}")  # check_method admits only what is built above
