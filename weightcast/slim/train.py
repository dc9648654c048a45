"""Training at several widths: slimmable fine-tuning (sandwich rule, in-place distillation), plain training of
one width, and the FLOP count of a training step.

Sandwich rule and in-place distillation: Yu & Huang, "Universally Slimmable Networks and Improved Training
Techniques", ICCV 2019. Each step runs the widest network on the labels, the narrowest and ``num_random`` other
widths on the widest network's detached soft predictions, accumulates all the gradients and takes one step.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .convert import recalibrate_bn, set_width, spec_of


@dataclass
class TrainLog:
    """What a training run did: optimizer steps, forward/backward passes per width, and the measured FLOPs."""

    steps: int = 0
    passes: dict[float, int] = field(default_factory=dict)
    flops: float = 0.0


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c p_c log softmax(logits)_c`` (in-place distillation's loss)."""
    return -(soft_targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def train_step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of one forward and backward pass of ``model`` on the batch ``(x, y)`` with cross-entropy, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions; 2 FLOPs per multiply-add).
    Gradients are left as they were."""
    saved = [p.grad for p in model.parameters()]
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    for p, g in zip(model.parameters(), saved):
        p.grad = g
    return float(counter.get_total_flops())


def _cosine(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))


def train_fixed(model: nn.Module, batches: Iterator, steps: int, lr: float = 0.05, momentum: float = 0.9,
                weight_decay: float = 5e-4, loss_fn: Callable = F.cross_entropy) -> TrainLog:
    """Plain SGD (momentum, cosine learning rate) of ``model`` at its current size for ``steps`` batches of
    ``batches`` (an iterator of ``(x, y)``). The from-scratch bar and the pretraining of the study."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = _cosine(opt, steps)
    log = TrainLog()
    model.train()
    for step in range(steps):
        x, y = next(batches)
        if step == 0:
            log.flops = train_step_flops(model, x, y) * steps
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        sched.step()
        log.steps += 1
    log.passes[1.0] = steps
    return log


def sandwich_widths(widths: tuple[float, ...], num_random: int, rng: random.Random) -> list[float]:
    """The widths of one sandwich step, widest first: max, min and ``num_random`` distinct others drawn from
    the widths between them (all of them when there are fewer)."""
    inner = list(widths[1:-1])
    picked = sorted(rng.sample(inner, min(num_random, len(inner))), reverse=True)
    return [widths[-1], *picked, widths[0]] if len(widths) > 1 else [widths[-1]]


def slimmable_finetune(model: nn.Module, batches: Iterator, steps: int, lr: float = 0.01, momentum: float = 0.9,
                       weight_decay: float = 5e-4, num_random: int = 2, distill: bool = True,
                       recalibration_batches: int = 20, seed: int = 0) -> TrainLog:
    """Fine-tune a slimmable ``model`` (from :func:`make_slimmable`) for ``steps`` SGD steps with the sandwich
    rule: per batch, the widest width on the labels, then the others of :func:`sandwich_widths` on the widest
    network's detached softmax (``distill=True``; on the labels otherwise), gradients accumulated over the
    widths, one optimizer step (momentum, cosine learning rate). BN statistics of every width are recalibrated
    on ``recalibration_batches`` further batches at the end. Leaves the model at width 1.0, in eval mode.
    FLOPs are counted once per width on the first batch and multiplied by the passes made at that width."""
    spec = spec_of(model)
    rng = random.Random(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = _cosine(opt, steps)
    log = TrainLog(passes={w: 0 for w in spec.widths})
    per_pass: dict[float, float] = {}
    model.train()
    for _ in range(steps):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        teacher = None
        for width in sandwich_widths(spec.widths, num_random, rng):
            set_width(model, width)
            if width not in per_pass:
                per_pass[width] = train_step_flops(model, x, y)
            out = model(x)
            if teacher is None or not distill:
                loss = F.cross_entropy(out, y)
                teacher = out.detach().softmax(-1)
            else:
                loss = soft_cross_entropy(out, teacher)
            loss.backward()
            log.passes[width] += 1
        opt.step()
        sched.step()
        log.steps += 1
    log.flops = sum(per_pass[w] * n for w, n in log.passes.items() if n)
    recalibrate_bn(model, batches, recalibration_batches)
    set_width(model, 1.0)
    model.eval()
    return log
