"""Pruning from per-sample gradients: WoodFisher and CHITA.

Both read the empirical Fisher F = G^T G / N of the prunable weights, G (N, p) the per-sample gradients of the
loss (computed with ``torch.func.vmap(torch.func.grad(...))``), and choose the removed set Q globally over layers.

* WoodFisher (Singh & Alistarh, NeurIPS 2020): F block-diagonal (blocks of ``block_size`` consecutive weights
  within a layer), each block inverted in closed form with damping, F_b^-1 = (G_b^T G_b / N + lambda I)^-1,
  one lambda = rel_damp * mean(diag F) for all blocks (1 when all gradients are zero), so that the costs of
  different blocks stay comparable; a weight costs
  rho_q = w_q^2 / (2 [F^-1]_qq); the ``round(s * p)`` cheapest are removed, and each block's survivors take the
  joint OBS update dw = -F^-1 E_Q (E_Q^T F^-1 E_Q)^-1 w_Q.
* CHITA (Benbaki et al., "Fast as CHITA", ICML 2023): the sparse ridge regression
  min_w 1/2 ||A (w - w0)||^2 + lambda/2 ||w - w0||^2  s.t. ||w||_0 <= k,  A = G / sqrt(N),
  solved by iterative hard thresholding from the magnitude solution with a backtracking line search on the step
  (starting at twice the previous accepted step, halved until the objective decreases, never below 1/L), then
  the exact ridge solution on the final support (a Woodbury solve of size N, float64). The iterations run in
  float32 (A is N x p: 4 bytes per gradient entry).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from .layers import prunable_layers, weight_of


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """(N, p) float32 gradients of the cross-entropy of each example (x[i], y[i]) with respect to the prunable
    weights, concatenated in layer order (p = their total number of elements); evaluated in eval mode."""
    layers = prunable_layers(model)
    names = {f"{n}.weight": weight_of(m).detach() for n, m in layers.items()}
    base = {k: v.detach() for k, v in model.named_parameters()}
    base.update({k: v.detach() for k, v in model.named_buffers()})
    for n, m in layers.items():   # a masked layer: take the mask into account through weight_orig * mask
        if hasattr(m, "weight_mask"):
            base.pop(f"{n}.weight_orig", None)
            base.pop(f"{n}.weight_mask", None)

    def loss(weights, xi, yi):
        out = functional_call(model, {**base, **weights}, (xi[None],))
        return F.cross_entropy(out, yi[None])

    was_training = model.training
    model.eval()
    try:
        rows = []
        for i in range(0, len(x), chunk):
            g = vmap(grad(loss), in_dims=(None, 0, 0))(names, x[i:i + chunk], y[i:i + chunk])
            rows.append(torch.cat([g[k].flatten(1) for k in names], dim=1))
    finally:
        model.train(was_training)
    return torch.cat(rows)


def _flat_weights(model: nn.Module) -> tuple[torch.Tensor, list[tuple[str, torch.Size]]]:
    layers = prunable_layers(model)
    shapes = [(f"{n}.weight", weight_of(m).shape) for n, m in layers.items()]
    return torch.cat([weight_of(m).detach().flatten() for m in layers.values()]).double(), shapes


def _split(flat: torch.Tensor, shapes: list[tuple[str, torch.Size]]) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for name, shape in shapes:
        n = shape.numel()
        out[name] = flat[start:start + n].reshape(shape)
        start += n
    return out


def _blocks(shapes: list[tuple[str, torch.Size]], block_size: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive blocks of at most block_size weights, never crossing a layer."""
    out, start = [], 0
    for _, shape in shapes:
        stop = start + shape.numel()
        out += [(b, min(b + block_size, stop)) for b in range(start, stop, block_size)]
        start = stop
    return out


