"""Windows of zoo trajectories as a PyTorch Dataset: the training data of learned forecasters and autoencoders.

A run with T snapshots s_0..s_{T-1} gives T - window - horizon + 1 windows; window k has inputs
s_k..s_{k+window-1} and target s_{k+window-1+horizon} (``horizon`` counts snapshots, i.e. ``horizon *
record_every`` optimizer steps). Each item is a dict:

* ``inputs``: (window, ...) float32 and ``target``: (...) float32, where ... is () for ``granularity="element"``
  (one scalar parameter), the tensor's shape for ``"tensor"``, and (P,) for ``"model"`` (all P parameters
  flattened and concatenated in manifest order);
* ``steps``: (window,) int64 and ``target_step``: () int64, the optimizer steps of the snapshots;
* ``run``: () int64, an index into :attr:`TrajectoryDataset.runs`; ``unit``: () int64, the element index
  (element), the tensor index (tensor) or 0 (model).

With ``usable_only=True`` the runs that diverged or hold a non-finite snapshot are left out, each with a warning
(learned forecasters and autoencoders train on usable runs only).

Runs, never steps, are split into train and validation: within each (task, arch) group the runs, sorted by id,
are permuted by ``seed`` and the first ``round(val_fraction * n)`` (at least 1 when the group has 2 or more)
form the validation split. The selected runs are held in memory as (T, P) float32 tensors.
"""
from __future__ import annotations

import os
import warnings
from collections import defaultdict
from itertools import accumulate
from typing import Iterable, Sequence

import torch
from torch.utils.data import Dataset

from .store import load_trajectory, read_manifest

GRANULARITIES = ("element", "tensor", "model")


def split_runs(entries: Sequence[dict], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Run ids of the train and validation splits (see the module docstring), each sorted."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for entry in entries:
        groups[entry["spec"]["task"], entry["spec"]["arch"]].append(entry["id"])
    train, val = [], []
    for key in sorted(groups):
        ids = sorted(groups[key])
        n_val = round(val_fraction * len(ids))
        if val_fraction > 0 and len(ids) >= 2:
            n_val = min(max(n_val, 1), len(ids) - 1)
        perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed)).tolist()
        val += [ids[i] for i in perm[:n_val]]
        train += [ids[i] for i in perm[n_val:]]
    return sorted(train), sorted(val)


def _selected(value: str | Iterable[str] | None) -> set[str] | None:
    return None if value is None else {value} if isinstance(value, str) else set(value)


