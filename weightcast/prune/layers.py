"""What is pruned: the weights of a model's Linear and Conv layers, and the inputs those layers see."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..tied import parameter_holders

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Module name -> layer, for every Linear/Conv1d/Conv2d of ``model`` in definition order. Its ``weight``
    (``<name>.weight`` in the masks) is pruned; biases are not. The layers inside an ``nn.MultiheadAttention``
    (its ``out_proj``) are left out: the attention reads their weights itself, bypassing the hook through which
    ``torch.nn.utils.prune`` applies a mask. Raises ValueError when there is none, and when a layer's weight
    tensor is also held by another module (tied weights, e.g. an embedding and a language-model head: one tensor
    cannot take a mask for all its users; untie them first)."""
    inside_attention = {id(sub) for m in model.modules() if isinstance(m, nn.MultiheadAttention)
                        for sub in m.modules()}
    layers = {name: m for name, m in model.named_modules()
              if isinstance(m, PRUNABLE) and id(m) not in inside_attention}
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv layer to prune")
    holders_of = parameter_holders(model)
    for name, layer in layers.items():
        holders = list(holders_of.get(id(weight_of(layer)), {}).values())
        if len(holders) > 1:
            raise ValueError(f"layer {name!r}'s weight is shared by {holders} (tied weights); pruning gives a layer "
                             "its own mask, which a shared tensor cannot hold for all its users: untie them (give "
                             "each its own copy) or prune a model without tied weights")
    return layers


def weight_of(layer: nn.Module) -> torch.Tensor:
    """The layer's current dense weight: ``weight_orig`` when a mask is already applied, else ``weight``."""
    return getattr(layer, "weight_orig", layer.weight)


def mask_of(layer: nn.Module) -> torch.Tensor:
    """Bool mask (the weight's shape) of the layer's weights not yet pruned: its ``weight_mask`` where
    ``torch.nn.utils.prune`` applied one, else all True."""
    mask = getattr(layer, "weight_mask", None)
    return torch.ones_like(weight_of(layer), dtype=torch.bool) if mask is None else mask.bool()


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """``"<layer>.weight"`` -> :func:`mask_of` for every prunable layer of ``model`` (True: not yet pruned)."""
    return {f"{n}.weight": mask_of(m) for n, m in prunable_layers(model).items()}


def live_weight(layer: nn.Module) -> torch.Tensor:
    """The weight the layer computes with, detached: :func:`weight_of` with its pruned entries zero."""
    return weight_of(layer).detach() * mask_of(layer)


def parameter_keys(model: nn.Module) -> dict[str, str]:
    """``"<layer>.weight"`` -> the name of the tensor that holds that weight in ``model``'s parameters, for
    ``torch.func.functional_call``: ``"<layer>.weight_orig"`` on a layer masked by ``torch.nn.utils.prune`` (its
    forward recomputes ``weight`` as ``weight_orig * weight_mask``, overriding a ``weight`` passed in), else
    ``"<layer>.weight"``."""
    return {f"{n}.weight": f"{n}.weight_orig" if hasattr(m, "weight_orig") else f"{n}.weight"
            for n, m in prunable_layers(model).items()}


def forward_with(model: nn.Module, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in eval mode with the prunable weights in ``weights`` (``"<layer>.weight"`` -> tensor of the
    weight's shape) in place of its own (``torch.func.functional_call``); ``model`` is not changed."""
    keys, layers = parameter_keys(model), prunable_layers(model)
    swapped = {keys[k]: w.to(weight_of(layers[k.removesuffix(".weight")]).dtype) for k, w in weights.items()}
    was_training = model.training
    model.eval()
    try:
        return functional_call(model, swapped, (x,))
    finally:
        model.train(was_training)


@torch.no_grad()
def eval_output(model: nn.Module, x: torch.Tensor):
    """``model(x)`` in eval mode without gradients; the model's mode is restored after, also when it raises."""
    was_training = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was_training)


def layer_inputs(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Name -> (samples, d) float64 inputs of every prunable layer on the calibration batch ``x``, as the
    layer's weight sees them: a Linear's input rows (d = in_features; leading dims flattened), a Conv's unfolded
    patches (d = in_channels * prod(kernel)). The model runs in eval mode without gradients (mode restored)."""
    layers = prunable_layers(model)
    store: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    recorders = {name: _recorder(name, layer, store[name]) for name, layer in layers.items()}
    hooks = [layer.register_forward_pre_hook(recorders[name]) for name, layer in layers.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    unseen = [name for name, rows in store.items() if not rows]
    if unseen:
        raise ValueError(f"layers {unseen} were not called on the calibration batch (a layer whose weight its "
                         "parent reads directly, or one the forward does not use), so their inputs are unknown; "
                         "use a data-free method or WoodFisher/CHITA for this model")
    return {name: torch.cat(rows) for name, rows in store.items()}


def _recorder(name: str, layer: nn.Module, out: list[torch.Tensor]):
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)) and (isinstance(layer.padding, str) or layer.groups != 1):
        raise ValueError(f"layer {name!r}: layer-wise OBS reads a Conv's inputs as patches, for numeric padding "
                         f"and groups=1 only (this one has padding={layer.padding!r}, groups={layer.groups}); "
                         "use a data-free method or WoodFisher/CHITA for this model")

    def hook(module, args):
        inp = args[0].detach()
        if isinstance(layer, nn.Linear):
            out.append(inp.reshape(-1, inp.shape[-1]).double())
            return
        if layer.padding_mode != "zeros":   # the padding the layer applies itself, before a convolution without
            inp = F.pad(inp, [p for p in reversed(layer.padding) for _ in (0, 1)], mode=layer.padding_mode)
            padding = (0,) * len(layer.kernel_size)
        else:
            padding = layer.padding
        if isinstance(layer, nn.Conv1d):
            inp = inp.unsqueeze(-2)
            kernel, dilation, padding, stride = ((1, layer.kernel_size[0]), (1, layer.dilation[0]),
                                                 (0, padding[0]), (1, layer.stride[0]))
        else:
            kernel, dilation, stride = layer.kernel_size, layer.dilation, layer.stride
        patches = F.unfold(inp, kernel, dilation=dilation, padding=padding, stride=stride)  # (B, d, L)
        out.append(patches.transpose(1, 2).reshape(-1, patches.shape[1]).double())
    return hook
