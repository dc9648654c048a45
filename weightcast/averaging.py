"""ForecastEMA: an exponential moving average of a model's weights that jumps along its own forecast trajectory.

Between two records 100 steps apart the weights AdamW trains move mostly by minibatch noise, and a slow average of
them mostly by drift: the shipped nowcaster forecasts the raw weights 0.2-5% better than standing still, an EMA with
decay 0.999 25-47% better (``benchmarks/forecastability.py``). A slow average removes the noise but lags about
``1 / (1 - decay)`` steps behind the weights; jumping it along its forecast makes up the lag. The trained parameters
are never touched, so training follows exactly the path it would without. Measured in the time-to-accuracy study as
"jump-slow-ema-adamw:<nowcaster>": against the same average without jumps it reaches the goal sooner on 8 of 10
seeds of the held-out MNIST MLP (``benchmarks/results/averaged/``); against an average whose lag is tuned like a
learning rate it leads on LeNet-5 (1.67x AdamW's steps against 1.44x) and ties on the held-out MLPs
(``benchmarks/results/tuned-lag/``).

    avg = wc.ForecastEMA(model, "nowcast", record_every=100,
                         horizon=wc.schedules.Decaying(k_max=32, power=2, total_steps=6000))
    for x, y in batches:
        ...; opt.step(); avg.update()      # average, record every 100 updates, jump every 500
    evaluate(avg.module)                   # the averaged (and forecast) model

Timing, as in the optimizer engine: at the end of the t-th :meth:`update` (t from 1) the average is recorded when
``t % record_every == 0``; when ``t % jump_every == 0`` and ``window`` records are held, the average is overwritten
with the forecast ``horizon`` steps past its newest record (horizon of the j-th period, j = t // jump_every - 1,
from the schedule) and the records are cleared. A forecast that is not finite is not written
(:attr:`ForecastEMA.num_skipped_jumps`). With ``forecaster=None`` it is a plain EMA (no records, no jumps).

Guard (optional): because the nowcaster gives every horizon from one forward, a jump can score the candidate
horizons k, k/2, k/4 (``guard_fractions``) and staying where the average is, with a loss the user supplies
(``guard(module) -> float``, lower is better; e.g. the loss on a fixed training batch in eval mode), and keep the
best: the guard of the issue "forecast jumps that pay" applied to the average. :attr:`ForecastEMA.chosen` lists
the horizon (record intervals) each jump used, 0 where the average stayed.

The average is held in a :class:`torch.optim.swa_utils.AveragedModel` and updated with the same operation as its
``get_ema_multi_avg_fn`` (a copy at the first update, then ``torch._foreach_lerp_`` with weight ``1 - decay``: the
same numbers), but on parameter lists gathered once: ``AveragedModel.update_parameters`` regroups the tensors at
every call, which made it 7-9x slower on the study's small models (0.10 against 0.011 ms on the digits MLP, 0.20
against 0.030 ms on LeNet-5, one CPU thread), a cost paid at every training step. Buffers (batch-norm
statistics) are not averaged: they are copied from ``model`` at every update, as
:class:`torch.optim.swa_utils.AveragedModel` does by default; recompute them for ``module`` if the model has any.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import forecasters
from .schedules import Schedule, as_int, as_schedule

SLOW_EMA_LAG = 10  # record intervals: the default decay is 1 - 1 / (SLOW_EMA_LAG * record_every)


class ForecastEMA:
    """An EMA of ``model``'s parameters with forecast jumps (module docstring).

    forecaster: a multi-horizon forecaster by name ("nowcast", "nowcast-graph") or an object with ``window``,
    ``predict(windows, ks, names)`` and ``check_schedule(window, record_every, max_horizon)``
    (:class:`weightcast.forecasters.nowcast.NowcastForecaster`); None for a plain EMA. decay: of the average, in
    (0, 1); default ``1 - 1 / (10 * record_every)`` (0.999 at 100), a lag of about ten record intervals.
    record_every: updates between records (>= 1); jump_every: updates between jumps, a multiple of record_every and
    at least ``window * record_every`` (default that); horizon: steps ahead, an int or a
    :class:`weightcast.schedules.Schedule` (default ``jump_every``). guard: ``guard(module) -> float`` or None;
    guard_fractions: the fractions of k it tries, each in (0, 1] (module docstring). Raises TypeError for a
    forecaster without ``predict`` and ValueError for a decay outside (0, 1), bad guard fractions, a bad schedule,
    or one the forecaster was not trained for.
    """

    def __init__(self, model: nn.Module, forecaster: Any = "nowcast", *, decay: float | None = None,
                 record_every: int = 100, jump_every: int | None = None, horizon: int | Schedule | None = None,
                 guard: Callable[[nn.Module], float] | None = None,
                 guard_fractions: tuple[float, ...] = (1.0, 0.5, 0.25)):
        self.forecaster = forecasters.get(forecaster) if isinstance(forecaster, str) else forecaster
        if forecaster is not None and not callable(getattr(self.forecaster, "predict", None)):
            raise TypeError(f"ForecastEMA needs a multi-horizon forecaster with predict(windows, ks, names), such as "
                            f"'nowcast' or 'nowcast-graph', or None for a plain EMA; got {forecaster!r}")
        self.window = 1 if forecaster is None else int(self.forecaster.window)
        self.record_every = as_int("record_every", record_every, 1)
        period = self.window * self.record_every
        self.jump_every = period if jump_every is None else as_int("jump_every", jump_every, 1)
        if self.jump_every % self.record_every or self.jump_every < period:
            raise ValueError(f"jump_every ({self.jump_every}) must be a multiple of record_every "
                             f"({self.record_every}) and at least window * record_every ({period}), the updates "
                             "that refill the cleared window")
        self.decay = 1.0 - 1.0 / (SLOW_EMA_LAG * self.record_every) if decay is None else float(decay)
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        if not guard_fractions or not all(0.0 < f <= 1.0 for f in guard_fractions):
            raise ValueError(f"guard_fractions must be fractions of the horizon in (0, 1], got {guard_fractions}")
        self.guard, self.guard_fractions = guard, tuple(guard_fractions)
        self.horizon = as_schedule(horizon, self.jump_every)
        self.horizon.bind(self.record_every, self.jump_every)
        if forecaster is not None:
            self.forecaster.check_schedule(self.window, self.record_every, self.horizon.max_horizon())
        self.model = model
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay))
        self.names = [name for name, _ in model.named_parameters()]
        self._sources = [p.detach() for p in model.parameters()]
        self._targets = [p.detach() for p in self.module.parameters()]
        self._buffer_sources, self._buffer_targets = list(model.buffers()), list(self.module.buffers())
        self.records: list[list[torch.Tensor]] = []
        self.num_updates = self.num_jumps = self.num_skipped_jumps = 0
        self.chosen: list[int] = []  # horizon (record intervals) of each jump; 0 where the average stayed

    @property
    def module(self) -> nn.Module:
        """The averaged model (a copy of ``model`` holding the average); evaluate this one."""
        return self.averaged.module

    @torch.no_grad()
    def update(self, before_jump: Callable[[], Any] | None = None) -> bool:
        """Average ``model``'s current parameters in; record and jump on schedule. True when a jump was tried.
        ``before_jump`` (optional) is called once the average is updated and right before it jumps (to evaluate the
        average just before a jump, say)."""
        if self.num_updates == 0:
            torch._foreach_copy_(self._targets, self._sources)
        else:
            torch._foreach_lerp_(self._targets, self._sources, 1.0 - self.decay)
        if self._buffer_targets:
            torch._foreach_copy_(self._buffer_targets, self._buffer_sources)
        self.averaged.n_averaged += 1
        self.num_updates += 1
        t = self.num_updates
        if self.forecaster is None:
            return False
        if t % self.record_every == 0:
            self.records = [*self.records, [p.detach().clone() for p in self.module.parameters()]][-self.window:]
        if t % self.jump_every or len(self.records) < self.window:
            return False
        if before_jump is not None:
            before_jump()
        k = self.horizon_at(t) // self.record_every
        ks = [k] if self.guard is None else sorted({max(1, round(k * f)) for f in self.guard_fractions}, reverse=True)
        windows = [torch.stack([record[i] for record in self.records]) for i in range(len(self.names))]
        preds = self.forecaster.predict(windows, ks, self.names)
        self.records = []
        candidates = [[pred[j] for pred in preds] for j in range(len(ks))]
        finite = [j for j, c in enumerate(candidates) if all(bool(torch.isfinite(f).all()) for f in c)]
        if len(finite) < len(ks):
            self.num_skipped_jumps += 1
        best = self._guarded(candidates, finite) if self.guard is not None else (finite[0] if finite else None)
        self.chosen.append(0 if best is None else ks[best])
        if best is not None:
            torch._foreach_copy_(self._targets, candidates[best])
            self.num_jumps += 1
        return True

    def _guarded(self, candidates: list[list[torch.Tensor]], finite: list[int]) -> int | None:
        """The candidate with the lowest guard loss, None when the average as it is scores best (it is restored)."""
        current = [p.clone() for p in self._targets]
        best, best_loss = None, self.guard(self.module)
        for j in finite:
            torch._foreach_copy_(self._targets, candidates[j])
            loss = self.guard(self.module)
            if loss < best_loss:
                best, best_loss = j, loss
        torch._foreach_copy_(self._targets, current)
        return best

    def horizon_at(self, t: int) -> int:
        """Horizon (steps) of the jump at update ``t`` (a multiple of ``jump_every``)."""
        return self.horizon.horizon(t // self.jump_every - 1)

    def _config(self) -> dict[str, Any]:
        return {"decay": self.decay, "record_every": self.record_every, "jump_every": self.jump_every,
                "horizon": self.horizon.spec()}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: the average, its records, the counters and the schedule."""
        return {"averaged": self.averaged.state_dict(), "records": [[t.clone() for t in r] for r in self.records],
                "num_updates": self.num_updates, "num_jumps": self.num_jumps,
                "num_skipped_jumps": self.num_skipped_jumps, "chosen": list(self.chosen), "config": self._config()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; raises ValueError when it was made with another decay or schedule."""
        if state["config"] != self._config():
            raise ValueError(f"this state was saved with {state['config']}, not {self._config()}; build the "
                             "ForecastEMA with the same decay, record_every, jump_every and horizon")
        self.averaged.load_state_dict(state["averaged"])
        self.records = [[t.clone() for t in r] for r in state["records"]]
        self.num_updates, self.num_jumps = int(state["num_updates"]), int(state["num_jumps"])
        self.num_skipped_jumps, self.chosen = int(state["num_skipped_jumps"]), list(state["chosen"])
