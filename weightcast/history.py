"""Trajectory history: the recorded window of parameter snapshots, kept in the engine's own buffers.

How parameters, history and kernels relate:

* **Parameters stay the user's tensors.** The optimizer never re-binds ``p.data``; storage ties, shared memory,
  views, dtype or device changes after construction and checkpoint layouts are exactly what they are with
  ``torch.optim.SGD``. A DTensor parameter (FSDP2) is handled through its local shard (``p.to_local()``).
* **History lives in the engine's buffers.** A :class:`Bucket` holds the parameters of one param group that share
  a device and dtype, and a ring ``history`` (W, M) in ``storage_dtype``: parameter i owns the columns
  ``offsets[i] : offsets[i] + numel_i`` of every row (its segment, starting on a ``SEGMENT_ALIGN``-element
  boundary so that kernels keep aligned vector accesses; the gaps stay zero). ``slot_steps[k]`` is the step
  recorded in slot k and ``slot_absmax[k]`` (float32, on the device) its ``max |value|``.
* **Record and jump are multi-tensor kernels over the parameters as they are**: ``weightcast::record`` copies the
  list of parameters into their segments of one slot (and returns the slot's absmax), and
  ``weightcast::lincomb_forecast`` writes the forecast of every segment straight into its parameter, one pass,
  all or nothing (see :mod:`weightcast.ops`). Non-contiguous parameters go through a contiguous staging copy
  of those tensors only.

A forecaster's ``attach`` may keep something else than raw snapshots (e.g. latents): it then replaces
``history`` and sets ``recorder(bucket, slot) -> float32 0-dim absmax of the new slot``.
"""
from __future__ import annotations

from typing import Any

import torch

from . import ops

SEGMENT_ALIGN = 64  # elements: 256 bytes of float32, a multiple of every kernel's vector width


def is_dtensor(p: torch.Tensor) -> bool:
    return type(p).__name__ == "DTensor"


def local_tensor(p: torch.Tensor) -> torch.Tensor:
    """The tensor the kernels read and write for parameter ``p``: ``p`` itself, or a DTensor's local shard."""
    return p.detach().to_local() if is_dtensor(p) else p


