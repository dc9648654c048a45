"""Weight generation for every width: an implicit neural representation (INR) over weight coordinates.

Neural Metamorphosis (Yang & Wang, ECCV 2024) represents a network's weights as a function of normalised
coordinates, so one INR yields the weights of any width. Here each sliced weight layer ``l`` of a slimmable
model is viewed as (out channel o, in channel i, T values): a conv kernel (T = kh * kw), a flattened
channel's positions, or one value of a Linear. Its coordinates at width ``w`` are

    c = (l / (L - 1), i / (I - 1), o / (O - 1), w)           (I, O: the layer's full channel counts)

encoded with Fourier features ``[c, sin(2^f pi c), cos(2^f pi c)]`` for f < ``frequencies``, then an MLP
(``depth`` SiLU layers of ``hidden`` units) and an output layer of T_max values (a layer uses its first T).
The output times the layer's scale (the std of its pretrained weight) is

* ``mode="residual"`` (the seed's variant): a change dW added to the sliced pretrained weights. The output
  layer starts at zero, so at initialisation every width is exactly the sliced pretrained network;
* ``mode="full"`` (NeuMeta's form, the baseline): the weights themselves.

Biases and BatchNorm parameters stay the sliced pretrained ones.
"""
from __future__ import annotations

import contextlib
import math
import random
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.flop_counter import FlopCounterMode

from .convert import export, set_width, slim_weight_layers, spec_of
from .ops import generate_write
from .train import TrainLog, sandwich_widths

MODES = ("residual", "full")
RECONSTRUCTION = {"residual": 0.0, "full": 1.0}  # default weight of the reconstruction term per mode


def _unit(model: nn.Module, path: str) -> int:
    """Columns per input channel of a Linear that follows a flatten (1 for other Linears)."""
    return max((u for g in spec_of(model).groups for c, u in g.consumers if c == path), default=1)


