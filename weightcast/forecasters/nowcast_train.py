"""Meta-training of the multi-horizon nowcaster (:mod:`.nowcast`) on a long-trajectory zoo.

A training sample is (run, spacing, start): the window is the snapshots ``start + i * stride`` (i = 0..W-1) of
every tensor of the run, stride = spacing / the zoo's record interval, and the targets are the snapshots
``k * stride`` further on for k = 1..K (those past the end of the run are masked out). Each tensor is z-scored
with its own window statistics (as at use time), ``elements`` elements are drawn per sample (uniformly over
the run's parameters), and the loss is the L1 error in z units over the drawn elements, per horizon, divided by
the L1 error of standing still at that horizon on the same batch (so every horizon counts alike: the targets are
z-scored per horizon), averaged over horizons. 1 is standing still; below 1 beats it.
Runs, not windows, are split into train and validation (:func:`weightcast.zoo.split_runs`).

The card reports, on the validation runs, the model's L1 error per horizon beside two references computed on
the same windows: standing still (forecast = last state) and the least-squares line through the window (fit to
the differences as the model sees them, clamped).
"""
from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from ..errors import InputError
from ..zoo import load_trajectory, read_manifest, split_runs
from .nowcast import (KIND, features, init_nowcast, mlp_forward, nowcast_shapes, param_type, window_stats)


@dataclass(frozen=True)
class NowcastTrainConfig:
    """Hyper-parameters of a nowcast meta-training run (see the module docstring)."""

    window: int = 5
    k_max: int = 32
    spacings: tuple[int, ...] = (10, 20, 40)
    hidden: int = 64
    embed: int = 8
    steps: int = 1500
    samples_per_batch: int = 16
    elements: int = 2048
    lr: float = 3e-3
    val_fraction: float = 0.2
    val_windows: int = 64
    seed: int = 0
    tasks: tuple[str, ...] = field(default_factory=tuple)


class _Run:
    """One zoo run in memory: per tensor (T, n) float32 snapshots, its type, and the record interval."""

    def __init__(self, zoo_dir, entry):
        snapshots, steps = load_trajectory(zoo_dir, entry)
        self.id = entry["id"]
        self.tensors = [t.reshape(len(steps), -1) for t in snapshots.values()]
        self.types = [param_type(t.shape[1:], name) for name, t in snapshots.items()]
        self.sizes = torch.tensor([t.shape[1] for t in self.tensors])
        self.interval, self.length = record_interval(self.id, steps), len(steps)


def record_interval(run_id: str, steps: torch.Tensor) -> int:
    """The fixed number of steps between a zoo run's snapshots (``steps``: their steps, int64); ValueError if the
    run was not recorded at a fixed interval."""
    diffs = (steps[1:] - steps[:-1]).unique()
    if len(diffs) != 1:
        raise ValueError(f"zoo run {run_id} is not recorded at a fixed interval (steps {steps[:5].tolist()}...)")
    return int(diffs[0])


