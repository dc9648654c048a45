"""Converting between dense and low-rank models, and counting their parameters and FLOPs.

``to_low_rank(model)`` replaces ``nn.Linear`` / ``nn.Conv2d`` modules by :class:`LowRankLinear` /
:class:`LowRankConv2d` (in place, returning the model), initialised from the truncated SVD of the current weights
(``init="svd"``, exact for rank >= the weight's rank) or from random orthonormal U, V with the weight's leading
singular values as S (``init="random"``). ``to_dense`` turns every low-rank layer back into its dense module with
W = U S Vᵀ.

Counts, in two conventions: ``"reference"`` counts U, S (and the bias with ``count_bias``) but not V, as the
DLRT paper's compression table does (Schotthöfer et al., NeurIPS 2022, Table 1); ``"full"`` counts U, S and V,
everything a low-rank layer stores.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from ..tied import parameter_holders
from .layers import LowRankConv2d, LowRankLayer, LowRankLinear

CONVENTIONS = ("reference", "full")


def _select(model: nn.Module, layers: Iterable[str] | Callable[[str, nn.Module], bool] | None
            ) -> list[tuple[list[str], nn.Module]]:
    """The chosen Linear/Conv2d modules, each once with every name it has in the model (a module used under
    several names is chosen when any of them is)."""
    names: dict[int, list[str]] = {}
    modules: dict[int, nn.Module] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if type(m) in (nn.Linear, nn.Conv2d):
            names.setdefault(id(m), []).append(name)
            modules[id(m)] = m
    if layers is None:
        chosen = set(names)
    elif callable(layers):
        chosen = {key for key, all_names in names.items() if any(layers(n, modules[key]) for n in all_names)}
    else:
        layers = list(layers)
        by_name = {n: key for key, all_names in names.items() for n in all_names}
        missing = [name for name in layers if name not in by_name]
        if missing:
            raise ValueError(f"layers {missing} are not nn.Linear/nn.Conv2d modules of the model; the convertible "
                             f"ones are {sorted(by_name)}")
        chosen = {by_name[name] for name in layers}
    selected = [(all_names, modules[key]) for key, all_names in names.items() if key in chosen]
    _refuse_tied_parameters(model, selected)
    return selected


def _refuse_tied_parameters(model: nn.Module, selected: list[tuple[list[str], nn.Module]]) -> None:
    """ValueError when a chosen module's weight or bias is also a parameter of another module (tied weights,
    e.g. an output head tied to the embedding): its low-rank layer would hold factors of its own, untying them."""
    holders = parameter_holders(model)
    for names, m in selected:
        for pname, p in m.named_parameters(recurse=False):
            others = [n for key, n in holders[id(p)].items() if key != id(m)]
            if others:
                raise ValueError(f"{names[0]}.{pname} is tied to {others} (the same Parameter): a low-rank layer "
                                 "holds factors U, S, V of its own, so converting it would untie them silently. "
                                 f"Leave {names[0]!r} out of layers, or untie it first (model.{names[0]}.{pname} = "
                                 f"nn.Parameter(model.{names[0]}.{pname}.detach().clone()))")


@torch.no_grad()
def to_low_rank(model: nn.Module, layers: Iterable[str] | Callable[[str, nn.Module], bool] | None = None, *,
                rank: int | float = 1.0, max_rank: int | float = 1.0, init: str = "svd",
                generator: torch.Generator | None = None) -> nn.Module:
    """Replace the chosen ``nn.Linear`` / ``nn.Conv2d`` modules of ``model`` by low-rank layers, in place.

    ``layers``: module names (as in ``named_modules``), a predicate ``(name, module) -> bool``, or None for all.
    ``rank`` / ``max_rank``: an int, or a float in (0, 1] read as a fraction of min(n, m) (rounded up); the
    initial rank is capped at ``max_rank``. ``init``: "svd" (truncated SVD of the current weight: a pretrained
    model keeps its function up to the discarded singular values) or "random" (random orthonormal U, V;
    S = diag of the weight's leading singular values). A module used under several names (a shared layer) is
    converted once and every name is bound to the same low-rank layer. Refused with a ValueError, before the
    model is changed: convolutions with groups != 1 or a non-zero padding mode, and a module whose weight or bias
    is tied to another module's (e.g. an output head sharing the embedding's weight), which a low-rank layer
    would untie. Returns ``model``.
    """
    if init not in ("svd", "random"):
        raise ValueError(f"init must be 'svd' or 'random', got {init!r}")
    selected = _select(model, layers)
    for names, dense in selected:
        if isinstance(dense, nn.Conv2d) and (dense.groups != 1 or dense.padding_mode != "zeros"):
            raise ValueError(f"{names[0]}: low-rank convolutions need groups=1 and padding_mode='zeros', got groups="
                             f"{dense.groups}, padding_mode={dense.padding_mode!r}")
    for names, dense in selected:
        name = names[0]
        W = dense.weight.reshape(dense.weight.shape[0], -1)
        limit = min(W.shape)
        r_max = _as_rank(max_rank, limit, f"{name}: max_rank")
        r = min(_as_rank(rank, limit, f"{name}: rank"), r_max)
        factory = dict(dtype=W.dtype, device=W.device)
        common = dict(rank=r, max_rank=r_max, bias=dense.bias is not None, **factory)
        if isinstance(dense, nn.Linear):
            low = LowRankLinear(dense.in_features, dense.out_features, **common)
        else:
            low = LowRankConv2d(dense.in_channels, dense.out_channels, dense.kernel_size, stride=dense.stride,
                                padding=dense.padding, dilation=dense.dilation, **common)
        P, sigma, Qh = torch.linalg.svd(W, full_matrices=False)
        if init == "svd":
            U, V = P[:, :r], Qh[:r].T  # torch.linalg.svd returns Vᴴ: V is its transpose
        else:
            U = torch.linalg.qr(torch.randn(W.shape[0], r, generator=generator).to(**factory))[0]
            V = torch.linalg.qr(torch.randn(W.shape[1], r, generator=generator).to(**factory))[0]
        low.set_factors(U.contiguous(), torch.diag(sigma[:r]), V.contiguous())
        if dense.bias is not None:
            low.bias.copy_(dense.bias)
        low.train(dense.training)
        for name in names:
            _replace(model, name, low)
    return model


@torch.no_grad()
def to_dense(model: nn.Module) -> nn.Module:
    """Replace every low-rank layer of ``model`` by the dense ``nn.Linear`` / ``nn.Conv2d`` with W = U S Vᵀ, in
    place (a layer used under several names becomes one dense module bound to all of them); returns ``model``."""
    names: dict[int, list[str]] = {}
    layers: dict[int, LowRankLayer] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if isinstance(m, LowRankLayer):
            names.setdefault(id(m), []).append(name)
            layers[id(m)] = m
    for key, low in layers.items():
        W = low.weight_matrix()
        factory = dict(dtype=W.dtype, device=W.device)
        if isinstance(low, LowRankLinear):
            dense = nn.Linear(low.in_features, low.out_features, bias=low.bias is not None, **factory)
        else:
            dense = nn.Conv2d(low.in_channels, low.out_channels, low.kernel_size, stride=low.stride,
                              padding=low.padding, dilation=low.dilation, bias=low.bias is not None, **factory)
        dense.weight.copy_(W.reshape(dense.weight.shape))
        if low.bias is not None:
            dense.bias.copy_(low.bias)
        dense.train(low.training)
        for name in names[key]:
            _replace(model, name, dense)
    return model


def low_rank_layers(model: nn.Module) -> dict[str, LowRankLayer]:
    """The model's low-rank layers by module name, in ``named_modules`` order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LowRankLayer)}


