"""Layer-wise Optimal Brain Surgeon (ExactOBS; Frantar & Alistarh, "Optimal Brain Compression", NeurIPS 2022).

Each layer is pruned on its own to the requested sparsity, minimising its squared output error on calibration
inputs X: H = 2 X^T X / N (float64), relative damping H += rel_damp * mean(diag H) * I, dead inputs (diag H = 0:
an input that is always zero) set to H_jj = 1 with their weights zeroed, so they go first at no cost. Every row is
traced greedily by :func:`weightcast.prune.obs_kernel.obs_trace` (the removal order and the loss of each step);
the layer keeps the rows' cheapest steps overall (OBC's global selection over rows) for its number of removals,
and the remaining weights of each row are the exact OBS compensation for its removed set, solved in
closed form: w_S = w_S + H_SS^-1 H_S,R w_R (R removed, S kept), which equals the sequential updates.

How many weights each layer loses (``allocation``):

* "magnitude" gives each layer its share under global magnitude pruning;
* "global" takes the ``round(sparsity * n)`` cheapest steps over all layers' traces, the selection OBC makes over
  the rows of a layer made over the layers: it compares layers by their output-error increase, i.e. takes the
  network's loss to grow with the sum of the layers' errors (OBC's assumption for its non-uniform allocation).
  It is not scale-free: scaling a layer's weights by c and the next layer's by 1/c (the same ReLU network)
  scales the first layer's step costs by c^2. In benchmarks/results/prune it keeps the most accuracy on the
  MLPs at s = 0.9 but over-prunes LeNet-5 at s >= 0.9;
* "relative" takes the cheapest steps over all layers with each step's cost divided by its layer's output
  energy tr(W H W^T) (the squared output norm on the calibration inputs, in the units of the step costs): the
  relative output-error increase, unchanged by that rescaling -- the scale-freeness LAMP (Lee et al. 2021) gives
  magnitude pruning, here for OBS's costs. The default (:data:`DEFAULT_ALLOCATION`), chosen on the prune zoo's
  six validation runs, never a held-out model, against "magnitude" (the default before) and "global": one-shot
  accuracy gain over "magnitude", mean over the runs, at s = 0.8 / 0.9 / 0.95 / 0.98: +0.04 / -0.24 / +0.63 /
  +2.33 points (worst single run -1.67: the digits MLP at 0.9, 6 of its 360 test images); "global" -0.20 / -0.09
  / -1.85 / -15.94 (worst -58.10: a LeNet-5 at 0.98);
* "uniform" is OBC's uniform allocation (``round(sparsity * numel)`` in every layer).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .layers import layer_inputs, mask_of, prunable_layers, weight_of
from .obs_kernel import obs_trace

ALLOCATIONS = ("global", "relative", "uniform", "magnitude")
DEFAULT_ALLOCATION = "relative"   # chosen on validation runs: module docstring


class LayerOBS:
    """The OBS state of one layer: damped Hessian ``H`` (d, d) float64, ``order``/``losses`` (rows, d) of the
    full greedy trace, for any number of sparsities (:meth:`prune`). ``alive`` (bool, the weight's shape; default
    all True): the weights already pruned (False) are zero in ``W`` and removed in every mask; zero weights cost
    nothing and change no other weight, so the trace takes them first and the rest of it is the trace of the
    remaining weights. ``live``: ``W`` with the weights of dead inputs (never nonzero on the calibration batch)
    zero as well, the weights the trace and :meth:`output_energy` see."""

    def __init__(self, weight: torch.Tensor, inputs: torch.Tensor, rel_damp: float = 1e-2,
                 alive: torch.Tensor | None = None):
        W = weight.detach().flatten(1).double().clone()
        self.pruned = (torch.zeros_like(W, dtype=torch.bool) if alive is None else ~alive.flatten(1))
        W[self.pruned] = 0.0
        H = 2 * inputs.T @ inputs / max(len(inputs), 1)
        dead = H.diagonal() == 0
        H[dead, dead] = 1.0
        H += rel_damp * H.diagonal().mean() * torch.eye(len(H), dtype=H.dtype, device=H.device)
        try:
            L = torch.linalg.cholesky(H)
        except torch.linalg.LinAlgError as exc:
            raise ValueError(f"the layer Hessian is not positive definite even with rel_damp={rel_damp}; raise "
                             "rel_damp or use more calibration samples") from exc
        # a dead input's weights change no output on the calibration inputs: the trace sees them as zero (they
        # go first, at no cost) and so does the output energy; a mask that keeps one keeps its value (W), as
        # the compensation does -- H couples a dead input to no other
        self.live = W.clone()
        self.live[:, dead] = 0.0
        self.shape, self.W, self.H = weight.shape, W, H
        Hinv = torch.cholesky_inverse(L)
        self.order, self.losses, _ = obs_trace(self.live.float(), Hinv.float(), W.shape[1])

    def prune(self, sparsity: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask, weight) of the layer at ``sparsity``: bool mask and float64 weight in the layer's shape."""
        return self.prune_count(round(sparsity * self.W.numel()))

    def output_energy(self) -> float:
        """tr(W H W^T) of the layer's (pruned) weights: its squared output norm on the calibration inputs, in the
        units of :attr:`losses` (damping included); 1.0 for a layer whose outputs are all zero."""
        energy = float((self.live @ self.H * self.live).sum())
        return energy if energy > 0 else 1.0

    def step_losses(self) -> torch.Tensor:
        """(rows, d) float64: :attr:`losses` with the steps that remove an already-pruned weight at -inf, so
        that a selection of the cheapest steps takes them all first."""
        return self.losses.double().masked_fill(self.pruned.gather(1, self.order), -math.inf)

    def prune_count(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask, weight) with exactly ``k`` weights of the layer removed, the already-pruned ones among them
        (ValueError when they are more than ``k``)."""
        forced = int(self.pruned.sum())
        if forced > k:
            raise ValueError(f"the layer already has {forced} weights pruned, more than the {k} asked for")
        rows, d = self.W.shape
        cheapest = torch.topk(self.step_losses().flatten(), k, largest=False).indices
        counts = torch.bincount(cheapest // d, minlength=rows) - self.pruned.sum(1)   # beyond the pruned ones
        # each row removes its pruned weights and its first counts[r] other steps; the zero-cost steps (pruned
        # weights among them) commute, so this is the trace's removed set
        free = ~self.pruned.gather(1, self.order)
        rank = free.cumsum(1) - 1
        removed_steps = ~free | (rank < counts[:, None])
        removed_cols = torch.where(removed_steps, self.order, d)   # d: not removed (dropped below)
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
    """Layer name -> :class:`LayerOBS` of every prunable layer from calibration inputs ``x`` (a batch); the
    weights a layer's mask (``torch.nn.utils.prune``) already prunes stay pruned."""
    inputs = layer_inputs(model, x)
    return {name: LayerOBS(weight_of(layer), inputs[name], rel_damp, mask_of(layer))
            for name, layer in prunable_layers(model).items()}


