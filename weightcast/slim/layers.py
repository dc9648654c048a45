"""Slimmable layers: full-size parameters, of which the first ``active`` channels run.

A :class:`SlimLinear` / :class:`SlimConv2d` keeps the pretrained ``weight`` (out, in, ...) and ``bias`` (out,)
tensors (the same Parameters, the same state_dict keys) and computes with ``weight[:active_out, :active_in]``.
A layer may carry ``generated``, a weight tensor of exactly the sliced shape made by a hypernetwork, which then
replaces the slice (gradients flow into whatever produced it). :class:`SlimBatchNorm2d` shares its affine
parameters across widths (sliced like the convolutions) and keeps private running statistics per width
(switchable BN of Slimmable Networks, Yu et al., ICLR 2019; statistics recalibrated per width as in US-Nets,
Yu & Huang, ICCV 2019). Width 1.0 uses the usual ``running_mean``/``running_var``/``num_batches_tracked``
buffers, so a pretrained state_dict loads unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


class _Sliced:
    """Mixin of the sliced weight layers: ``active_out``/``active_in`` channels and an optional generated weight."""

    active_out: int
    active_in: int
    generated: torch.Tensor | None

    def _init_slim(self) -> None:
        self.active_out, self.active_in = self.weight.shape[0], self.weight.shape[1]
        self.generated = None

    def sliced_weight(self) -> torch.Tensor:
        """The pretrained weight's active block: a view (active_out, active_in, ...) of ``weight``."""
        return self.weight[:self.active_out, :self.active_in]

    def active_weight(self) -> torch.Tensor:
        if self.generated is None:
            return self.sliced_weight()
        if self.generated.shape != self.sliced_weight().shape:
            raise RuntimeError(f"generated weight {tuple(self.generated.shape)} does not match the active slice "
                               f"{tuple(self.sliced_weight().shape)}; generate it for the current width")
        return self.generated

    def active_bias(self) -> torch.Tensor | None:
        return None if self.bias is None else self.bias[:self.active_out]


class SlimLinear(_Sliced, nn.Linear):
    """``nn.Linear`` computing ``x[..., :active_in] -> (..., active_out)`` with the first rows/columns."""

    @classmethod
    def from_dense(cls, layer: nn.Linear) -> "SlimLinear":
        slim = cls(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
        slim.weight, slim.bias = layer.weight, layer.bias
        slim._init_slim()
        return slim.train(layer.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.active_weight(), self.active_bias())


class SlimConv2d(_Sliced, nn.Conv2d):
    """``nn.Conv2d`` (groups=1) computing ``active_in -> active_out`` channels with the first filters."""

    @classmethod
    def from_dense(cls, layer: nn.Conv2d) -> "SlimConv2d":
        if layer.groups != 1:
            raise ValueError(f"slimmable convolutions need groups=1, got groups={layer.groups}")
        slim = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                   layer.dilation, 1, layer.bias is not None, layer.padding_mode, device="meta")
        slim.weight, slim.bias = layer.weight, layer.bias
        slim._init_slim()
        return slim.train(layer.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.active_weight(), self.active_bias())


def width_tag(width: float) -> str:
    """Buffer-name key of a width: 0.25 -> '0250' (per mille)."""
    return f"{round(width * 1000):04d}"


class SlimBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over the first ``active`` channels: shared affine parameters, running statistics per width.

    Buffers: ``running_mean``/``running_var``/``num_batches_tracked`` for width 1.0 (full size) and
    ``running_mean_<tag>``/``running_var_<tag>``/``num_batches_tracked_<tag>`` of the width's channel count for
    every other width (tag: :func:`width_tag`). :meth:`reset_running_stats` resets the active width's statistics
    only, so ``torch.optim.swa_utils.update_bn`` recalibrates the width that is set.
    """

    @classmethod
    def from_dense(cls, layer: nn.BatchNorm2d, channels: dict[float, int]) -> "SlimBatchNorm2d":
        if not (layer.affine and layer.track_running_stats):
            raise ValueError("slimmable BatchNorm2d needs affine=True and track_running_stats=True")
        slim = cls(layer.num_features, layer.eps, layer.momentum, device="meta")
        slim.weight, slim.bias = layer.weight, layer.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(slim, name, getattr(layer, name))
        like = layer.running_mean
        for width, count in channels.items():
            if width != 1.0:
                tag = width_tag(width)
                slim.register_buffer(f"running_mean_{tag}", layer.running_mean[:count].clone())
                slim.register_buffer(f"running_var_{tag}", layer.running_var[:count].clone())
                slim.register_buffer(f"num_batches_tracked_{tag}", torch.zeros((), dtype=torch.long,
                                                                               device=like.device))
        slim.width, slim.active = 1.0, layer.num_features
        slim.register_load_state_dict_pre_hook(refuse_dense_state)   # a dense state_dict is refused before any copy
        return slim.train(layer.training)

    def stats(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(running_mean, running_var, num_batches_tracked) of the active width."""
        if self.width == 1.0:
            return self.running_mean, self.running_var, self.num_batches_tracked
        tag = width_tag(self.width)
        return (getattr(self, f"running_mean_{tag}"), getattr(self, f"running_var_{tag}"),
                getattr(self, f"num_batches_tracked_{tag}"))

    def reset_running_stats(self) -> None:
        if not hasattr(self, "width"):  # called by nn.BatchNorm2d.__init__ before conversion
            return super().reset_running_stats()
        mean, var, count = self.stats()
        mean.zero_()
        var.fill_(1)
        count.zero_()

    def dense_state_error(self, state_dict, prefix: str) -> str | None:
        """The error for a ``state_dict`` that has this layer's width-1.0 statistics (under ``prefix``) but not
        those of every other width, else None: a dense model's state_dict would leave the narrow widths with
        statistics of the old weights, its channels out of importance order."""
        lacking = [key for key in self._buffers if key.startswith("running_mean_") and prefix + key not in state_dict]
        if prefix + "running_mean" not in state_dict or not lacking:
            return None
        return (f"{prefix}running_mean is there but not {prefix}{lacking[0]} (the statistics of a narrower width): "
                "a dense model's state_dict goes into the dense model before make_slimmable (which orders its "
                "channels and derives every width's statistics from it), a slimmable model's into one made "
                "slimmable with the same widths")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        mean, var, count = self.stats()
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training:
            count.add_(1)
            momentum = 1.0 / float(count) if self.momentum is None else self.momentum
        c = self.active
        return F.batch_norm(x, mean, var, self.weight[:c], self.bias[:c], self.training, momentum, self.eps)


