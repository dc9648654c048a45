"""Run a time-to-accuracy comparison on one study task: tune each method's learning rate on one seed, then
measure it on fresh seeds.

Fair tuning: the methods that do not forecast (AdamW constant and cosine, SGD, Lookahead, schedule-free AdamW, the
EMAs) each get the same grid of their family (:data:`SGD_LRS` or :data:`ADAMW_LRS`); the best learning rate is the
one that reaches the goal in the fewest steps on the tuning seed (ties and misses broken by the final metric). A
forecasting method is its base optimizer plus jumps, used as a drop-in: it runs at its base's tuned learning rate,
with the task's fixed forecast schedule, and gets no tuning of its own, with one exception: the lag of a weight
average. The slow average ("slow-ema-adamw") is tuned over :data:`SLOW_EMA_LAGS` record intervals with its learning
rates (every pair), which makes it the EMA baseline tuned over its decay; the jumps on it
("jump-slow-ema-adamw:...") are tuned over the same lags at the base's tuned rate (the best lag with jumps is
longer: the forecast makes up the lag); both names in the results say the lag ("+lag4"). The reported numbers come
from ``seeds`` other seeds.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

from tqdm.auto import tqdm

from .. import data, models
from .methods import base_method, check_method, family, options_of
from .run import RunResult, train_run
from .tasks import ADAMW_LRS, SGD_LRS, StudyTask

DEFAULT_METHODS = ("adamw", "adamw-cosine", "sgd", "lookahead-adamw", "schedulefree-adamw", "ema-adamw",
                   "slow-ema-adamw", "jump-adamw:linear+guard", "forecast-adamw:nowcast", "jump-adamw:nowcast+guard",
                   "jump-ema-adamw:nowcast", "jump-slow-ema-adamw:nowcast")
TUNING_SEED = 0
SLOW_EMA_LAGS = (2, 4, 10)  # record intervals: decay 1 - 1 / (lag R); 0.995, 0.9975, 0.999 at R = 100


def _needs_lag(method: str) -> bool:
    """A method on the slow average without its own "+lag<N>": it takes the tuned base's lag."""
    return base_method(method) == "slow-ema-adamw" and not any(o.startswith("lag") for o in options_of(method))


def _candidates(method: str, lrs: tuple[float, ...], tune_lag: bool) -> list[tuple[str, float]]:
    """The (method name, lr) pairs a tuned method tries: its learning rates, and for the slow average its lags."""
    if method == "slow-ema-adamw" and tune_lag:
        return [(f"{method}+lag{lag}", lr) for lag in SLOW_EMA_LAGS for lr in lrs]
    return [(method, lr) for lr in lrs]




def _score(result: RunResult, metric: str) -> tuple[float, float]:
    """Sort key, smaller is better: steps to the goal (inf if missed), then the final metric."""
    steps = result.steps_to_target if result.steps_to_target is not None else math.inf
    final = result.final if not math.isnan(result.final) else math.inf
    return steps, -final if metric == "acc" else final


def run_study(study: StudyTask, methods=DEFAULT_METHODS, seeds: int = 3, data_dir=None, lrs: dict | None = None,
              budget: int | None = None, progress: bool = True) -> dict[str, dict]:
    """For each method: its tuned lr, the tuning runs, and ``seeds`` measured runs (seeds 1..seeds).

    ``lrs`` overrides the grids: per family ({"sgd": (...), "adamw": (...)}) or per method ({"ema-adamw": (...)});
    a one-value grid is used without tuning runs. ``budget`` overrides the task's step budget.
    Returns ``{name: {"lr": float, "tuning": [RunResult], "runs": [RunResult]}}``, one entry per method, named
    as it ran (the slow average's methods with their tuned lag, e.g. "slow-ema-adamw+lag4").
    """
    for method in methods:  # every name before the first run
        check_method(method)
    if budget is not None:
        study = replace(study, budget=budget)
    task = data.get_task(study.task, data_dir=data_dir, **study.task_kwargs)
    make_model: Callable = lambda: models.get(study.arch, **task.model_kwargs(), **study.model_kwargs)  # noqa: E731
    grids = {"sgd": SGD_LRS, "adamw": ADAMW_LRS, **(lrs or {})}
    grid = lambda m: grids.get(m, grids[family(m)])  # noqa: E731  (a method's own grid, else its family's)
    tuned = [m for m in methods if base_method(m) == m]
    for method in methods:
        if base_method(method) not in tuned:
            tuned.append(base_method(method))
    tune_lag = any(_needs_lag(m) for m in methods)
    candidates = {m: _candidates(m, tuple(grid(m)), tune_lag) for m in tuned}
    lag_tuned = [m for m in methods if m != base_method(m) and _needs_lag(m)]
    total = (sum(len(c) for c in candidates.values() if len(c) > 1) + len(SLOW_EMA_LAGS) * len(lag_tuned)
             + seeds * len(methods))
    bar = tqdm(total=total, desc=f"{study.task}/{study.arch}", unit="run", disable=not progress)

    def one(method, lr, seed):
        result = train_run(task, make_model, method, lr, seed, study.goal, study.budget, study.eval_every,
                           study.batch_size, study.schedule, study.eval_limit)
        bar.update()
        return result

    # a one-value grid needs no tuning run
    tuning = {m: [one(name, lr, TUNING_SEED) for name, lr in c] if len(c) > 1 else [] for m, c in candidates.items()}
    winner = lambda runs: min(runs, key=lambda r: _score(r, study.goal.metric))  # noqa: E731
    best = {m: (winner(runs).method, winner(runs).lr) if runs else candidates[m][0] for m, runs in tuning.items()}
    results = {}
    for method in methods:
        name, lr = best[base_method(method)]
        if method != base_method(method):  # jumps (or a fixed lag) on the tuned base, at its rate
            name = method
        if method in lag_tuned:  # the jumps' own lag, at the base's rate
            tuning[method] = [one(f"{method}+lag{lag}", lr, TUNING_SEED) for lag in SLOW_EMA_LAGS]
            name = winner(tuning[method]).method
        runs = [one(name, lr, seed) for seed in range(1, seeds + 1)]
        results[name] = {"lr": lr, "tuning": tuning.get(method, []), "runs": runs}
    bar.close()
    return results
