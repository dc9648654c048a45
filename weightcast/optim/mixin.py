"""What ForecastSGD and Forecast share on top of their engine: counters, the forecaster, jump hooks."""
from __future__ import annotations

from torch.utils.hooks import RemovableHandle

from .engine import ForecastEngine
from .guard import JumpGuard


class JumpCounters:
    """Mixin for optimizers holding ``self._engine`` (a ForecastEngine, or None for no forecasting)."""

    _engine: ForecastEngine | None

    @property
    def num_jumps(self) -> int:
        """Jumps applied so far."""
        return self._engine.num_jumps if self._engine else 0

    @property
    def num_skipped_jumps(self) -> int:
        """Jumps skipped because the forecast was not finite."""
        return self._engine.num_skipped_jumps if self._engine else 0

    @property
    def forecaster(self):
        """The forecaster in use (None when the optimizer never jumps)."""
        return self._engine.forecaster if self._engine else None

    @property
    def num_rejected_jumps(self) -> int:
        """Jumps the guard (:meth:`guard_jumps`) rejected: every try raised the guard's loss."""
        return self._engine.num_rejected_jumps if self._engine else 0

    def guard_jumps(self, loss_fn, tolerance: float = 0.0, shrink: float = 0.5, tries: int = 3) -> None:
        """Accept a jump only if ``loss_fn()`` does not rise by more than ``tolerance`` (relative); otherwise
        retry with the horizon times ``shrink``, up to ``tries`` forecasts, then restore (see
        :mod:`weightcast.optim.guard`). ``loss_fn=None`` removes the guard. Not saved in the state_dict: call it
        again after loading."""
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
