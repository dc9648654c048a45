"""Layer-wise Optimal Brain Surgeon (ExactOBS; Frantar & Alistarh, "Optimal Brain Compression", NeurIPS 2022).

Each layer is pruned on its own to the requested sparsity, minimising its squared output error on calibration
inputs X: H = 2 X^T X / N (float64), relative damping H += rel_damp * mean(diag H) * I, dead inputs (diag H = 0:
an input that is always zero) set to H_jj = 1 with their weights zeroed, so they go first at no cost. Every row is
traced greedily by :func:`weightcast.prune.obs_kernel.obs_trace` (the removal order and the loss of each step);
the layer keeps the rows' cheapest steps overall (OBC's global selection over rows) for its number of removals,
and the remaining weights of each row are the exact OBS compensation for its removed set, solved in
closed form: w_S = w_S + H_SS^-1 H_S,R w_R (R removed, S kept), which equals the sequential updates.

How many weights each layer loses (``allocation``): "magnitude" (the default) gives each layer its share under
global magnitude pruning; "global" takes the ``round(sparsity * n)`` cheapest steps over all layers' traces, the
selection OBC makes over the rows of a layer made over the layers: it compares layers by their output-error
increase, i.e. takes the network's loss to grow with the sum of the layers' errors (OBC's assumption for its
non-uniform allocation); "uniform" is OBC's uniform allocation (``round(sparsity * numel)`` in every layer). In
benchmarks/results/prune "global" keeps the most accuracy on the MLPs at s = 0.9 but over-prunes LeNet-5 at
s >= 0.9 (a convolution's output error sums over positions, so its steps look dearer than a linear layer's), so it
is not the default.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import layer_inputs, prunable_layers, weight_of
from .obs_kernel import obs_trace


class LayerOBS:
    """The OBS state of one layer: damped Hessian ``H`` (d, d) float64, ``order``/``losses`` (rows, d) of the
    full greedy trace, for any number of sparsities (:meth:`prune`)."""

    def __init__(self, weight: torch.Tensor, inputs: torch.Tensor, rel_damp: float = 1e-2):
        W = weight.detach().flatten(1).double().clone()
        H = 2 * inputs.T @ inputs / max(len(inputs), 1)
        dead = H.diagonal() == 0
        H[dead, dead] = 1.0
        W[:, dead] = 0.0
        H += rel_damp * H.diagonal().mean() * torch.eye(len(H), dtype=H.dtype, device=H.device)
        try:
            L = torch.linalg.cholesky(H)
        except torch.linalg.LinAlgError as exc:
            raise ValueError(f"the layer Hessian is not positive definite even with rel_damp={rel_damp}; raise "
                             "rel_damp or use more calibration samples") from exc
        self.shape, self.W, self.H = weight.shape, W, H
        Hinv = torch.cholesky_inverse(L)
        self.order, self.losses, _ = obs_trace(W.float(), Hinv.float(), W.shape[1])

    def prune(self, sparsity: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask, weight) of the layer at ``sparsity``: bool mask and float64 weight in the layer's shape."""
        return self.prune_count(round(sparsity * self.W.numel()))

    def prune_count(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask, weight) with exactly ``k`` weights of the layer removed."""
        rows, d = self.W.shape
        cheapest = torch.topk(self.losses.double().flatten(), k, largest=False).indices
        counts = torch.bincount(cheapest // d, minlength=rows)
        steps = torch.arange(d, device=self.W.device)[None, :]
        removed_cols = torch.where(steps < counts[:, None], self.order, d)   # d: not removed (dropped below)
        keep_ext = torch.ones(rows, d + 1, dtype=torch.bool, device=self.W.device)
        keep_ext.scatter_(1, removed_cols, False)
        keep = keep_ext[:, :d]
        return keep.reshape(self.shape), compensate(self.W, self.H, keep).reshape(self.shape)


def compensate(W: torch.Tensor, H: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The OBS weights for masks ``keep`` (rows, d) bool: per row w_S + H_SS^-1 H_S,R w_R, zeros on R (float64)."""
    out = torch.zeros_like(W)
    for r in range(W.shape[0]):
        S, R = keep[r], ~keep[r]
        if S.any():
            out[r, S] = W[r, S] + torch.linalg.solve(H[S][:, S], H[S][:, R] @ W[r, R])
    return out


def prepare(model: nn.Module, x: torch.Tensor, rel_damp: float = 1e-2) -> dict[str, LayerOBS]:
    """Layer name -> :class:`LayerOBS` of every prunable layer from calibration inputs ``x`` (a batch)."""
    inputs = layer_inputs(model, x)
    return {name: LayerOBS(weight_of(layer), inputs[name], rel_damp) for name, layer in prunable_layers(model).items()}


def obs_prune(model: nn.Module, sparsity: float, x: torch.Tensor, rel_damp: float = 1e-2,
              allocation: str = "magnitude", state: dict[str, LayerOBS] | None = None
              ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Parameter name -> (mask, new weight) for every prunable layer at ``sparsity``. ``allocation``: how many
    weights each layer loses -- ``"magnitude"`` (the default: as many as global magnitude pruning would remove
    there; OBS then chooses which and compensates), ``"global"`` (the cheapest steps over all layers' traces) or
    ``"uniform"`` (every layer at ``sparsity``, as in OBC; on the MLP 784-40-20-10 it starves the 10 x 20 output
    layer: see benchmarks/results/prune); module docstring. ``state`` (from :func:`prepare`) reuses
    the traces across sparsities."""
    state = state if state is not None else prepare(model, x, rel_damp)
    counts = layer_counts(state, sparsity, allocation)
    return {f"{name}.weight": layer.prune_count(k) for (name, layer), k in zip(state.items(), counts)}


ALLOCATIONS = ("global", "uniform", "magnitude")


def layer_counts(state: dict[str, LayerOBS], sparsity: float, allocation: str) -> list[int]:
    """Weights removed per layer (see :func:`obs_prune`)."""
    if allocation == "global":
        losses = torch.cat([layer.losses.double().flatten() for layer in state.values()])
        cheapest = torch.topk(losses, round(sparsity * losses.numel()), largest=False).indices
        sizes = torch.tensor([layer.losses.numel() for layer in state.values()], device=losses.device)
        layer_of = torch.repeat_interleave(torch.arange(len(sizes), device=losses.device), sizes)
        return torch.bincount(layer_of[cheapest], minlength=len(sizes)).tolist()
    if allocation == "uniform":
        return [round(sparsity * layer.W.numel()) for layer in state.values()]
    if allocation != "magnitude":
        raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
    from .api import keep_top

    masks = keep_top({name: layer.W.abs() for name, layer in state.items()}, sparsity)
    return [int((~m).sum()) for m in masks.values()]