class WeightINR(nn.Module):
    """Generates the weights of every sliced Linear/Conv2d of a slimmable ``model`` at any of its widths.

    Args: ``model`` (from :func:`make_slimmable`; its pretrained weights are the base and the scales),
    ``mode`` ("residual" | "full"), ``hidden`` (units, default 32), ``depth`` (hidden layers, default 3),
    ``frequencies`` (Fourier octaves per coordinate, default 4).
    """

    def __init__(self, model: nn.Module, mode: str = "residual", hidden: int = 32, depth: int = 3,
                 frequencies: int = 4):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.frequencies = mode, frequencies
        self.paths, shapes = [], []
        for path, layer in slim_weight_layers(model):
            unit = _unit(model, path)
            out_ch, in_cols = layer.weight.shape[:2]
            per_col = math.prod(layer.weight.shape[2:])
            self.paths.append(path)
            shapes.append((out_ch, in_cols // unit, unit * per_col))
        self.shapes = shapes  # (O, I, T) per layer at full width
        self.register_buffer("scales", torch.stack([layer.weight.detach().float().std()
                                                    for _, layer in slim_weight_layers(model)]))
        dims = [4 * (1 + 2 * frequencies)] + [hidden] * depth
        self.trunk = nn.Sequential(*(m for a, b in zip(dims[:-1], dims[1:]) for m in (nn.Linear(a, b), nn.SiLU())))
        self.head = nn.Linear(hidden, max(t for _, _, t in shapes))
        if mode == "residual":
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def coordinates(self, layer: int, out_ch: int, in_ch: int, width: float) -> torch.Tensor:
        """(out_ch * in_ch, 4) float32 normalised coordinates of a layer's first out_ch x in_ch channel pairs,
        row-major over (o, i)."""
        O, I, _ = self.shapes[layer]
        o = torch.arange(out_ch, device=self.scales.device, dtype=torch.float32) / max(O - 1, 1)
        i = torch.arange(in_ch, device=self.scales.device, dtype=torch.float32) / max(I - 1, 1)
        oo, ii = torch.meshgrid(o, i, indexing="ij")
        lay = torch.full_like(oo, layer / max(len(self.shapes) - 1, 1))
        return torch.stack([lay, ii, oo, torch.full_like(oo, width)], -1).reshape(-1, 4)

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Fourier features (N, 4 * (1 + 2F)) of coordinates (N, 4)."""
        freqs = math.pi * 2.0 ** torch.arange(self.frequencies, device=coords.device, dtype=coords.dtype)
        angles = (coords[:, :, None] * freqs).flatten(1)
        return torch.cat([coords, angles.sin(), angles.cos()], 1)

    def hidden_states(self, model: nn.Module, width: float) -> list[torch.Tensor]:
        """Per sliced layer, the (o * i, hidden) last hidden layer at the model's active sizes for ``width``."""
        layers = dict(slim_weight_layers(model))
        coords = []
        for l, path in enumerate(self.paths):
            layer = layers[path]
            unit_cols = self.shapes[l][2] // math.prod(layer.weight.shape[2:])
            coords.append(self.coordinates(l, layer.active_out, layer.active_in // unit_cols, width))
        states = self.trunk(self.encode(torch.cat(coords)))
        return list(states.split([len(c) for c in coords]))

    def generate(self, model: nn.Module) -> None:
        """Set every sliced layer's ``generated`` weight for the model's current width (differentiable)."""
        width = spec_of(model).width
        layers = dict(slim_weight_layers(model))
        for l, (path, states) in enumerate(zip(self.paths, self.hidden_states(model, width))):
            layer = layers[path]
            base = layer.sliced_weight()
            T = self.shapes[l][2]
            y = F.linear(states, self.head.weight[:T], self.head.bias[:T]) * self.scales[l]
            y = y.reshape(base.shape).to(base.dtype)
            layer.generated = base.detach() + y if self.mode == "residual" else y


@torch.no_grad()
def materialize(model: nn.Module, generator: WeightINR, width: float) -> nn.Module:
    """A dense model of ``width`` with the generator's weights, written by the fused op
    :func:`weightcast.slim.ops.generate_write` (residual: added to the sliced pretrained weights the export
    holds; full: replacing them). BN statistics are those of the slimmable model at that width."""
    dense = export(model, width)
    current = spec_of(model).width
    set_width(model, width)
    states = generator.hidden_states(model, width)
    set_width(model, current)
    layers = dict(dense.named_modules())
    for l, (path, hidden) in enumerate(zip(generator.paths, states)):
        T = generator.shapes[l][2]
        weight = layers[path].weight
        out = weight.view(-1, T)
        generate_write(out, hidden.contiguous(), generator.head.weight[:T].contiguous(),
                       generator.head.bias[:T].contiguous(), float(generator.scales[l]),
                       generator.mode == "residual")
    return dense


def _reconstruction(model: nn.Module) -> torch.Tensor:
    """Mean over layers of the mean squared (generated - sliced pretrained) / scale of the layer."""
    terms = [((m.generated - m.sliced_weight().detach()) / m.weight.detach().std()).pow(2).mean()
             for _, m in slim_weight_layers(model)]
    return torch.stack(terms).mean()


def train_generator(model: nn.Module, generator: WeightINR, batches: Iterator, steps: int, lr: float = 1e-3,
                    num_random: int = 2, reconstruction: float | None = None, recalibration_batches: int = 20,
                    seed: int = 0) -> TrainLog:
    """Train ``generator`` for ``steps`` Adam steps with the model's own weights frozen: per batch, the
    widths of the sandwich rule (:func:`weightcast.slim.train.sandwich_widths`), each with the task loss
    (cross-entropy on the labels) plus ``reconstruction`` times the scaled squared distance of the generated
    weights from the sliced pretrained ones (NeuMeta's weight-space term, default 1 for the full form; default 0
    for the residual form, whose zero start already is the pretrained network), gradients accumulated over the
    widths. Then each width's BN statistics are recalibrated with its
    generated weights on ``recalibration_batches`` batches. FLOPs are counted per width on the first batch
    (generation, forward and backward). Leaves the model at width 1.0 in eval mode, with no generated weights."""
    spec = spec_of(model)
    if reconstruction is None:
        reconstruction = RECONSTRUCTION[generator.mode]
    rng = random.Random(seed)
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    opt = torch.optim.Adam(generator.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    log = TrainLog(passes={w: 0 for w in spec.widths})
    per_pass: dict[float, float] = {}
    model.train()
    try:
        for _ in range(steps):
            x, y = next(batches)
            opt.zero_grad(set_to_none=True)
            for width in sandwich_widths(spec.widths, num_random, rng):
                set_width(model, width)
                counter = FlopCounterMode(display=False) if width not in per_pass else contextlib.nullcontext()
                with counter:
                    generator.generate(model)
                    loss = F.cross_entropy(model(x), y)
                    if reconstruction:
                        loss = loss + reconstruction * _reconstruction(model)
                    loss.backward()
                if width not in per_pass:
                    per_pass[width] = float(counter.get_total_flops())
                log.passes[width] += 1
            opt.step()
            sched.step()
            log.steps += 1
        log.flops = sum(per_pass[w] * n for w, n in log.passes.items() if n)
        with torch.no_grad():
            for width in spec.widths:
                set_width(model, width)
                generator.generate(model)
                update_bn([next(batches) for _ in range(recalibration_batches)], model)
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    set_width(model, 1.0)
    model.eval()
    return log


@torch.no_grad()
def evaluate_generated(model: nn.Module, generator: WeightINR, task, width: float,
                       limit: int | None = None) -> dict:
    """``task.evaluate`` of the slimmable model at ``width`` with the generator's weights set."""
    set_width(model, width)
    generator.generate(model)
    try:
        return task.evaluate(model, limit)
    finally:
        set_width(model, 1.0)