def obs_prune(model: nn.Module, sparsity: float, x: torch.Tensor, rel_damp: float = 1e-2,
              allocation: str = DEFAULT_ALLOCATION, state: dict[str, LayerOBS] | None = None
              ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Parameter name -> (mask, new weight) for every prunable layer at ``sparsity``. ``allocation``: how many
    weights each layer loses -- ``"relative"`` (the default: the cheapest steps over all layers' traces, each
    layer's costs relative to its output energy), ``"global"`` (the same with the raw costs), ``"magnitude"`` (as
    many as global magnitude pruning would remove there; OBS then chooses which and compensates) or ``"uniform"``
    (every layer at ``sparsity``, as in OBC; on the MLP 784-40-20-10 it starves the 10 x 20 output layer: see
    benchmarks/results/prune); module docstring. ``state`` (from :func:`prepare`) reuses
    the traces across sparsities."""
    state = state if state is not None else prepare(model, x, rel_damp)
    counts = layer_counts(state, sparsity, allocation)
    return {f"{name}.weight": layer.prune_count(k) for (name, layer), k in zip(state.items(), counts)}


def layer_counts(state: dict[str, LayerOBS], sparsity: float, allocation: str) -> list[int]:
    """Weights removed per layer (see :func:`obs_prune`), the already-pruned ones included (ValueError when they
    are more than ``sparsity`` removes, over all layers or, for "uniform", in a layer)."""
    from .api import check_target, keep_top

    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
    alive = {name: ~layer.pruned for name, layer in state.items()}
    check_target(alive, sparsity, "layer" if allocation == "uniform" else "global")
    if allocation in ("global", "relative"):
        scale = [layer.output_energy() if allocation == "relative" else 1.0 for layer in state.values()]
        losses = torch.cat([layer.step_losses().flatten() / c for layer, c in zip(state.values(), scale)])
        cheapest = torch.topk(losses, round(sparsity * losses.numel()), largest=False).indices
        sizes = torch.tensor([layer.losses.numel() for layer in state.values()], device=losses.device)
        layer_of = torch.repeat_interleave(torch.arange(len(sizes), device=losses.device), sizes)
        return torch.bincount(layer_of[cheapest], minlength=len(sizes)).tolist()
    if allocation == "uniform":
        return [round(sparsity * layer.W.numel()) for layer in state.values()]
    masks = keep_top({name: layer.live.abs() for name, layer in state.items()}, sparsity, alive=alive)
    return [int((~m).sum()) for m in masks.values()]
