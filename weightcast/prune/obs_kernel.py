"""The greedy loop of layer-wise OBS as one op, ``obs_trace``: a pure-PyTorch reference and its kernels.

    order, losses, W_out = obs_trace(W, Hinv, steps)

W (R, d) float, Hinv (d, d) symmetric positive definite (the inverse of the damped layer Hessian), 0 <= steps
<= d. Each row is pruned on its own, with its own copy of Hinv, one weight per step (ExactOBS, Frantar &
Alistarh, "Optimal Brain Compression", NeurIPS 2022, after Hassibi & Stork's Optimal Brain Surgeon):

* select  j = argmin over the row's unremoved columns of w_j^2 / Hinv_jj (the lowest index on ties);
  ``losses[r, t]`` = that value (twice the increase of the layer's squared output error), ``order[r, t]`` = j;
* update  w -= (w_j / Hinv_jj) Hinv[:, j], then w_j = 0 (the optimal compensation of the other weights);
* downdate  Hinv -= Hinv[:, j] Hinv[j, :] / Hinv_jj (the inverse Hessian of the remaining weights; its row and
  column j become zero).

``W_out`` (R, d) holds the rows after their ``steps`` removals. Backends (``WEIGHTCAST_BACKEND`` or
:func:`weightcast.ops.dispatch.use_backend`): ``cpp`` (csrc/cpu/obs.cpp, float32; the default on CPU),
``triton`` (kernels/obs.py, float32; on CPU only under ``TRITON_INTERPRET=1``), ``reference`` (any float dtype;
float64 and other dtypes always run here).
"""
from __future__ import annotations

import torch

from .. import _extension
from ..ops import dispatch

KERNEL_DTYPES = (torch.float32,)


def obs_trace_ref(W: torch.Tensor, Hinv: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                           torch.Tensor]:
    """The reference: the loop above, all rows at once (a (R, d, d) batch of inverse Hessians, R * d^2 elements
    of memory), one set of tensor ops per step. Same contract as :func:`obs_trace`, in W's dtype."""
    _check(W, Hinv, steps)
    R, d = W.shape
    w = W.clone()
    H = Hinv.to(W.dtype).expand(R, d, d).clone()
    removed = torch.zeros(R, d, dtype=torch.bool, device=W.device)
    order = torch.empty(R, steps, dtype=torch.int64, device=W.device)
    losses = torch.empty(R, steps, dtype=W.dtype, device=W.device)
    rows = torch.arange(R, device=W.device)
    for t in range(steps):
        diag = H.diagonal(dim1=1, dim2=2)
        scores = (w * w / diag).masked_fill(removed, float("inf"))
        j = scores.argmin(dim=1)
        order[:, t], losses[:, t] = j, scores[rows, j]
        hj = H[rows, j]                                     # (R, d): row j = column j (symmetric)
        hjj = hj[rows, j]
        w -= (w[rows, j] / hjj)[:, None] * hj
        w[rows, j] = 0
        removed[rows, j] = True
        H -= hj[:, :, None] * (hj / hjj[:, None])[:, None, :]
    return order, losses, w


def obs_trace(W: torch.Tensor, Hinv: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """order (R, steps) int64, losses (R, steps) and W_out (R, d) in W's dtype, on the backend chosen for W's
    device (see the module docstring). Raises ValueError for mismatched shapes or ``steps`` outside [0, d], and
    :class:`weightcast.ops.dispatch.BackendUnavailableError` when a forced backend cannot run here."""
    _check(W, Hinv, steps)
    backend = select_backend(W, Hinv)
    if backend == "reference":
        return obs_trace_ref(W, Hinv, steps)
    if backend == "triton":
        from ..kernels.obs import obs_trace as triton_obs_trace

        return triton_obs_trace(W, Hinv, steps)
    return torch.ops.weightcast_C.obs_trace(W, Hinv, steps)


def select_backend(W: torch.Tensor, Hinv: torch.Tensor) -> str:
    """The backend :func:`obs_trace` uses for these tensors: the forced one (checked), else cpp on CPU when
    weightcast._C has the op, triton on CUDA, and the reference otherwise or for dtypes other than float32."""
    forced = dispatch.forced_backend()
    in_kernel_dtype = W.dtype in KERNEL_DTYPES and Hinv.dtype in KERNEL_DTYPES
    if forced == "reference":
        return forced
    if forced is not None:
        reason = why_unavailable(forced, W.device)
        if reason is None and not in_kernel_dtype:
            reason = f"it runs float32 only, got {W.dtype} and {Hinv.dtype}; use the reference"
        if reason is not None:
            raise dispatch.BackendUnavailableError(f"backend {forced!r} cannot run obs_trace: {reason}")
        return forced
    if not in_kernel_dtype:
        return "reference"
    order = ("cpp",) if W.device.type == "cpu" else ("triton",) if W.device.type == "cuda" else ()
    return next((b for b in order if why_unavailable(b, W.device) is None), "reference")


def why_unavailable(backend: str, device: torch.device) -> str | None:
    """None when ``backend`` can run obs_trace on ``device``, else the reason and what to do."""
    if backend == "cpp":
        if device.type != "cpu":
            return f"the cpp backend runs CPU tensors only, got {device.type}"
        if not _extension.extension_loaded():
            return _extension.extension_status()
        if not hasattr(torch.ops.weightcast_C, "obs_trace"):
            return "weightcast._C was built without csrc/cpu/obs.cpp; rebuild: pip install --no-build-isolation -e ."
        return None
    if backend == "triton":
        return dispatch.why_unavailable("triton", device, "record") or _triton_import_error()
    if backend == "cuda":
        return "there is no CUDA kernel of obs_trace; use 'triton' on CUDA tensors"
    return None if backend == "reference" else f"unknown backend {backend!r}; choose one of {dispatch.BACKENDS}"


def _triton_import_error() -> str | None:
    try:
        from ..kernels import obs  # noqa: F401
    except Exception as exc:  # triton missing or broken: say so
        return f"cannot import kernels/obs.py ({type(exc).__name__}: {exc}); `pip install triton`"
    return None


def _check(W: torch.Tensor, Hinv: torch.Tensor, steps: int) -> None:
    if W.dim() != 2:
        raise ValueError(f"obs_trace: W must be 2-D (rows, d), got shape {tuple(W.shape)}")
    d = W.shape[1]
    if tuple(Hinv.shape) != (d, d):
        raise ValueError(f"obs_trace: Hinv must be ({d}, {d}), got {tuple(Hinv.shape)}")
    if not 0 <= steps <= d:
        raise ValueError(f"obs_trace: steps must be in [0, {d}], got {steps}")
