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
from the schedule) and the records are cleared. A forecast that is not finite is not written: where no candidate
is finite the jump is skipped (:attr:`ForecastEMA.num_skipped_jumps`). A jump writes only the parameters the model
trains at that moment (``requires_grad``); a frozen one's average is not moved by it. With ``forecaster=None`` it is
a plain EMA (no records, no jumps).

Saving: :meth:`ForecastEMA.state_dict` (with the model's and the optimizer's) resumes exactly. ``torch.save`` of the
whole object also works (``torch.load(..., weights_only=False)``), but it pickles the model with it: save the
model in the same ``torch.save`` call (it stays the same object after loading) and train ``avg.model``, or the
average follows a copy; a guard must then be picklable (a module-level function, not a lambda).

Guard (optional): because the nowcaster gives every horizon from one forward, a jump can score the candidate
horizons k, k/2, k/4 (``guard_fractions``) and staying where the average is, with a loss the user supplies
(``guard(module) -> float``, lower is better; e.g. the loss on a fixed training batch in eval mode), and keep the
best: the guard of the issue "forecast jumps that pay" applied to the average. A loss that is not finite never
wins; an exception from the guard restores the average and keeps the records. :attr:`ForecastEMA.chosen` lists the
horizon (record intervals) each jump used, 0 where the average stayed.

Memory, in copies of the parameters: the average (1) and up to W records; a jump stacks the records (W more) and
holds one forecast per candidate (1, or 3 with the default guard fractions) and, with a guard, a copy of the
average: about 2W + 5 at a guarded jump (15 at W = 5).

