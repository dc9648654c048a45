"""Low-rank layers W = U S Vᵀ: :class:`LowRankLinear` and :class:`LowRankConv2d`.

A layer with ``n`` outputs and ``m`` inputs per output (``in_features``, or ``in_channels * kh * kw`` for a
convolution) holds the parameters ``U`` (n, r), ``S`` (r, r) and ``V`` (m, r) (float32 or float64, same dtype),
an optional ``bias`` (n,), and a maximal rank ``max_rank`` <= min(n, m). The rank ``r`` changes when the
:class:`~weightcast.lowrank.KLS` integrator truncates; the parameters are then re-bound to tensors of the new
shape (``param.data = ...``) and ``load_state_dict`` accepts checkpoints of any rank <= ``max_rank``.

The forward never forms W: a linear layer computes ``(x V)(U S)ᵀ + b``; a convolution applies the r filters of
``V`` (each of shape (in_channels, kh, kw)) and then a 1x1 convolution with ``U S`` (no unfold).

Every layer is written in terms of four channel operations, which both the one-pass KLS gradients and the
three-pass reference use:

* ``project_in(x, B)``: x convolved with (or multiplied by) the m x b matrix B, b output channels;
* ``mix(t, A)``: channel mixing ``out_i = sum_j A[i, j] t_j`` by a k x b matrix A;
* ``input_grad(shape, B, dz)``: the gradient of ``project_in`` with respect to x;
* ``filter_grad(x, t)``: ``sum over samples and positions`` of patches(x) ⊗ t, an m x b matrix, i.e. Gᵀ U when
  ``t = mix(dy, Uᵀ)`` (for a convolution, ``torch.nn.grad.conv2d_weight``);
* ``outer(a, b)``: ``sum over samples and positions`` of a ⊗ b.

Source: Schotthöfer, Zangrando, Kusch, Ceruti, Tudisco, "Low-rank lottery tickets: finding efficient low-rank
neural networks via matrix differential equations", NeurIPS 2022.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _OnePassCapture(torch.autograd.Function):
    """The layer's forward without autograd through U, S, V; the backward returns the gradients of the input and
    the bias and keeps on the layer what the KLS integrator forms the K, L and S gradients from: either the
    projections (x, x V, dy, dy U), or, when the dense gradient G (n x m) is smaller than x and dy together (a
    convolution applied at many positions), G itself."""

    @staticmethod
    def forward(ctx, x, bias, anchor, layer):
        U, S, V = layer.U, layer.S, layer.V
        z = layer.project_in(x, V)
        y = layer.mix(z, U @ S)
        if bias is not None:
            y = y + layer.channel_view(bias)
        mode = layer.capture
        ctx.dense = mode == "dense" or (mode == "auto" and layer.out_features * layer.fan_in <= x.numel() + y.numel())
        ctx.save_for_backward(x, None if ctx.dense else z)
        ctx.layer = layer
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        x, z = ctx.saved_tensors
        layer = ctx.layer
        dy_u = layer.mix(dy, layer.U.T) if ctx.needs_input_grad[0] or not ctx.dense else None
        dx = None
        if ctx.needs_input_grad[0]:
            dx = layer.input_grad(x.shape, layer.V, layer.mix(dy_u, layer.S.T))
        dbias = layer.channel_sum(dy) if ctx.has_bias else None
        if ctx.dense:
            G = layer.filter_grad(x, dy).T
            layer._dense_grad = G if layer._dense_grad is None else layer._dense_grad + G
        else:
            layer._captured.append((x.detach(), z, dy, dy_u))
        return dx, dbias, None, None


class LowRankLayer(nn.Module):
    """Base of the low-rank layers: the factors, the rank bookkeeping and the forward modes."""

    out_features: int
    fan_in: int
    capture: str = "auto"  # what a backward keeps for KLS: "auto" (the smaller), "projections" or "dense" (G)

    def _init_factors(self, rank: int, max_rank: int | None, bias: bool, dtype, device) -> None:
        limit = min(self.out_features, self.fan_in)
        max_rank = limit if max_rank is None else max_rank
        if not 1 <= max_rank <= limit:
            raise ValueError(f"max_rank must be in 1..min(n, m) = 1..{limit} for a {self.out_features} x "
                             f"{self.fan_in} weight, got {max_rank}")
        if not 1 <= rank <= max_rank:
            raise ValueError(f"rank must be in 1..max_rank = 1..{max_rank}, got {rank}")
        self.max_rank = max_rank
        factory = dict(dtype=dtype, device=device)
        U = torch.linalg.qr(torch.randn(self.out_features, rank, **factory))[0]
        V = torch.linalg.qr(torch.randn(self.fan_in, rank, **factory))[0]
        # S = I * sqrt(n / (3 r)): ‖W‖_F equals that of nn.Linear's default (Kaiming-uniform) weight
        self.U = nn.Parameter(U)
        self.S = nn.Parameter(torch.eye(rank, **factory) * math.sqrt(self.out_features / (3 * rank)))
        self.V = nn.Parameter(V)
        self.bias = nn.Parameter(torch.zeros(self.out_features, **factory)) if bias else None
        self._captured: list[tuple[torch.Tensor, ...]] = []  # (x, x V, dy, dy U) of each backward
        self._dense_grad: torch.Tensor | None = None  # or the summed dense gradient G, whichever is smaller
        self._one_pass = False
        # an input that requires grad, so that the backward reaches a first layer without bias
        self._anchor = torch.empty(0, requires_grad=True)
        self._override: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def rank(self) -> int:
        """The current rank r."""
        return self.S.shape[0]

    def clear_capture(self) -> None:
        """Drop what the last backward(s) left for the integrator."""
        self._captured.clear()
        self._dense_grad = None

    def set_factors(self, U: torch.Tensor, S: torch.Tensor, V: torch.Tensor) -> None:
        """Re-bind U (n, r), S (r, r), V (m, r) to new values, possibly of a new rank r <= max_rank."""
        r = S.shape[0]
        if U.shape != (self.out_features, r) or S.shape != (r, r) or V.shape != (self.fan_in, r):
            raise ValueError(f"factors of shapes {tuple(U.shape)}, {tuple(S.shape)}, {tuple(V.shape)} do not fit "
                             f"a {self.out_features} x {self.fan_in} layer (need (n, r), (r, r), (m, r))")
        if not 1 <= r <= self.max_rank:
            raise ValueError(f"rank {r} is outside 1..max_rank = 1..{self.max_rank}")
        with torch.no_grad():
            self.U.data, self.S.data, self.V.data = U, S, V

    def weight_matrix(self) -> torch.Tensor:
        """W = U S Vᵀ as an (n, m) matrix."""
        return self.U @ self.S @ self.V.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._override is not None:
            left, right = self._override
            y = self.mix(self.project_in(x, right), left)
            return y if self.bias is None else y + self.channel_view(self.bias)
        if self._one_pass and torch.is_grad_enabled():
            return _OnePassCapture.apply(x, self.bias, self._anchor, self)
        y = self.mix(self.project_in(x, self.V), self.U @ self.S)
        return y if self.bias is None else y + self.channel_view(self.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint may hold another rank: resize the factors to it before the shape-checked copy.
        shapes = {k: state_dict.get(prefix + k) for k in ("U", "S", "V")}
        if all(isinstance(t, torch.Tensor) for t in shapes.values()):
            r = shapes["S"].shape[0]
            if r != self.rank:
                if not 1 <= r <= self.max_rank:
                    raise ValueError(f"{prefix}S has rank {r}, outside 1..max_rank = 1..{self.max_rank}")
                p = self.U
                self.set_factors(p.new_empty(self.out_features, r), p.new_empty(r, r), p.new_empty(self.fan_in, r))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, max_rank={self.max_rank}, bias={self.bias is not None}"


class LowRankLinear(LowRankLayer):
    """y = x (U S Vᵀ)ᵀ + b for x (..., in_features) -> (..., out_features), U (out, r), S (r, r), V (in, r).

    ``rank`` is the initial rank, ``max_rank`` the largest the integrator may reach (default min(in, out)).
    Raises ValueError for ranks outside 1..min(in, out).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, max_rank: int | None = None,
                 bias: bool = True, dtype=None, device=None):
        super().__init__()
        self.in_features, self.out_features, self.fan_in = in_features, out_features, in_features
        self._init_factors(rank, max_rank, bias, dtype, device)

    def project_in(self, x, basis):
        return x @ basis

    def mix(self, t, A):
        return t @ A.T

    def input_grad(self, shape, basis, dz):
        return dz @ basis.T

    def filter_grad(self, x, t):
        return x.reshape(-1, self.fan_in).T @ t.reshape(-1, t.shape[-1])

    def outer(self, a, b):
        return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])

    def channel_view(self, v):
        return v

    def channel_sum(self, t):
        return t.reshape(-1, t.shape[-1]).sum(0)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, " + super().extra_repr()