class WoodFisher:
    """Block inverses of the damped empirical Fisher of a model's prunable weights (see the module docstring);
    :meth:`prune` then serves any sparsity."""

    def __init__(self, model: nn.Module, G: torch.Tensor, block_size: int = 128, rel_damp: float = 0.1):
        self.w, self.shapes = _flat_weights(model)
        self.blocks = _blocks(self.shapes, block_size)
        self.inverses, diag = [], []
        mean = float(G.square().mean(dtype=torch.float64)) if G.numel() else 0.0
        self.lam = rel_damp * mean if mean > 0 else 1.0
        for a, b in self.blocks:
            Gb = G[:, a:b].double()
            Fb = Gb.T @ Gb / len(G)
            Fb.diagonal().add_(self.lam)
            inv = torch.cholesky_inverse(torch.linalg.cholesky(Fb))
            self.inverses.append(inv)
            diag.append(inv.diagonal())
        self.rho = self.w ** 2 / (2 * torch.cat(diag))

    def prune(self, sparsity: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Parameter name -> (bool mask, float64 weight) at ``sparsity`` (global over layers)."""
        k = round(sparsity * len(self.w))
        removed = torch.zeros(len(self.w), dtype=torch.bool, device=self.w.device)
        removed[torch.topk(self.rho, k, largest=False).indices] = True
        w = self.w.clone()
        for (a, b), inv in zip(self.blocks, self.inverses):
            Q = removed[a:b].nonzero().squeeze(1)
            if len(Q):
                wb = w[a:b]
                wb -= inv[:, Q] @ torch.linalg.solve(inv[Q][:, Q], wb[Q])
                wb[Q] = 0.0
        return {name: (m, v) for (name, m), v in zip(_split(~removed, self.shapes).items(),
                                                      _split(w, self.shapes).values())}


class Chita:
    """CHITA's sparse ridge regression on the gradient matrix (see the module docstring)."""

    def __init__(self, model: nn.Module, G: torch.Tensor, rel_ridge: float = 0.1, max_iter: int = 100,
                 tol: float = 1e-6):
        w0, self.shapes = _flat_weights(model)
        self.w0 = w0.float()
        self.A = G.float() / len(G) ** 0.5
        fisher_diag_mean = (self.A ** 2).sum(0).mean()
        self.lam = float(rel_ridge * fisher_diag_mean) if fisher_diag_mean > 0 else 1.0
        self.L = _top_eigenvalue(self.A) + self.lam
        self.max_iter, self.tol = max_iter, tol

    def objective(self, w: torch.Tensor) -> float:
        d = w - self.w0
        return float(0.5 * (self.A @ d).square().sum() + 0.5 * self.lam * d.square().sum())

    def _gradient(self, w: torch.Tensor) -> torch.Tensor:
        d = w - self.w0
        return self.A.T @ (self.A @ d) + self.lam * d

    def prune(self, sparsity: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Parameter name -> (bool mask, float64 weight) at ``sparsity`` (global over layers)."""
        keep_n = len(self.w0) - round(sparsity * len(self.w0))
        w = _hard_threshold(self.w0, keep_n)
        f, step = self.objective(w), 1.0 / self.L
        for _ in range(self.max_iter):
            g = self._gradient(w)
            trial = 2 * step
            while True:
                candidate = _hard_threshold(w - trial * g, keep_n)
                fc = self.objective(candidate)
                if fc < f or trial <= 1.0 / self.L:
                    break
                trial /= 2
            if fc >= f:
                break
            converged = f - fc <= self.tol * max(f, 1e-30)
            w, f, step = candidate, fc, trial
            if converged:
                break
        keep = w != 0
        if keep_n > 0 and keep.sum() < keep_n:  # a weight that IHT zeroed exactly still counts as kept
            keep = torch.zeros_like(keep)
            keep[torch.topk(w.abs() + (self.w0.abs() * 1e-12), keep_n).indices] = True
        w = self._ridge_on_support(keep)
        return {name: (m, v) for (name, m), v in zip(_split(keep, self.shapes).items(),
                                                      _split(w, self.shapes).values())}

    def _ridge_on_support(self, keep: torch.Tensor) -> torch.Tensor:
        """argmin of the objective with w = 0 off ``keep``: w_S = w0_S + A_S^T (A_S A_S^T + lambda I)^-1 r,
        r = A_R w0_R (R = removed)."""
        A_S = self.A[:, keep]
        r = self.A[:, ~keep] @ self.w0[~keep]
        K = (A_S @ A_S.T).double()
        K.diagonal().add_(self.lam)
        w = torch.zeros_like(self.w0, dtype=torch.float64)
        w[keep] = self.w0[keep].double() + A_S.T.double() @ torch.linalg.solve(K, r.double())
        return w


def _top_eigenvalue(A: torch.Tensor, iters: int = 30) -> float:
    """Largest eigenvalue of A^T A (power iteration on the N x N side, A A^T), times 1.01 for safety."""
    v = torch.ones(A.shape[0], dtype=A.dtype, device=A.device)
    value = 0.0
    for _ in range(iters):
        u = A @ (A.T @ v)
        value = float(u.norm())
        if value == 0:
            return 0.0
        v = u / value
    return 1.01 * value


def _hard_threshold(w: torch.Tensor, keep_n: int) -> torch.Tensor:
    out = torch.zeros_like(w)
    if keep_n > 0:
        idx = torch.topk(w.abs(), keep_n).indices
        out[idx] = w[idx]
    return out
