"""Horizon schedules: how far ahead (in optimizer steps) each forecast jump goes.

``ForecastSGD(..., horizon=...)`` and ``Forecast(..., horizon=...)`` take an int (a constant horizon in steps) or
one of these objects. The optimizer calls :meth:`Schedule.horizon` with the 0-based index ``j`` of the jump it is
making: the jumps made before it, applied, skipped (not finite) or rejected (by the guard). Jump steps that find
no full window (``jump_every < window * record_every``) or nothing to move are not jumps, so the first jump gets
``horizon(0)`` (the longest, which the forecaster was checked for). The counters are saved in the optimizer's
``state_dict``, so a resumed run gets the same horizons. A schedule is saved there too (:meth:`Schedule.spec`)
and a checkpoint loads only into an optimizer with the same schedule.

* :class:`Constant` -- the same horizon at every jump.
* :class:`Decaying` -- the long-horizon schedule of NiNo (Knyazev et al., "Accelerating Training with Neuron
  Interaction and Nowcasting Networks", ICLR 2025): the j-th jump predicts ``k_j * record_every`` steps ahead with
  ``k_j = round(linspace(k_max ** (1 / power), 1, n_jumps) ** power)``, ``n_jumps = total_steps // jump_every``
  (``k_max`` at the first jump down to 1 at the last; 1 after that).
"""
from __future__ import annotations

import copy

import numbers
from typing import Any

import torch


def as_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as a Python int (numpy and torch integer scalars accepted); raises TypeError/ValueError naming
    ``name`` when it is not an integer or below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
                and value.dtype != torch.bool:
            value = int(value)
        elif isinstance(value, numbers.Real) or isinstance(value, torch.Tensor):
            raise ValueError(f"{name} must be a whole number (an int), got {value!r}")
        else:
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class Schedule:
    """Base class: :meth:`horizon` gives the horizon (steps, >= 1) of jump ``j``; :meth:`bind` receives the
    optimizer's ``record_every`` and ``jump_every`` once they are known."""

    kind = "base"

    def bind(self, record_every: int, jump_every: int) -> None:
        """Called once by the optimizer with its record spacing and jump period (steps)."""

    def horizon(self, j: int) -> int:
        raise NotImplementedError

    def max_horizon(self) -> int:
        """The longest horizon (steps) this schedule asks for: what a forecaster must support."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """The schedule as plain data (saved in the optimizer's state_dict; ``from_spec`` rebuilds it)."""
        raise NotImplementedError

    def __eq__(self, other) -> bool:
        return isinstance(other, Schedule) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.spec().items())))


class Constant(Schedule):
    """The same horizon of ``steps`` optimizer steps (>= 1) at every jump."""

    kind = "constant"

    def __init__(self, steps: int):
        self.steps = as_int("horizon", steps, 1)

    def horizon(self, j: int) -> int:
        return self.steps

    def max_horizon(self) -> int:
        return self.steps

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "steps": self.steps}

    def __repr__(self) -> str:
        return f"Constant({self.steps})"


class Decaying(Schedule):
    """Horizon ``k_j * record_every`` steps at the j-th jump, ``k_j`` decaying from ``k_max`` to 1 as a power law
    over the first ``total_steps // jump_every`` jumps (module docstring; NiNo uses ``k_max=40, power=2``).

    Args:
        k_max (int): horizon of the first jump, in record intervals (>= 1).
        power (float): exponent of the decay (> 0); 1 is linear, 2 front-loads the long jumps. Default: 2.
        total_steps (int): training length in steps (>= 1); with the optimizer's ``jump_every`` it sets the
            number of jumps over which k decays.
    """

    kind = "decaying"

    def __init__(self, k_max: int = 40, power: float = 2.0, total_steps: int = 10_000):
        self.k_max = as_int("k_max", k_max, 1)
        if isinstance(power, bool) or not isinstance(power, numbers.Real) or not float(power) > 0:
            raise ValueError(f"power must be a positive number, got {power!r}")
        self.power = float(power)
        self.total_steps = as_int("total_steps", total_steps, 1)
        self.record_every: int | None = None
        self.jump_every: int | None = None
        self._k: list[int] = []

    def bind(self, record_every: int, jump_every: int) -> None:
        self.record_every, self.jump_every = record_every, jump_every
        n = self.total_steps // jump_every
        if n < 1:
            raise ValueError(f"Decaying(total_steps={self.total_steps}) holds no jump of a period of {jump_every} "
                             "steps; use total_steps >= jump_every")
        grid = torch.linspace(self.k_max ** (1.0 / self.power), 1.0, n, dtype=torch.float64) ** self.power
        self._k = [max(1, int(k)) for k in torch.round(grid).tolist()]

    def k(self, j: int) -> int:
        """Record intervals ahead at jump j (0-based)."""
        if self.record_every is None:
            raise RuntimeError("this schedule is not bound to an optimizer yet (the optimizer calls bind())")
        return self._k[j] if 0 <= j < len(self._k) else 1

    def horizon(self, j: int) -> int:
        return self.k(j) * self.record_every

    def max_horizon(self) -> int:
        return self.k(0) * self.record_every

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "k_max": self.k_max, "power": self.power, "total_steps": self.total_steps}

    def __repr__(self) -> str:
        return f"Decaying(k_max={self.k_max}, power={self.power:g}, total_steps={self.total_steps})"


def from_spec(spec: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.spec`."""
    kinds = {"constant": lambda s: Constant(s["steps"]),
             "decaying": lambda s: Decaying(s["k_max"], s["power"], s["total_steps"])}
    if spec.get("kind") not in kinds:
        raise ValueError(f"unknown horizon schedule {spec!r}")
    return kinds[spec["kind"]](spec)


def as_schedule(horizon: int | Schedule | None, jump_every: int) -> Schedule:
    """``horizon`` as a schedule the optimizer owns: None -> ``Constant(jump_every)``, an int ->
    ``Constant(horizon)``, a schedule -> a copy of it (binding it to one optimizer never changes another's).
    Raises TypeError for a schedule without :meth:`Schedule.spec` (checkpoints need it)."""
    if horizon is None:
        return Constant(jump_every)
    if isinstance(horizon, Schedule):
        try:
            horizon.spec()
        except NotImplementedError:
            raise TypeError(f"{type(horizon).__name__} does not implement spec(): a Schedule must describe itself "
                            "as plain data (a dict), which the optimizer's state_dict saves to check a resume "
                            "against") from None
        return copy.deepcopy(horizon)
    return Constant(as_int("horizon", horizon, 1))


__all__ = ["Constant", "Decaying", "Schedule", "as_schedule", "from_spec"]
