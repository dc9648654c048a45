"""The pretrained-model zoos the mask hypernetwork is trained and judged on, built with :mod:`weightcast.zoo`.

* :func:`train_specs`: 32 runs -- bias-free MLPs on MNIST at widths (32, 16), (64, 32), (96, 48), 6 seeds
  each; LeNet-5 on MNIST at width 0.5 (4 seeds) and 1 (2 seeds); on digits a bias-free MLP (32, 16) and LeNet-5,
  4 seeds each.
* :func:`held_out_specs`: 5 runs the hypernetwork never sees -- the benchmark MLP 784-40-20-10 (a width not in
  the training zoo; seeds 100, 101), a trained width with a new seed, LeNet-5 on MNIST with a new seed (the
  LeNet-5 benchmark network) and LeNet-5 on digits with a new seed.
* :func:`replication_specs`: 5 more runs no decision about the hypernetwork has seen, trained after its held-out
  results were known, to test those results once more (benchmarks/prune_replication.py): new seeds of the
  benchmark MLP and LeNet-5 on MNIST (SGD and AdamW), a width neither trained nor held out, LeNet-5 on digits.
* :func:`confirmation_specs`: 6 more runs, trained after the shipped gate was chosen and its held-out and
  replication results were known, to test that gate once on models no decision about it has seen
  (benchmarks/prune_replication.py ``--set confirmation``): new seeds of the benchmark MLP (AdamW and SGD), a width
  no other zoo has, LeNet-5 on MNIST (AdamW), LeNet-5 and the MLP on digits.

Each run records its initial and final weights only (``record_every = steps``); :func:`load_models` rebuilds the
trained models from a zoo directory.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .. import models
from ..errors import MissingInputError
from ..zoo import RunSpec, build_zoo, load_trajectory, read_manifest
from .models import registered

SGD = ("sgd", 0.05, {"momentum": 0.9})
ADAMW = ("adamw", 1e-3, {"weight_decay": 0.0})
MNIST = dict(steps=1800, record_every=1800, eval_every=1800, eval_size=10_000)
DIGITS = dict(steps=600, record_every=600, eval_every=600)
BENCH_MLP = {"widths": [40, 20]}


def _run(task: str, arch: str, model_kwargs: dict, opt: tuple, seed: int, common: dict) -> RunSpec:
    name, lr, kwargs = opt
    return RunSpec(task, arch, model_kwargs, name, lr, kwargs, seed=seed, **common)


def train_specs() -> list[RunSpec]:
    """The training zoo (see the module docstring); optimizers alternate SGD (momentum 0.9) / AdamW by seed."""
    with registered():
        return _train_specs()


def _train_specs() -> list[RunSpec]:
    opts = (SGD, ADAMW)
    specs = [_run("mnist", "mlp_nobias", {"widths": w}, opts[s % 2], s, MNIST)
             for w in ([32, 16], [64, 32], [96, 48]) for s in range(3)]
    specs += [_run("mnist", "lenet5", {"width": w}, opts[s % 2], s, MNIST) for w in (0.5, 1.0) for s in range(2)]
    specs += [_run("digits", "mlp_nobias", {"widths": [32, 16]}, opts[s % 2], s, DIGITS) for s in range(2)]
    specs += [_run("digits", "lenet5", {"width": 1.0}, opts[s % 2], s, DIGITS) for s in range(2)]
    # more seeds (appended, so that validation_ids' positions stay): MNIST MLPs, the small LeNet-5, digits
    specs += [_run("mnist", "mlp_nobias", {"widths": w}, opts[s % 2], s, MNIST)
              for w in ([32, 16], [64, 32], [96, 48]) for s in range(3, 6)]
    specs += [_run("mnist", "lenet5", {"width": 0.5}, opts[s % 2], s, MNIST) for s in range(2, 4)]
    specs += [_run("digits", arch, kwargs, opts[s % 2], s, DIGITS) for arch, kwargs in
              (("mlp_nobias", {"widths": [32, 16]}), ("lenet5", {"width": 1.0})) for s in range(2, 4)]
    return specs


def validation_ids() -> list[str]:
    """Runs of the training zoo kept out of the hypernetwork's gradient steps to choose its checkpoint: one
    seed of each MNIST MLP width (one AdamW, two SGD), two MNIST LeNet-5 (SGD, AdamW) and one digits MLP
    (AdamW), so that both optimizers' weight statistics are judged."""
    specs = train_specs()
    return [specs[i].run_id for i in (1, 5, 8, 11, 12, 14)]


HELD_OUT_NAMES = ("mlp", "mlp-seed101", "mlp-64-32", "lenet5", "lenet5-digits")


def held_out_specs() -> list[RunSpec]:
    """The held-out zoo, named by :data:`HELD_OUT_NAMES` in this order; its first run is the benchmark MLP
    784-40-20-10, its fourth the benchmark LeNet-5."""
    with registered():
        return [_run("mnist", "mlp_nobias", BENCH_MLP, SGD, 100, MNIST),
                _run("mnist", "mlp_nobias", BENCH_MLP, ADAMW, 101, MNIST),
                _run("mnist", "mlp_nobias", {"widths": [64, 32]}, SGD, 102, MNIST),
                _run("mnist", "lenet5", {"width": 1.0}, SGD, 103, MNIST),
                _run("digits", "lenet5", {"width": 1.0}, ADAMW, 104, DIGITS)]


