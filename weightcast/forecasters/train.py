"""Meta-training of the learned forecasters ("farcast", "wnn") on zoo trajectories, and their forecast error.

Samples. A sample is (run, window start, stride s, target offset j): the window is W snapshots ``s`` records apart
(``dt = s * record_every`` steps), the target is the snapshot ``j`` records after the newest one, so the horizon is
``h = j / s`` record intervals of the window (stride 2 gives half-integer horizons, as in the study's schedule
of 5 snapshots 10 steps apart and a 25-step horizon). Per-tensor statistics (normalisation, loss scale) are taken
over the whole tensor; then ``elements`` elements of the run are drawn at random.

Loss: L1 of the forecast error divided by the tensor's mean absolute step in the window (so every tensor and
run counts alike, whatever its scale), averaged over elements.

farcast's regulariser (first-order optimality; the seed's idea, this exact form is our choice): along gradient
descent towards a stationary point (gradient -> 0) the steps shrink and keep their direction, so the predicted
mean step over the horizon, ``s_hat = (w_hat - w_t) / h``, should be a contraction of the observed mean step of
the window, ``v = (w_t - w_{t-W+1}) / (W - 1)``:
``R = mean(relu(|s_hat| - |v|) + relu(-sign(v) s_hat)) / scale``, added with weight ``reg``.

Validation is on the validation split of the zoo (split by run, never by step: weightcast.zoo.split_runs).
"""
from __future__ import annotations

import datetime
import math
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..errors import InputError
from ..zoo.dataset import TrajectoryDataset
from . import io
from .farcast import KIND as FARCAST, farcast_shapes
from .wnn import HORIZON_SCALE, KIND as WNN, init_wnn, kind_of, segment_stats
from ..ops.wnn_forecast import mlp_residual, wnn_features