def parameter_count(model: nn.Module, convention: str = "reference", count_bias: bool = False) -> int:
    """Parameters of the weight matrices of ``model``'s Linear, Conv2d and low-rank layers (other modules, e.g.
    norms, are not counted): a dense layer counts n*m; a low-rank layer n*r + r*r (``"reference"``) or
    n*r + r*r + m*r (``"full"``); each adds its bias with ``count_bias``."""
    _check_convention(convention)
    total = 0
    for m in model.modules():
        if isinstance(m, LowRankLayer):
            n, k, r = m.out_features, m.fan_in, m.rank
            total += n * r + r * r + (k * r if convention == "full" else 0)
        elif isinstance(m, (nn.Linear, nn.Conv2d)):
            total += m.weight.numel()
        else:
            continue
        if count_bias and getattr(m, "bias", None) is not None:
            total += m.bias.numel()
    return total


def forward_flops(model: nn.Module, input_shape: tuple[int, ...], convention: str = "full") -> int:
    """Floating-point operations (2 per multiply-add) of one example's forward through the weight matrices of
    ``model`` (biases, activations and pooling not counted), found by running a zero input of ``input_shape``
    (without the batch dimension) through the model. A dense layer costs 2*n*m per output position; a low-rank
    layer 2*(m*r + n*r) (``"full"``: the r filters of V, then U S premultiplied once per step, as computed here)
    or 2*(n*r + r*r) (``"reference"``: U and S only, the convention that leaves V out)."""
    _check_convention(convention)
    counts: list[int] = []

    def hook(module, inputs, output):
        positions = output[0, 0].numel() if output.dim() == 4 else output[0].numel() // output.shape[-1]
        if isinstance(module, LowRankLayer):
            n, k, r = module.out_features, module.fan_in, module.rank
            per = k * r + n * r if convention == "full" else n * r + r * r
        else:
            per = module.weight.numel()
        counts.append(2 * per * positions)

    kinds = (LowRankLayer, nn.Linear, nn.Conv2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, dtype=p.dtype, device=p.device))
    finally:
        for h in handles:
            h.remove()
    return sum(counts)


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def _as_rank(value: int | float, limit: int, what: str) -> int:
    if isinstance(value, float):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{what} as a fraction must be in (0, 1], got {value}")
        return max(1, math.ceil(value * limit))
    if not 1 <= value <= limit:
        raise ValueError(f"{what} must be in 1..min(n, m) = 1..{limit}, got {value}")
    return int(value)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
