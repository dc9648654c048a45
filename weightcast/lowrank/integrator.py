"""The rank-adaptive KLS integrator of dynamical low-rank training (DLRT), as a torch optimizer.

For each low-rank layer W = U S Vᵀ (U (n, r), S (r, r), V (m, r)) and loss gradient G = dL/dW (n, m), one step:

1. K-step: K = U S, K' = K - base_update(G V)           (n, r)
   L-step: L = V Sᵀ, L' = L - base_update(Gᵀ U)         (m, r)
2. Basis augmentation: Û = [U, Ũ] with Ũ an orthonormal basis of the part of K' orthogonal to U, V̂ = [V, Ṽ]
   likewise (the span of qr([K', U]); at most min(2r, n) and min(2r, m) columns; see :func:`augment`).
3. S-step on the augmented core Ŝ = (ÛᵀU) S (V̂ᵀV)ᵀ = [[S, 0], [0, 0]]:  Ŝ' = Ŝ - base_update(Ûᵀ G V̂).
   Since Û and V̂ contain U and V, Û Ŝ V̂ᵀ = W exactly, so the S gradient is taken at the same W as the K and
   L gradients.
4. Truncation: Ŝ' = P diag(σ) Qᵀ (SVD); keep the smallest rank r' whose discarded singular values satisfy
   ‖σ[r':]‖ <= θ ‖σ‖ (relative) or <= θ (``absolute=True``), clamped to [min_rank, max_rank];
   ``fixed_rank=True`` keeps r. U = Û P[:, :r'], S = diag(σ[:r']), V = V̂ Q[:, :r'].

One forward and one backward per step: the layers keep their input x, x V, the output gradient dy and dy U from
the backward, and every gradient above is formed from them (G V = Σ dy ⊗ xV, Gᵀ U = Σ x ⊗ dyU,
Ûᵀ G V̂ = Σ dyÛ ⊗ xV̂) without forming G or W. :class:`~weightcast.lowrank.reference.KLSThreePass` computes
the same step with the paper's three forward/backward passes and is the test oracle.

The base update is SGD (momentum, dampening, Nesterov, weight decay as torch.optim.SGD) or AdamW (as
torch.optim.AdamW, without amsgrad). Its state for K, L and S lives in the coordinates of the current bases and
is carried into the new ones when the bases rotate or the rank changes: first moments / momentum buffers
linearly (K-state times VᵀV_new, L-state times UᵀU_new, S-state Pᵀ · Q), Adam's second moments by the squared
(elementwise) maps, which keeps them non-negative (exact for diagonal covariance). The parameters that are not
factors (biases, dense layers) are updated by the same base rule with the gradient of the one backward.

Source: Schotthöfer, Zangrando, Kusch, Ceruti, Tudisco, "Low-rank lottery tickets: finding efficient low-rank
neural networks via matrix differential equations", NeurIPS 2022 (Algorithm 1, the rank-adaptive KLS
integrator of Ceruti, Kusch & Lubich 2022).
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .convert import low_rank_layers
from .layers import LowRankLayer

BASES = ("sgd", "adamw")
_STATE_PREFIX = "lowrank:"


class KLS(torch.optim.Optimizer):
    """Dynamical low-rank training of ``model``'s low-rank layers (see the module docstring); use it like any
    torch optimizer::

        opt = wc.lowrank.KLS(model, lr=0.05, theta=0.15)
        loss = loss_fn(model(x), y); opt.zero_grad(); loss.backward(); opt.step()

    ``model`` must contain :class:`LowRankLinear` / :class:`LowRankConv2d` layers (``to_low_rank`` makes them);
    its other trainable parameters are trained by the base rule. ``lr`` (> 0, or 0 for a no-op step), ``theta``
    (>= 0) the truncation tolerance, relative to ‖σ‖ unless ``absolute``; ``fixed_rank`` keeps every layer's
    rank; ``min_rank`` (>= 1; capped at each layer's max_rank) the smallest rank truncation may leave;
    ``base`` "sgd" (``momentum``, ``dampening``, ``nesterov``, ``weight_decay``) or "adamw" (``betas``,
    ``eps``, ``weight_decay``). ``param_groups`` holds one group with the hyperparameters and the non-factor
    parameters, so LR schedulers work; the factors' states are kept under the keys ``"lowrank:<layer name>"``
    of ``state`` and saved by ``state_dict``. Load the model's state_dict before the optimizer's.

    Forecasting: ``wc.Forecast(KLS(...))`` forecasts the non-factor parameters only. The factors are not
    forecast: every step re-orthonormalises their bases and may change their shapes, so their trajectories are
    not smooth in time (train the factors with plain SGD at a fixed rank to forecast them with ForecastSGD).

    Raises ValueError for bad hyperparameters or a model without low-rank layers, RuntimeError when ``step()``
    finds a low-rank layer without a captured backward.
    """

    one_pass = True

    def __init__(self, model: nn.Module, lr: float = 1e-2, theta: float = 0.1, *, base: str = "sgd",
                 absolute: bool = False, fixed_rank: bool = False, min_rank: int = 2, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {base!r}")
        if not (isinstance(lr, (int, float)) and lr >= 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
        for name, value in (("theta", theta), ("momentum", momentum), ("dampening", dampening),
                            ("weight_decay", weight_decay)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a float (a real number), got {type(value).__name__} {value!r}")
        if not (theta >= 0 and math.isfinite(theta)):
            raise ValueError(f"theta must be a finite number >= 0 (the truncation tolerance), got {theta!r}")
        if int(min_rank) != min_rank or min_rank < 1:
            raise ValueError(f"min_rank must be an int >= 1, got {min_rank!r}")
        if momentum < 0 or weight_decay < 0 or not 0 <= dampening <= 1:
            raise ValueError(f"need momentum >= 0, weight_decay >= 0, 0 <= dampening <= 1; got {momentum}, "
                             f"{weight_decay}, {dampening}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0")
        if not all(0 <= b < 1 for b in betas) or eps < 0:
            raise ValueError(f"betas must lie in [0, 1) and eps >= 0, got {betas}, {eps}")
        self.layers: dict[str, LowRankLayer] = low_rank_layers(model)
        if not self.layers:
            raise ValueError("the model has no low-rank layers; convert it first with "
                             "weightcast.lowrank.to_low_rank(model)")
        factors = {id(p) for layer in self.layers.values() for p in (layer.U, layer.S, layer.V)}
        dense = [p for p in model.parameters() if id(p) not in factors and p.requires_grad]
        defaults = dict(lr=lr, theta=theta, base=base, absolute=absolute, fixed_rank=fixed_rank,
                        min_rank=int(min_rank), momentum=momentum, dampening=dampening, nesterov=nesterov,
                        weight_decay=weight_decay, betas=tuple(betas), eps=eps)
        super().__init__([{"params": dense}], defaults)
        for layer in self.layers.values():
            for p in (layer.U, layer.S, layer.V):
                p.requires_grad_(False)
            layer._one_pass = self.one_pass
            layer.clear_capture()

    def ranks(self) -> dict[str, int]:
        """The current rank of each low-rank layer, by module name."""
        return {name: layer.rank for name, layer in self.layers.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for layer in self.layers.values():
            layer.clear_capture()

    @torch.no_grad()
    def step(self, closure=None):
        """One KLS step for every low-rank layer and one base step for the other parameters. ``closure``
        (optional, as in torch) re-evaluates the model, calls backward and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._kls_step(None)
        return loss

    def _kls_step(self, closure) -> None:
        """The step itself; ``closure`` is handed to the gradient methods (used by the three-pass reference)."""
        group = self.param_groups[0]
        kl = self._kl_gradients(closure)
        augmented = {}
        for name, layer in self.layers.items():
            g_k, g_l = kl[name]
            state = self._layer_state(name)
            state["step"] += 1
            U, S, V = layer.U, layer.S, layer.V
            k_new = _base_step(U @ S, g_k, state["K"], group, state["step"])
            l_new = _base_step(V @ S.T, g_l, state["L"], group, state["step"])
            augmented[name] = (augment(U, k_new), augment(V, l_new))
        g_s = self._s_gradients(augmented, closure)
        for p in group["params"]:
            if p.grad is not None:
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
                _base_step(p, p.grad, state, group, state["step"], inplace=True)
        for name, layer in self.layers.items():
            self._integrate_core(name, layer, *augmented[name], g_s[name], group)
            layer.clear_capture()

    def _integrate_core(self, name, layer, U_hat, V_hat, g_s, group) -> None:
        """S-step on the augmented core, truncation, and the state carried into the new bases."""
        state = self._layer_state(name)
        r, ru, rv = layer.rank, U_hat.shape[1], V_hat.shape[1]
        s_state = {k: _embed(v, ru, rv) for k, v in state["S"].items()}
        s_new = _base_step(_embed(layer.S, ru, rv), g_s, s_state, group, state["step"])
        P, sigma, Qh = torch.linalg.svd(s_new, full_matrices=False)
        if group["fixed_rank"]:
            r_new = r
        else:
            r_new = truncation_rank(sigma, group["theta"], group["absolute"])
            r_new = max(min(group["min_rank"], layer.max_rank), min(r_new, layer.max_rank))
        P, Q = P[:, :r_new], Qh[:r_new].T  # torch.linalg.svd returns Qᴴ; the right singular vectors are Q
        layer.set_factors(U_hat @ P, torch.diag(sigma[:r_new]), V_hat @ Q)
        state["K"] = _rotate(state["K"], Q[:r])      # K-state lives in V coordinates: times VᵀV_new = Q[:r]
        state["L"] = _rotate(state["L"], P[:r])      # L-state in U coordinates: times UᵀU_new = P[:r]
        state["S"] = _rotate(s_state, Q, P.T)

    def _layer_state(self, name: str) -> dict:
        return self.state.setdefault(_STATE_PREFIX + name, {"step": 0, "K": {}, "L": {}, "S": {}})

    def _kl_gradients(self, closure) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """G V and Gᵀ U of each layer from the captured backward(s) (summed when there were several)."""
        out = {}
        for name, layer in self.layers.items():
            self._check_captured(name, layer)
            g_k = sum(layer.outer(dy, z) for x, z, dy, dy_u in layer._captured)
            g_l = sum(layer.filter_grad(x, dy_u) for x, z, dy, dy_u in layer._captured)
            G = layer._dense_grad
            if G is not None:
                g_k, g_l = g_k + G @ layer.V, g_l + G.T @ layer.U
            out[name] = (g_k, g_l)
        return out

    def _s_gradients(self, augmented, closure) -> dict[str, torch.Tensor]:
        """Ûᵀ G V̂ of each layer, from the same captured backward(s), assembled from the blocks
        [[Uᵀ G V, Uᵀ G Ṽ], [Ũᵀ G V, Ũᵀ G Ṽ]]."""
        out = {}
        for name, layer in self.layers.items():
            U_hat, V_hat = augmented[name]
            r = layer.rank
            U_new, V_new = U_hat[:, r:], V_hat[:, r:]
            total = U_hat.new_zeros(U_hat.shape[1], V_hat.shape[1])
            if layer._dense_grad is not None:
                total += U_hat.T @ layer._dense_grad @ V_hat
            for x, z, dy, dy_u in layer._captured:
                dy_new = layer.mix(dy, U_new.T) if U_new.shape[1] else None
                z_new = layer.project_in(x, V_new) if V_new.shape[1] else None
                total[:r, :r] += layer.outer(dy_u, z)
                if z_new is not None:
                    total[:r, r:] += layer.outer(dy_u, z_new)
                if dy_new is not None:
                    total[r:, :r] += layer.outer(dy_new, z)
                if dy_new is not None and z_new is not None:
                    total[r:, r:] += layer.outer(dy_new, z_new)
            out[name] = total
        return out

    @staticmethod
    def _check_captured(name, layer):
        if not layer._captured and layer._dense_grad is None:
            raise RuntimeError(f"low-rank layer {name!r} has no captured backward: call loss.backward() (with "
                               "the layer in the graph) after zero_grad() and before step()")

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for name, layer in self.layers.items():
            key = _STATE_PREFIX + name
            if key not in self.state:
                continue
            state = self.state[key]
            factory = dict(dtype=layer.S.dtype, device=layer.S.device)
            for part in ("K", "L", "S"):
                state[part] = {k: v.to(**factory, copy=True) for k, v in state[part].items()}
            shapes = {"K": (layer.out_features, layer.rank), "L": (layer.fan_in, layer.rank),
                      "S": (layer.rank, layer.rank)}
            for part, shape in shapes.items():
                for k, v in state[part].items():
                    if tuple(v.shape) != shape:
                        raise ValueError(f"optimizer state {key}/{part}/{k} has shape {tuple(v.shape)} but layer "
                                         f"{name!r} has rank {layer.rank}: load the model's state_dict (with its "
                                         "ranks) before the optimizer's")


def augment(basis: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """[basis, B̃]: ``basis`` (n, r) with orthonormal columns, extended by min(r, n - r) orthonormal columns
    spanning the part of ``new`` (n, r) orthogonal to it; the span equals that of qr([new, basis]).

    Fast path: project ``new`` out of span(basis) twice (classical Gram-Schmidt with re-orthogonalisation) and
    take the QR of the n x r remainder. When that remainder is nearly rank-deficient (``new`` nearly inside
    span(basis), e.g. a step with lr 0), its QR is not orthogonal to ``basis``; that is detected and the
    Householder QR of the whole [basis, new] (orthogonal whatever the rank) is used instead.
    """
    n, r = basis.shape
    cols = min(2 * r, n)
    if cols == r:
        return basis
    if cols == 2 * r:
        rest = new - basis @ (basis.T @ new)
        rest = rest - basis @ (basis.T @ rest)
        Q = torch.linalg.qr(rest)[0]
        if float((basis.T @ Q).abs().max()) <= 100 * math.sqrt(n) * torch.finfo(Q.dtype).eps:
            return torch.cat([basis, Q], 1)
    Q = torch.linalg.qr(torch.cat([basis, new], 1))[0]
    return torch.cat([basis, Q[:, r:cols]], 1)


def truncation_rank(sigma: torch.Tensor, theta: float, absolute: bool = False) -> int:
    """The smallest k with ‖sigma[k:]‖ <= tol, tol = theta * ‖sigma‖ (or theta when ``absolute``); ``sigma`` are
    singular values in descending order. Returns 0 when every singular value may be dropped."""
    sq = sigma.double() ** 2
    tails = sq.flip(0).cumsum(0).flip(0)  # tails[k] = ‖sigma[k:]‖²
    tol = theta if absolute else theta * float(sq.sum().sqrt())
    return int((tails > tol * tol).sum())


def _base_step(value, grad, state, group, step, inplace=False):
    """value - lr * (SGD or AdamW direction of ``grad``), updating ``state``; in place when ``inplace``."""
    lr, wd = group["lr"], group["weight_decay"]
    value = value if inplace else value.clone()
    if group["base"] == "sgd":
        d = grad.add(value, alpha=wd) if wd else grad
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.clone()
            else:
                buf.mul_(mu).add_(d, alpha=1 - group["dampening"])
            d = d.add(buf, alpha=mu) if group["nesterov"] else buf
        return value.add_(d, alpha=-lr)
    beta1, beta2 = group["betas"]
    if wd:
        value.mul_(1 - lr * wd)
    if "exp_avg" not in state:
        state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(grad), torch.zeros_like(grad)
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.lerp_(grad, 1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias1, bias2 = 1 - beta1 ** step, 1 - beta2 ** step
    denom = (v.sqrt() / math.sqrt(bias2)).add_(group["eps"])
    return value.addcdiv_(m, denom, value=-lr / bias1)


def _embed(t: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``t`` (r, r) as the top-left block of a zero (rows, cols) matrix."""
    out = t.new_zeros(rows, cols)
    out[:t.shape[0], :t.shape[1]] = t
    return out


def _rotate(state: dict, right: torch.Tensor, left: torch.Tensor | None = None) -> dict:
    """State tensors X mapped to left @ X @ right; second moments by the elementwise squares of the maps."""
    out = {}
    for k, X in state.items():
        sq = k == "exp_avg_sq"
        R = right * right if sq else right
        X = X @ R
        if left is not None:
            X = (left * left if sq else left) @ X
        out[k] = X.contiguous()
    return out
