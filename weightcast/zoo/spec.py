"""What a zoo holds: one :class:`RunSpec` per training run, the default and quick grids, and the held-out list.

HELD_OUT names the (task, architecture, model settings) combinations no zoo may contain, so that learned
forecasters and the time-to-accuracy study can be judged on trajectories they never saw:

* LeNet-5 at width 4 on MNIST (the zoo has widths 0.5 and 1): a wider CNN on a known task;
* ResNet-18 at any width on MNIST: an unseen architecture family (batch norm, residual blocks);
* a 4-layer GPT on the chars corpus (the zoo's GPTs have 2 layers): a different depth;
* a 3-layer MLP of width 48 on digits (zoos have MLPs of 1-2 layers, widths 32-128): a different depth and width;
* a 3-layer MLP of widths 96, 48, 24 on MNIST (MNIST zoos have MLPs (32,), (64, 32), (64, 64)): the same.

A spec matches a held-out entry when task and arch agree and every listed model setting agrees with the
spec's (model defaults filled in).
"""
from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict, dataclass, field
from typing import Iterable

from .. import models
from ..errors import UnknownNameError

HELD_OUT = (
    {"task": "mnist", "arch": "lenet5", "model_kwargs": {"width": 4}},
    {"task": "mnist", "arch": "resnet18", "model_kwargs": {}},
    {"task": "chars", "arch": "gpt", "model_kwargs": {"n_layer": 4}},
    {"task": "digits", "arch": "mlp", "model_kwargs": {"widths": [48, 48, 48]}},
    {"task": "mnist", "arch": "mlp", "model_kwargs": {"widths": [96, 48, 24]}},
)


@dataclass(frozen=True)
class RunSpec:
    """One training run: ``steps`` optimizer steps of ``arch`` on ``task`` with batches of ``batch_size``.

    The parameters are recorded before the first step and after every ``record_every`` steps; validation loss
    and accuracy (on ``eval_size`` examples, None: the task's default) after every ``eval_every`` steps and at
    the end. ``optimizer`` names a factory (``"sgd"``, ``"adamw"`` or one passed to ``build_zoo``) called as
    ``factory(params, lr=lr, **optimizer_kwargs)``. ``seed`` fixes the initialisation and the batch order.
    """

    task: str
    arch: str
    model_kwargs: dict = field(default_factory=dict)
    optimizer: str = "sgd"
    lr: float = 0.01
    optimizer_kwargs: dict = field(default_factory=dict)
    batch_size: int = 64
    steps: int = 300
    record_every: int = 5
    eval_every: int = 100
    eval_size: int | None = None
    seed: int = 0
    task_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if min(self.steps, self.record_every, self.eval_every, self.batch_size) < 1:
            raise ValueError(f"steps, record_every, eval_every and batch_size must be positive: {self}")
        if self.steps % self.record_every:
            raise ValueError(f"steps ({self.steps}) must be a multiple of record_every ({self.record_every}) "
                             "so that the last step is recorded")
        if self.arch not in models.MODELS:
            raise UnknownNameError(f"unknown arch {self.arch!r}; zoo runs use one of {models.names()}")

    @property
    def run_id(self) -> str:
        """``<task>-<arch>-<10 hex digits>``: stable across builds, a hash of every field."""
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return f"{self.task}-{self.arch}-{digest[:10]}"


def resolved_model_kwargs(arch: str, model_kwargs: dict) -> dict:
    """``model_kwargs`` with the model's own defaults filled in (arguments the task supplies are left out)."""
    params = inspect.signature(models.MODELS[arch]).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    return {**defaults, **model_kwargs}


