"""The dynamic-width study: accuracy at every width of one pretrained network made slimmable five ways.

Per model (LeNet-5 with BN, the small CIFAR-style ResNet-18) on MNIST:

* ``scratch``: a network of each width trained from scratch (the bar); the width-1.0 run is the pretrained
  network every other method starts from;
* ``naive``: the pretrained network sliced (channels in importance order) with BN recalibrated per width;
* ``full_gen``: a weight INR generating every width's weights (NeuMeta's form), trained on the task;
* ``residual_gen``: the same INR generating a zero-initialised change to the sliced pretrained weights;
* ``slim_ft``: slimmable fine-tuning of the pretrained weights (sandwich rule, in-place distillation).

Compute: optimizer steps, training FLOPs counted by ``torch.utils.flop_counter`` (forward and backward of every
pass, generation included; BN recalibration, 20 forward batches per width, is not counted except for
``naive``, where it is all there is) and wall seconds with the machine's load average.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..data import get_task
from ..models import get
from .convert import export, make_slimmable, recalibrate_bn, set_width
from .generator import WeightINR, evaluate_generated, train_generator
from .train import slimmable_finetune, train_fixed

METHODS = ("scratch", "naive", "full_gen", "residual_gen", "slim_ft")
LABELS = {"scratch": "from scratch per width (bar)", "naive": "naive slicing + BN recalibration",
          "full_gen": "full weight generation (INR)", "residual_gen": "residual weight generation (INR)",
          "slim_ft": "slimmable fine-tuning"}


@dataclass
class StudyConfig:
    """One model's study: sizes, budgets (optimizer steps) and learning rates."""

    model: str
    model_kwargs: dict = field(default_factory=dict)
    widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    batch_size: int = 64
    scratch_steps: int = 600
    scratch_lr: float = 0.05
    finetune_steps: int = 300
    finetune_lr: float = 0.01
    generator_steps: int = 200
    generator_lr: float = 1e-2
    eval_size: int = 10000
    seed: int = 0


CONFIGS = {
    "lenet5": StudyConfig("lenet5", {"batch_norm": True}),
    "resnet18": StudyConfig("resnet18", {"width": 0.125}, scratch_steps=300, finetune_steps=250,
                            generator_steps=100, eval_size=2000),
}


def quick(config: StudyConfig) -> StudyConfig:
    """A minutes-long version of a config (for smoke runs, not for results)."""
    return replace(config, scratch_steps=30, finetune_steps=10, generator_steps=10, eval_size=500)