class ZooWindows:
    """The runs of one split of a zoo, held as (T, P) float32 tensors, and a sampler of element batches."""

    def __init__(self, zoo_dir, split: str, window: int, max_horizon: int, strides=(1, 2), task=None, arch=None,
                 val_fraction: float = 0.2):
        if window < 2 or max_horizon < 1:
            raise InputError(f"a window needs at least 2 snapshots (a trend needs two points) and the horizon at "
                             f"least 1 record interval; got window {window}, max_horizon {max_horizon}")
        ds = TrajectoryDataset(zoo_dir, split, window=1, horizon=1, granularity="model", task=task, arch=arch,
                               val_fraction=val_fraction, usable_only=True)
        self.runs, self.flat, self.steps = ds.runs, ds.flat, ds.steps
        self.lengths = [torch.tensor([math.prod(t["shape"]) for t in e["tensors"]]) for e in ds.runs]
        self.kinds = [torch.tensor([kind_of(t["shape"]) for t in e["tensors"]]) for e in ds.runs]
        self.window, self.max_horizon, self.strides = window, max_horizon, tuple(strides)
        if not self.runs:
            raise InputError(f"the {split} split of {zoo_dir} holds no usable runs (task={task}, arch={arch}); "
                             "build a zoo with more runs (weightcast zoo build)")
        snapshots = [len(steps) for steps in self.steps]
        if max(snapshots) < window + max_horizon:
            spacing = "/".join(str(k) for k in sorted({e["spec"]["record_every"] for e in self.runs}))
            raise InputError(
                f"the {split} split of {zoo_dir} cannot supply a window of {window} snapshots with a horizon of "
                f"{max_horizon} record intervals: that needs runs of at least {window + max_horizon} snapshots, and "
                f"its {len(self.runs)} runs hold {min(snapshots)} to {max(snapshots)} (one every {spacing} steps). "
                f"Lower --window or --max-horizon (window + max horizon <= {max(snapshots)}), or build a zoo with "
                "longer runs")

    def samples(self, generator: torch.Generator, count: int, horizons=None) -> list[tuple[int, int, int, int]]:
        """``count`` random (run, start, stride, offset) with the whole window and target inside the run.
        ``horizons``: the allowed h = offset / stride (default: every offset up to max_horizon * stride). Raises
        InputError when no run can supply any of them (instead of drawing forever)."""
        longest = max(len(steps) for steps in self.steps)
        if not any(longest - 1 - j - (self.window - 1) * s >= 0 for s in self.strides
                   for j in range(1, self.max_horizon * s + 1) if horizons is None or j / s in horizons):
            raise InputError(f"no run of {len(self.runs)} (at most {longest} snapshots) can supply a window of "
                             f"{self.window} snapshots {self.strides} records apart and a horizon in {horizons}; "
                             "ask for shorter horizons or use a zoo with longer runs")
        out = []
        while len(out) < count:
            r = int(torch.randint(len(self.runs), (1,), generator=generator))
            s = self.strides[int(torch.randint(len(self.strides), (1,), generator=generator))]
            offsets = [j for j in range(1, self.max_horizon * s + 1) if horizons is None or j / s in horizons]
            if not offsets:
                continue
            j = offsets[int(torch.randint(len(offsets), (1,), generator=generator))]
            last_start = self.flat[r].shape[0] - 1 - j - (self.window - 1) * s
            if last_start < 0:
                continue
            out.append((r, int(torch.randint(last_start + 1, (1,), generator=generator)), s, j))
        return out

    def batch(self, samples, generator: torch.Generator | None, elements: int | None) -> dict[str, torch.Tensor]:
        """Element batch of ``samples``: window (n, W) chronological, w0, target, scale (n,), h, frac_dt (n,)
        (dt / (t - t_0)), wnn stats a, c, e, D (n,), kind (n,) int64, sample (n,) index of its sample."""
        parts = []
        for i, (r, start, s, j) in enumerate(samples):
            flat, steps = self.flat[r], self.steps[r]
            rows = start + s * torch.arange(self.window)
            window = flat[rows]  # (W, P)
            last = int(rows[-1])
            lengths = self.lengths[r]
            seg = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
            h = j / s
            stats = segment_stats(window, lengths, h)
            mean_step = torch.segment_reduce((window[1:] - window[:-1]).abs().mean(0), "mean", lengths=lengths)
            scale = mean_step.clamp_min(1e-12)
            dt = int(steps[last] - steps[last - s])
            p = window.shape[1]
            cols = torch.arange(p) if elements is None or elements >= p else \
                torch.randint(p, (elements,), generator=generator)
            sg = seg[cols]
            parts.append({"window": window[:, cols].T, "w0": flat[0, cols], "target": flat[last + j, cols],
                          "scale": scale[sg], "h": torch.full((len(cols),), h),
                          "frac_dt": torch.full((len(cols),), dt / float(steps[last] - steps[0])),
                          "a": stats[sg, 0], "c": stats[sg, 1], "e": stats[sg, 2],
                          "D": stats[sg, 3] / h, "kind": self.kinds[r][sg],
                          "sample": torch.full((len(cols),), i)})
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def farcast_predict(A: torch.Tensor, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """farcast forecast of an element batch: w_t + A_h . features, A_h interpolated as in farcast.horizon_row."""
    window = b["window"]
    lags = A.shape[1]
    wt = window[:, -1]
    feats = [(wt - b["w0"]) * b["frac_dt"]] + [wt - window[:, -1 - k] for k in range(1, lags)]
    f = torch.stack(feats, dim=1)
    padded = torch.cat([torch.zeros_like(A[:1]), A])  # row 0: horizon 0, no move
    h = b["h"].clamp(max=A.shape[0])
    lo = h.floor().long()
    frac = (h - lo)[:, None]
    rows = (1 - frac) * padded[lo] + frac * padded[(lo + 1).clamp(max=A.shape[0])]
    return wt + (rows * f).sum(1)


def farcast_regulariser(pred: torch.Tensor, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """R of the module docstring, per element."""
    window = b["window"]
    s_hat = (pred - window[:, -1]) / b["h"]
    v = (window[:, -1] - window[:, 0]) / (window.shape[1] - 1)
    return (torch.relu(s_hat.abs() - v.abs()) + torch.relu(-torch.sign(v) * s_hat)) / b["scale"]


def wnn_predict(t: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
    """wnn forecast of an element batch, differentiable in the weights ``t`` (same math as the op)."""
    x = wnn_features(b["window"], b["a"], b["c"], b["e"])
    x = torch.cat([x, (b["h"] * HORIZON_SCALE)[:, None]], dim=1)
    r = mlp_residual(x, b["kind"], t["w1"], t["b1"], t["w2"], t["b2"], t["w3"], t["b3"])
    return b["window"][:, -1] + b["D"] * b["h"] * r


def linear_predict(b: dict[str, torch.Tensor]) -> torch.Tensor:
    """Least-squares line through the window, evaluated h intervals past its newest point."""
    w = b["window"].shape[1]
    x = torch.arange(w, dtype=torch.float64)
    xc = x - x.mean()
    target = (w - 1) + b["h"].double()
    coeffs = 1.0 / w + xc[None, :] * (target[:, None] - x.mean()) / (xc * xc).sum()
    return (coeffs * b["window"].double()).sum(1).float()


class TrainingDiverged(InputError):
    """Meta-training produced a non-finite loss or weights (nothing is saved)."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (recorded in the card)."""

    kind: str
    window: int = 5
    max_horizon: int = 6
    steps: int = 600
    samples_per_batch: int = 16
    elements: int = 2048
    lr: float = 1e-2
    reg: float = 0.1
    hidden: int = 16
    val_samples: int = 96
    seed: int = 0


def _val_loss(predict, val_batch) -> tuple[float, float]:
    with torch.no_grad():
        pred = predict(val_batch)
        err = ((pred - val_batch["target"]).abs() / val_batch["scale"]).mean()
        lin = ((linear_predict(val_batch) - val_batch["target"]).abs() / val_batch["scale"]).mean()
    return float(err), float(lin)


def train(zoo_dir, cfg: TrainConfig, progress: bool = True, command: str | None = None):
    """Train a ``cfg.kind`` forecaster on the train split of ``zoo_dir``; returns (config, tensors, card).

    Runs that diverged or hold non-finite snapshots are skipped (with a warning). Raises InputError when the zoo
    cannot supply ``cfg.window`` snapshots plus ``cfg.max_horizon`` (every horizon the card claims is trained),
    and :class:`TrainingDiverged` when the loss or the weights become non-finite."""
    if min(cfg.steps, cfg.samples_per_batch, cfg.elements, cfg.val_samples) < 1 or not cfg.lr > 0:
        raise ValueError(f"steps, samples_per_batch, elements, val_samples and lr must be positive: {cfg}")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_set = ZooWindows(zoo_dir, "train", cfg.window, cfg.max_horizon)
    val_set = ZooWindows(zoo_dir, "val", cfg.window, cfg.max_horizon)
    val_batch = val_set.batch(val_set.samples(torch.Generator().manual_seed(12345), cfg.val_samples),
                              torch.Generator().manual_seed(54321), cfg.elements)
    if cfg.kind == FARCAST:
        config = {"lags": cfg.window, "max_horizon": cfg.max_horizon}
        params = {"A": torch.zeros(farcast_shapes(config)["A"], requires_grad=True)}

        def predict(b):
            return farcast_predict(params["A"], b)
    elif cfg.kind == WNN:
        config = {"window": cfg.window, "hidden": cfg.hidden, "max_horizon": cfg.max_horizon}
        params = {k: v.requires_grad_() for k, v in init_wnn(cfg.window, cfg.hidden, cfg.seed).items()}

        def predict(b):
            return wnn_predict(params, b)
    else:
        raise ValueError(f"kind must be {FARCAST!r} or {WNN!r}, got {cfg.kind!r}")
    opt = torch.optim.Adam(params.values(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    history = []
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"train {cfg.kind}", disable=not progress)
    for step in bar:
        b = train_set.batch(train_set.samples(gen, cfg.samples_per_batch), gen, cfg.elements)
        pred = predict(b)
        loss = ((pred - b["target"]).abs() / b["scale"]).mean()
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the {cfg.kind} training loss is non-finite ({float(loss.detach())}) at step {step}; "
                                   f"nothing was written. Lower --lr (now {cfg.lr}) and train again")
        total = loss
        if cfg.kind == FARCAST and cfg.reg > 0:
            total = loss + cfg.reg * farcast_regulariser(pred, b).mean()
        opt.zero_grad()
        total.backward()
        opt.step()
        sched.step()
        loss = loss.detach()
        if step % 100 == 0 or step == cfg.steps - 1:
            val, lin = _val_loss(predict, val_batch)
            history.append({"step": step, "train_l1": round(float(loss), 5), "val_l1": round(val, 5)})
            bar.set_postfix(train=f"{float(loss):.4f}", val=f"{val:.4f}", linear=f"{lin:.4f}")
    val, lin = _val_loss(predict, val_batch)
    tensors = {k: v.detach().clone() for k, v in params.items()}
    if not all(torch.isfinite(t).all() for t in tensors.values()) or not math.isfinite(val):
        raise TrainingDiverged(f"the {cfg.kind} training ended with non-finite weights or validation loss ({val}); "
                               f"nothing was written. Lower --lr (now {cfg.lr}) and train again")
    card = {
        "kind": cfg.kind, "config": config, "zoo": str(zoo_dir),
        "zoo_runs": {"train": len(train_set.runs), "val": len(val_set.runs)},
        "split": "by run within each (task, arch) group, val_fraction 0.2, seed 0 (weightcast.zoo.split_runs)",
        "training": {k: v for k, v in cfg.__dict__.items()},
        "loss": "L1 / per-tensor mean |step| of the window" + (f" + {cfg.reg} * first-order-optimality "
                                                               "regulariser" if cfg.kind == FARCAST else ""),
        "final": {"val_l1": round(val, 5), "val_l1_linear": round(lin, 5)},
        "curve": history, "train_seconds": round(time.perf_counter() - start, 1),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch": torch.__version__, "command": command,
    }
    return config, tensors, card


def save_trained(out, kind: str, config, tensors, card) -> None:
    """Write the weights (safetensors) and the card (JSON) of a trained forecaster."""
    io.save(out, kind, config, tensors, card)
