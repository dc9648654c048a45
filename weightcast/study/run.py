"""One training run of the time-to-accuracy study: a task, a model, a method, a learning rate and a seed.

Wall-clock time counts the training steps only (forward, backward, optimizer step with its records and jumps);
evaluations, including those on both sides of a jump, are timed separately and left out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .methods import Schedule, is_forecasting, make_optimizer


# a suffix on a forecasting method adds a jump guard; its criteria on the guard batch: the loss ("+guard"), or the
# loss and the error rate ("+guard-err": a jump must lower neither, see weightcast.optim.guard)
GUARD_SUFFIXES = {"+guard": False, "+guard-err": True}
GUARD_BATCH = 512  # training examples (fixed per run, never validation data) the jump guard evaluates


def guard_of(method: str) -> bool | None:
    """None without a guard suffix; else whether the guard also watches the error rate."""
    return next((with_error for suffix, with_error in GUARD_SUFFIXES.items() if method.endswith(suffix)), None)


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
    """What one run measured. ``curve``: (step, train seconds, metric); ``jumps``: (step, before, after)."""

    method: str
    lr: float
    seed: int
    budget: int
    curve: list[tuple[int, float, float]] = field(default_factory=list)
    jumps: list[tuple[int, float, float]] = field(default_factory=list)
    skipped_jumps: int = 0
    steps_to_target: int | None = None
    seconds_to_target: float | None = None
    final: float = float("nan")
    train_seconds: float = 0.0
    diverged: bool = False


def train_run(task, make_model: Callable[[], torch.nn.Module], method: str, lr: float, seed: int, goal: Goal,
              budget: int, eval_every: int, batch_size: int, schedule: Schedule,
              eval_limit: int | None = None) -> RunResult:
    """Train for ``budget`` steps, evaluating every ``eval_every`` steps and on both sides of every jump."""
    torch.manual_seed(seed)
    model = make_model()
    opt = make_optimizer(method, model.parameters(), lr, schedule)
    result = RunResult(method, lr, seed, budget)
    eval_seconds = [0.0]

    def measure() -> float:
        start = time.perf_counter()
        value = task.evaluate(model, limit=eval_limit)[goal.metric]
        eval_seconds[0] += time.perf_counter() - start
        return value

    with_error = guard_of(method)
    if is_forecasting(method) and with_error is not None:
        gx, gy = next(task.batches(GUARD_BATCH, generator=seed + 7919))
        opt.guard_jumps(lambda: _eval_guard(task, model, gx, gy, with_error))
    if is_forecasting(method):
        before: list[float] = []
        opt.register_jump_hooks(before=lambda o, t: before.append(measure()),
                                after=lambda o, t: result.jumps.append((t, before[-1], measure())))
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
        if step % eval_every == 0 or step == budget:
            seconds = time.perf_counter() - train_start - eval_seconds[0]
            value = measure()
            result.curve.append((step, seconds, value))
            if result.steps_to_target is None and goal.reached(value):
                result.steps_to_target, result.seconds_to_target = step, seconds
    result.train_seconds = time.perf_counter() - train_start - eval_seconds[0]
    result.final = result.curve[-1][2] if result.curve and not result.diverged else float("nan")
    result.skipped_jumps = getattr(opt, "num_skipped_jumps", 0)
    return result
