"""One training run of the time-to-accuracy study: a task, a model, a method, a learning rate and a seed.

Wall-clock time counts the training steps only (forward, backward, optimizer step, learning-rate schedule, EMA
update, records, jumps and the guard's evaluations); evaluations of the judged metric, including those around a
jump, are timed separately and left out.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..averaging import ForecastEMA
from ..forecasters.base import check_serves
from .jumps import Jumps, linear_predictor, nowcast_predictor
from .methods import (CLIP_STD, GUARD_OPTIONS, Schedule, base_method, ema_decay, forecaster_of, is_forecasting,
                      is_jumping, make_optimizer, options_of)

GUARD_BATCH = 512  # training examples (fixed per run, never validation data) the jump guard evaluates


def guard_of(method: str) -> bool | None:
    """None without a guard suffix; else whether the guard also watches the error rate."""
    return next((with_error for option, with_error in GUARD_OPTIONS.items() if option in options_of(method)), None)


@torch.no_grad()
def _eval_guard(task, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, with_error: bool):
    """Loss of ``model`` in eval mode (batch norm statistics untouched) on a fixed batch; with ``with_error``,
    (loss, error rate of the arg-max prediction: per example, or per token for the GPT)."""
    was_training = model.training
    model.eval()
    try:
        logits = model(x)
        loss = float(task.loss(logits, y))
        return (loss, float((logits.argmax(-1) != y).float().mean())) if with_error else loss
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class Goal:
    """The metric a study watches and when it counts as reached: ``acc >= target`` or ``loss <= target``."""

    metric: str
    target: float

    def reached(self, value: float) -> bool:
        return value >= self.target if self.metric == "acc" else value <= self.target

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is better than ``b`` for this metric."""
        return a > b if self.metric == "acc" else a < b


@dataclass
class RunResult:
    """What one run measured. ``curve``: (step, train seconds, metric); ``jumps``: (step, metric just before,
    just after, ``AFTER_STEPS`` steps after; nan when the run ended first); ``horizons``: the horizon each jump used
    (record intervals; 0 = the guard kept the weights)."""

    method: str
    lr: float
    seed: int
    budget: int
    curve: list[tuple[int, float, float]] = field(default_factory=list)
    jumps: list[tuple[int, float, float, float]] = field(default_factory=list)
    horizons: list[float] = field(default_factory=list)
    skipped_jumps: int = 0
    steps_to_target: int | None = None
    seconds_to_target: float | None = None
    final: float = float("nan")
    train_seconds: float = 0.0
    diverged: bool = False


AFTER_STEPS = 100  # the accuracy "some steps after a jump" is measured this many steps after it


def _predictor(name: str, model: torch.nn.Module, schedule: Schedule, budget: int):
    if name == "linear":
        return linear_predictor(schedule.window)
    if name in ("nowcast", "nowcast-graph"):
        from ..forecasters import get

        forecaster = get(name)
        longest = max(schedule.ks(budget), default=1) * schedule.record_every
        check_serves(forecaster, schedule.window, schedule.record_every, longest)
        return nowcast_predictor(forecaster, [n for n, _ in model.named_parameters()])
    raise ValueError(f"training-loop jumps use the 'linear', 'nowcast' or 'nowcast-graph' predictor, not {name!r}")