class Bucket:
    """The parameters of one param group on one device and dtype, with their recorded window.

    params: the group's tensors of that device/dtype, in group order (kept as they are, never re-bound).
    window: slots kept (>= 2). storage_dtype: dtype of the history (None: the parameters' dtype).
    """

    def __init__(self, params: list[torch.Tensor], window: int, storage_dtype: torch.dtype | None = None):
        self.params = list(params)
        self.sharded = any(is_dtensor(p) for p in self.params)  # DTensor parameters: the kernels see local shards
        tensors = self.tensors()
        self.device = tensors[0].device
        self.dtype = tensors[0].dtype
        self.shapes = [tuple(t.shape) for t in tensors]
        self.numels = [t.numel() for t in tensors]
        self.offsets: list[int] = []
        end = 0
        for n in self.numels:
            self.offsets.append(end)
            end += -(-n // SEGMENT_ALIGN) * SEGMENT_ALIGN
        self.padded = max(end, SEGMENT_ALIGN)
        self.numel = sum(self.numels)
        self.contiguous = all(t.is_contiguous() for t in tensors)
        self._signature = self._sign()
        self.window = window
        self.storage_dtype = storage_dtype or self.dtype
        self._history: torch.Tensor | None = None  # allocated on first use, see the history property
        self.slot_absmax = torch.zeros(window, dtype=torch.float32, device=self.device)
        self.slot_steps: list[int] = [0] * window
        self.filled = 0
        self.head = 0
        self.recorder = None

    def tensors(self) -> list[torch.Tensor]:
        """The parameters as the kernels see them (the parameters themselves, or DTensors' local shards); write
        them only under ``torch.no_grad()``."""
        return [local_tensor(p) for p in self.params] if self.sharded else self.params

    def layout(self) -> list[tuple[torch.device, torch.dtype, tuple[int, ...]]]:
        """(device, dtype, shape) of every parameter as it is now."""
        return [(t.device, t.dtype, tuple(t.shape)) for t in self.tensors()]

    def _sign(self) -> list | None:
        """A cheap fingerprint of the parameters' memory (data pointer and shape of each); None for DTensors."""
        return None if self.sharded else [(p.data_ptr(), p.shape) for p in self.params]

    def matches(self) -> bool:
        """False when a parameter changed device, dtype or shape since the bucket was built (e.g. ``model.double()``
        or ``p.data = ...`` with another dtype): the engine then rebuilds the bucket. A parameter re-bound to other
        memory of the same kind is followed (its contiguity is looked at again)."""
        signature = self._sign()
        if signature is not None and signature == self._signature:
            return True
        same = all(d == self.device and t == self.dtype and s == shape
                   for (d, t, s), shape in zip(self.layout(), self.shapes))
        if same:
            self._signature = signature
            self.contiguous = all(t.is_contiguous() for t in self.tensors())
        return same

    @property
    def history(self) -> torch.Tensor:
        """The window (W, padded) of raw snapshots in ``storage_dtype``, allocated on first use, so that a
        forecaster whose ``attach`` installs a history of its own (latents) never allocates this one."""
        if self._history is None:
            self._history = torch.zeros(self.window, self.padded, dtype=self.storage_dtype, device=self.device)
        return self._history

    @history.setter
    def history(self, value: torch.Tensor) -> None:
        self._history = value

    def segment(self, i: int) -> slice:
        """Columns of parameter i in every history row."""
        return slice(self.offsets[i], self.offsets[i] + self.numels[i])

    @property
    def full(self) -> bool:
        """True when every slot of the window holds a snapshot."""
        return self.filled == self.window

    @torch.no_grad()
    def record(self, step: int) -> None:
        """Record the current parameters as the snapshot of ``step`` (the oldest slot is overwritten)."""
        if self.recorder is None:
            tensors = self.tensors() if self.contiguous else [t.contiguous() for t in self.tensors()]
            self.slot_absmax[self.head] = ops.record_trusted(tensors, self.history, self.head, self.offsets,
                                                             self.dtype)
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
    def packed(self) -> torch.Tensor:
        """A copy (numel,) of the parameters, flattened and concatenated in order, in the bucket's dtype."""
        tensors = self.tensors()
        if not tensors:
            return torch.empty(0, dtype=self.dtype, device=self.device)
        return torch.cat([t.reshape(-1) for t in tensors])

    @torch.no_grad()
    def write(self, values: list[torch.Tensor], indices: list[int]) -> None:
        """Overwrite parameters ``indices`` with ``values`` (one tensor of each one's numel per index, already
        known to be finite)."""
        tensors = self.tensors()
        if indices:
            torch._foreach_copy_([tensors[i] for i in indices],
                                 [v.view(self.shapes[i]) for v, i in zip(values, indices)])

    @torch.no_grad()
    def restore_newest(self, indices: list[int]) -> None:
        """Put back parameters ``indices`` from the newest slot (exact only for a raw history in their dtype)."""
        newest = self.history[(self.head - 1) % self.window]
        self.write([newest[self.segment(i)] for i in indices], indices)

    def state_dict(self) -> dict[str, Any]:
        """Window and ring position, tensors in their storage dtype (no copies of the parameters). Like a torch
        optimizer's state_dict it holds the live window tensor while the ring position is a copy: save it (or
        ``copy.deepcopy`` it) before further steps, or loading it later pairs newer values with an older ring."""
        return {"history": self.history, "slot_absmax": self.slot_absmax, "slot_steps": list(self.slot_steps),
                "filled": self.filled, "head": self.head, "numel": self.numel}

    def check_state(self, state: dict[str, Any]) -> None:
        """Raise ValueError unless :meth:`load_state_dict` can take ``state`` (nothing is changed)."""
        saved = state["history"]
        if state["numel"] != self.numel or tuple(saved.shape) != tuple(self.history.shape):
            raise ValueError(f"saved history {tuple(saved.shape)} ({state['numel']} parameter values) does not fit "
                             f"this bucket's {tuple(self.history.shape)} ({self.numel} values)")
        if saved.is_floating_point() != self.history.is_floating_point():
            raise ValueError(f"saved history is {saved.dtype}, this bucket's {self.history.dtype}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a history of another floating dtype is cast, as torch optimizers cast
        their state); raises ValueError when it was saved for another layout."""
        self.check_state(state)
        self.history.copy_(state["history"])
        if state["history"].dtype == self.history.dtype:
            self.slot_absmax.copy_(state["slot_absmax"])
        else:  # the cast may have rounded values up: the bound needs the absmax of what is stored now
            self.slot_absmax.copy_(self.history.float().abs().amax(1))
        self.slot_steps = list(state["slot_steps"])
        self.filled = int(state["filled"])
        self.head = int(state["head"])
