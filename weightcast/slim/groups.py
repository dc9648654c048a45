"""Channel groups: the sets of tensor dimensions that one width multiplier slices together.

A group is one channel dimension of a network (a hidden layer's units, a convolution's output channels, a
ResNet stage's residual stream): the layers that produce it (weight rows), the BatchNorms that normalise it and
the layers that consume it (weight columns; ``unit`` columns per channel where a flatten turns each channel into
``unit`` features). Slicing every member of a group to the same first ``k`` channels keeps the network
consistent; permuting every member by the same order keeps its function.

Known models: :class:`weightcast.models.MLP`, :class:`~weightcast.models.LeNet5` (with or without BN),
:class:`~weightcast.models.ResNet18` and the MLP blocks of :class:`~weightcast.models.GPT`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..models import GPT, MLP, LeNet5, ResNet18


@dataclass
class Group:
    """One channel dimension of ``size`` channels; members are module paths in the model."""

    name: str
    size: int
    producers: list[str] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (path, columns per channel)

    def channels(self, width: float) -> int:
        """Channels kept at ``width``: ``max(1, round(size * width))``, as the models' own width argument."""
        return self.size if width == 1.0 else max(1, round(self.size * width))


def _weight_layers(seq: nn.Sequential, prefix: str, kinds=(nn.Linear, nn.Conv2d)) -> list[str]:
    return [f"{prefix}.{i}" for i, m in enumerate(seq) if isinstance(m, kinds)]


def _mlp_groups(model: MLP) -> list[Group]:
    layers = _weight_layers(model.layers, "layers")
    mods = dict(model.named_modules())
    return [Group(f"hidden{i}", mods[a].out_features, [a], [], [(b, 1)])
            for i, (a, b) in enumerate(zip(layers[:-1], layers[1:]))]


def _lenet_groups(model: LeNet5) -> list[Group]:
    mods = dict(model.named_modules())
    convs = _weight_layers(model.features, "features", (nn.Conv2d,))
    norms = _weight_layers(model.features, "features", (nn.BatchNorm2d,))
    fcs = _weight_layers(model.classifier, "classifier")
    c1, c2 = (mods[c].out_channels for c in convs)
    unit = mods[fcs[0]].in_features // c2  # spatial positions per channel after the flatten
    return [
        Group("conv1", c1, [convs[0]], norms[:1], [(convs[1], 1)]),
        Group("conv2", c2, [convs[1]], norms[1:], [(fcs[0], unit)]),
        Group("fc1", mods[fcs[0]].out_features, [fcs[0]], [], [(fcs[1], 1)]),
        Group("fc2", mods[fcs[1]].out_features, [fcs[1]], [], [(fcs[2], 1)]),
    ]


def _resnet_groups(model: ResNet18) -> list[Group]:
    groups = []
    stream = Group("stage0", model.stem[0].out_channels, ["stem.0"], ["stem.1"], [])
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        stream.consumers.append((f"{p}.conv1", 1))
        if len(block.shortcut):  # a new stage: the block's output is a new stream
            stream.consumers.append((f"{p}.shortcut.0", 1))
            groups.append(stream)
            stream = Group(f"stage{sum(g.name.startswith('stage') for g in groups)}", block.conv2.out_channels,
                           [f"{p}.shortcut.0"], [f"{p}.shortcut.1"], [])
        groups.append(Group(f"block{i}", block.conv1.out_channels, [f"{p}.conv1"], [f"{p}.bn1"],
                            [(f"{p}.conv2", 1)]))
        stream.producers.append(f"{p}.conv2")
        stream.norms.append(f"{p}.bn2")
    stream.consumers.append(("head", 1))
    return groups + [stream]


def _gpt_groups(model: GPT) -> list[Group]:
    return [Group(f"mlp{i}", block.mlp[0].out_features, [f"blocks.{i}.mlp.0"], [], [(f"blocks.{i}.mlp.2", 1)])
            for i, block in enumerate(model.blocks)]


BUILDERS = {MLP: _mlp_groups, LeNet5: _lenet_groups, ResNet18: _resnet_groups, GPT: _gpt_groups}


def channel_groups(model: nn.Module) -> list[Group]:
    """The channel groups of one of the package's models; TypeError for any other model."""
    for cls, build in BUILDERS.items():
        if type(model) is cls:
            return build(model)
    names = ", ".join(c.__name__ for c in BUILDERS)
    raise TypeError(f"make_slimmable knows the channel structure of {names} (weightcast.models); "
                    f"got {type(model).__name__}")


def _columns(perm: torch.Tensor, unit: int) -> torch.Tensor:
    return (perm[:, None] * unit + torch.arange(unit, device=perm.device)).flatten()


def importance(model: nn.Module, group: Group) -> torch.Tensor:
    """(size,) float32 importance of each channel: the mean over the group's BatchNorms of |gamma| / sqrt(var +
    eps) (the scale BN gives the channel), or, without BN, the mean over its producers of the L2 norm of the
    channel's weights, each layer's norms divided by their mean so no layer dominates."""
    mods = dict(model.named_modules())
    with torch.no_grad():
        if group.norms:
            scores = [(mods[n].weight.abs() / (mods[n].running_var + mods[n].eps).sqrt()).float()
                      for n in group.norms]
        else:
            scores = [mods[p].weight.flatten(1).norm(dim=1).float() for p in group.producers]
        return torch.stack([s / s.mean().clamp_min(1e-12) for s in scores]).mean(0)


def order_channels(model: nn.Module, groups: list[Group]) -> None:
    """Permute every group's channels in place into descending :func:`importance`, consistently across its
    producers, BatchNorms and consumers, so the network computes the same function (up to float rounding) and
    slicing the first ``k`` channels keeps the most important ones."""
    mods = dict(model.named_modules())
    with torch.no_grad():
        for group in groups:
            perm = torch.argsort(importance(model, group), descending=True, stable=True)
            for p in group.producers:
                layer = mods[p]
                layer.weight.copy_(layer.weight[perm])
                if layer.bias is not None:
                    layer.bias.copy_(layer.bias[perm])
            for n in group.norms:
                for t in (mods[n].weight, mods[n].bias, mods[n].running_mean, mods[n].running_var):
                    t.copy_(t[perm])
            for c, unit in group.consumers:
                layer = mods[c]
                layer.weight.copy_(layer.weight[:, _columns(perm.to(layer.weight.device), unit)])
