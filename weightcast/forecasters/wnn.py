"""The "wnn" forecaster: a small per-element MLP nowcaster in the style of WNN (Jang et al., ICML 2023).

Every element of every parameter is forecast independently from its own window ``v_0 .. v_{W-1}``
(chronological, equally spaced, ``dt`` steps apart) by one MLP shared by all elements; what differs per
parameter tensor is the normalisation and a kind embedding:

* values are min-max normalised per tensor over the window to [-1, 1]: ``a = 2 / (max - min)``,
  ``c = -1 - min a`` (a = c = 0 for a tensor that does not move);
* differences ``v_k - v_{k-1}`` are divided by the tensor's largest absolute difference ``D`` (e = 1 / D, 0 when
  D = 0);
* kind: 0 = convolution weights (ndim >= 3), 1 = linear / embedding weights (ndim 2), 2 = biases and norms
  (ndim <= 1); each kind has its own first-layer bias (an embedding), the rest of the MLP is shared;
* the horizon ``h = (target - t) / dt`` (record intervals ahead) is an input too; it enters the first layer as a
  constant, so it is folded into the kind biases before the kernel runs;
* output: ``v_{W-1} + D h r``, r the MLP's output: r = mean normalised step reproduces a straight line.

MLP: Linear(2W, H) - ReLU - Linear(H, H) - ReLU - Linear(H, 1), H = ``hidden`` (default 16, ~500 parameters).
A jump is two passes: the per-tensor statistics (torch reductions over the window: min, max, max |diff|, about
four reads of the history) and the fused ``weightcast::wnn_forecast`` op (one read of the history, the MLP for
every element, one write). Weights load once per forecaster (from the file at construction, then cached per
device), never per jump.
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch

from ..ops.wnn_forecast import NUM_KINDS, pack_mlp, wnn_forecast
from . import io
from .base import Forecaster

KIND = "wnn"
HORIZON_SCALE = 0.25  # the horizon input is h * HORIZON_SCALE (h in record intervals)


def wnn_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a wnn model with ``config`` (``window``, ``hidden``)."""
    w, h = int(config["window"]), int(config["hidden"])
    return {"w1": (h, 2 * w), "b1": (NUM_KINDS, h), "w2": (h, h), "b2": (h,), "w3": (h,), "b3": (1,)}