class TrajectoryDataset(Dataset):
    """Windows of the trajectories of one split of a zoo (see the module docstring for items and the split).

    ``task``/``arch`` (a name or several) restrict the runs. ``dataset[i]`` gives one item; for the element and
    model granularities ``dataset.batch(indices)`` gives many at once, stacked along a new first dimension
    (model batches need runs with equal P, e.g. ``arch=...`` with one width). To fetch a whole batch in one
    gather: ``DataLoader(range(len(ds)), batch_size=4096, shuffle=True, collate_fn=ds.batch)``.
    """

    def __init__(self, zoo_dir: str | os.PathLike, split: str = "train", window: int = 5, horizon: int = 1,
                 granularity: str = "element", task: str | Iterable[str] | None = None,
                 arch: str | Iterable[str] | None = None, val_fraction: float = 0.2, seed: int = 0,
                 usable_only: bool = False):
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if window < 1 or horizon < 1:
            raise ValueError(f"window and horizon must be at least 1, got {window} and {horizon}")
        self.window, self.horizon, self.granularity = window, horizon, granularity
        entries = read_manifest(zoo_dir, missing_ok=False)["runs"]
        train_ids, val_ids = split_runs(entries, val_fraction, seed)
        ids = set(val_ids if split == "val" else train_ids)
        tasks, archs = _selected(task), _selected(arch)
        selected = [e for e in sorted(entries, key=lambda e: e["id"]) if e["id"] in ids
                    and (tasks is None or e["spec"]["task"] in tasks)
                    and (archs is None or e["spec"]["arch"] in archs)]
        self.runs: list[dict] = []
        self.flat: list[torch.Tensor] = []  # per run, (T, P) float32
        self.steps: list[torch.Tensor] = []  # per run, (T,) int64
        self.units: list[int] = []  # per run, items per window
        self.offsets: list[list[int]] = []  # per run, where each tensor starts in the flat vector, then P
        counts = []
        for entry in selected:
            snapshots, steps = load_trajectory(zoo_dir, entry)
            flat = torch.cat([t.reshape(len(steps), -1) for t in snapshots.values()], dim=1)
            if usable_only and (entry.get("diverged") or not torch.isfinite(flat).all()):
                why = "diverged" if entry.get("diverged") else "holds non-finite snapshots"
                warnings.warn(f"skipping run {entry['id']} of {zoo_dir}: it {why}", stacklevel=2)
                continue
            self.runs.append(entry)
            self.flat.append(flat)
            self.steps.append(steps)
            self.units.append({"element": flat.shape[1], "tensor": len(snapshots), "model": 1}[granularity])
            self.offsets.append(list(accumulate((t[0].numel() for t in snapshots.values()), initial=0)))
            counts.append(max(len(steps) - window - horizon + 1, 0) * self.units[-1])
        self.ends = torch.tensor(counts, dtype=torch.int64).cumsum(0)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def _locate(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(run, first snapshot, unit) of each item index (n,) int64."""
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} items")
        run = torch.searchsorted(self.ends, indices, right=True)
        local = indices - torch.cat([self.ends.new_zeros(1), self.ends])[run]
        units = torch.tensor(self.units, dtype=torch.int64)[run]
        return run, local // units, local % units

    def __getitem__(self, index: int) -> dict:
        if self.granularity != "tensor":
            return {key: value[0] for key, value in self.batch([index]).items()}
        run, start, unit = (int(v) for v in self._locate(torch.tensor([index])))
        flat, entry = self.flat[run], self.runs[run]
        lo, hi = self.offsets[run][unit], self.offsets[run][unit + 1]
        shape = entry["tensors"][unit]["shape"]
        target = start + self.window - 1 + self.horizon
        return {"inputs": flat[start:start + self.window, lo:hi].reshape(self.window, *shape),
                "target": flat[target, lo:hi].reshape(shape),
                "steps": self.steps[run][start:start + self.window],
                "target_step": self.steps[run][target],
                "run": torch.tensor(run), "unit": torch.tensor(unit)}

    def batch(self, indices: Sequence[int] | torch.Tensor) -> dict:
        """Items ``indices`` stacked: inputs (n, window[, P]), target (n[, P]), steps (n, window), target_step,
        run and unit (n,). Element and model granularities only."""
        if self.granularity == "tensor":
            raise ValueError("tensor items have different shapes; index them one at a time")
        indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        run, start, unit = self._locate(indices)
        rows = start[:, None] + torch.arange(self.window + 1)  # the window's snapshots, then a placeholder
        rows[:, -1] = start + self.window - 1 + self.horizon  # ... replaced by the target's
        n = len(indices)
        sizes = {self.flat[r].shape[1] for r in run.unique().tolist()}
        if self.granularity == "model" and len(sizes) > 1:
            raise ValueError(f"model items of different sizes {sorted(sizes)} cannot be stacked; "
                             "select runs of one architecture and width (arch=..., task=...)")
        width = () if self.granularity == "element" else (sizes.pop() if sizes else 0,)
        values = torch.empty(n, self.window + 1, *width)
        steps = torch.empty(n, self.window + 1, dtype=torch.int64)
        for r in run.unique().tolist():
            mask = run == r
            if self.granularity == "element":
                values[mask] = self.flat[r][rows[mask], unit[mask][:, None]]  # (m, window + 1)
            else:
                values[mask] = self.flat[r][rows[mask]]  # (m, window + 1, P)
            steps[mask] = self.steps[r][rows[mask]]
        return {"inputs": values[:, :-1], "target": values[:, -1], "steps": steps[:, :-1],
                "target_step": steps[:, -1], "run": run, "unit": unit}
