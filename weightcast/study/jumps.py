"""Forecast jumps driven from the training loop, with long decaying horizons and a multi-horizon guard.

NiNo's schedule (Knyazev et al., ICLR 2025): a state is recorded every ``record_every`` steps, every
``jump_every = window * record_every`` steps the parameters jump to the forecast ``k_j`` record intervals ahead,
the window is then cleared, and the base optimizer's state is left as it is. ``k_j`` decays over the run:
``k_j = round(linspace(k_max ** (1 / power), 1, n_jumps) ** power)`` (:class:`weightcast.schedules.Decaying`).

The optimizer engine runs this schedule too (``Forecast(..., horizon=Decaying(...))``) with any registered
forecaster; these training-loop jumps add what one forward of a multi-horizon forecaster makes possible: a
guard choosing among several horizons, and per-tensor clipping.

Because a multi-horizon forecaster gives every horizon from one forward, the guard can score several candidates
(by default k, k/2, k/4 and 0 = no jump) on a fixed batch of training data and keep the best. Optionally each
element's move is clipped to within ``clip`` standard deviations of the mean of its tensor's moves (outlier
elements are the usual cause of the loss spike after a jump; a tensor whose elements all move alike keeps its
move).

A predictor is ``predict(windows, ks) -> per parameter, a list of forecasts (one per k)``, windows being each
parameter's chronological states (W, *shape) and ks horizons in record intervals (0: the last state).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Callable, Sequence

import torch

Predictor = Callable[[Sequence[torch.Tensor], Sequence[int]], list[list[torch.Tensor]]]


def linear_predictor(window: int) -> Predictor:
    """Per-element least-squares line through the window, evaluated ``k`` record intervals past its last state."""
    x = torch.arange(window, dtype=torch.float64)
    centred = x - x.mean()
    sxx = float((centred ** 2).sum())

    def predict(windows, ks):
        out = []
        for w in windows:
            flat = w.reshape(w.shape[0], -1)
            preds = []
            for k in ks:
                c = (1.0 / window + centred * (window - 1 + k - x.mean()) / sxx).to(flat.dtype)
                preds.append((c @ flat).reshape(w.shape[1:]))
            out.append(preds)
        return out

    return predict


def nowcast_predictor(forecaster, names: Sequence[str] | None = None) -> Predictor:
    """The multi-horizon nowcaster (:class:`weightcast.forecasters.nowcast.NowcastForecaster`) as a predictor."""
    return lambda windows, ks: forecaster.predict(windows, ks, names)


class Jumps:
    """Records and jumps ``params`` on the schedule above; call :meth:`after_step` after every optimizer step.

    ``ks``: the horizon (record intervals) of each jump in order (after the list, 1). ``guard``: a function
    returning the loss of the model as it is (lower is better), or None (always take k). ``candidates``: fractions
    of k the guard tries (0 = stay). ``clip``: per-tensor clip of moves about their mean, in standard deviations
    of the moves.
    """

    def __init__(self, params: Sequence[torch.Tensor], predict: Predictor, *, window: int, record_every: int,
                 ks: Sequence[int], guard: Callable[[], float] | None = None,
                 candidates: Sequence[float] = (1.0, 0.5, 0.25, 0.0), clip: float | None = None):
        if window < 2 or record_every < 1:
            raise ValueError(f"need window >= 2 and record_every >= 1, got {window} and {record_every}")
        self.params = list(params)
        self.predict, self.window, self.record_every = predict, window, record_every
        self.jump_every = window * record_every
        self.ks, self.guard, self.candidates, self.clip = list(ks), guard, tuple(candidates), clip
        self.history: deque[list[torch.Tensor]] = deque(maxlen=window)
        self.num_jumps = 0
        self.chosen: list[int] = []  # horizon (intervals) each jump actually used; 0 = the guard kept the weights

    def horizon(self) -> int:
        return self.ks[self.num_jumps] if self.num_jumps < len(self.ks) else 1

    @torch.no_grad()
    def after_step(self, t: int) -> bool:
        """Record at step ``t`` if due, and jump if due; True when a jump was attempted."""
        if t % self.record_every == 0:
            self.history.append([p.detach().clone() for p in self.params])
        if t % self.jump_every or len(self.history) < self.window:
            return False
        k = self.horizon()
        ks = sorted({round(k * f) for f in self.candidates} if self.guard is not None else {k}, reverse=True)
        windows = [torch.stack([h[i] for h in self.history]) for i in range(len(self.params))]
        preds = self.predict(windows, ks)
        current = [p.detach().clone() for p in self.params]
        best_k, best_loss = 0, self.guard() if self.guard is not None else math.inf
        for j, kk in enumerate(ks):
            if kk == 0:
                continue
            new = [self._clipped(pred[j], cur) for pred, cur in zip(preds, current)]
            if not all(bool(torch.isfinite(n).all()) for n in new):
                continue
            for p, n in zip(self.params, new):
                p.copy_(n)
            if self.guard is None:
                best_k = kk
                break
            loss = self.guard()
            if loss < best_loss:
                best_k, best_loss = kk, loss
        if self.guard is not None or best_k == 0:
            chosen = [pred[ks.index(best_k)] if best_k else None for pred in preds]
            for p, pred, cur in zip(self.params, chosen, current):
                p.copy_(cur if pred is None else self._clipped(pred, cur))
        self.history.clear()
        self.num_jumps += 1
        self.chosen.append(best_k)
        return True

    def _clipped(self, pred: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        if self.clip is None or pred.numel() < 2:
            return pred
        move = pred - cur
        mean, bound = move.mean(), self.clip * move.std()   # about the mean: a tensor moving as one is not clipped
        return cur + move.clamp(mean - bound, mean + bound)