def train_run(task, make_model: Callable[[], torch.nn.Module], method: str, lr: float, seed: int, goal: Goal,
              budget: int, eval_every: int, batch_size: int, schedule: Schedule,
              eval_limit: int | None = None) -> RunResult:
    """Train for ``budget`` steps, evaluating every ``eval_every`` steps and just before, just after and
    :data:`AFTER_STEPS` steps after every jump."""
    torch.manual_seed(seed)
    model = make_model()
    opt, lr_schedule = make_optimizer(method, model.parameters(), lr, schedule, budget)
    decay = ema_decay(method, schedule)
    options = options_of(method)
    guard_batch = next(task.batches(GUARD_BATCH, generator=seed + 7919)) if guard_of(method) is not None else None
    with_error = bool(guard_of(method))
    # the judged average (methods module docstring); only the slow average's jumps forecast it (and move only it)
    slow_jumps = is_jumping(method) and base_method(method) == "slow-ema-adamw"
    average_guard = ((lambda module: _eval_guard(task, module, *guard_batch, False))
                     if slow_jumps and guard_batch is not None else None)
    average = (ForecastEMA(model, forecaster_of(method) if slow_jumps else None, decay=decay,
                           record_every=schedule.record_every, jump_every=schedule.jump_every,
                           horizon=schedule.horizon_schedule(budget), guard=average_guard)
               if decay is not None else None)
    judged = average.module if average is not None else model
    schedule_free = method.startswith("schedulefree-")
    result = RunResult(method, lr, seed, budget)
    eval_seconds = [0.0]

    def measure() -> float:
        start = time.perf_counter()
        if schedule_free:
            opt.eval()
        value = task.evaluate(judged, limit=eval_limit)[goal.metric]
        if schedule_free:
            opt.train()
        eval_seconds[0] += time.perf_counter() - start
        return value

    ks = schedule.ks(budget)
    pending: dict[int, int] = {}  # step -> index of the jump whose "after" is measured then
    guard = None
    if guard_batch is not None:
        guard = lambda: _eval_guard(task, model, *guard_batch, with_error)  # noqa: E731
    jumps = None
    if is_jumping(method) and not slow_jumps:
        jumps = Jumps(list(model.parameters()), _predictor(forecaster_of(method), model, schedule, budget),
                      window=schedule.window, record_every=schedule.record_every, ks=ks, guard=guard,
                      clip=CLIP_STD if "clip" in options else None)
    elif is_forecasting(method):
        if guard is not None:
            opt.guard_jumps(guard)
        before: list[tuple[float, int]] = []  # (measure, scheduled horizon) of the jump being made

        def pre(o, t):
            before.append((measure(), opt.engine.next_horizon()))

        def post(o, t):
            result.jumps.append((t, before[-1][0], measure(), math.nan))
            result.horizons.append(before[-1][1] / schedule.record_every)
            pending[t + AFTER_STEPS] = len(result.jumps) - 1

        opt.register_jump_hooks(before=pre, after=post)
    batches = task.batches(batch_size, generator=seed)
    train_start = time.perf_counter()
    for step in range(1, budget + 1):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        loss = task.loss(model(x), y)
        if not torch.isfinite(loss):
            result.diverged = True
            break
        loss.backward()
        opt.step()
        if lr_schedule is not None:
            lr_schedule.step()
        if average is not None:
            before = []
            if average.update(before_jump=lambda: before.append(measure())):
                result.jumps.append((step, before[0], measure(), math.nan))
                result.horizons.append(average.chosen[-1])  # 0: not finite, or the guard kept the average
                pending[step + AFTER_STEPS] = len(result.jumps) - 1
        if jumps is not None and step % schedule.jump_every == 0 and len(jumps.history) == schedule.window - 1:
            before_value = measure()
            previous = [p.detach().clone() for p in model.parameters()] if average is not None else None
            jumps.after_step(step)
            if average is not None:  # the average moves with the weights' jump
                with torch.no_grad():
                    for averaged, p, old in zip(average.module.parameters(), model.parameters(), previous):
                        averaged.add_(p - old)
            result.jumps.append((step, before_value, measure(), math.nan))
            result.horizons.append(jumps.chosen[-1])
            pending[step + AFTER_STEPS] = len(result.jumps) - 1
        elif jumps is not None:
            jumps.after_step(step)
        if step in pending:
            j = pending.pop(step)
            result.jumps[j] = (*result.jumps[j][:3], measure())
        if step % eval_every == 0 or step == budget:
            seconds = time.perf_counter() - train_start - eval_seconds[0]
            value = measure()
            result.curve.append((step, seconds, value))
            if result.steps_to_target is None and goal.reached(value):
                result.steps_to_target, result.seconds_to_target = step, seconds
    result.train_seconds = time.perf_counter() - train_start - eval_seconds[0]
    result.final = result.curve[-1][2] if result.curve and not result.diverged else float("nan")
    result.skipped_jumps = average.num_skipped_jumps if slow_jumps else getattr(opt, "num_skipped_jumps", 0)
    return result
