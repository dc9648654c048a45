"""What ForecastSGD and Forecast share on top of their engine: counters, the forecaster, jump hooks, the guard,
state_dict with hooks, pickling, repr."""
from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from typing import Any, Iterator

import torch
from torch.utils.hooks import RemovableHandle

from .engine import ForecastEngine, resolve_schedule
from .guard import JumpGuard

FORECAST_KEY = "forecast"  # state_dict["param_groups"][0][FORECAST_KEY]: the engine's state
FORECAST_MARK = "forecast_step"  # state_dict[FORECAST_MARK]: the engine's step count; a plain optimizer drops it

SCHEDULE_ARGS = """
        forecaster (str | Forecaster | None, optional): what predicts the parameters at a jump: "linear",
            "farcast", "wnn", "latent", "nowcast", "nowcast-graph" (``weightcast.forecasters.names()``), a
            :class:`weightcast.forecasters.Forecaster`, or None for no jumps at all. Default: {default}.
        window (int, optional): snapshots kept in the history (2..32). Default: 5.
        record_every (int, optional): steps between two snapshots. Default: the smallest spacing a learned
            forecaster's card says it was trained for (e.g. "nowcast": 10), else 1.
        jump_every (int, optional): steps between two jumps, a multiple of ``record_every``. Default:
            ``window * record_every``.
        horizon (int | weightcast.schedules.Schedule, optional): how far a jump goes, in optimizer steps; an int
            is a constant horizon, a :class:`weightcast.schedules.Decaying` shortens it over training. Default:
            ``jump_every``, or the longest horizon a learned forecaster's card says it was trained for when that
            is shorter (``Forecaster.max_trained_horizon``).
        after_jump (str, optional): what happens to the momentum-like state (SGD and RMSprop
            ``momentum_buffer``, Adam ``exp_avg``) of the parameters a jump moved: "keep", "reset" (zeroed in
            place, as RMSprop and Adam initialise it; SGD's next buffer is ``(1 - dampening) * grad``) or "scale"
            (by ``beta ** horizon``). Default: "keep".

    The schedule arguments accept Python, numpy and torch integers and are checked even without a forecaster; a
    horizon longer than the forecaster was trained for (its card's range: farcast's and wnn's ``max_horizon``,
    the nowcasters' ``k_max`` record intervals) is refused here.

    Timing: at the end of the t-th call of ``step()`` (t from 1), the parameters are recorded when
    ``t % record_every == 0``; when ``t % jump_every == 0`` and the window is full, every parameter that this step
    updated (it has a gradient, ``requires_grad`` and a non-zero ``lr``) is overwritten with the forecast for step
    ``t + horizon``, all at once or, if any value would be non-finite, not at all. Parameters that were not
    updated keep their values bit for bit; if no parameter was updated, there is no jump (not counted, no hooks,
    the window kept). The j-th jump made (applied, skipped or rejected; from 0) uses the schedule's j-th
    horizon. A step in which every group's ``lr`` is 0 and every gradient is zero (e.g. the initialisation step
    of ``torch.distributed.checkpoint.state_dict``) is not counted, nor is a step ``torch.amp.GradScaler``
    skips for inf/NaN gradients (on the fused paths it calls ``step()`` with ``found_inf`` set).

    The parameters stay the user's tensors (never re-bound): storage ties, views, dtype and device changes after
    construction, ``channels_last`` and DTensor (FSDP2) parameters work as with torch.optim. The history lives in
    the optimizer's own buffers (see :mod:`weightcast.history`), so a checkpoint holds it next to the base
    optimizer's state (``state_dict()["param_groups"][0]["forecast"]``).

    Jumps are not CUDA-graph capturable: ``step()`` raises when called while a CUDA graph is being captured, and
    a wrapped optimizer with ``capturable=True`` is refused when a forecaster is given.
"""


@contextlib.contextmanager
def hooks_suspended(opt: torch.optim.Optimizer, kind: str) -> Iterator[tuple[OrderedDict, OrderedDict]]:
    """Take the ``kind`` ("state_dict" or "load_state_dict") pre and post hooks off ``opt`` for the duration, so
    that the forecasting optimizer runs them itself, with the full state_dict; put them back afterwards."""
    pre_name, post_name = f"_optimizer_{kind}_pre_hooks", f"_optimizer_{kind}_post_hooks"
    pre, post = getattr(opt, pre_name), getattr(opt, post_name)
    setattr(opt, pre_name, OrderedDict())
    setattr(opt, post_name, OrderedDict())
    try:
        yield pre, post
    finally:
        setattr(opt, pre_name, pre)
        setattr(opt, post_name, post)