def _same(a, b) -> bool:
    """Equal, with lists and tuples of the same items equal (model widths come as either)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def is_held_out(spec: RunSpec) -> bool:
    """True when ``spec`` matches an entry of :data:`HELD_OUT`."""
    for entry in HELD_OUT:
        if (spec.task, spec.arch) == (entry["task"], entry["arch"]):
            kwargs = resolved_model_kwargs(spec.arch, spec.model_kwargs)
            if all(_same(kwargs.get(k), v) for k, v in entry["model_kwargs"].items()):
                return True
    return False


def _grid(task: str, arch: str, widths: Iterable[dict], optimizers: Iterable[tuple[str, float, dict]],
          seeds: Iterable[int], **common) -> list[RunSpec]:
    return [RunSpec(task, arch, model_kwargs, name, lr, opt_kwargs, seed=seed, **common)
            for model_kwargs in widths for name, lr, opt_kwargs in optimizers for seed in seeds]


def _image_optimizers(sgd_lrs=(0.01, 0.05), adamw_lrs=(1e-3, 3e-3)) -> list[tuple[str, float, dict]]:
    return ([("sgd", lr, {"momentum": 0.9}) for lr in sgd_lrs]
            + [("adamw", lr, {"weight_decay": 0.01}) for lr in adamw_lrs])


def default_spec(mnist: bool = False) -> list[RunSpec]:
    """The default zoo: 124 runs with MNIST, 76 without (see weightcast/zoo/README.md for time and size).

    Every (task, arch) group crosses widths x optimizers (SGD with momentum 0.9 at two learning rates, AdamW
    with weight decay 0.01 at two) x seeds:

    * digits: MLP widths (32,), (64,), (64, 64), 3 seeds; LeNet-5 widths 0.5, 1, 2 seeds; 300 steps of 64,
      recorded every 5 steps (61 snapshots), validated on all 360 images.
    * mnist (only with ``mnist=True``): MLP widths (32,), (64, 64); LeNet-5 widths 0.5, 1; 3 seeds; 600 steps
      of 64, recorded every 10 (61 snapshots), validated on the first 1000 test images.
    * chars: 2-layer GPT, n_embd 32 and 48, 4 heads, block 64; 3 seeds; 600 steps of 16 windows, recorded
      every 10, validated on 64 windows (4096 characters).
    """
    image = _image_optimizers()
    specs = _grid("digits", "mlp", [{"widths": w} for w in ([32], [64], [64, 64])], image, (0, 1, 2),
                  steps=300, record_every=5, eval_every=50)
    specs += _grid("digits", "lenet5", [{"width": w} for w in (0.5, 1.0)], image, (0, 1),
                   steps=300, record_every=5, eval_every=50)
    if mnist:
        common = dict(steps=600, record_every=10, eval_every=100, eval_size=1000)
        specs += _grid("mnist", "mlp", [{"widths": w} for w in ([32], [64, 64])], image, (0, 1, 2), **common)
        specs += _grid("mnist", "lenet5", [{"width": w} for w in (0.5, 1.0)], image, (0, 1, 2), **common)
    gpt_optimizers = _image_optimizers(sgd_lrs=(0.05, 0.2), adamw_lrs=(1e-3, 3e-3))
    specs += _grid("chars", "gpt", [{"n_layer": 2, "n_head": 4, "n_embd": e} for e in (32, 48)], gpt_optimizers,
                   (0, 1, 2), batch_size=16, steps=600, record_every=10, eval_every=100, eval_size=64)
    return specs


def quick_spec() -> list[RunSpec]:
    """A tiny zoo for tests and CI (a few seconds): 4 digits MLP runs and 1 tiny GPT run."""
    specs = _grid("digits", "mlp", [{"widths": [16]}], _image_optimizers((0.05,), (3e-3,)), (0, 1),
                  steps=40, record_every=5, eval_every=20)
    specs += [RunSpec("chars", "gpt", {"n_layer": 1, "n_head": 2, "n_embd": 16}, "adamw", 3e-3, batch_size=8,
                      steps=20, record_every=5, eval_every=10, eval_size=8, task_kwargs={"block_size": 16})]
    return specs


def long_spec(mnist: bool = False) -> list[RunSpec]:
    """The long-trajectory zoo of the multi-horizon nowcaster: runs of thousands of steps, recorded every 10 steps,
    so that windows at any spacing that is a multiple of 10 (up to hundreds of steps) can be sampled.

    Optimizers: AdamW (weight decay 0.01) at learning rates 1e-3, 3e-3 and 1e-2, and SGD with momentum 0.9 at 0.05
    (users' base optimizer is mostly Adam, so AdamW is three quarters of the zoo). Tasks:

    * digits MLPs of widths (32,), (64,), (128,), (32, 32), (64, 64), 2 seeds, and LeNet-5 width 0.5, 1 seed;
      3000 steps of 32 (66 epochs), validated on all 360 images every 250 steps;
    * with ``mnist=True``: MNIST MLPs (32,) and (64, 32), 1 seed, 6000 steps of 64 (6.4 epochs), and LeNet-5
      width 0.5 (AdamW 1e-3 and 3e-3 only), 4000 steps of 64; validated on 1000 test images every 500 steps;
    * the chars GPT (2 layers, 2 heads, n_embd 32, block 32), AdamW 1e-3 and 3e-3, 4000 steps of 16 windows.

    The held-out digits MLP (48, 48, 48) and the other :data:`HELD_OUT` entries are not in it, nor is any
    architecture of the time-to-accuracy study's held-out tasks.
    """
    adamw = [("adamw", lr, {"weight_decay": 0.01}) for lr in (1e-3, 3e-3, 1e-2)]
    optimizers = adamw + [("sgd", 0.05, {"momentum": 0.9})]
    digits = dict(steps=3000, record_every=10, eval_every=250, batch_size=32)
    specs = _grid("digits", "mlp", [{"widths": w} for w in ([32], [64], [128], [32, 32], [64, 64])], optimizers,
                  (0, 1), **digits)
    specs += _grid("digits", "lenet5", [{"width": 0.5}], optimizers, (0,), **digits)
    if mnist:
        common = dict(record_every=10, eval_every=500, eval_size=1000)
        specs += _grid("mnist", "mlp", [{"widths": [32]}, {"widths": [64, 32]}], optimizers, (0,), steps=6000,
                       **common)
        specs += _grid("mnist", "lenet5", [{"width": 0.5}], adamw[:2], (0,), steps=4000, **common)
    specs += _grid("chars", "gpt", [{"n_layer": 2, "n_head": 2, "n_embd": 32}], adamw[:2], (0,), batch_size=16,
                   steps=4000, record_every=10, eval_every=500, eval_size=32, task_kwargs={"block_size": 32})
    return specs
