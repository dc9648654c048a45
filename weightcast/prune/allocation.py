"""Targets for the mask hypernetwork's layer-wise sparsity allocation, found with data on the training zoo.

At each sparsity s, the scores log|w| + b_l (global top-k) with per-layer offsets b are searched for the b
that minimises the masked network's cross-entropy on a batch of its training data (:func:`search_offsets`);
``weightcast prune train --objective search`` fits the hypernetwork's per-layer offsets to these targets over
the training runs (:func:`weightcast.prune.hypernet.train` with ``targets``). Data is used here, to make
training targets only: the trained hypernetwork prunes from the weights alone.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .hypernet import Prepared, masked_forward, prepare

SEARCH_SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.965, 0.98)
SEARCH_GRID = tuple(i / 4 for i in range(-4, 5))   # offsets tried per layer, log-units


class Target(NamedTuple):
    """A searched allocation of one model at one sparsity: ``offsets`` (layers,) centred (mean 0); ``curves``
    (layers, G): the loss with one layer's offset moved to each of ``grid`` (G,) -- positions in the centred
    frame -- and the others at the optimum, relative to the optimum's loss (0 there): how much each layer's
    offset matters."""

    offsets: torch.Tensor
    grid: torch.Tensor
    curves: torch.Tensor

    def loss(self, offsets: torch.Tensor) -> torch.Tensor:
        """Scalar: the mean over layers of ``curves`` at ``offsets`` (layers,), linearly interpolated along the
        grid (extrapolated with the end slopes): differentiable in ``offsets``."""
        g = self.grid
        i = torch.searchsorted(g, offsets.detach().contiguous()).clamp(1, len(g) - 1)
        rows = torch.arange(len(offsets))
        x0, x1 = g[i - 1], g[i]
        y0, y1 = self.curves[rows, i - 1], self.curves[rows, i]
        return (y0 + (offsets - x0) * (y1 - y0) / (x1 - x0)).mean()


@torch.no_grad()
def search_offsets(model: nn.Module, p: Prepared, x: torch.Tensor, y: torch.Tensor, sparsity: float,
                   grid: tuple[float, ...] = SEARCH_GRID, sweeps: int = 2, min_gain: float = 0.01) -> Target:
    """The per-layer offsets b of the scores log|w| + b_l (global top-k at ``sparsity``) found by coordinate
    search on the cross-entropy of the masked ``model`` on the batch (x, y) -- training data, used to make the
    hypernetwork's targets only -- and the loss curve of every layer's offset around them (:class:`Target`).
    From b = 0 (global magnitude), up to ``sweeps`` passes over the layers, each trying every value of ``grid``
    for one layer; a move is taken only when it lowers the loss by more than ``min_gain`` (relative), so that
    noise does not move the allocation."""
    sizes = torch.tensor([shape.numel() for shape in p.shapes])
    layer_of = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    k = round(sparsity * len(p.flat))
    log_abs = p.flat.abs().clamp(min=1e-30).log()
    seen: dict[tuple, float] = {}

    def loss(b):
        key = tuple(b.tolist())
        if key not in seen:
            mask = torch.ones(len(p.flat))
            if k:
                mask[torch.topk(log_abs + b[layer_of], k, largest=False).indices] = 0.0
            seen[key] = float(F.cross_entropy(masked_forward(model, p, mask, x), y))
        return seen[key]

    def moved_to(b, layer, value):
        trial = b.clone()
        trial[layer] = value
        return trial

    b = torch.zeros(len(sizes))
    best = loss(b)
    for _ in range(sweeps):
        moved = False
        for layer in range(len(sizes)):
            for value in grid:
                trial_loss = loss(moved_to(b, layer, value))
                if trial_loss < best * (1 - min_gain):
                    best, b, moved = trial_loss, moved_to(b, layer, value), True
        if not moved:
            break
    curves = torch.tensor([[loss(moved_to(b, layer, value)) / best - 1 for value in grid]
                           for layer in range(len(sizes))])
    return Target(b - b.mean(), torch.tensor(grid) - b.mean(), curves)


def offset_targets(zoo: list[tuple[nn.Module, object]], sparsities: tuple[float, ...] = SEARCH_SPARSITIES,
                   examples: int = 2048, token_size: int = 32, min_gain: float = 0.01,
                   log=print) -> list[dict[float, Target]]:
    """:func:`search_offsets` for every model of ``zoo`` (pairs of a model and its task) at every sparsity, on
    the first ``examples`` training examples of its task: one ``{s: Target}`` per model."""
    out = []
    for i, (model, task) in enumerate(zoo):
        model.eval().requires_grad_(False)
        p = prepare(model, token_size)
        x, y = task.eval_tensors("train", examples)
        out.append({s: search_offsets(model, p, x, y, s, min_gain=min_gain) for s in sparsities})
        log(f"offset targets {i + 1}/{len(zoo)}: " + " ".join(
            f"{s}:[{','.join(f'{v:+.2f}' for v in target.offsets.tolist())}]" for s, target in out[-1].items()))
    return out