def split_forecast(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the base optimizer's state_dict, the engine's state or None), without changing ``state_dict``.

    The engine's state is read from the first param group (for checkpoints of earlier versions, from the top
    level); the group entry counts only when the forecasting optimizer's own ``state_dict()`` made the checkpoint:
    it carries the top-level ``FORECAST_MARK``, or its param groups name their parameters (the form in which
    ``torch.distributed.checkpoint``'s get/set_optimizer_state_dict hand it over; they keep only "state" and
    "param_groups"). A plain torch optimizer that loaded a forecasting checkpoint keeps the group entry in its
    param groups but drops the mark from its own ``state_dict()``: that stale entry is left out, with a warning,
    and the history starts empty. So does a checkpoint that weightcast saved before the mark was introduced: it
    resumes with an empty window.
    """
    base = dict(state_dict)
    forecast = base.pop(FORECAST_KEY, None)
    marked = base.pop(FORECAST_MARK, None) is not None
    groups = [dict(g) for g in base.get("param_groups", [])]
    if groups and FORECAST_KEY in groups[0]:
        in_group = groups[0].pop(FORECAST_KEY)
        named = all(isinstance(i, str) for g in groups for i in g["params"])
        if marked or named:
            forecast = in_group
        else:
            warnings.warn(f"weightcast: this state_dict's param group holds a forecast state but the state_dict lacks "
                          f"the {FORECAST_MARK!r} mark of a forecasting optimizer's state_dict(): a plain torch "
                          "optimizer loaded a forecasting checkpoint and saved it again (the state is stale), or "
                          "weightcast saved it before the mark existed; the forecast history starts empty (for a "
                          f"checkpoint of your own forecasting optimizer, set sd[{FORECAST_MARK!r}] = "
                          f"sd['param_groups'][0][{FORECAST_KEY!r}]['step'] before loading to resume it exactly)",
                          RuntimeWarning, stacklevel=4)
    base["param_groups"] = groups
    return base, forecast


class ForecastMixin:
    """Mixin for optimizers holding ``self._engine`` (a ForecastEngine, or None for no forecasting); they implement
    ``_base_state_dict()`` and ``_base_load_state_dict(state_dict)`` (the base optimizer's own, without hooks)."""

    _engine: ForecastEngine | None

    @staticmethod
    def _check_schedule(forecaster, window, record_every, jump_every, horizon, after_jump) -> None:
        """Refuse an invalid schedule even when there is no forecaster (the engine checks it again with one)."""
        from .engine import AFTER_JUMP

        resolve_schedule(window, 1 if record_every is None else record_every, jump_every, horizon)
        if after_jump not in AFTER_JUMP:
            raise ValueError(f"after_jump must be one of {AFTER_JUMP}, got {after_jump!r}")

    @property
    def engine(self) -> ForecastEngine | None:
        """The forecast engine (schedule, buckets with their history, counters); None without a forecaster."""
        return self._engine

    @property
    def num_jumps(self) -> int:
        """Jumps applied so far."""
        return self._engine.num_jumps if self._engine else 0

    @property
    def num_skipped_jumps(self) -> int:
        """Jumps skipped because the forecast was not finite."""
        return self._engine.num_skipped_jumps if self._engine else 0

    @property
    def num_rejected_jumps(self) -> int:
        """Jumps the guard (:meth:`guard_jumps`) rejected: every try raised the guard's loss."""
        return self._engine.num_rejected_jumps if self._engine else 0

    @property
    def forecaster(self):
        """The forecaster in use (None when the optimizer never jumps)."""
        return self._engine.forecaster if self._engine else None

    def guard_jumps(self, loss_fn, tolerance: float = 0.0, shrink: float = 0.5, tries: int = 3) -> None:
        """Accept a jump only if ``loss_fn()`` does not rise by more than ``tolerance`` (relative); otherwise
        retry with the horizon times ``shrink``, up to ``tries`` forecasts, then restore (see
        :mod:`weightcast.optim.guard`). If ``loss_fn`` raises, the parameters are restored before the exception
        propagates. When ``torch.distributed`` is initialised, the criteria are averaged over the default process
        group, so every rank must call ``step()`` and every rank takes the same decision (DDP replicas stay
        identical). ``loss_fn=None`` removes the guard. Not saved in the state_dict: call it again after
        loading. ``loss_fn`` runs up to ``tries`` + 1 times per jump, rejected jumps included, and the guard
        restores the parameters only: make it free of side effects -- evaluate the model in eval mode under
        ``torch.no_grad()`` (in train mode every call moves BatchNorm's running statistics and draws dropout)."""
        if self._engine is None:
            raise ValueError("this optimizer has no forecaster, so it never jumps")
        self._engine.guard = None if loss_fn is None else JumpGuard(loss_fn, tolerance, shrink, tries)

    def register_jump_hooks(self, before=None, after=None) -> list[RemovableHandle]:
        """Call ``before(optimizer, step)`` just before a jump writes the parameters and ``after(optimizer, step)``
        right after it was applied (not after a skipped one); e.g. to evaluate the model on both sides.

        Returns one ``torch.utils.hooks.RemovableHandle`` per hook given (``handle.remove()`` unregisters it)."""
        if self._engine is None:
            raise ValueError("this optimizer has no forecaster, so it never jumps")
        handles = []
        for hook, table in ((before, self._engine.jump_pre_hooks), (after, self._engine.jump_post_hooks)):
            if hook is not None:
                handle = RemovableHandle(table)
                table[handle.id] = hook
                handles.append(handle)
        return handles

    def _forecast_step(self, run_base_step):
        """The base step, then the engine's record/jump; refuses CUDA-graph capture."""
        if self._engine is not None:
            if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
                raise RuntimeError("forecast jumps are not CUDA-graph capturable (they read the step count and a "
                                   "finiteness flag on the host); capture the base optimizer without weightcast, "
                                   "or use forecaster=None")
            self._engine.take_new_groups()   # e.g. added to Forecast's inner optimizer: before anything moves
            self._engine.check_grads()
        loss = run_base_step()
        if self._engine is not None:
            # torch.amp.GradScaler sets found_inf for a fused base optimizer (``_step_supports_amp_scaling``),
            # whose kernel skips the step it flags; with the other paths the scaler does not call step() at all.
            # The engine counts neither, reading the device flag only where it matters (engine module docstring).
            self._engine.after_step(self.__dict__.get("found_inf"))
        return loss

    @torch._disable_dynamo
    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state_dict, with the forecast state (counters, schedule, history, forecaster) in
        ``["param_groups"][0]["forecast"]``. ``register_state_dict_pre_hook`` / ``post_hook`` hooks see the full
        dict."""
        with hooks_suspended(self, "state_dict") as (pre, post):
            for hook in pre.values():
                hook(self)
            state = self._base_state_dict()
            if self._engine is not None:
                state["param_groups"] = [dict(g) for g in state["param_groups"]]
                state["param_groups"][0][FORECAST_KEY] = self._engine.state_dict()
                state[FORECAST_MARK] = self._engine.step_count
            for hook in post.values():
                result = hook(self, state)
                state = state if result is None else result
        return state

    @torch._disable_dynamo
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """All or nothing: the forecast state is checked (forecaster, schedule, history layout) before anything
        changes, and a mismatch raises a ValueError naming what was saved and what this optimizer uses. A history
        saved in another floating dtype is cast. A checkpoint of the plain base optimizer (torch.optim.SGD,
        AdamW, ...) loads too: the forecast history then starts empty, also when that optimizer had loaded a
        forecasting checkpoint and carried its forecast entry along (see :func:`split_forecast`; a warning is
        given)."""
        with hooks_suspended(self, "load_state_dict") as (pre, post):
            for hook in pre.values():
                result = hook(self, state_dict)
                state_dict = state_dict if result is None else result
            base, forecast = split_forecast(state_dict)
            if forecast is not None and self._engine is None:
                raise ValueError(f"this state_dict was saved with forecaster "
                                 f"{forecast.get('forecaster', {}).get('name')!r}, this optimizer has none "
                                 "(forecaster=None); build it with that forecaster")
            if forecast is not None:
                self._engine.check_state(forecast)
            self._base_load_state_dict(base)
            if self._engine is not None:
                if forecast is None:
                    self._engine.reset()
                else:
                    self._engine.load_state_dict(forecast)
            for hook in post.values():
                hook(self)

    def _forecast_repr(self) -> str:
        e = self._engine
        if e is None:
            return "forecaster=None"
        return (f"forecaster={e.forecaster.name!r}, window={e.window}, record_every={e.record_every}, "
                f"jump_every={e.jump_every}, horizon={e.horizon!r}, after_jump={e.after_jump!r}")
