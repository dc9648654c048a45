"""Turn a pretrained network into a slimmable one, switch its width, recalibrate BN, export one width.

    model = weightcast.models.get("lenet5", batch_norm=True)      # pretrained
    make_slimmable(model, widths=(0.25, 0.5, 0.75, 1.0))        # in place; same function at width 1.0
    set_width(model, 0.5)                                        # the first half of every hidden dimension
    recalibrate_bn(model, batches, steps=20)                     # BN statistics of the width that is set
    small = export(model, 0.5)                                   # a plain dense model of that width
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Iterable, Sequence

from torch import nn
from torch.optim.swa_utils import update_bn

from .groups import Group, channel_groups, order_channels
from .layers import (SLIM_LAYERS, SlimBatchNorm2d, SlimConv2d, SlimLinear, check_widths, dense_copy,
                     refuse_dense_state)

DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0)


@dataclass
class SlimSpec:
    """What :func:`make_slimmable` attached to a model (``model.slim_spec``): its widths, its channel groups and
    the width that is set."""

    widths: tuple[float, ...]
    groups: list[Group]
    width: float = 1.0


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def make_slimmable(model: nn.Module, widths: Sequence[float] = DEFAULT_WIDTHS, order: bool = True) -> nn.Module:
    """Make ``model`` (one of the package's MLP, LeNet5, ResNet18, GPT) run at any of ``widths``, in place.

    ``order=True`` first permutes every channel group into descending importance (BN scale, else weight norm;
    :func:`weightcast.slim.groups.order_channels`), which keeps the function, so that slicing keeps the most
    useful channels. The Linear/Conv2d/BatchNorm2d layers of the groups become :class:`SlimLinear`,
    :class:`SlimConv2d` and :class:`SlimBatchNorm2d` sharing the model's Parameters (same state_dict keys, plus
    per-width BN statistics initialised from the first channels of the pretrained ones). The model is left at
    width 1.0, where it computes what it computed before. Returns ``model``. Load pretrained weights into the
    dense model before this (ordering and the per-width statistics are derived from them); a slimmable model's
    own state_dict loads into ``make_slimmable(fresh, same widths, order=False)``.

    Raises ValueError for widths outside (0, 1] or without 1.0, TypeError for an unknown model, RuntimeError for
    a model that is already slimmable.
    """
    if hasattr(model, "slim_spec"):
        raise RuntimeError("model is already slimmable (it has slim_spec); use set_width to change its width")
    widths = check_widths(widths)
    groups = channel_groups(model)
    if order:
        order_channels(model, groups)
    mods = dict(model.named_modules())
    paths = {p for g in groups for p in (*g.producers, *(c for c, _ in g.consumers))}
    for path in sorted(paths):
        layer = mods[path]
        _set_module(model, path, (SlimConv2d if isinstance(layer, nn.Conv2d) else SlimLinear).from_dense(layer))
    for g in groups:
        for path in g.norms:
            _set_module(model, path, SlimBatchNorm2d.from_dense(mods[path], {w: g.channels(w) for w in widths}))
    model.slim_spec = SlimSpec(widths, groups)
    for module in model.modules():   # a dense state_dict is refused before any copy, into any part holding a BN
        if not isinstance(module, SlimBatchNorm2d) and any(isinstance(m, SlimBatchNorm2d) for m in module.modules()):
            module.register_load_state_dict_pre_hook(refuse_dense_state)
    return model


def spec_of(model: nn.Module) -> SlimSpec:
    spec = getattr(model, "slim_spec", None)
    if spec is None:
        raise TypeError("model is not slimmable; call weightcast.slim.make_slimmable(model, widths) first")
    return spec


def check_width(model: nn.Module, width: float) -> float:
    """``width`` as one of the model's widths; TypeError for a non-number (a string), ValueError naming the valid
    ones for another number."""
    widths = spec_of(model).widths
    what = f"width must be a float, one of {list(widths)}, got {type(width).__name__} {width!r}"
    if isinstance(width, (str, bytes, bool)):
        raise TypeError(what)
    try:
        value = float(width)
    except (TypeError, ValueError):
        raise TypeError(what) from None
    match = [w for w in widths if abs(w - value) < 1e-9]
    if not match:
        raise ValueError(f"width {width!r} is not one of this model's widths {list(widths)} (switchable BN keeps "
                         "statistics for those only; make the model slimmable with the widths you need)")
    return match[0]


def set_width(model: nn.Module, width: float) -> None:
    """Run ``model`` at ``width`` (one of its widths) from now on: every group keeps its first
    ``max(1, round(size * width))`` channels. Clears generated weights (their shapes belong to the old width)."""
    spec = spec_of(model)
    width = check_width(model, width)
    mods = dict(model.named_modules())
    for g in spec.groups:
        k = g.channels(width)
        for p in g.producers:
            mods[p].active_out = k
        for n in g.norms:
            mods[n].width, mods[n].active = width, k
        for c, unit in g.consumers:
            mods[c].active_in = k * unit
    for m in model.modules():
        if isinstance(m, (SlimLinear, SlimConv2d)):
            m.generated = None
    spec.width = width


def get_width(model: nn.Module) -> float:
    """The width ``model`` runs at."""
    return spec_of(model).width


def slim_weight_layers(model: nn.Module) -> list[tuple[str, SlimLinear | SlimConv2d]]:
    """The sliced weight layers (path, layer) in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (SlimLinear, SlimConv2d))]


def recalibrate_bn(model: nn.Module, batches: Iterable, steps: int, widths: Sequence[float] | None = None) -> None:
    """Recompute the BatchNorm statistics of each of ``widths`` (default: all of the model's) as the plain
    average over ``steps`` batches of ``batches`` (an iterator of ``x`` or ``(x, y)``), with
    ``torch.optim.swa_utils.update_bn``. The width that was set is set again at the end."""
    spec = spec_of(model)
    if not any(isinstance(m, SlimBatchNorm2d) for m in model.modules()):
        return
    current = spec.width
    batches = iter(batches)
    for width in spec.widths if widths is None else widths:
        set_width(model, width)
        update_bn(list(itertools.islice(batches, steps)), model)
    set_width(model, current)


def export(model: nn.Module, width: float) -> nn.Module:
    """A plain dense copy of ``model`` at ``width``: nn.Linear/Conv2d/BatchNorm2d of the width's sizes holding
    copies of the active slices (or of generated weights, where a layer carries them), without ``slim_spec``.
    The slimmable model is left at the width it had."""
    spec = spec_of(model)
    current, layers = spec.width, dict(slim_weight_layers(model))
    generated = {n: m.generated for n, m in layers.items() if m.generated is not None}
    if check_width(model, width) != current:
        set_width(model, width)
        generated = {}
    for m in layers.values():  # a generated tensor may be a non-leaf of a graph: deepcopy refuses those
        m.generated = None
    dense = copy.deepcopy(model)
    for n, g in generated.items():
        layers[n].generated = g
    del dense.slim_spec
    for path, layer in list(dense.named_modules()):
        if isinstance(layer, SLIM_LAYERS):
            if path in generated:
                layer.generated = generated[path].detach()
            _set_module(dense, path, dense_copy(layer))
    if current != width:
        set_width(model, current)
    return dense
