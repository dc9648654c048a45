"""The "nowcast" forecaster: a multi-horizon per-element nowcaster in the style of NiNo's per-element variant
(Knyazev et al., ICLR 2025, "WNN+"), meta-trained on the long-trajectory zoo (:func:`weightcast.zoo.spec.long_spec`).

Input: a window of ``W`` (= 5) states ``v_0 .. v_{W-1}`` of one parameter tensor, equally spaced (``spacing`` steps
apart). Per tensor, over all its elements and the W states (as NiNo does):

* ``mu``, ``sigma``: mean and standard deviation; ``z_i = (v_i - mu) / sigma`` (z-scores);
* ``s``: the mean over elements of ``|z_{W-1} - z_0| / (W - 1)``, the tensor's typical move per record interval in
  z units.

Per element, features ``d_i = (z_i - z_{i-1}) / s`` (i = 1..W-1, clamped to +-``D_CLAMP``), ``z_{W-1}`` and
``log s``; plus a learned embedding of the parameter type (:data:`PARAM_TYPES`: conv, linear, bias, norm,
embedding, attention). An MLP (two hidden ReLU layers) plus a linear skip from the features maps them to ``K``
outputs ``m_k``, one per horizon ``k = 1..K`` record intervals (direct multi-step: all horizons in one forward).
The forecast ``k`` intervals ahead is ``mu + sigma (z_{W-1} + s m_k)``: the residual ``s m_k`` is in z units. The
skip makes ``m_k = k mean(d)`` (a straight line) one linear map away; the output layers start at zero (no move).

Meta-training (:mod:`.nowcast_train`) minimises the mean L1 error in z units over all horizons and elements,
on windows sampled at several spacings from AdamW and SGD-momentum trajectories. Targets are z-scored with the
window's statistics, never divided by the window's step size, so a forecaster that damps its moves pays for it.

Forecasts run through the fused multi-tensor op ``weightcast::nowcast_forecast`` (:mod:`weightcast.ops.
nowcast_forecast`: C++, CUDA and Triton kernels, chosen by :mod:`weightcast.ops.dispatch`), whose reference is
:func:`predict_tensor`: the functions of this module stay the one definition of the math.

The file's card states the spacings (steps) and the horizons (1..K intervals) it was trained for;
:meth:`NowcastForecaster.check_schedule` refuses others.
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

import torch

from ..ops.nowcast_forecast import nowcast_forecast, pack_mlp
from . import io
from .base import Forecaster

KIND = "nowcast"
PARAM_TYPES = ("conv", "linear", "bias", "norm", "embedding", "attention")
NUM_FEATURES_EXTRA = 2  # z_{W-1} and log s
D_CLAMP = 20.0
EPS = 1e-12


def param_type(shape: Sequence[int], name: str | None = None) -> int:
    """Index into :data:`PARAM_TYPES` of a parameter: by its name when given (embedding, attention, norm), else by
    its number of dimensions (>= 3 conv, 2 linear, <= 1 bias)."""
    ndim = len(shape)
    lname = (name or "").lower()
    if ndim >= 3:
        return 0
    if ndim == 2:
        if any(key in lname for key in ("emb", "wte", "wpe")):
            return 4
        return 5 if "attn" in lname or "attention" in lname else 1
    if name is not None and not lname.endswith("bias") and any(key in lname for key in ("ln", "norm", "bn")):
        return 3
    return 2


def nowcast_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a nowcast model with ``config`` (``window``, ``hidden``, ``k_max``, ``embed``)."""
    w, h, k, e = (int(config[key]) for key in ("window", "hidden", "k_max", "embed"))
    f = w - 1 + NUM_FEATURES_EXTRA
    return {"type_embed": (len(PARAM_TYPES), e), "w1": (h, f + e), "b1": (h,), "w2": (h, h), "b2": (h,),
            "w3": (k, h), "b3": (k,), "skip": (k, f)}


