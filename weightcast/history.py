"""Trajectory history: the recorded window of parameter snapshots, one ring buffer per bucket.

A bucket holds the parameters of one param group that share a device and dtype. Where it can, it moves them
into one flat buffer ``flat`` (N,) and re-binds every parameter as a view into it, so that recording is one
kernel over ``flat`` and a jump is one kernel writing ``flat``. Parameters whose memory is not dense cannot be
views; if any parameter of the bucket is like that, or the user later re-binds a parameter (``p.data = ...``,
``load_state_dict(assign=True)``), the bucket keeps ``flat`` as a staging buffer instead and moves data between
it and the parameters with torch's multi-tensor copies (never one launch per parameter).

``flat`` and the rows of ``history`` have N rounded up to a multiple of 64 elements (zeros past the parameters),
so that every history row is aligned for vector loads. The window ``history`` (W, N) is stored in
``storage_dtype``; ``slot_steps[k]`` is the step recorded in slot k and ``slot_absmax[k]`` (float32, on the
device) its ``max |value|``.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch

from . import ops

ROW_ALIGN = 64


def _is_dense(p: torch.Tensor) -> bool:
    return p.is_contiguous() or (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last))


class Bucket:
    """The parameters of one param group on one device and dtype, with their recorded window.

    params: the group's tensors of that device/dtype, in group order. window: slots kept (>= 2).
    storage_dtype: dtype of the history (None: the parameters' dtype).
    """

    def __init__(self, params: list[torch.Tensor], window: int, storage_dtype: torch.dtype | None = None):
        self.params = params
        self.device = params[0].device
        self.dtype = params[0].dtype
        self.numel = sum(p.numel() for p in params)
        # rows of the history start on 64-element boundaries so that kernels keep 128-bit vector accesses
        padded = -(-self.numel // ROW_ALIGN) * ROW_ALIGN
        self.window = window
        self.storage_dtype = storage_dtype or self.dtype
        self.flat = torch.zeros(padded, dtype=self.dtype, device=self.device)
        self.views = self._make_views()
        self.is_flat = all(_is_dense(p) for p in params)
        with torch.no_grad():
            torch._foreach_copy_(self.views, [p.detach() for p in params])
        if self.is_flat:
            for p, view in zip(params, self.views):
                p.data = view
        self.bound_ptrs = [p.data_ptr() for p in params]
        self.padded = padded
        self._history: torch.Tensor | None = None  # allocated on first use, see the history property
        self.slot_absmax = torch.zeros(window, dtype=torch.float32, device=self.device)
        self.slot_steps: list[int] = [0] * window
        self.filled = 0
        self.head = 0
        # a forecaster's attach() may keep something else than raw snapshots (e.g. latents): it then replaces
        # ``history`` (W, M) and sets ``recorder(bucket, slot) -> float32 0-dim absmax of the new slot``
        self.recorder = None

    @property
    def history(self) -> torch.Tensor:
        """The window (W, padded N) of raw snapshots in ``storage_dtype``, allocated on first use, so that a
        forecaster whose ``attach`` installs a history of its own (latents) never allocates this one."""
        if self._history is None:
            self._history = torch.zeros(self.window, self.padded, dtype=self.storage_dtype, device=self.device)
        return self._history

    @history.setter
    def history(self, value: torch.Tensor) -> None:
        self._history = value

    def _make_views(self) -> list[torch.Tensor]:
        views, offset = [], 0
        for p in self.params:
            strides = p.stride() if _is_dense(p) else torch.empty(p.shape).stride()
            views.append(self.flat.as_strided(p.shape, strides, offset))
            offset += p.numel()
        return views

    @property
    def full(self) -> bool:
        """True when every slot of the window holds a snapshot."""
        return self.filled == self.window

    def _check_binding(self) -> None:
        """Switch to staging mode if the user re-bound a parameter since the bucket was built."""
        if self.is_flat and [p.data_ptr() for p in self.params] != self.bound_ptrs:
            warnings.warn("weightcast: a parameter was re-bound (p.data = ..., load_state_dict(assign=True)); its "
                          "bucket now copies through a staging buffer, which costs one extra pass per record "
                          "and jump", RuntimeWarning, stacklevel=4)
            self.is_flat = False

    @torch.no_grad()
    def record(self, step: int) -> None:
        """Record the current parameters as the snapshot of ``step`` (the oldest slot is overwritten)."""
        self._check_binding()
        if not self.is_flat:
            torch._foreach_copy_(self.views, [p.detach() for p in self.params])
        if self.recorder is None:
            self.slot_absmax[self.head] = ops.record(self.flat, self.history, self.head)
        else:
            self.slot_absmax[self.head] = self.recorder(self, self.head)
        self.slot_steps[self.head] = step
        self.head = (self.head + 1) % self.window
        self.filled = min(self.filled + 1, self.window)

    def clear(self) -> None:
        """Forget the window (after a jump the trajectory restarts from the new point)."""
        self.filled = 0
        self.head = 0

    @torch.no_grad()
    def write(self, values: torch.Tensor) -> None:
        """Overwrite the parameters with ``values`` (N,), already known to be finite."""
        self.flat.copy_(values)
        self.sync_params()

    def sync_params(self) -> None:
        """After ``flat`` was written: copy it into the parameters unless they are its views."""
        if not self.is_flat:
            torch._foreach_copy_([p.detach() for p in self.params], self.views)

    def state_dict(self) -> dict[str, Any]:
        """Window and ring position, tensors in their storage dtype (no copies of the parameters)."""
        return {"history": self.history, "slot_absmax": self.slot_absmax, "slot_steps": list(self.slot_steps),
                "filled": self.filled, "head": self.head, "numel": self.numel}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; raises ValueError when it was saved for another layout."""
        if state["numel"] != self.numel or tuple(state["history"].shape) != tuple(self.history.shape) or \
                state["history"].dtype != self.history.dtype:
            raise ValueError(f"saved history {tuple(state['history'].shape)} {state['history'].dtype} does not fit "
                             f"this bucket's {tuple(self.history.shape)} {self.history.dtype}")
        self.history.copy_(state["history"])
        self.slot_absmax.copy_(state["slot_absmax"])
        self.slot_steps = list(state["slot_steps"])
        self.filled = int(state["filled"])
        self.head = int(state["head"])