SLIM_LAYERS = (SlimLinear, SlimConv2d, SlimBatchNorm2d)


def refuse_dense_state(module: nn.Module, state_dict, prefix: str, *_) -> None:
    """``load_state_dict`` pre-hook of every :class:`SlimBatchNorm2d` and every module holding one
    (:meth:`SlimBatchNorm2d.from_dense` and :func:`weightcast.slim.make_slimmable` register it): raise
    RuntimeError before anything is copied when ``state_dict`` is a dense model's for one of those layers
    (:meth:`SlimBatchNorm2d.dense_state_error`), even with ``strict=False``, so a refused load, into the model or
    any part of it, leaves it as it was."""
    for name, layer in module.named_modules(prefix=prefix.rstrip(".")):
        if isinstance(layer, SlimBatchNorm2d):
            error = layer.dense_state_error(state_dict, f"{name}." if name else "")
            if error:
                raise RuntimeError(f"Error(s) in loading state_dict for {type(module).__name__}:\n\t{error}")


def dense_copy(layer: nn.Module) -> nn.Module:
    """A plain ``nn.Linear``/``nn.Conv2d``/``nn.BatchNorm2d`` holding copies of a slim layer's active slice (and,
    for a weight layer with a ``generated`` weight, of that)."""
    with torch.no_grad():
        if isinstance(layer, SlimLinear):
            dense = nn.Linear(layer.active_in, layer.active_out, bias=layer.bias is not None,
                              device=layer.weight.device, dtype=layer.weight.dtype)
        elif isinstance(layer, SlimConv2d):
            dense = nn.Conv2d(layer.active_in, layer.active_out, layer.kernel_size, layer.stride, layer.padding,
                              layer.dilation, 1, layer.bias is not None, layer.padding_mode,
                              device=layer.weight.device, dtype=layer.weight.dtype)
        elif isinstance(layer, SlimBatchNorm2d):
            c = layer.active
            dense = nn.BatchNorm2d(c, layer.eps, layer.momentum, device=layer.weight.device,
                                   dtype=layer.weight.dtype)
            mean, var, count = layer.stats()
            dense.weight.copy_(layer.weight[:c])
            dense.bias.copy_(layer.bias[:c])
            dense.running_mean.copy_(mean)
            dense.running_var.copy_(var)
            dense.num_batches_tracked.copy_(count)
            return dense.train(layer.training)
        else:
            raise TypeError(f"not a slim layer: {type(layer).__name__}")
        dense.weight.copy_(layer.active_weight())
        if layer.bias is not None:
            dense.bias.copy_(layer.active_bias())
        return dense.train(layer.training)


def check_widths(widths: Sequence[float]) -> tuple[float, ...]:
    """Sorted unique widths in (0, 1] including 1.0; :class:`weightcast.errors.InputError` (a ValueError)
    otherwise."""
    try:
        values = sorted({float(w) for w in widths})
    except (TypeError, ValueError):
        raise InputError(f"widths must be numbers in (0, 1], got {widths!r}") from None
    if not values or any(not 0.0 < w <= 1.0 for w in values):
        raise InputError(f"widths must be fractions of the full width in (0, 1], got {list(widths)}")
    if values[-1] != 1.0:
        raise InputError(f"widths must include 1.0 (the pretrained network), got {values}")
    return tuple(values)