The average is a :class:`torch.optim.swa_utils.AveragedModel` with ``get_ema_multi_avg_fn(decay)``, updated with the
same numbers as its ``update_parameters`` (one ``torch._foreach_lerp_`` per update, without that method's per-call
overhead: :meth:`ForecastEMA._average_in`); the model's parameters are found at every update, so a model moved or
re-assigned after construction is followed, and one that no longer matches the average's dtype raises, saying
what to do. Buffers (batch-norm statistics) are not averaged: they are copied from ``model`` at every update
(AveragedModel's default); recompute them for ``module`` right before evaluating it if the model has any.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import forecasters
from .forecasters.base import capped_default_horizon, check_serves
from .schedules import Schedule, as_int, as_schedule

SLOW_EMA_LAG = 10  # record intervals: the default decay is 1 - 1 / (SLOW_EMA_LAG * record_every)


class ForecastEMA:
    """An EMA of ``model``'s parameters with forecast jumps (module docstring).

    forecaster: a multi-horizon forecaster by name ("nowcast", "nowcast-graph") or an object with ``window``,
    ``predict(windows, ks, names)`` and ``check_schedule(window, record_every, max_horizon)``
    (:class:`weightcast.forecasters.nowcast.NowcastForecaster`); None for a plain EMA (then no guard, and
    jump_every and horizon are not used; record_every only sets the default decay). decay: of the average, in (0, 1); default
    ``1 - 1 / (10 * record_every)`` (0.999 at 100), a lag of about ten record intervals. record_every: updates
    between records (>= 1); jump_every: updates between jumps, a multiple of record_every and at least
    ``window * record_every`` (default that); horizon: steps ahead, an int or a
    :class:`weightcast.schedules.Schedule` (default ``jump_every``, or the forecaster's ``max_trained_horizon``
    when that is shorter). guard: ``guard(module) -> float`` or None;
    guard_fractions: the fractions of k it tries, each in (0, 1] (module docstring). Raises TypeError for a
    forecaster without those attributes, a guard that is not callable or guard fractions that are not numbers, and
    ValueError for a model without parameters, a decay outside (0, 1), guard fractions outside (0, 1], a guard
    without a forecaster, a bad schedule, or one the forecaster was not trained for; at a jump, TypeError for a
    forecast that is not one tensor per horizon shaped like each parameter.
    """

    def __init__(self, model: nn.Module, forecaster: Any = "nowcast", *, decay: float | None = None,
                 record_every: int = 100, jump_every: int | None = None, horizon: int | Schedule | None = None,
                 guard: Callable[[nn.Module], float] | None = None,
                 guard_fractions: tuple[float, ...] = (1.0, 0.5, 0.25)):
        if not any(True for _ in model.parameters()):
            raise ValueError("ForecastEMA needs a model with parameters")
        self.forecaster = forecasters.get(forecaster) if isinstance(forecaster, str) else forecaster
        missing = [a for a in ("window", "predict", "check_schedule") if not hasattr(self.forecaster, a)]
        if forecaster is not None and missing:
            raise TypeError(f"ForecastEMA needs a multi-horizon forecaster with window, predict(windows, ks, names) "
                            f"and check_schedule, such as 'nowcast' or 'nowcast-graph', or None for a plain EMA; "
                            f"{forecaster!r} lacks {missing}")
        if guard is not None and not callable(guard):
            raise TypeError(f"guard must be a function guard(module) -> float, got {guard!r}")
        if guard is not None and forecaster is None:
            raise ValueError("a guard chooses among forecast jumps; a plain EMA (forecaster=None) has none")
        try:
            self.guard_fractions = tuple(float(f) for f in guard_fractions)
        except (TypeError, ValueError):
            raise TypeError(f"guard_fractions must be a sequence of numbers in (0, 1], got {guard_fractions!r}")
        if not self.guard_fractions or not all(0.0 < f <= 1.0 for f in self.guard_fractions):
            raise ValueError(f"guard_fractions must be fractions of the horizon in (0, 1], got {guard_fractions}")
        self.guard = guard
        self.window = 1 if forecaster is None else int(self.forecaster.window)
        self.record_every = as_int("record_every", record_every, 1)
        period = self.window * self.record_every
        self.jump_every = period if jump_every is None else as_int("jump_every", jump_every, 1)
        if forecaster is not None and (self.jump_every % self.record_every or self.jump_every < period):
            raise ValueError(f"jump_every ({self.jump_every}) must be a multiple of record_every "
                             f"({self.record_every}) and at least window * record_every ({period}), the updates "
                             "that refill the cleared window")
        self.decay = 1.0 - 1.0 / (SLOW_EMA_LAG * self.record_every) if decay is None else float(decay)
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.horizon = None
        if forecaster is not None:
            if horizon is None:   # as the optimizers do
                horizon = capped_default_horizon(self.forecaster, self.record_every, self.jump_every)
            self.horizon = as_schedule(horizon, self.jump_every)
            self.horizon.bind(self.record_every, self.jump_every)
            check_serves(self.forecaster, self.window, self.record_every, self.horizon.max_horizon())
        self.model = model
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay))
        self.names = [name for name, _ in model.named_parameters()]
        self.records: list[list[torch.Tensor]] = []
        self.num_updates = self.num_jumps = self.num_skipped_jumps = 0
        self.chosen: list[int] = []  # horizon (record intervals) of each jump; 0 where the average stayed

    def __getstate__(self) -> dict[str, Any]:
        # torch.save / pickle: get_ema_multi_avg_fn's function is local and cannot be pickled; it is rebuilt from
        # the decay on loading (the average itself is pickled as it is)
        state = self.__dict__.copy()
        state["averaged"] = copy.copy(self.averaged)
        state["averaged"].multi_avg_fn = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.averaged.multi_avg_fn = get_ema_multi_avg_fn(self.decay)

    @property
    def module(self) -> nn.Module:
        """The averaged model (a copy of ``model`` holding the average); evaluate this one."""
        return self.averaged.module

    def _average_params(self) -> list[torch.Tensor]:
        return [p.detach() for p in self.module.parameters()]

    @torch.no_grad()
    def update(self, before_jump: Callable[[], Any] | None = None) -> bool:
        """Average ``model``'s current parameters in; record and jump on schedule. True when a jump was tried.
        ``before_jump`` (optional) is called once the average is updated and right before it jumps (to evaluate the
        average just before a jump, say). Raises RuntimeError, saying what to do, when the model's parameters and
        the average's no longer match in dtype."""
        try:
            self._average_in()
        except RuntimeError as err:
            raise RuntimeError(f"ForecastEMA could not average the model in ({err}); if the model was moved to another "
                               "dtype, move the average the same way (avg.module.to(...))") from err
        self.num_updates += 1
        t = self.num_updates
        if self.forecaster is None:
            return False
        if t % self.record_every == 0:
            self.records = [*self.records, [p.clone() for p in self._average_params()]][-self.window:]
        if t % self.jump_every or len(self.records) < self.window:
            return False
        if before_jump is not None:
            before_jump()
        self._jump(self.horizon_at(t) // self.record_every)
        return True

    def _average_in(self) -> None:
        """One EMA step toward the model's current parameters, with the numbers of ``AveragedModel.update_parameters``
        and ``get_ema_multi_avg_fn`` (a copy at the first update, then one ``torch._foreach_lerp_``; buffers copied
        from the model) but without its per-call grouping by device and dtype and its reads of the update counter, about
        0.1 ms of every update on a small model (``benchmarks/bench_nowcast_jump.py``). Parameters that are not
        floating point or not on the average's device, or a model whose number of parameters changed, take the
        library's own path (which moves them, or raises)."""
        average, live = list(self.module.parameters()), list(self.model.parameters())
        if len(live) != len(average) or not all((a.is_floating_point() or a.is_complex()) and a.device == p.device
                                                for a, p in zip(average, live)):
            self.averaged.update_parameters(self.model)
            return
        # the first update copies, as AveragedModel's does when n_averaged is 0; n_averaged (a device tensor) is
        # read at the first update only: an average loaded into `averaged` by hand is averaged into, not replaced
        if self.num_updates == 0 and int(self.averaged.n_averaged) == 0:
            torch._foreach_copy_(average, live)
        else:
            torch._foreach_lerp_(average, live, 1 - self.decay)   # update() runs under no_grad
        buffers = list(self.module.buffers())
        if buffers:
            torch._foreach_copy_(buffers, [b.to(a.device) for b, a in zip(self.model.buffers(), buffers)])
        self.averaged.n_averaged += 1

    def _jump(self, k: int) -> None:
        """Forecast k record intervals ahead (and k's guard fractions), keep the best finite candidate. Every
        parameter is forecast (a graph forecaster needs the whole network); only those the model trains
        (``requires_grad``) are written, as in the optimizer engine."""
        ks = [k] if self.guard is None else sorted({max(1, round(k * f)) for f in self.guard_fractions}, reverse=True)
        windows = [torch.stack([record[i] for record in self.records]) for i in range(len(self.names))]
        preds = self.forecaster.predict(windows, ks, self.names)
        self._check_forecast(preds, windows, ks)
        trained = [i for i, p in enumerate(self.model.parameters()) if p.requires_grad]
        if not trained:   # nothing trains, so nothing moves
            self.records = []
            self.chosen.append(0)
            return
        params = self._average_params()
        targets = [params[i] for i in trained]
        candidates = [[preds[i][j] for i in trained] for j in range(len(ks))]
        finite = [j for j, c in enumerate(candidates) if all(bool(torch.isfinite(f).all()) for f in c)]
        best = self._guarded(targets, candidates, finite) if self.guard is not None else (finite[0] if finite else None)
        self.records = []
        self.num_skipped_jumps += not finite
        self.chosen.append(0 if best is None else ks[best])
        if best is not None:
            torch._foreach_copy_(targets, candidates[best])
            self.num_jumps += 1

    def _check_forecast(self, preds, windows: list[torch.Tensor], ks: list[int]) -> None:
        """Raise TypeError naming the forecaster unless ``predict`` gave, per parameter, one forecast per horizon of
        ``ks``, each of the parameter's shape."""
        try:
            shapes_ok = len(preds) == len(windows) and all(
                len(pred) == len(ks) and all(torch.is_tensor(f) and f.shape == w.shape[1:] for f in pred)
                for pred, w in zip(preds, windows))
        except TypeError:
            shapes_ok = False
        if not shapes_ok:
            raise TypeError(f"{self.forecaster!r}.predict(windows, ks, names) must return, for each of the "
                            f"{len(windows)} windows, {len(ks)} forecasts (one per horizon of {ks}) shaped like "
                            "the parameter")

    def _guarded(self, targets: list[torch.Tensor], candidates: list[list[torch.Tensor]], finite: list[int]
                 ) -> int | None:
        """The candidate for ``targets`` (parameters of the average) with the lowest guard loss, None when the
        average as it is scores best; the average, its buffers (a guard in train mode updates batch-norm
        statistics) and the train/eval modes of its modules are restored afterwards, also when the guard raises."""
        current = [p.clone() for p in targets]
        buffers = list(self.module.buffers())
        saved_buffers = [b.clone() for b in buffers]
        modes = [(m, m.training) for m in self.module.modules()]
        try:
            best, best_loss = None, self._guard_loss()
            for j in finite:
                torch._foreach_copy_(targets, candidates[j])
                loss = self._guard_loss()
                if loss < best_loss:
                    best, best_loss = j, loss
        finally:
            torch._foreach_copy_(targets, current)
            for buffer, saved in zip(buffers, saved_buffers):
                buffer.copy_(saved)
            for module, training in modes:
                module.training = training
        return best

    def _guard_loss(self) -> float:
        """The guard's loss of the average as it is now; inf when it is not finite (it never wins)."""
        loss = self.guard(self.module)
        try:
            value = float(loss)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"guard(module) must return a number (a float or a one-element tensor), got {loss!r}")
        return value if math.isfinite(value) else math.inf

    def horizon_at(self, t: int) -> int:
        """Horizon (steps) of the jump at update ``t`` (a multiple of ``jump_every``); ValueError for a plain EMA."""
        if self.horizon is None:
            raise ValueError("a plain EMA (forecaster=None) has no jumps and no horizon")
        return self.horizon.horizon(t // self.jump_every - 1)

    def _config(self) -> dict[str, Any]:
        """What a saved state must match: the forecaster and decay, and for a forecasting one its schedule (a
        plain EMA does not use the schedule, so it is not compared)."""
        if self.forecaster is None:
            return {"forecaster": None, "decay": self.decay}
        return {"forecaster": getattr(self.forecaster, "name", type(self.forecaster).__name__), "decay": self.decay,
                "record_every": self.record_every, "jump_every": self.jump_every, "horizon": self.horizon.spec()}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, copied (a snapshot; later updates do not change it): the average,
        its records, the counters and the configuration."""
        return {"averaged": {k: v.clone() for k, v in self.averaged.state_dict().items()},
                "records": [[t.clone() for t in r] for r in self.records],
                "num_updates": self.num_updates, "num_jumps": self.num_jumps,
                "num_skipped_jumps": self.num_skipped_jumps, "chosen": list(self.chosen), "config": self._config()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; raises ValueError when it was made with another forecaster, decay or
        schedule, or is not a ForecastEMA state_dict (an ``AveragedModel``'s loads into ``avg.averaged``)."""
        if "config" not in state:
            hint = (" it looks like an AveragedModel's: load it with avg.averaged.load_state_dict(state), and the "
                    "next update() averages into it" if "n_averaged" in state else "")
            raise ValueError(f"this is not a ForecastEMA state_dict (no 'config' entry; keys {sorted(state)[:5]});"
                             f"{hint or ' pass what ForecastEMA.state_dict() returned'}")
        saved = state["config"] if state["config"].get("forecaster") is not None else {
            k: state["config"].get(k) for k in ("forecaster", "decay")}   # (plain EMA states saved with their schedule)
        if saved != self._config():
            raise ValueError(f"this state was saved with {state['config']}, not {self._config()}; build the "
                             "ForecastEMA with the same forecaster, decay, record_every, jump_every and horizon")
        self.averaged.load_state_dict(state["averaged"])
        self.records = [[t.clone() for t in r] for r in state["records"]]
        self.num_updates, self.num_jumps = int(state["num_updates"]), int(state["num_jumps"])
        self.num_skipped_jumps, self.chosen = int(state["num_skipped_jumps"]), list(state["chosen"])