REPLICATION_NAMES = ("mlp-seed200", "mlp-48-24", "lenet5-seed202", "lenet5-seed203", "lenet5-digits-seed204")


def replication_specs() -> list[RunSpec]:
    """The replication zoo, named by :data:`REPLICATION_NAMES` in this order: seeds 200 to 204, none in
    :func:`train_specs` or :func:`held_out_specs`."""
    with registered():
        return [_run("mnist", "mlp_nobias", BENCH_MLP, SGD, 200, MNIST),
                _run("mnist", "mlp_nobias", {"widths": [48, 24]}, ADAMW, 201, MNIST),
                _run("mnist", "lenet5", {"width": 1.0}, SGD, 202, MNIST),
                _run("mnist", "lenet5", {"width": 1.0}, ADAMW, 203, MNIST),
                _run("digits", "lenet5", {"width": 1.0}, SGD, 204, DIGITS)]


CONFIRMATION_NAMES = ("mlp-seed300", "mlp-seed301", "mlp-80-40", "lenet5-seed303", "lenet5-digits-seed304",
                      "mlp-digits-seed305")


def confirmation_specs() -> list[RunSpec]:
    """The confirmation zoo, named by :data:`CONFIRMATION_NAMES` in this order: seeds 300 to 305, none in the
    other zoos; the MLP 784-80-40-10 is a width no other zoo has."""
    with registered():
        return [_run("mnist", "mlp_nobias", BENCH_MLP, ADAMW, 300, MNIST),
                _run("mnist", "mlp_nobias", BENCH_MLP, SGD, 301, MNIST),
                _run("mnist", "mlp_nobias", {"widths": [80, 40]}, SGD, 302, MNIST),
                _run("mnist", "lenet5", {"width": 1.0}, ADAMW, 303, MNIST),
                _run("digits", "lenet5", {"width": 1.0}, ADAMW, 304, DIGITS),
                _run("digits", "mlp_nobias", {"widths": [32, 16]}, SGD, 305, DIGITS)]


# each zoo's folder under a zoo root (as `weightcast prune zoo` builds them) and the function giving its runs
ZOOS = {"heldout": held_out_specs, "replication": replication_specs, "confirmation": confirmation_specs,
        "train": train_specs}


def build(out: str | os.PathLike, specs: list[RunSpec], data_dir: str | os.PathLike | None = None,
          progress: bool = True) -> dict:
    """Train the runs of ``specs`` missing from the zoo ``out`` (resumable); returns the manifest."""
    with registered():
        return build_zoo(out, specs, data_dir=data_dir, progress=progress)


def load_models(zoo_dir: str | os.PathLike, specs: list[RunSpec] | None = None) -> list[tuple[dict, nn.Module]]:
    """(manifest entry, trained model in eval mode) for every run of ``zoo_dir`` (only ``specs``' runs when
    given, in their order). Raises MissingInputError (a FileNotFoundError) naming the build command when a run
    is missing."""
    entries = {e["id"]: e for e in read_manifest(zoo_dir)["runs"]}
    ids = [s.run_id for s in specs] if specs is not None else list(entries)
    missing = [i for i in ids if i not in entries]
    if missing:
        root = Path(zoo_dir).parent if Path(zoo_dir).name in ZOOS else Path(zoo_dir)
        raise MissingInputError(f"zoo {zoo_dir} lacks {len(missing)} of its runs ({', '.join(missing[:3])}"
                                f"{', ...' if len(missing) > 3 else ''}); build them with `weightcast prune zoo "
                                f"--zoo {root} --data-dir DATA`")
    out = []
    for run_id in ids:
        entry = entries[run_id]
        snapshots, _ = load_trajectory(zoo_dir, entry)
        model = make_model(entry["spec"], entry["task_info"])
        model.load_state_dict({name: t[-1] for name, t in snapshots.items()})
        out.append((entry, model.eval()))
    return out


def make_model(spec: dict, task_info: dict) -> nn.Module:
    """A fresh (untrained) model of a zoo run: ``spec`` its RunSpec as a dict (a manifest entry's "spec"),
    ``task_info`` its task's info (the entry's "task_info": input shape, number of classes)."""
    with registered():
        return models.get(spec["arch"], in_shape=tuple(task_info["input_shape"]),
                          num_classes=task_info["num_classes"], **spec["model_kwargs"])


def default_dir() -> Path:
    """Where the zoos live unless told otherwise: ``$WEIGHTCAST_PRUNE_ZOO`` or ``~/.cache/weightcast/prune-zoo``."""
    return Path(os.environ.get("WEIGHTCAST_PRUNE_ZOO", Path.home() / ".cache" / "weightcast" / "prune-zoo"))
