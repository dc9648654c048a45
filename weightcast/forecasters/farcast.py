"""The "farcast" forecaster: weight farcasting with a 1-layer linear network (seed 004, Shou et al. 2025).

For every element, from its initial value ``w_0`` (step ``t_0``, kept once when the optimizer is built) and the
``lags`` newest snapshots ``w_t, w_{t-1}, ..., w_{t-lags+1}`` of the window (equally spaced, ``dt`` steps apart),
one linear layer per forecast horizon predicts the value ``h`` record intervals ahead directly (no recursion):

    features  f_0 = (w_t - w_0) * dt / (t - t_0)          mean move per interval since initialisation
              f_j = w_t - w_{t-j}            j = 1 .. lags-1   recent moves
    forecast  w_{t+h} = w_t + sum_j A[h, j] f_j         A: (max_horizon, lags) learned, shared by all elements

The forecast is a combination of ``w_0`` and the snapshots with weights that sum to 1 (a parameter that never
moved is kept), so the jump runs on the fused ``lincomb_forecast`` path: :meth:`FarcastForecaster.attach` gives
each bucket a history of ``window + 1`` rows whose last row holds ``w_0`` (written once, never recorded over),
and :meth:`coefficients` returns ``window + 1`` weights. A horizon between two trained ones interpolates their
rows linearly (row 0 is the identity: no move); horizons beyond ``max_horizon`` are refused.

Numerics: the coefficients are float64, the jump accumulates in float32 (see ``weightcast.ops.lincomb_forecast``);
``w_0`` is stored in the history's dtype (bf16 history rounds it). Training: :mod:`weightcast.forecasters.train`.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from .. import ops
from . import io
from .base import Forecaster

KIND = "farcast"


def farcast_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a farcast model with ``config`` (``lags``, ``max_horizon``)."""
    return {"A": (int(config["max_horizon"]), int(config["lags"]))}


def feature_weights(steps: list[int], t0: int, lags: int) -> torch.Tensor:
    """Matrix M (lags, lags + 1) float64 with ``features = M @ [w_0, w_t, w_{t-1}, ..., w_{t-lags+1}]``.

    ``steps``: the chronological steps of the snapshots used, newest last (at least ``lags``), equally spaced."""
    t, dt = steps[-1], steps[-1] - steps[-2]
    if t <= t0:
        raise ValueError(f"farcast needs snapshots after the initial weights (step {t0}), got steps {steps}")
    m = torch.zeros(lags, lags + 1, dtype=torch.float64)
    m[0, 0], m[0, 1] = -dt / (t - t0), dt / (t - t0)
    for j in range(1, lags):
        m[j, 1], m[j, 1 + j] = 1.0, -1.0
    return m


def horizon_row(A: torch.Tensor, h: float) -> torch.Tensor:
    """Row of ``A`` (max_horizon, lags) for horizon ``h`` record intervals: linear interpolation between the
    trained integer horizons 1..max_horizon, with horizon 0 = zeros (the forecast of no move)."""
    if not 0.0 <= h <= A.shape[0] + 1e-9:
        raise ValueError(f"farcast was trained for horizons up to {A.shape[0]} record intervals, asked for {h:.3g}; "
                         "use a shorter horizon or train with a larger --max-horizon")
    lo = min(int(h), A.shape[0])
    frac = h - lo
    row_lo = A[lo - 1] if lo >= 1 else torch.zeros_like(A[0])
    if frac <= 1e-12:
        return row_lo
    return (1.0 - frac) * row_lo + frac * A[lo]


class FarcastForecaster(Forecaster):
    """1-layer direct multi-step forecaster (module docstring). ``path``: a farcast file (default: the shipped
    weights); ``A``/``config``: weights given directly (training, tests)."""

    name = KIND

    def __init__(self, path: str | os.PathLike | None = None, *, A: torch.Tensor | None = None,
                 config: dict[str, Any] | None = None, history_dtype: torch.dtype | None = None):
        super().__init__(history_dtype)
        if A is None:
            self.path = str(path or io.default_path(KIND))
            self.config, tensors = io.load(self.path, KIND, farcast_shapes)
            A = tensors["A"]
        else:
            self.path = None
            self.config = dict(config or {"lags": A.shape[1], "max_horizon": A.shape[0]})
        self.A = A.detach().to(torch.float64).clone()
        self.lags = int(self.config["lags"])

    @torch.no_grad()
    def attach(self, bucket) -> None:
        """Give ``bucket`` a history of window + 1 rows; the last holds the initial weights w_0 (step 0)."""
        if bucket.window < self.lags:
            raise ValueError(f"farcast uses the {self.lags} newest snapshots; the window is {bucket.window}")
        rows = torch.zeros(bucket.window + 1, bucket.padded, dtype=bucket.storage_dtype, device=bucket.device)
        absmax = torch.zeros(bucket.window + 1, dtype=torch.float32, device=bucket.device)
        absmax[-1] = ops.record(bucket.tensors(), rows, bucket.window, bucket.offsets)
        bucket.history = rows
        bucket.slot_absmax = absmax

    def max_trained_horizon(self, record_every: int) -> int:
        """One row of A per trained horizon: up to ``A.shape[0]`` record intervals."""
        return self.A.shape[0] * record_every

    def check_schedule(self, window: int, record_every: int, max_horizon: int) -> None:
        if window < self.lags:
            raise ValueError(f"farcast uses the {self.lags} newest snapshots; the window is {window}")

    def coefficients(self, steps: list[int], target: int) -> torch.Tensor:
        """Weights (W + 1,) float64 over the W ring slots (in ring order) and w_0 (last)."""
        w = len(steps)
        order = sorted(range(w), key=lambda k: steps[k])
        chrono = [steps[k] for k in order]
        if len(set(chrono)) != w:
            raise ValueError(f"farcast needs distinct snapshot steps, got {steps}")
        dt = chrono[-1] - chrono[-2]
        m = feature_weights(chrono, 0, self.lags)  # over [w_0, w_t, w_{t-1}, ...]
        plain = horizon_row(self.A, (target - chrono[-1]) / dt) @ m
        plain[1] += 1.0  # w_t + sum_j A_j f_j
        coeffs = torch.zeros(w + 1, dtype=torch.float64)
        coeffs[w] = plain[0]
        for j in range(self.lags):
            coeffs[order[w - 1 - j]] = plain[1 + j]
        return coeffs

    def state_dict(self) -> dict[str, Any]:
        return dict(super().state_dict(), config=dict(self.config), A=self.A.clone())

    def check_state(self, state: dict[str, Any]) -> None:
        super().check_state(state)
        if "A" in state and tuple(state["A"].shape) != tuple(self.A.shape):
            raise ValueError(f"saved farcast weights {tuple(state['A'].shape)} do not fit this forecaster's "
                             f"{tuple(self.A.shape)}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "A" in state:
            self.A = state["A"].to(torch.float64).clone()
            self.config = dict(state["config"])
