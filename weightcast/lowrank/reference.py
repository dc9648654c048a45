"""Three-pass KLS, as in the DLRT paper's implementation: the test oracle of the one-pass :class:`KLS`.

Each step runs three forward/backward passes of the closure: the K pass (every low-rank layer computes
W = K Vᵀ with K = U S a leaf), the L pass (W = U Lᵀ, L = V Sᵀ a leaf) and, after the K/L updates and the basis
augmentation, the S pass (W = Û Ŝ Vˆᵀ, Ŝ the augmented core a leaf), whose backward also gives the gradients of
the non-factor parameters. The update, augmentation, truncation and state handling are :class:`KLS`'s own, so the
two differ only in how the gradients are obtained.
"""
from __future__ import annotations

import contextlib

import torch

from .integrator import KLS, _embed


class KLSThreePass(KLS):
    """:class:`KLS` with the K, L and S gradients from three autograd passes. ``step(closure)`` needs a closure
    that runs the forward and returns the loss (without calling backward); no backward by the caller is needed."""

    one_pass = False

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None:
            raise ValueError("KLSThreePass.step needs a closure that computes the loss (forward only)")
        self._kls_step(closure)
        return self._loss

    def _kl_gradients(self, closure):
        layers = list(self.layers.items())
        ks = [(layer.U @ layer.S).requires_grad_() for _, layer in layers]
        with self._override([(k, layer.V) for k, (_, layer) in zip(ks, layers)]), torch.enable_grad():
            loss = closure()
            g_k = torch.autograd.grad(loss, ks)
        self._loss = loss.detach()
        ls = [(layer.V @ layer.S.T).requires_grad_() for _, layer in layers]
        with self._override([(layer.U, l_) for l_, (_, layer) in zip(ls, layers)]), torch.enable_grad():
            g_l = torch.autograd.grad(closure(), ls)
        return {name: (gk, gl) for (name, _), gk, gl in zip(layers, g_k, g_l)}

    def _s_gradients(self, augmented, closure):
        layers = list(self.layers.items())
        cores = [_embed(layer.S, augmented[name][0].shape[1], augmented[name][1].shape[1]).requires_grad_()
                 for name, layer in layers]
        for p in self.param_groups[0]["params"]:
            p.grad = None
        with torch.enable_grad():
            pairs = [(augmented[name][0] @ core, augmented[name][1]) for core, (name, _) in zip(cores, layers)]
            with self._override(pairs):
                closure().backward()
        return {name: core.grad for core, (name, _) in zip(cores, layers)}

    @contextlib.contextmanager
    def _override(self, pairs):
        """Make every low-rank layer compute y from W = left @ rightᵀ (left (n, k), right (m, k))."""
        for (left, right), layer in zip(pairs, self.layers.values()):
            layer._override = (left, right)
        try:
            yield
        finally:
            for layer in self.layers.values():
                layer._override = None