def init_nowcast(window: int, hidden: int, k_max: int, embed: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fresh float32 weights: fan-in uniform hidden layers, zero output layer and skip (the untrained model does not
    move the parameters)."""
    g = torch.Generator().manual_seed(seed)
    shapes = nowcast_shapes({"window": window, "hidden": hidden, "k_max": k_max, "embed": embed})

    def uniform(shape):
        return (torch.rand(shape, generator=g) * 2 - 1) / shape[-1] ** 0.5

    return {"type_embed": torch.randn(shapes["type_embed"], generator=g) * 0.1, "w1": uniform(shapes["w1"]),
            "b1": torch.zeros(shapes["b1"]), "w2": uniform(shapes["w2"]), "b2": torch.zeros(shapes["b2"]),
            "w3": torch.zeros(shapes["w3"]), "b3": torch.zeros(shapes["b3"]), "skip": torch.zeros(shapes["skip"])}


def whole_horizons(ks: Sequence[float], k_max: int) -> list[int]:
    """``ks`` (record intervals) as ints, each checked to be a whole number in 0..``k_max``, the range a nowcaster
    was trained for (one output head per whole interval). Raises ValueError naming the offending horizon."""
    out = []
    for k in ks:
        if not (float(k).is_integer() and 0 <= k <= k_max):
            raise ValueError(f"horizon {k} intervals is not a whole number in 0..{k_max}: this nowcaster predicts "
                             f"whole record intervals up to the {k_max} it was trained for; use a horizon that is a "
                             "multiple of record_every")
        out.append(int(k))
    return out


def window_stats(window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For one tensor's chronological window (W, n) float32: z (W, n), and the scalars mu, sigma, s (0-dim); an
    empty tensor (n = 0) has mu 0 and sigma 1."""
    if window.shape[1] == 0:
        return window, window.new_zeros(()), window.new_ones(()), window.new_ones(())
    mu = window.mean()
    sigma = window.std(correction=0).clamp_min(EPS)
    z = (window - mu) / sigma
    s = ((z[-1] - z[0]).abs().mean() / (window.shape[0] - 1)).clamp_min(EPS)
    return z, mu, sigma, s


def features(z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Per-element features (n, W - 1 + 2) from a z-scored window (W, n) and its step scale ``s``."""
    d = ((z[1:] - z[:-1]) / s).clamp(-D_CLAMP, D_CLAMP)
    return torch.cat([d.T, z[-1:].T, torch.log(s).expand(z.shape[1], 1)], dim=1)


def mlp_forward(tensors: dict[str, torch.Tensor], feats: torch.Tensor, types: torch.Tensor,
                rows: torch.Tensor | None = None) -> torch.Tensor:
    """m (n, K) from features (n, F) and parameter-type indices (n,) int64 (or a 0-dim index for all rows);
    with ``rows`` (int64 indices k - 1), only those horizons' outputs (n, len(rows)), at less cost."""
    emb = tensors["type_embed"][types]
    if emb.dim() == 1:
        emb = emb.expand(feats.shape[0], -1)
    x = torch.cat([feats, emb], dim=1)
    hidden = torch.relu(x @ tensors["w1"].T + tensors["b1"])
    hidden = torch.relu(hidden @ tensors["w2"].T + tensors["b2"])
    w3, b3, skip = tensors["w3"], tensors["b3"], tensors["skip"]
    if rows is not None:
        w3, b3, skip = w3[rows], b3[rows], skip[rows]
    return hidden @ w3.T + b3 + feats @ skip.T


@torch.no_grad()
def predict_tensor(tensors: dict[str, torch.Tensor], window: torch.Tensor, ptype: int,
                   ks: Sequence[int]) -> list[torch.Tensor]:
    """Forecasts of one parameter tensor ``ks[j]`` record intervals ahead (each k in 0..K; 0 = the last state),
    from its chronological window (W, *shape), all from one forward. Returns a list of tensors of ``shape`` in the
    window's dtype. Only the requested horizons' output rows are computed."""
    shape, dtype = window.shape[1:], window.dtype
    flat = window.reshape(window.shape[0], -1).float()
    z, mu, sigma, s = window_stats(flat)
    ahead = sorted({k for k in ks if k > 0})
    m = mlp_forward(tensors, features(z, s), torch.tensor(ptype), torch.tensor([k - 1 for k in ahead]))
    out = []
    for k in ks:
        if k == 0:
            out.append(window[-1].clone())
        else:
            out.append((mu + sigma * (z[-1] + s * m[:, ahead.index(k)])).reshape(shape).to(dtype))
    return out


class NowcastForecaster(Forecaster):
    """Multi-horizon per-element nowcaster (module docstring). ``path``: a nowcast file (default: the shipped
    weights); ``tensors``/``config``: weights given directly (training, tests)."""

    name = KIND

    def __init__(self, path: str | os.PathLike | None = None, *, tensors: dict[str, torch.Tensor] | None = None,
                 config: dict[str, Any] | None = None, history_dtype: torch.dtype | None = None):
        super().__init__(history_dtype)
        self.path, self.config, self.tensors = io.resolve(KIND, path, tensors, config, nowcast_shapes)
        self.window = int(self.config["window"])
        self.k_max = int(self.config["k_max"])
        self.spacings = [int(s) for s in self.config.get("spacings", [])]
        self._packed: tuple[Any, torch.Tensor] | None = None  # (device and weights' versions, packed weights)

    def horizon_unit(self, record_every: int) -> int:
        """Whole record intervals: the model predicts k = 1..k_max intervals ahead."""
        return record_every

    def max_trained_horizon(self, record_every: int) -> int:
        """``k_max`` record intervals."""
        return self.k_max * record_every

    def default_record_every(self) -> int | None:
        """The smallest record spacing of the card (steps), or None for a model whose card names none."""
        return min(self.spacings) if self.spacings else None

    def check_schedule(self, window: int, record_every: int, max_horizon: int) -> None:
        """Raise ValueError unless ``window``, the spacing ``record_every`` (steps) and whole record intervals
        are what this model was trained for (the card's window and spacings; the range 1..k_max is checked by
        :func:`.base.check_trained_range`)."""
        if window != self.window:
            raise ValueError(f"this nowcaster was trained for a window of {self.window} states, not {window}")
        if self.spacings and not min(self.spacings) <= record_every <= max(self.spacings):
            raise ValueError(f"this nowcaster was trained for record spacings {self.spacings} steps; "
                             f"record_every={record_every} is outside that range; use one in it")
        if max_horizon % record_every:
            raise ValueError(f"this nowcaster predicts whole record intervals ahead; a horizon of {max_horizon} "
                             f"steps is not a multiple of record_every={record_every}")

    def to(self, device: torch.device | str) -> "NowcastForecaster":
        self.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        self._packed = None
        return self

    def packed_mlp(self, device: torch.device) -> torch.Tensor:
        """The weights packed for ``weightcast::nowcast_forecast`` on ``device`` (cached until they change)."""
        key = (torch.device(device), tuple((id(t), t._version) for t in self.tensors.values()))
        if self._packed is None or self._packed[0] != key:
            self._packed = (key, pack_mlp(self.tensors).to(device))
        return self._packed[1]

    def _run(self, out: torch.Tensor, history: torch.Tensor, order: list[int], offsets: list[int],
             numels: list[int], types: list[int], ks: list[int]) -> None:
        """``weightcast::nowcast_forecast`` of the segments into ``out`` (len(ks), N) for horizons ``ks`` (>= 1)."""
        nowcast_forecast(out, history, order, offsets, numels, types, [k - 1 for k in ks],
                         self.packed_mlp(history.device), int(self.config["hidden"]), int(self.config["embed"]),
                         self.k_max)

    def predict(self, windows: Sequence[torch.Tensor], ks: Sequence[int],
                names: Sequence[str] | None = None) -> list[list[torch.Tensor]]:
        """For each parameter's chronological window (W, *shape): its forecasts at ``ks`` record intervals ahead
        (see :func:`predict_tensor`), all parameters of one device and dtype in one call of the fused op
        ``weightcast::nowcast_forecast`` (backend: :mod:`weightcast.ops.dispatch`). ``names`` (optional) refine the
        parameter types. Forecasts of one call are views of one buffer; k = 0 gives a copy of the last state."""
        ks = whole_horizons(ks, self.k_max)
        for w in windows:
            if w.shape[0] != self.window:
                raise ValueError(f"this nowcaster takes windows of {self.window} states, got {w.shape[0]}")
        names = names or [None] * len(windows)
        ahead = sorted({k for k in ks if k > 0})
        preds: list[list[torch.Tensor]] = [[] for _ in windows]
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault((w.device, w.dtype), []).append(i)
        for (device, dtype), members in groups.items():
            flat = torch.cat([windows[i].reshape(self.window, -1) for i in members], dim=1)
            numels = [windows[i][0].numel() for i in members]
            offsets = [sum(numels[:j]) for j in range(len(members))]
            out = torch.empty(len(ahead), flat.shape[1], dtype=dtype, device=device)
            if ahead:
                types = [param_type(windows[i].shape[1:], names[i]) for i in members]
                self._run(out, flat, list(range(self.window)), offsets, numels, types, ahead)
            for i, start, n in zip(members, offsets, numels):
                shape = windows[i].shape[1:]
                preds[i] = [windows[i][-1].clone() if k == 0 else out[ahead.index(k), start:start + n].view(shape)
                            for k in ks]
        return preds

    def forecast(self, bucket, steps: list[int], target: int) -> list[torch.Tensor]:
        """The optimizer engine's path: the forecast of every parameter of ``bucket`` at step ``target`` (1-D, the
        bucket's dtype), ``target`` a whole number 1..k_max of record intervals past the newest snapshot; one call
        of ``weightcast::nowcast_forecast`` on the engine's history buffer (the history is read in its storage
        dtype and converted to float32, not first to the parameters' dtype)."""
        order = sorted(range(len(steps)), key=lambda i: steps[i])
        chrono = [steps[i] for i in order]
        spacing = (chrono[-1] - chrono[0]) / (len(chrono) - 1)
        k = (target - chrono[-1]) / spacing if spacing > 0 else math.nan
        if not (k == round(k) and 1 <= k <= self.k_max):
            raise ValueError(f"nowcast predicts 1..{self.k_max} whole record intervals ahead; the optimizer asked "
                             f"for {target - chrono[-1]} steps with records {spacing:g} steps apart")
        out = torch.empty(1, bucket.padded, dtype=bucket.dtype, device=bucket.device)
        self._run(out, bucket.history, order, list(bucket.offsets), list(bucket.numels),
                  [param_type(shape) for shape in bucket.shapes], [int(k)])
        return [out[0, bucket.segment(i)] for i in range(len(bucket.shapes))]

    def state_dict(self) -> dict[str, Any]:
        return dict(super().state_dict(), config=dict(self.config))

    def check_state(self, state: dict[str, Any]) -> None:
        """Also refuses the state of a model with another config (window, k_max, spacings, sizes)."""
        super().check_state(state)
        if "config" in state and dict(state["config"]) != self.config:
            raise ValueError(f"saved with a {self.name} model of config {dict(state['config'])}, this optimizer's "
                             f"has config {self.config}: build the optimizer with the model it was saved with, "
                             f"weightcast.forecasters.get({self.name!r}, path=<its file>)")