def init_wnn(window: int, hidden: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fresh float32 weights (uniform fan-in initialisation; the output layer starts at zero)."""
    g = torch.Generator().manual_seed(seed)
    shapes = wnn_shapes({"window": window, "hidden": hidden})

    def uniform(shape, fan_in):
        return (torch.rand(shape, generator=g) * 2 - 1) / fan_in ** 0.5

    return {"w1": uniform(shapes["w1"], 2 * window), "b1": torch.zeros(shapes["b1"]),
            "w2": uniform(shapes["w2"], hidden), "b2": torch.zeros(hidden),
            "w3": torch.zeros(hidden), "b3": torch.zeros(1)}


def kind_of(shape) -> int:
    """0 conv (ndim >= 3), 1 linear (ndim 2), 2 bias / norm (ndim <= 1)."""
    ndim = len(shape)
    return 0 if ndim >= 3 else 1 if ndim == 2 else 2


def segment_stats(window: torch.Tensor, lengths: torch.Tensor, horizon: float) -> torch.Tensor:
    """Per-segment (a, c, e, g) float32 (S, 4) for a chronological window (W, N) whose columns form segments of
    ``lengths`` (S,) elements (module docstring); g = D * horizon."""
    wide = window.float() if window.dtype != torch.float64 else window
    lengths = lengths.to(window.device)
    lo = torch.segment_reduce(wide.amin(0), "min", lengths=lengths)
    hi = torch.segment_reduce(wide.amax(0), "max", lengths=lengths)
    dmax = torch.segment_reduce((wide[1:] - wide[:-1]).abs().amax(0), "max", lengths=lengths)
    span = hi - lo
    a = torch.where(span > 0, 2.0 / span, torch.zeros_like(span))
    c = torch.where(span > 0, -1.0 - lo * a, torch.zeros_like(span))
    e = torch.where(dmax > 0, 1.0 / dmax, torch.zeros_like(dmax))
    stats = torch.stack([a, c, e, dmax * horizon], dim=1)
    return torch.nan_to_num(stats, nan=0.0, posinf=0.0, neginf=0.0).to(torch.float32).contiguous()


def _card_max_horizon(path: str | None) -> int | None:
    """``training.max_horizon`` of the JSON card beside the weights file ``path``, None without one."""
    card = None if path is None else io.card_path(path)
    if card is None or not card.is_file():
        return None
    value = json.loads(card.read_text()).get("training", {}).get("max_horizon")
    return None if value is None else int(value)


def fold_horizon(tensors: dict[str, torch.Tensor], h: float) -> torch.Tensor:
    """The op's packed MLP for horizon ``h``: the horizon column of w1 folded into the kind biases."""
    w1, b1 = tensors["w1"], tensors["b1"]
    b1h = b1 + w1[:, -1] * (h * HORIZON_SCALE)
    return pack_mlp(w1[:, :-1], b1h, tensors["w2"], tensors["b2"], tensors["w3"], tensors["b3"])


class WNNForecaster(Forecaster):
    """Per-element MLP nowcaster (module docstring). ``path``: a wnn file (default: the shipped weights);
    ``tensors``/``config``: weights given directly (training, tests)."""

    name = KIND

    def __init__(self, path: str | os.PathLike | None = None, *, tensors: dict[str, torch.Tensor] | None = None,
                 config: dict[str, Any] | None = None, history_dtype: torch.dtype | None = None):
        super().__init__(history_dtype)
        self.path, self.config, self.tensors = io.resolve(KIND, path, tensors, config, wnn_shapes)
        self.window = int(self.config["window"])
        self.hidden = int(self.config["hidden"])
        if "max_horizon" not in self.config:   # a file written before its config recorded it: its card did
            trained = _card_max_horizon(self.path)
            if trained is None:
                raise ValueError(f"this wnn model's config {self.config} names no max_horizon (the horizons it was "
                                 "trained for, in record intervals), nor does a card beside it; pass config with "
                                 "max_horizon, or train it again with weightcast forecaster train --kind wnn")
            self.config["max_horizon"] = trained
        self._segments: dict[Any, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._mlp: dict[tuple[torch.device, float], torch.Tensor] = {}

    def attach(self, bucket) -> None:
        """Tabulate the bucket's segments (each parameter, and the zero gap after it up to the next segment
        start) and their kinds, once."""
        if bucket.window != self.window:
            raise ValueError(f"this wnn model was trained for a window of {self.window} snapshots; build the "
                             f"optimizer with window={self.window} or train a model for window={bucket.window}")
        ends = bucket.offsets[1:] + [bucket.padded]
        lengths, kinds = [], []
        for shape, n, start, end in zip(bucket.shapes, bucket.numels, bucket.offsets, ends):
            lengths += [n, end - start - n]
            kinds += [kind_of(shape), 2]
        offsets = torch.tensor([0] + lengths, dtype=torch.int64).cumsum(0)
        self._segments[bucket] = (offsets.to(bucket.device), torch.tensor(lengths, dtype=torch.int64),
                                      torch.tensor(kinds, dtype=torch.int32, device=bucket.device))

    def detach(self, bucket) -> None:
        self._segments.pop(bucket, None)

    def max_trained_horizon(self, record_every: int) -> int:
        """The card's ``max_horizon`` record intervals (training samples horizons 0.5 up to it)."""
        return int(self.config["max_horizon"]) * record_every

    def check_schedule(self, window: int, record_every: int, max_horizon: int) -> None:
        if window != self.window:
            raise ValueError(f"this wnn model was trained for a window of {self.window} snapshots; build the "
                             f"optimizer with window={self.window} or train a model for window={window}")

    def packed_mlp(self, device: torch.device, h: float) -> torch.Tensor:
        """The op's packed MLP for horizon ``h`` on ``device`` (cached: built once per device and horizon)."""
        key = (torch.device(device), round(float(h), 9))
        if key not in self._mlp:
            self._mlp[key] = fold_horizon(self.tensors, h).to(device)
        return self._mlp[key]

    def forecast(self, bucket, steps: list[int], target: int) -> list[torch.Tensor]:
        """The forecast of every parameter of ``bucket`` at step ``target`` (1-D, the bucket's dtype)."""
        if bucket not in self._segments:
            self.attach(bucket)
        offsets, lengths, kinds = self._segments[bucket]
        order = sorted(range(len(steps)), key=lambda k: steps[k])
        chrono = [steps[k] for k in order]
        dt = (chrono[-1] - chrono[0]) / (len(chrono) - 1)
        if dt <= 0:
            raise ValueError(f"wnn needs increasing snapshot steps, got {steps}")
        h = (target - chrono[-1]) / dt
        order_t = torch.tensor(order, dtype=torch.int64, device=bucket.device)
        window = bucket.history.index_select(0, order_t)
        stats = segment_stats(window, lengths, h)
        out = torch.empty(bucket.padded, dtype=bucket.dtype, device=bucket.device)
        wnn_forecast(out, bucket.history, order_t, offsets, stats, kinds, self.packed_mlp(bucket.device, h),
                     self.hidden)
        return [out[bucket.segment(i)] for i in range(len(bucket.params))]

    def state_dict(self) -> dict[str, Any]:
        return dict(super().state_dict(), config=dict(self.config),
                    tensors={k: v.clone() for k, v in self.tensors.items()})

    def check_state(self, state: dict[str, Any]) -> None:
        super().check_state(state)
        if "tensors" in state:
            got = {k: tuple(v.shape) for k, v in state["tensors"].items()}
            if got != wnn_shapes(state["config"]) or int(state["config"]["window"]) != self.window:
                raise ValueError(f"saved wnn weights {got} do not fit this forecaster's {wnn_shapes(self.config)}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "tensors" in state:
            self.tensors = {k: v.to(torch.float32).clone() for k, v in state["tensors"].items()}
            self.config = {**self.config, **state["config"]}   # a checkpoint from before max_horizon keeps ours
            self.hidden = int(self.config["hidden"])
            self._mlp.clear()