class LowRankConv2d(LowRankLayer):
    """2-D convolution with weight W = U S Vᵀ reshaped to (out_channels, in_channels, kh, kw).

    Input (B, in_channels, H, W) -> (B, out_channels, H', W'). Computed as r filters (the columns of V, each
    (in_channels, kh, kw)) followed by a 1x1 convolution with U S. ``stride``, ``padding`` (int, pair or "same" /
    "valid") and ``dilation`` as in ``torch.nn.Conv2d``; groups and non-zero padding modes are not supported.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, rank: int, max_rank: int | None = None,
                 stride=1, padding=0, dilation=1, bias: bool = True, dtype=None, device=None):
        super().__init__()
        self.kernel_size = nn.modules.utils._pair(kernel_size)
        self.stride, self.dilation = nn.modules.utils._pair(stride), nn.modules.utils._pair(dilation)
        self.padding = self._padding_pair(padding)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.out_features, self.fan_in = out_channels, in_channels * math.prod(self.kernel_size)
        self._init_factors(rank, max_rank, bias, dtype, device)

    def _filters(self, basis):
        return basis.T.reshape(basis.shape[1], self.in_channels, *self.kernel_size)

    def project_in(self, x, basis):
        return F.conv2d(x, self._filters(basis), None, self.stride, self.padding, self.dilation)

    def mix(self, t, A):
        return F.conv2d(t, A[:, :, None, None])

    def input_grad(self, shape, basis, dz):
        return torch.nn.grad.conv2d_input(shape, self._filters(basis), dz, self.stride, self.padding, self.dilation)

    def filter_grad(self, x, t):
        w = torch.nn.grad.conv2d_weight(x, (t.shape[1], self.in_channels, *self.kernel_size), t, self.stride,
                                        self.padding, self.dilation)
        return w.reshape(t.shape[1], self.fan_in).T

    def outer(self, a, b):
        return torch.einsum("bphw,bqhw->pq", a, b)

    def channel_view(self, v):
        return v[:, None, None]

    def channel_sum(self, t):
        return t.sum((0, 2, 3))

    def _padding_pair(self, padding) -> tuple[int, int]:
        if padding == "valid":
            return (0, 0)
        if padding == "same":
            if self.stride != (1, 1) or any(d * (k - 1) % 2 for d, k in zip(self.dilation, self.kernel_size)):
                raise ValueError("padding='same' needs stride 1 and an odd effective kernel size; give the padding "
                                 "as an int or pair instead")
            return tuple(d * (k - 1) // 2 for d, k in zip(self.dilation, self.kernel_size))
        if isinstance(padding, str):
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        return nn.modules.utils._pair(padding)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, " \
               f"padding={self.padding}, " + super().extra_repr()
