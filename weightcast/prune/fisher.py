"""Pruning from per-sample gradients: WoodFisher and CHITA, one-shot in stages.

Both read the damped empirical Fisher of the prunable weights, F = G^T G / N + lambda I = A^T A + lambda I
(G (N, p) the per-sample gradients of the loss, computed with ``torch.func.vmap(torch.func.grad(...))``;
A = G / sqrt(N); lambda = ``rel_damp`` x mean(diag G^T G / N), 1 when all gradients are zero), as the local
quadratic model of the loss change 1/2 dw^T F dw, and choose the removed set Q globally over layers. Given Q,
the best survivors under that model minimise it with w_Q = 0 (:func:`optimal_update`): the joint OBS update
dw = -F^-1 E_Q (E_Q^T F^-1 E_Q)^-1 w_Q, computed on the N x N side as the ridge solution
w_S = w0_S + A_S^T (A_S A_S^T + lambda I)^-1 A_Q w0_Q (float64).

* WoodFisher (Singh & Alistarh, NeurIPS 2020): a weight costs rho_q = w_q^2 / (2 [F^-1]_qq); the cheapest go. F
  is the full Fisher (``block_size=None``: [F^-1]_qq by the Woodbury identity,
  (A^T A + lambda I)^-1 = (I - A^T (A A^T + lambda I)^-1 A) / lambda, and an N x N solve) or block-diagonal
  (blocks of ``block_size`` consecutive weights within a layer, formed from A and inverted explicitly: the
  solves no longer grow with N, so N can be large; the full Fisher holds A, N x p float64, the blocks only one
  block's columns of it at a time).
* CHITA (Benbaki et al., "Fast as CHITA", ICML 2023): the sparse ridge regression
  min_w 1/2 ||A (w - w0)||^2 + lambda/2 ||w - w0||^2  s.t. ||w||_0 <= k, solved by iterative hard
  thresholding with a backtracking line search on the step (starting at twice the previous accepted step,
  halved until the objective decreases, never below 1/L), then the optimal update on the final support. IHT is
  a local method: it starts from the better, in this objective, of two supports with their optimal updates --
  magnitude's and WoodFisher's (the k least rho_q) -- so it ends at least as low as either. From magnitude's
  alone its steps (1/L, L the largest eigenvalue of A^T A, about 1e5-1e6 times lambda) barely moved the support
  (269 of 272 weights kept alike on a digits MLP at s = 0.9), and CHITA kept 18.89% on the digits validation MLP
  at 0.9 where magnitude keeps 71.67% (benchmarks/results/prune) -- that start was magnitude's support without the
  optimal update. With the update, neither start's support can change unless the step is huge: the update zeroes the
  objective's gradient g on the support S, so a step t changes S only when t max|g_j| (j off S) exceeds min|v_i| (i
  in S, v the iterate), far beyond the steps the line search tries. The reference's moves that can leave such a
  point -- swaps and coordinate descent (Active_IHTCDLS) -- are not implemented: a greedy swap search (the cheapest
  kept weights exchanged for the removed ones whose gradient promises most, each exchange kept only if the objective
  falls), tried outside the project on the validation MLPs, lowered the objective by under 0.3% per stage and did
  not raise the accuracy. With ``block_size`` F is WoodFisher's block-diagonal one (CHITA's block variant): the same
  IHT with products by the blocks, L the largest eigenvalue of any block, and the update decomposed by block. The
  iterations run in float32 with the full Fisher (L estimated by power iteration, times 1.01), in float64 with
  blocks.
* Stages (both papers prune one-shot in several steps, recomputing the gradients): :func:`prune_in_stages`
  reaches sparsity s through s_i = 1 - (1 - s)^(i / stages), i = 1..stages (from the model's sparsity s0 when
  it is already masked: s_i = 1 - (1 - s0) ((1 - s) / (1 - s0))^(i / stages)); each stage computes the
  gradients at the current (pruned, updated) weights and prunes among the surviving weights only.

Defaults (:data:`DEFAULT_STAGES`, ``rel_damp`` 1e-3, the full Fisher) were chosen on the prune zoo's validation
MLPs, never a held-out model, by benchmarks/prune_tune_fisher.py (benchmarks/results/prune/prune_tune_fisher.md:
mean one-shot gain over global magnitude at s = 0.9 over rel_damp 1e-4..1e-1, 1/8/32 stages, 1,024/4,096
calibration examples, the figures are there): CHITA with 32 stages gained more than with 8 on each of the three
runs at s = 0.9 and 0.95 and about the same at 0.8; at 1,024 examples no setting tried beat WoodFisher's 8
stages and rel_damp 1e-3 by more than 0.2 points on the mean, and none on every run, and blocks of 784 or 128
weights did as well as the full Fisher. More examples did: with 8,192 and blocks of 2,048 weights (the full
Fisher on 8,192 examples needs an 8,192-square solve per stage), WoodFisher gained more on each of the three
runs than with its default (+0.89, +0.54, +0.66 points at s = 0.9; blocks of 784: +1.33, +0.17, +0.53, a tie
on the mean, 2,048 taken for its mean +0.02 higher). benchmarks/prune_accuracy.py runs WoodFisher so (its
FISHER_SETTINGS); the defaults here stay the full Fisher, which needs no choice of data size. The mask
hypernetwork's WoodFisher on its input prior's samples has its own setting (:class:`.calibration.Calibration`,
chosen in the same table). CHITA on the same 8,192 examples and blocks (8 stages) ended exactly where WoodFisher
did on each run: its IHT did not leave the WoodFisher start.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..errors import check_positive_int
from .layers import eval_output, live_weight, mask_of, parameter_keys, prunable_layers, weight_of


DEFAULT_STAGES = {"woodfisher": 8, "chita": 32}   # chosen on validation runs: module docstring
CHITA_STARTS = ("magnitude", "woodfisher")   # the supports CHITA's IHT may start from: module docstring


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 128,
                     weights: dict[str, torch.Tensor] | None = None,
                     columns: torch.Tensor | None = None) -> torch.Tensor:
    """(N, p) float32 gradients of the cross-entropy of each example (x[i], y[i]) with respect to the prunable
    weights (outputs (classes,) or (classes, d1, ...) per example as torch's cross_entropy takes them; otherwise,
    for a sequence model, outputs (T, classes) and labels (T,): the mean over its T positions), concatenated in
    layer order (p = their total number of elements); evaluated in eval mode at ``weights`` (``"<layer>.weight"`` ->
    tensor of the weight's shape; default the weights as the model uses them, :func:`.layers.live_weight`);
    ``model`` is not changed. On a layer masked by ``torch.nn.utils.prune`` the gradient of a pruned weight is
    zero. ``columns`` (bool (p,)): only those columns are returned, (N, columns.sum()), and only they are held.
    Raises ValueError for an empty batch."""
    layers = prunable_layers(model)
    weights = weights if weights is not None else {f"{n}.weight": live_weight(m) for n, m in layers.items()}
    keys = parameter_keys(model)
    names = {keys[k]: w.detach().to(weight_of(layers[k.removesuffix(".weight")]).dtype) for k, w in weights.items()}
    base = {k: v.detach() for k, v in model.named_parameters()}
    base.update({k: v.detach() for k, v in model.named_buffers()})

    def loss(weights, xi, yi):
        out = functional_call(model, {**base, **weights}, (xi[None],))
        if _is_sequence(out, yi):
            return F.cross_entropy(out[0], yi)   # a sequence model: (1, T, classes) against (T,)
        return F.cross_entropy(out, yi[None])   # torch's layouts: (1, classes) or (1, classes, d1, ...)

    if len(x) == 0:
        raise ValueError("per_sample_grads needs at least one example, got an empty batch")
    was_training = model.training
    model.eval()
    G = None   # (N, p), filled chunk by chunk (not concatenated: that would hold it twice)
    try:
        for i in range(0, len(x), chunk):
            g = vmap(grad(loss), in_dims=(None, 0, 0))(names, x[i:i + chunk], y[i:i + chunk])
            rows = torch.cat([g[k].flatten(1) for k in names], dim=1)
            rows = rows if columns is None else rows[:, columns]
            if G is None:
                G = rows.new_empty(len(x), rows.shape[1])
            G[i:i + len(rows)] = rows
    finally:
        model.train(was_training)
    return G


def _is_sequence(out: torch.Tensor, yi: torch.Tensor) -> bool:
    """Whether one example's output ``out`` (1, ...) is a sequence model's (1, T, classes) against labels ``yi``
    (T,) -- the class axis last -- rather than one of torch's layouts, (1, classes) or (1, classes, d1, ...)."""
    return (1, *out.shape[2:]) != (1, *yi.shape) and out.shape[:-1] == (1, *yi.shape)


def check_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise ValueError when a class-index label of ``y`` is no class of ``model``'s outputs, read as
    :func:`per_sample_grads` reads them (the model run on ``x[:1]`` in eval mode without gradients; its mode is
    restored). Labels that are class probabilities (floating point) are not checked."""
    if y.is_floating_point() or not len(y):
        return
    out = eval_output(model, x[:1])
    classes = out.shape[-1] if _is_sequence(out, y[0]) else out.shape[1]
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise ValueError(f"the calibration labels y run from {low} to {high}, but the model has {classes} classes: "
                         f"pass class indices in [0, {classes})")


def _scaled(G: torch.Tensor, columns: slice = slice(None)) -> torch.Tensor:
    """A = G / sqrt(N) (float64) of per-sample gradients ``G`` (N, p), or only its ``columns``."""
    return G[:, columns].double() / max(len(G), 1) ** 0.5


def damping(A: torch.Tensor, rel_damp: float) -> float:
    """lambda = rel_damp x mean(diag A^T A) (1 when A is all zero)."""
    return _damping(_diagonal(A), rel_damp)


def _diagonal(A: torch.Tensor) -> torch.Tensor:
    """diag A^T A (float64, (p,)): the squared norms of A's columns."""
    return A.square().sum(0, dtype=torch.float64)


def _damping(diagonal: torch.Tensor, rel_damp: float) -> float:
    """lambda = rel_damp x mean(``diagonal``), the diagonal of A^T A (1 when it is empty or all zero)."""
    mean = float(diagonal.mean()) if diagonal.numel() else 0.0
    return rel_damp * mean if mean > 0 else 1.0


def optimal_update(A: torch.Tensor, lam: float, w0: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """argmin_w 1/2 (w - w0)^T (A^T A + lam I) (w - w0) with w = 0 off ``keep`` (float64, w0's shape): the joint
    OBS update of the removed weights' survivors, w_S = w0_S + A_S^T (A_S A_S^T + lam I)^-1 A_R w0_R
    (R = ~keep). A (N, p), w0 (p,), keep (p,) bool."""
    A, w0 = A.double(), w0.double()
    A_S = A[:, keep]
    K = A_S @ A_S.T
    K.diagonal().add_(lam)
    w = torch.zeros_like(w0)
    w[keep] = w0[keep] + A_S.T @ torch.linalg.solve(K, A[:, ~keep] @ w0[~keep])
    return w


def inverse_diagonal(A: torch.Tensor, lam: float) -> torch.Tensor:
    """diag((A^T A + lam I)^-1) (float64, (p,)) by the Woodbury identity: (1 - colsum(B * B)) / lam with
    B = L^-1 A, L L^T = A A^T + lam I (Cholesky); A (N, p)."""
    A = A.double()
    K = A @ A.T
    K.diagonal().add_(lam)
    B = torch.linalg.solve_triangular(torch.linalg.cholesky(K), A, upper=False)
    return (1 - B.square().sum(0)) / lam


class FullFisher:
    """F = A^T A + lam I for A (N, p) = G / sqrt(N), kept on the N x N side (memory N x p): the Woodbury inverse
    diagonal, the joint OBS update by :func:`optimal_update`, products with F in float32 (CHITA's iterations)."""

    iteration_dtype = torch.float32

    def __init__(self, A: torch.Tensor, lam: float):
        self.A, self.lam = A.double(), lam

    @functools.cached_property
    def _A32(self) -> torch.Tensor:
        return self.A.float()

    def matvec(self, d: torch.Tensor) -> torch.Tensor:
        return self._A32.T @ (self._A32 @ d) + self.lam * d

    def quadratic(self, d: torch.Tensor) -> float:
        """1/2 d^T F d = 1/2 ||A d||^2 + lam/2 ||d||^2."""
        return float(0.5 * (self._A32 @ d).square().sum() + 0.5 * self.lam * d.square().sum())

    def inverse_diagonal(self) -> torch.Tensor:
        return inverse_diagonal(self.A, self.lam)

    def top_eigenvalue(self) -> float:
        return _top_eigenvalue(self._A32) + self.lam

    def optimal_update(self, w0: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return optimal_update(self.A, self.lam, w0, keep)


class BlockFisher:
    """The block-diagonal part of F = A^T A + lam I (A = G / sqrt(N), lam = :func:`damping` of A): blocks
    (start, stop) tiling 0..p in order, each block formed and inverted explicitly (float64; kept: twice the sum
    of the blocks' squares, independent of N; A is formed one block at a time, never whole). The joint OBS update
    decomposes by block: dw_b = -[F_b^-1]_(:,Q) ([F_b^-1]_(Q,Q))^-1 w_Q for the block's removed weights Q.
    Raises ValueError for blocks that do not tile 0..p in order."""

    iteration_dtype = torch.float64

    def __init__(self, G: torch.Tensor, rel_damp: float, blocks: list[tuple[int, int]]):
        stops = [0] + [b for _, b in blocks]
        if [a for a, _ in blocks] != stops[:-1] or stops[-1] != G.shape[1] or any(a >= b for a, b in blocks):
            raise ValueError(f"blocks must tile 0..{G.shape[1]} in order as (start, stop) pairs, got {blocks}")
        self.blocks = blocks
        self.F, diagonal = [], []
        for a, b in blocks:
            Ab = _scaled(G, slice(a, b))
            diagonal.append(_diagonal(Ab))
            self.F.append(Ab.T @ Ab)
        self.lam = _damping(torch.cat(diagonal), rel_damp)
        self.inverses = []
        for Fb in self.F:
            Fb.diagonal().add_(self.lam)
            self.inverses.append(torch.cholesky_inverse(torch.linalg.cholesky(Fb)))

    def matvec(self, d: torch.Tensor) -> torch.Tensor:
        return torch.cat([Fb @ d[a:b] for (a, b), Fb in zip(self.blocks, self.F)])

    def quadratic(self, d: torch.Tensor) -> float:
        """1/2 d^T F d."""
        return float(0.5 * d @ self.matvec(d))

    def inverse_diagonal(self) -> torch.Tensor:
        return torch.cat([inv.diagonal() for inv in self.inverses])

    def top_eigenvalue(self) -> float:
        return max(float(torch.linalg.eigvalsh(Fb)[-1]) for Fb in self.F)

    def optimal_update(self, w0: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        out = w0.double().clone()
        for (a, b), inv in zip(self.blocks, self.inverses):
            Q = (~keep[a:b]).nonzero().squeeze(1)
            if len(Q):
                wb = out[a:b]
                wb -= inv[:, Q] @ torch.linalg.solve(inv[Q][:, Q], wb[Q])
                wb[Q] = 0.0
        return out


def fisher_of(G: torch.Tensor, rel_damp: float, blocks: list[tuple[int, int]] | None = None
              ) -> FullFisher | BlockFisher:
    """The damped empirical Fisher of per-sample gradients ``G`` (N, p): :class:`FullFisher` (``blocks`` None)
    or :class:`BlockFisher`, with lambda = :func:`damping` of A = G / sqrt(N)."""
    if blocks is not None:
        return BlockFisher(G, rel_damp, blocks)
    A = _scaled(G)
    return FullFisher(A, damping(A, rel_damp))


def woodfisher_step(w: torch.Tensor, G: torch.Tensor, k: int, rel_damp: float = 1e-3,
                    blocks: list[tuple[int, int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One WoodFisher step on weights ``w`` (p,) with per-sample gradients ``G`` (N, p): the ``k`` weights of
    least rho_q = w_q^2 / (2 [F^-1]_qq) go, the others take the joint OBS update. Returns (keep (p,) bool,
    new weights (p,) float64).
    ``blocks``: (start, stop) ranges covering 0..p of a block-diagonal F; None: the full F."""
    fisher = fisher_of(G, rel_damp, blocks)
    w = w.double()
    keep = _keep_largest(w ** 2 / (2 * fisher.inverse_diagonal()), len(w) - k)
    return keep, fisher.optimal_update(w, keep)


def chita_step(w: torch.Tensor, G: torch.Tensor, k: int, rel_damp: float = 1e-3, max_iter: int = 100,
               tol: float = 1e-6, blocks: list[tuple[int, int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One CHITA step on weights ``w`` (p,) with per-sample gradients ``G`` (N, p): IHT with backtracking for
    the ridge-regularised sparse regression with ``k`` weights removed, then the optimal update on the support
    found (module docstring). ``blocks`` as :func:`woodfisher_step` (CHITA's block variant). Returns
    (keep (p,) bool, new weights (p,) float64)."""
    fisher = fisher_of(G, rel_damp, blocks)
    w0 = w.to(fisher.iteration_dtype)
    keep_n = len(w0) - k

    def objective(v):
        return fisher.quadratic(v - w0)

    L = fisher.top_eigenvalue()
    scores = {"magnitude": w0.abs(), "woodfisher": w.double() ** 2 / (2 * fisher.inverse_diagonal())}
    v = min((fisher.optimal_update(w0, _keep_largest(scores[name], keep_n)).to(w0.dtype) for name in CHITA_STARTS),
            key=objective)
    f, step = objective(v), 1.0 / L
    for _ in range(max_iter):
        g = fisher.matvec(v - w0)
        trial = 2 * step
        while True:
            u = w0.new_zeros(len(w0))
            candidate = v - trial * g
            keep = _keep_largest(candidate.abs(), keep_n)
            u[keep] = candidate[keep]
            fc = objective(u)
            if fc < f or trial <= 1.0 / L:
                break
            trial /= 2
        if fc >= f:
            break
        converged = f - fc <= tol * max(f, 1e-30)
        v, f, step = u, fc, trial
        if converged:
            break
    keep = _keep_largest(v.abs() + 1e-12 * w0.abs(), keep_n)   # a weight IHT zeroed exactly may still be kept
    return keep, fisher.optimal_update(w0, keep)


def _keep_largest(values: torch.Tensor, n: int) -> torch.Tensor:
    """Bool mask of the ``n`` largest entries (ties by position)."""
    keep = torch.zeros(len(values), dtype=torch.bool, device=values.device)
    if n > 0:
        keep[torch.topk(values, n).indices] = True
    return keep


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


def stage_sparsities(sparsity: float, stages: int, start: float = 0.0) -> list[float]:
    """s_i = 1 - (1 - start) ((1 - s) / (1 - start))^(i / stages), i = 1..stages: from sparsity ``start`` (the
    model's before pruning) the density falls by the same factor at every stage."""
    return [1 - (1 - start) * ((1 - sparsity) / (1 - start)) ** (i / stages) for i in range(1, stages + 1)]


def prune_in_stages(model: nn.Module, sparsity: float, x: torch.Tensor, y: torch.Tensor, method: str = "woodfisher",
                    stages: int | None = None, rel_damp: float = 1e-3, block_size: int | None = None,
                    **chita_kwargs) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """WoodFisher (``method="woodfisher"``) or CHITA (``"chita"``, ``max_iter``/``tol``; ``block_size`` for
    both: None the full Fisher, else blocks of that many weights within a layer) to ``sparsity`` over ``stages`` steps
    (None: :data:`DEFAULT_STAGES` of the method; module docstring), the gradients of the cross-entropy on the
    calibration batch (x, y) recomputed at every step. Exactly ``round(sparsity * p)`` weights are removed over
    all prunable weights; on a model already masked (``torch.nn.utils.prune``) the weights pruned before stay
    pruned and count toward them, and the stages start from the model's sparsity (:func:`stage_sparsities`).
    Returns parameter name -> (bool mask, float64 weight); ``model`` is not changed. Raises ValueError for
    ``stages`` or ``block_size`` that is not a positive integer, and for labels that are no class of the model's
    (:func:`check_labels`)."""
    stages = DEFAULT_STAGES[method] if stages is None else stages
    check_positive_int("stages", stages)
    check_positive_int("block_size", block_size, allow_none=True)
    check_labels(model, x, y)
    layers = prunable_layers(model)
    shapes = [(f"{n}.weight", weight_of(m).shape) for n, m in layers.items()]
    w = torch.cat([live_weight(m).flatten() for m in layers.values()]).double()
    layer_of = torch.cat([torch.full((s.numel(),), i, device=w.device) for i, (_, s) in enumerate(shapes)])
    alive = torch.cat([mask_of(m).flatten() for m in layers.values()])
    for s in stage_sparsities(sparsity, stages, start=float((~alive).sum()) / len(w)):
        k = round(s * len(w)) - int((~alive).sum())
        if k == 0:   # nothing to remove at this stage (few weights): the step would leave w as it is
            continue
        G = per_sample_grads(model, x, y, weights=_split(w, shapes), columns=alive)
        blocks = None if block_size is None else _blocks(layer_of[alive], block_size)
        if method == "woodfisher":
            keep, w_alive = woodfisher_step(w[alive], G, k, rel_damp, blocks)
        else:
            keep, w_alive = chita_step(w[alive], G, k, rel_damp, blocks=blocks, **chita_kwargs)
        survivors = alive.nonzero().squeeze(1)
        w = torch.zeros_like(w)
        w[survivors] = w_alive
        alive[survivors[~keep]] = False
    return {name: (m, v) for (name, m), v in zip(_split(alive, shapes).items(), _split(w, shapes).values())}


def _split(flat: torch.Tensor, shapes: list[tuple[str, torch.Size]]) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for name, shape in shapes:
        n = shape.numel()
        out[name] = flat[start:start + n].reshape(shape)
        start += n
    return out


def _blocks(layer_of: torch.Tensor, block_size: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive blocks of at most block_size weights, never crossing a layer (``layer_of``:
    each weight's layer index, non-decreasing)."""
    out, start = [], 0
    for count in torch.unique_consecutive(layer_of, return_counts=True)[1].tolist():
        stop = start + count
        out += [(b, min(b + block_size, stop)) for b in range(start, stop, block_size)]
        start = stop
    return out
