"""The interface every forecaster implements.

A forecaster turns the recorded window of a :class:`weightcast.history.Bucket` into parameters for a future
step and writes them in place. It may keep state of its own (learned weights, a reference snapshot) that the
optimizer saves in its ``state_dict``.
"""
from __future__ import annotations

from typing import Any

import torch


def dtype_name(dtype: torch.dtype | None) -> str | None:
    return None if dtype is None else str(dtype).replace("torch.", "")


def _longest(forecaster: Any, record_every: int) -> int | None:
    trained = getattr(forecaster, "max_trained_horizon", None)   # duck-typed forecasters may lack it
    return trained(record_every) if trained is not None else None


def capped_default_horizon(forecaster: Any, record_every: int, jump_every: int) -> int:
    """The horizon (steps) of a schedule given none: ``jump_every``, or the forecaster's longest trained horizon
    (:meth:`Forecaster.max_trained_horizon`) when that is shorter."""
    longest = _longest(forecaster, record_every)
    return jump_every if longest is None else min(jump_every, longest)


def check_trained_range(forecaster: Any, record_every: int, max_horizon: int) -> None:
    """Raise ValueError when ``max_horizon`` steps is beyond the horizons ``forecaster`` was trained for at that
    spacing (its :meth:`Forecaster.max_trained_horizon`; every schedule is checked here, when it is built)."""
    longest = _longest(forecaster, record_every)
    if longest is not None and max_horizon > longest:
        name = getattr(forecaster, "name", type(forecaster).__name__)
        raise ValueError(f"{name} was trained for horizons up to {longest // record_every} record intervals "
                         f"({longest} steps at record_every={record_every}, its card's range); the schedule asks "
                         f"for {max_horizon} steps: use a shorter horizon, e.g. weightcast.schedules.Decaying("
                         f"k_max<={longest // record_every}, ...), or a forecaster trained for longer ones")


def check_serves(forecaster: Any, window: int, record_every: int, max_horizon: int) -> None:
    """Raise ValueError unless ``forecaster`` serves the schedule: its own :meth:`Forecaster.check_schedule`, then
    :func:`check_trained_range` (what the optimizers, ``ForecastEMA`` and the study call when they are built)."""
    forecaster.check_schedule(window, record_every, max_horizon)
    check_trained_range(forecaster, record_every, max_horizon)


class Forecaster:
    """Base class. Subclasses set ``name`` and implement :meth:`jump_` (or :meth:`coefficients`).

    ``history_dtype``: storage dtype of recorded snapshots (None keeps the parameter dtype). bf16/fp16 storage
    halves the history's memory; the forecast's error then grows with ``sum_k |c_k|`` times the storage precision.
    """

    name = "base"

    def __init__(self, history_dtype: torch.dtype | None = None):
        if history_dtype not in (None, torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise ValueError(f"history_dtype must be None, torch.float32, torch.float16 or torch.bfloat16, "
                             f"got {history_dtype}")
        self.history_dtype = history_dtype

    def coefficients(self, steps: list[int], target: int) -> torch.Tensor:
        """Weights ``c`` (W,) float64 with forecast = ``sum_k c[k] * snapshot_k``, for forecasters linear in the
        history; ``steps[k]`` is the step at which slot k was recorded, ``target`` the step to forecast."""
        raise NotImplementedError(f"forecaster {self.name!r} is not linear in the history")

    def forecast(self, bucket, steps: list[int], target: int) -> list[torch.Tensor]:
        """General path, for forecasters not linear in the history: the forecast of ``bucket``'s parameters at
        step ``target`` from its window (``bucket.history``, ``bucket.slot_steps``), as one 1-D tensor per
        parameter (``bucket.numels[i]`` values, the bucket's dtype) in new memory. The optimizer checks the values
        of the parameters it moves are finite before writing them."""
        raise NotImplementedError(f"forecaster {self.name!r} implements neither coefficients() nor forecast()")

    def attach(self, bucket) -> None:
        """Called once for each bucket the optimizer creates: e.g. keep the bucket's initial weights, or store
        something else than raw snapshots by replacing ``bucket.history`` and setting ``bucket.recorder``
        (see :class:`weightcast.history.Bucket`)."""

    def check_schedule(self, window: int, record_every: int, max_horizon: int) -> None:
        """Raise ValueError when this forecaster cannot serve the schedule: ``window`` snapshots ``record_every``
        steps apart and jumps of up to ``max_horizon`` steps (called when the optimizer is built, so that a
        horizon outside what the forecaster supports is refused then, not at the first jump). The trained horizon
        range is checked apart, for every forecaster, by :func:`check_trained_range` (:func:`check_serves` runs
        both)."""

    def max_trained_horizon(self, record_every: int) -> int | None:
        """The longest horizon (steps) this forecaster was trained for when snapshots are ``record_every`` steps
        apart (its card's range); None: no limit. Caps the default horizon (:func:`capped_default_horizon`);
        longer ones are refused when a schedule is built (:func:`check_trained_range`)."""
        return None

    def horizon_unit(self, record_every: int) -> int:
        """The steps a horizon must be a multiple of (1: any horizon); the jump guard shrinks horizons in these
        units."""
        return 1

    def default_record_every(self) -> int | None:
        """The spacing of snapshots (steps) this forecaster was trained for, taken when the optimizer is built
        without ``record_every``; None when any spacing serves (then the optimizer records every step)."""
        return None

    def detach(self, bucket) -> None:
        """Called when the optimizer drops ``bucket`` (its parameters changed dtype or device and were given a
        new bucket): forget what :meth:`attach` kept for it."""

    def forecasts_are_linear(self) -> bool:
        """True when :meth:`coefficients` defines the forecast (then jumps are one fused lincomb pass)."""
        return type(self).coefficients is not Forecaster.coefficients

    def state_dict(self) -> dict[str, Any]:
        """The forecaster's own state (saved inside the optimizer's state_dict)."""
        return {"name": self.name, "history_dtype": dtype_name(self.history_dtype)}

    def check_state(self, state: dict[str, Any]) -> None:
        """Raise ValueError unless :meth:`load_state_dict` can take ``state`` (nothing is changed)."""
        if state.get("name") != self.name:
            raise ValueError(f"saved with forecaster {state.get('name')!r}, this optimizer uses {self.name!r}")
        saved = state.get("history_dtype", dtype_name(self.history_dtype))
        if saved != dtype_name(self.history_dtype):
            raise ValueError(f"saved with history_dtype {saved}, this optimizer uses "
                             f"{dtype_name(self.history_dtype)}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; raises ValueError when it belongs to another forecaster."""
        self.check_state(state)