def _reinitialise(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    return model


def _load() -> float:
    return os.getloadavg()[0]


def run_study(config: StudyConfig, data_dir: str | None = None, log=print) -> list[dict]:
    """Run the five methods of the module docstring for ``config``; returns result rows for
    :func:`weightcast.results.write_results` (accuracy in % per method and width; steps, GFLOPs, seconds and
    load average per method)."""
    task = get_task("mnist", data_dir=data_dir, eval_size=config.eval_size)
    torch.manual_seed(config.seed)
    template = make_slimmable(get(config.model, **config.model_kwargs, **task.model_kwargs()), config.widths)
    rows: list[dict] = []
    common = {"model": config.model, **config.model_kwargs, "task": "mnist", "eval_size": config.eval_size,
              "batch_size": config.batch_size, "seed": config.seed}

    def record(method: str, accs: dict[float, float], steps: int, flops: float, seconds: float, load: float,
               settings: dict) -> None:
        cfg = {**common, **settings}
        for w, acc in accs.items():
            rows.append({"benchmark": "slim", "name": method, "metric": "accuracy", "unit": "%", "x_name": "width",
                         "x_value": w, "seed": config.seed, "value": round(100 * acc, 2), "config": cfg})
        for metric, unit, value in (("steps", "optimizer steps", steps), ("train_flops", "GFLOP", flops / 1e9),
                                    ("seconds", "s", seconds), ("load_average", "1-min load", load)):
            rows.append({"benchmark": "slim", "name": method, "metric": metric, "unit": unit,
                         "seed": config.seed, "value": round(value, 3), "config": cfg})
        log(f"{config.model} {method}: " + ", ".join(f"{w}: {100 * a:.2f}%" for w, a in accs.items()) +
            f" | {steps} steps, {flops / 1e9:.1f} GFLOP, {seconds:.0f} s (load {load:.1f})")

    # from scratch per width; the width-1.0 network is the pretrained one
    accs, steps, flops, start, load0 = {}, 0, 0.0, time.perf_counter(), _load()
    pretrained = None
    for w in config.widths:
        torch.manual_seed(config.seed)
        net = _reinitialise(export(template, w))
        log_w = train_fixed(net, task.batches(config.batch_size, config.seed), config.scratch_steps,
                            lr=config.scratch_lr)
        steps, flops = steps + log_w.steps, flops + log_w.flops
        accs[w] = task.evaluate(net)["acc"]
        if w == 1.0:
            pretrained = net
    record("scratch", accs, steps, flops, time.perf_counter() - start, (load0 + _load()) / 2,
           {"steps_per_width": config.scratch_steps, "lr": config.scratch_lr})

    def slim_copy() -> nn.Module:
        model = make_slimmable(copy.deepcopy(pretrained), config.widths)
        torch.manual_seed(config.seed)
        return model

    # naive slicing + BN recalibration
    start, load0, model = time.perf_counter(), _load(), slim_copy()
    with FlopCounterMode(display=False) as counter:
        recalibrate_bn(model, task.batches(config.batch_size, config.seed + 1), 20)
    accs = {}
    for w in config.widths:
        set_width(model, w)
        accs[w] = task.evaluate(model)["acc"]
    record("naive", accs, 0, counter.get_total_flops(), time.perf_counter() - start, (load0 + _load()) / 2,
           {"recalibration_batches": 20})

    # weight generation, full and residual
    for method, mode in (("full_gen", "full"), ("residual_gen", "residual")):
        start, load0, model = time.perf_counter(), _load(), slim_copy()
        generator = WeightINR(model, mode)
        gen_log = train_generator(model, generator, task.batches(config.batch_size, config.seed + 1),
                                  config.generator_steps, lr=config.generator_lr, seed=config.seed)
        accs = {w: evaluate_generated(model, generator, task, w)["acc"] for w in config.widths}
        record(method, accs, gen_log.steps, gen_log.flops, time.perf_counter() - start, (load0 + _load()) / 2,
               {"steps": config.generator_steps, "lr": config.generator_lr, "mode": mode,
                "generator_params": sum(p.numel() for p in generator.parameters())})

    # slimmable fine-tuning
    start, load0, model = time.perf_counter(), _load(), slim_copy()
    ft_log = slimmable_finetune(model, task.batches(config.batch_size, config.seed + 1), config.finetune_steps,
                                lr=config.finetune_lr, seed=config.seed)
    accs = {}
    for w in config.widths:
        set_width(model, w)
        accs[w] = task.evaluate(model)["acc"]
    record("slim_ft", accs, ft_log.steps, ft_log.flops, time.perf_counter() - start, (load0 + _load()) / 2,
           {"steps": config.finetune_steps, "lr": config.finetune_lr, "sandwich": "max, min, 2 random",
            "distill": True})
    return rows


def _value(rows, method, metric, width=None):
    for r in rows:
        if r["name"] == method and r["metric"] == metric and (width is None or r.get("x_value") == width):
            return r["value"]
    raise KeyError((method, metric, width))


def report(rows: list[dict], widths: tuple[float, ...]) -> str:
    """Markdown: accuracy per method and width with each method's compute, then the issue's targets checked
    against the measured figures."""
    model = rows[0]["config"]["model"]
    head = "| method | " + " | ".join(f"width {w}" for w in widths) + " | steps | train GFLOP | seconds (load) |"
    lines = [f"### {model} on MNIST (accuracy %, evaluated on {rows[0]['config']['eval_size']} test images)", "",
             head, "|" + "---|" * (len(widths) + 4)]
    for m in METHODS:
        accs = " | ".join(f"{_value(rows, m, 'accuracy', w):.2f}" for w in widths)
        lines.append(f"| {LABELS[m]} | {accs} | {int(_value(rows, m, 'steps'))} | "
                     f"{_value(rows, m, 'train_flops'):.1f} | {_value(rows, m, 'seconds'):.0f} "
                     f"({_value(rows, m, 'load_average'):.1f}) |")
    gaps = {w: _value(rows, "slim_ft", "accuracy", w) - _value(rows, "scratch", "accuracy", w) for w in widths}
    full_gap = _value(rows, "slim_ft", "accuracy", 1.0) - _value(rows, "scratch", "accuracy", 1.0)
    ratio = _value(rows, "slim_ft", "train_flops") / _value(rows, "scratch", "train_flops")
    mid = 0.5 if 0.5 in widths else widths[len(widths) // 2]
    gen_gap = _value(rows, "residual_gen", "accuracy", mid) - _value(rows, "full_gen", "accuracy", mid)
    verdict = lambda ok: "met" if ok else "not met"  # noqa: E731
    lines += ["", "Targets (measured):", "",
              "- slimmable fine-tuning within 1 point of from-scratch at every width: "
              + ", ".join(f"{w}: {g:+.2f}" for w, g in gaps.items()) + f" -> {verdict(min(gaps.values()) >= -1)}",
              f"- full width within 0.3 points of the pretrained network: {full_gap:+.2f} -> "
              f"{verdict(abs(full_gap) <= 0.3)}",
              f"- compute below training the widths separately: {ratio:.2f}x the from-scratch FLOPs -> "
              f"{verdict(ratio < 1)}",
              f"- residual generation beats full generation by >= 5 points at width {mid}: {gen_gap:+.2f} -> "
              f"{verdict(gen_gap >= 5)}"]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], widths: tuple[float, ...], path: Path) -> bool:
    """Accuracy against width, one line per method; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in METHODS:
        ax.plot(widths, [_value(rows, m, "accuracy", w) for w in widths], marker="o", label=LABELS[m])
    ax.set_xlabel("width multiplier")
    ax.set_ylabel("MNIST test accuracy (%)")
    ax.set_title(f"{rows[0]['config']['model']}: one pretrained network at four widths")
    ax.set_xticks(list(widths))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