def strides(interval: int, length: int, cfg: NowcastTrainConfig) -> list[int]:
    """The record strides of ``cfg.spacings`` that a run recorded every ``interval`` steps with ``length``
    snapshots can supply a window of ``cfg.window`` states at (spacings that are multiples of the interval)."""
    return [sp // interval for sp in cfg.spacings if sp % interval == 0 and cfg.window * sp // interval < length]


def _sample(run: _Run, stride: int, start: int, window: int, k_max: int, elements: int, g: torch.Generator):
    """Features (m, F), types (m,), targets (m, K) in z units and mask (m, K) of one sample (module docstring)."""
    rows = start + stride * torch.arange(window)
    last = int(rows[-1])
    target_rows = last + stride * torch.arange(1, k_max + 1)
    valid = target_rows < run.length
    target_rows = target_rows.clamp_max(run.length - 1)
    share = torch.multinomial(run.sizes.float(), elements, replacement=True, generator=g).bincount(
        minlength=len(run.tensors))
    feats, types, targets = [], [], []
    for t, (traj, ptype) in enumerate(zip(run.tensors, run.types)):
        if share[t] == 0:
            continue
        z, mu, sigma, s = window_stats(traj[rows])
        idx = torch.randint(traj.shape[1], (int(share[t]),), generator=g)
        feats.append(features(z[:, idx], s))
        types.append(torch.full((len(idx),), ptype, dtype=torch.int64))
        future = (traj[target_rows][:, idx] - mu) / sigma  # (K, m), z units
        targets.append((future - z[-1, idx]).T)  # residuals in z units, (m, K)
    mask = valid.expand(sum(len(t) for t in types), -1)
    return torch.cat(feats), torch.cat(types), torch.cat(targets), mask


def _batch(runs, cfg: NowcastTrainConfig, g: torch.Generator, samples: int):
    feats, types, targets, masks, scales = [], [], [], [], []
    for _ in range(samples):
        run = runs[int(torch.randint(len(runs), (1,), generator=g))]
        options = strides(run.interval, run.length, cfg)
        stride = options[int(torch.randint(len(options), (1,), generator=g))]
        start = int(torch.randint(run.length - cfg.window * stride, (1,), generator=g))
        f, t, y, m = _sample(run, stride, start, cfg.window, cfg.k_max, cfg.elements, g)
        feats.append(f), types.append(t), targets.append(y), masks.append(m)
        scales.append(f[:, cfg.window].exp())  # s per row (the log s feature), to turn m into z units
    return torch.cat(feats), torch.cat(types), torch.cat(targets), torch.cat(masks), torch.cat(scales)


def _l1(pred_z: torch.Tensor, target_z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-horizon mean L1 (K,) over the unmasked rows."""
    err = (pred_z - target_z).abs() * mask
    return err.sum(0) / mask.sum(0).clamp_min(1)


def evaluate(tensors, batch, window: int) -> dict[str, list[float]]:
    """Per-horizon L1 (z units) of the model, of standing still and of the least-squares line on a fixed batch."""
    feats, types, targets, mask, s = batch
    k_max = targets.shape[1]
    with torch.no_grad():
        model = mlp_forward(tensors, feats, types) * s[:, None]
    d = feats[:, :window - 1] * s[:, None]  # z differences (clamped as the model sees them)
    x = torch.arange(window, dtype=torch.float32)
    cum = torch.cat([torch.zeros(len(d), 1), d.cumsum(1)], dim=1)  # z_i - z_0
    slope = ((x - x.mean()) * cum).sum(1) / ((x - x.mean()) ** 2).sum()
    fit_last = (cum.mean(1) + slope * (window - 1 - x.mean())) - cum[:, -1]  # line at the last state, minus z_last
    ks = torch.arange(1, k_max + 1, dtype=torch.float32)
    line = fit_last[:, None] + slope[:, None] * ks
    return {name: _l1(pred, targets, mask).tolist() for name, pred in
            (("model", model), ("still", torch.zeros_like(targets)), ("line", line))}


def train_nowcast(zoo_dir, cfg: NowcastTrainConfig, progress: bool = True, command: str | None = None):
    """Meta-train a nowcaster on ``zoo_dir``; returns ``(config, tensors, card)`` for :func:`io.save`."""
    if cfg.window < 2:
        raise InputError(f"a window needs at least 2 states (the optimizer refuses fewer), got {cfg.window}")
    entries = read_manifest(zoo_dir)["runs"]
    if cfg.tasks:
        entries = [e for e in entries if e["spec"]["task"] in cfg.tasks]
    held = sorted({(e["spec"]["record_every"], e["num_records"]) for e in entries})
    entries = [e for e in entries if not e["diverged"]
               and strides(e["spec"]["record_every"], e["num_records"], cfg)]
    if not entries:
        raise InputError(f"no run of {zoo_dir} can supply {cfg.window} states {list(cfg.spacings)} steps apart: its "
                         f"runs hold (record interval, snapshots) {held[:6]}; pass --spacings that are multiples of "
                         "the record interval spanning fewer snapshots, a smaller --window, or a zoo of longer runs "
                         "(python -m weightcast.zoo.long)")
    train_ids, val_ids = split_runs(entries, cfg.val_fraction, cfg.seed)
    if not train_ids or not val_ids:
        raise ValueError(f"the zoo at {zoo_dir} has too few usable runs ({len(entries)}) for a train and a "
                         "validation split; build it with `python -m weightcast.zoo.long --out DIR`")
    by_id = {e["id"]: e for e in entries}
    train_runs = [_Run(zoo_dir, by_id[i]) for i in train_ids]
    val_runs = [_Run(zoo_dir, by_id[i]) for i in val_ids]
    g = torch.Generator().manual_seed(cfg.seed)
    val_batch = _batch(val_runs, cfg, torch.Generator().manual_seed(cfg.seed + 1), cfg.val_windows)
    config = {"window": cfg.window, "hidden": cfg.hidden, "k_max": cfg.k_max, "embed": cfg.embed,
              "spacings": list(cfg.spacings)}
    tensors = {k: v.requires_grad_() for k, v in init_nowcast(cfg.window, cfg.hidden, cfg.k_max, cfg.embed,
                                                              cfg.seed).items()}
    opt = torch.optim.AdamW(tensors.values(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    losses = []
    bar = tqdm(range(cfg.steps), desc="nowcast meta-training", disable=not progress)
    for step in bar:
        feats, types, targets, mask, s = _batch(train_runs, cfg, g, cfg.samples_per_batch)
        pred = mlp_forward(tensors, feats, types) * s[:, None]
        per_k = _l1(pred, targets, mask)
        loss = (per_k / _l1(torch.zeros_like(targets), targets, mask).clamp_min(1e-8)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            bar.set_postfix(l1=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    tensors = {k: v.detach() for k, v in tensors.items()}
    val = evaluate(tensors, val_batch, cfg.window)
    mean = {name: sum(v) / len(v) for name, v in val.items()}
    card = {"kind": KIND, "config": config, "zoo": str(zoo_dir), "train_runs": len(train_ids), "val_runs": len(val_ids),
            "train": asdict(cfg), "final_train_loss": sum(losses[-50:]) / len(losses[-50:]),
            "val_l1_by_horizon": val, "final": {"val_l1": mean["model"], "val_l1_still": mean["still"],
                                                "val_l1_line": mean["line"]},
            "trained_for": {"window": cfg.window, "spacings_steps": list(cfg.spacings), "k_range": [1, cfg.k_max]},
            "params": sum(math.prod(s) for s in nowcast_shapes(config).values()),
            "date": datetime.date.today().isoformat(), "command": command}
    return config, tensors, card


def train_from_args(args) -> int:
    """``weightcast forecaster train --kind nowcast ...``: train, save weights and card, print the validation L1."""
    import json

    from . import io

    torch.set_num_threads(args.threads)
    cfg = NowcastTrainConfig(window=args.window, k_max=args.k_max, spacings=tuple(args.spacings),
                             hidden=args.hidden, steps=args.steps, samples_per_batch=args.samples,
                             elements=args.elements, lr=args.lr, seed=args.seed)
    command = args.command_line if args.record_command else None
    config, tensors, card = train_nowcast(args.zoo, cfg, progress=not args.no_progress, command=command)
    io.save(args.out, KIND, config, tensors, card)
    print(json.dumps(card["final"]), f"-> {args.out}")
    return 0
