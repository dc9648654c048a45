"""The forecast schedule shared by :class:`ForecastSGD` and :class:`Forecast`.

Timing (t counts calls of ``step()`` from 1): at the end of step t, if ``t % record_every == 0`` the parameters
are recorded; then if ``t % jump_every == 0`` and the window is full, every bucket is overwritten with the forecast
for step ``t + horizon`` and its window is emptied (it refills before the next jump). A jump is all-or-nothing
across buckets: if any forecast would hold a non-finite value, nothing is written, a warning is given once and
``num_skipped_jumps`` counts it.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch

from .. import forecasters as forecaster_registry
from .. import ops
from ..history import Bucket
from .guard import JumpGuard

AFTER_JUMP = ("keep", "reset", "scale")


def resolve_schedule(window: int, record_every: int, jump_every: int | None,
                     horizon: int | None) -> tuple[int, int]:
    """Validate the schedule and fill defaults: jump_every = window * record_every, horizon = jump_every."""
    for name, value in (("window", window), ("record_every", record_every)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if window < 2:
        raise ValueError(f"window must be >= 2 (a line needs two points), got {window}")
    if window > ops.lincomb_forecast_max_window:
        raise ValueError(f"window must be <= {ops.lincomb_forecast_max_window}, got {window}")
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    jump_every = window * record_every if jump_every is None else jump_every
    horizon = jump_every if horizon is None else horizon
    for name, value in (("jump_every", jump_every), ("horizon", horizon)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if jump_every % record_every:
        raise ValueError(f"jump_every ({jump_every}) must be a multiple of record_every ({record_every}) so that "
                         "the snapshot of the jump step is in the window")
    return jump_every, horizon


class ForecastEngine:
    """Buckets, history and jump schedule for the param groups of one optimizer."""

    def __init__(self, optimizer: torch.optim.Optimizer, forecaster, window: int, record_every: int,
                 jump_every: int | None, horizon: int | None, after_jump: str):
        if after_jump not in AFTER_JUMP:
            raise ValueError(f"after_jump must be one of {AFTER_JUMP}, got {after_jump!r}")
        self.optimizer = optimizer
        self.forecaster = forecaster_registry.get(forecaster)
        self.window = window
        self.record_every = record_every
        self.jump_every, self.horizon = resolve_schedule(window, record_every, jump_every, horizon)
        self.after_jump = after_jump
        self.step_count = 0
        self.num_jumps = 0
        self.num_skipped_jumps = 0
        self._warned_skip = False
        self.num_rejected_jumps = 0
        self.guard: JumpGuard | None = None
        self.jump_pre_hooks: list = []
        self.jump_post_hooks: list = []
        self.buckets: list[tuple[int, Bucket]] = []
        for index, group in enumerate(optimizer.param_groups):
            self.add_group(index, group)

    def add_group(self, index: int, group: dict[str, Any]) -> None:
        """Make buckets (one per device and dtype) for the params of param group ``index``."""
        by_kind: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in group["params"]:
            if not p.is_floating_point():
                raise TypeError(f"forecasting needs floating-point parameters, got {p.dtype}")
            by_kind.setdefault((p.device, p.dtype), []).append(p)
        for params in by_kind.values():
            bucket = Bucket(params, self.window, self.forecaster.history_dtype)
            self.forecaster.attach(bucket)
            self.buckets.append((index, bucket))

    def check_grads(self) -> None:
        """Sparse gradients cannot be forecast: raise a TypeError before the base step runs."""
        for _, bucket in self.buckets:
            for p in bucket.params:
                if p.grad is not None and p.grad.is_sparse:
                    raise TypeError("ForecastSGD/Forecast with a forecaster does not support sparse gradients; use "
                                    "forecaster=None (plain SGD) or dense gradients (e.g. nn.Embedding(sparse=False))")

    @torch.compiler.disable
    def after_step(self) -> None:
        """Record and, on schedule, jump (call once at the end of every ``step()``)."""
        self.step_count += 1
        t = self.step_count
        if t % self.record_every == 0:
            for _, bucket in self.buckets:
                bucket.record(t)
        if t % self.jump_every == 0:
            self._jump(t)

    def _jump(self, t: int) -> None:
        ready = [(gi, b) for gi, b in self.buckets if b.full]
        if not ready:
            return
        for hook in self.jump_pre_hooks:
            hook(self.optimizer, t)
        if self.guard is None:
            horizon = self.horizon if self._forecast_all(ready, t + self.horizon) else None
        else:
            horizon = self._guarded_forecast(ready, t)
        for _, bucket in ready:
            bucket.clear()
        if horizon == 0:
            self.num_rejected_jumps += 1
            return
        if horizon is not None:
            self.num_jumps += 1
            self._adjust_momentum(ready, horizon)
            for hook in self.jump_post_hooks:
                hook(self.optimizer, t)
            return
        self.num_skipped_jumps += 1
        if not self._warned_skip:
            warnings.warn(f"weightcast: the forecast at step {t} was not finite and was skipped; the parameters "
                          "were left as they were (counted in num_skipped_jumps; warned once)", RuntimeWarning,
                          stacklevel=4)
            self._warned_skip = True

    def _forecast_all(self, ready: list[tuple[int, Bucket]], target: int) -> bool:
        """Write the forecast of every ready bucket, or of none if any would be non-finite."""
        if not self.forecaster.forecasts_are_linear():
            outs = [self.forecaster.forecast(b, list(b.slot_steps), target) for _, b in ready]
            if not all(bool(torch.isfinite(out).all()) for out in outs):
                return False
            for (_, bucket), out in zip(ready, outs):
                bucket.write(out)
            return True
        plans = [(b, self._coefficients(b, target)) for _, b in ready]
        if len(plans) == 1:  # the op alone is all-or-nothing for one buffer: no second finiteness proof
            bucket, coeffs = plans[0]
            if not bool(ops.lincomb_forecast(bucket.flat, bucket.history, coeffs, bucket.slot_absmax)):
                return False
            bucket.sync_params()
            return True
        if all(ops.forecast_is_provably_finite(b.flat, c, b.slot_absmax) for b, c in plans):
            for bucket, coeffs in plans:
                ops.lincomb_forecast(bucket.flat, bucket.history, coeffs, bucket.slot_absmax)
                bucket.sync_params()
            return True
        scratch = []
        for bucket, coeffs in plans:
            out = bucket.flat.clone()
            if not bool(ops.lincomb_forecast(out, bucket.history, coeffs, None)):
                return False
            scratch.append(out)
        for (bucket, _), out in zip(plans, scratch):
            bucket.write(out)
        return True

    def _guarded_forecast(self, ready: list[tuple[int, Bucket]], t: int) -> int | None:
        """Jump with the guard: shrink the horizon until the guard's loss does not rise; restore if none passes.

        Returns the horizon used, 0 when the guard rejected every try (parameters restored), None when a
        forecast was not finite (parameters restored).
        """
        guard = self.guard
        backups = [b.flat.clone() if b.storage_dtype != b.dtype or b.recorder is not None else None
                   for _, b in ready]
        before = guard.loss()
        horizon = self.horizon
        for _ in range(guard.tries):
            if not self._forecast_all(ready, t + horizon):
                self._restore(ready, backups)
                return None
            if guard.accepts(before, guard.loss()):
                return horizon
            horizon = max(1, int(horizon * guard.shrink))
        self._restore(ready, backups)
        return 0

    @staticmethod
    def _restore(ready: list[tuple[int, Bucket]], backups: list) -> None:
        """Put back the parameters of the jump step: the newest slot of the window (or the backup copy when the
        history is stored in a narrower dtype or is not raw snapshots, e.g. latents)."""
        for (_, bucket), backup in zip(ready, backups):
            bucket.write(backup if backup is not None else bucket.history[(bucket.head - 1) % bucket.window])

    def _coefficients(self, bucket: Bucket, target: int) -> torch.Tensor:
        return self.forecaster.coefficients(bucket.slot_steps, target).to(torch.float64)

    def _adjust_momentum(self, ready: list[tuple[int, Bucket]], horizon: int) -> None:
        """Apply ``after_jump`` to the momentum-like state (SGD momentum_buffer, Adam exp_avg) of jumped params.

        keep: unchanged. reset: SGD's buffer is dropped (re-initialised from the next gradient, as at the first
        step); Adam's exp_avg is zeroed. scale: multiplied by ``beta ** horizon`` (beta = SGD momentum or Adam
        beta1, horizon the one the jump used): the decay the buffer would see over the steps the jump skipped,
        since the forecast has already spent the velocity that carried the trajectory there.
        """
        if self.after_jump == "keep":
            return
        state = self.optimizer.state
        for group_index, bucket in ready:
            group = self.optimizer.param_groups[group_index]
            beta = group.get("momentum", group.get("betas", (0.0,))[0])
            buffers = []
            for p in bucket.params:
                s = state.get(p, {})
                if self.after_jump == "reset" and s.get("momentum_buffer") is not None:
                    s["momentum_buffer"] = None
                for key in ("momentum_buffer", "exp_avg"):
                    if isinstance(s.get(key), torch.Tensor):
                        buffers.append(s[key])
            if buffers:
                torch._foreach_mul_(buffers, 0.0 if self.after_jump == "reset" else float(beta) ** horizon)

    def param_ids(self) -> dict[int, int]:
        """id(param) -> index in the optimizer's state_dict numbering (params in group order)."""
        ids, index = {}, 0
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                ids[id(p)] = index
                index += 1
        return ids

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: counters, schedule, per-bucket history, forecaster state."""
        ids = self.param_ids()
        return {
            "step": self.step_count, "num_jumps": self.num_jumps, "num_skipped_jumps": self.num_skipped_jumps,
            "num_rejected_jumps": self.num_rejected_jumps,
            "schedule": {"window": self.window, "record_every": self.record_every, "jump_every": self.jump_every,
                         "horizon": self.horizon, "after_jump": self.after_jump},
            "buckets": [dict(b.state_dict(), group=gi, params=[ids[id(p)] for p in b.params])
                        for gi, b in self.buckets],
            "forecaster": self.forecaster.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; raises ValueError when it was saved for other params or another schedule."""
        mine = {"window": self.window, "record_every": self.record_every, "jump_every": self.jump_every,
                "horizon": self.horizon, "after_jump": self.after_jump}
        if state["schedule"] != mine:
            raise ValueError(f"saved forecast schedule {state['schedule']} differs from this optimizer's {mine}")
        ids = self.param_ids()
        layout = [(gi, [ids[id(p)] for p in b.params]) for gi, b in self.buckets]
        saved = [(s["group"], list(s["params"])) for s in state["buckets"]]
        if layout != saved:
            raise ValueError("saved forecast history belongs to another parameter layout "
                             f"(saved buckets {saved}, this optimizer {layout})")
        for (_, bucket), bucket_state in zip(self.buckets, state["buckets"]):
            bucket.load_state_dict(bucket_state)
        self.forecaster.load_state_dict(state["forecaster"])
        self.step_count = int(state["step"])
        self.num_jumps = int(state["num_jumps"])
        self.num_skipped_jumps = int(state["num_skipped_jumps"])
        self.num_rejected_jumps = int(state.get("num_rejected_jumps", 0))
