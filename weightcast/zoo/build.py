"""Building a zoo: train each run of a spec list, record its trajectory, save it, and resume after interruption."""
from __future__ import annotations

import json
import math
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from tqdm import tqdm

from .. import models
from ..data import Task, get_task
from ..errors import InputError, UnknownNameError
from .spec import RunSpec, is_held_out
from .store import (MANIFEST, ZooFileError, read_manifest, recover_manifest, remove_stale_temps, save_trajectory,
                    verify_run, write_manifest)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
OPTIMIZERS: dict[str, OptimizerFactory] = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}


@dataclass
class RunResult:
    """What one run produced: ``snapshots`` name -> (T, *shape) float32 on CPU, ``steps`` (T,) int64, the
    ``curves`` (lists keyed step/train_loss/val_loss/val_acc), ``steps_done`` and ``diverged``."""

    snapshots: dict[str, torch.Tensor]
    steps: torch.Tensor
    curves: dict[str, list]
    steps_done: int
    diverged: bool
    wall_s: float


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def train_run(spec: RunSpec, task: Task, optimizers: Mapping[str, OptimizerFactory] | None = None,
              on_step: Callable[[], object] | None = None) -> RunResult:
    """Train ``spec.arch`` on ``task`` for ``spec.steps`` steps and return its recorded trajectory.

    Snapshots are taken at step 0 (the initialisation) and after every ``record_every`` steps; curves at step 0,
    every ``eval_every`` steps and the last step (train_loss: mean training batch loss since the previous curve
    point, None at step 0; a non-finite metric is stored as None). A non-finite training loss stops the run
    (``diverged``); the snapshots up to then are kept. The global RNG is left untouched.
    """
    factories = {**OPTIMIZERS, **(optimizers or {})}
    if spec.optimizer not in factories:
        raise UnknownNameError(f"unknown optimizer {spec.optimizer!r}; pass a factory for it in optimizers= "
                       f"or choose one of {sorted(factories)}")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = models.get(spec.arch, **task.model_kwargs(), **spec.model_kwargs).to(task.device)
    optimizer = factories[spec.optimizer](model.parameters(), lr=spec.lr, **spec.optimizer_kwargs)
    params = dict(model.named_parameters())
    records: dict[str, list[torch.Tensor]] = {name: [] for name in params}
    steps: list[int] = []
    curves: dict[str, list] = {"step": [], "train_loss": [], "val_loss": [], "val_acc": []}

    def record(step: int) -> None:
        for name, p in params.items():
            records[name].append(p.detach().to("cpu", torch.float32, copy=True))
        steps.append(step)

    def evaluate(step: int, train_loss: float | None) -> None:
        metrics = task.evaluate(model, spec.eval_size)
        curves["step"].append(step)
        for key, value in (("train_loss", train_loss), ("val_loss", metrics["loss"]), ("val_acc", metrics["acc"])):
            curves[key].append(_finite_or_none(value))

    batches = task.batches(spec.batch_size, spec.seed)
    record(0)
    evaluate(0, None)
    running, count, done, diverged = 0.0, 0, 0, False
    for step in range(1, spec.steps + 1):
        x, y = next(batches)
        loss = task.loss(model(x), y)
        value = loss.item()
        if not math.isfinite(value):
            diverged = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done, running, count = step, running + value, count + 1
        if step % spec.record_every == 0:
            record(step)
        if step % spec.eval_every == 0 or step == spec.steps:
            evaluate(step, running / count)
            running, count = 0.0, 0
        if on_step is not None:
            on_step()
    snapshots = {name: torch.stack(snaps) for name, snaps in records.items()}
    return RunResult(snapshots, torch.tensor(steps, dtype=torch.int64), curves, done, diverged,
                     time.perf_counter() - start)


def run_entry(spec: RunSpec, task: Task, result: RunResult, file: str) -> dict:
    """The manifest entry of a finished run."""
    tensors = [{"name": name, "shape": list(t.shape[1:])} for name, t in result.snapshots.items()]
    return {
        "id": spec.run_id,
        "spec": asdict(spec),
        "file": file,
        "task_info": task.info(),
        "tensors": tensors,
        "num_params": sum(math.prod(t["shape"]) for t in tensors),
        "num_records": len(result.steps),
        "steps_done": result.steps_done,
        "diverged": result.diverged,
        "curves": result.curves,
        "final": {key: values[-1] for key, values in result.curves.items()},
        "wall_s": round(result.wall_s, 3),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }


def build_zoo(out: str | os.PathLike, specs: Sequence[RunSpec], data_dir: str | os.PathLike | None = None,
              device: str | torch.device = "cpu", max_runs: int | None = None, progress: bool = True,
              optimizers: Mapping[str, OptimizerFactory] | None = None, allow_held_out: bool = False) -> dict:
    """Train every spec whose run is not yet in ``out``'s manifest and return the updated manifest.

    Each finished run is saved (trajectory file, then manifest) before the next starts, so an interrupted build
    loses only the run in progress and a second call resumes where the first stopped; a run whose file is
    missing, truncated or disagrees with the manifest is rebuilt, and a damaged manifest is rebuilt from the run
    files. Every dataset is loaded before the first run trains (InputError if one cannot be read). ``max_runs``
    (>= 0) caps the runs trained by this call. Specs matching ``HELD_OUT`` are refused unless ``allow_held_out``.
    One process per zoo directory at a time.
    """
    ids = [spec.run_id for spec in specs]
    if len(set(ids)) != len(ids):
        raise ValueError("the spec list holds the same run twice; give each run a distinct seed or setting")
    held = [spec.run_id for spec in specs if is_held_out(spec)]
    if held and not allow_held_out:
        raise ValueError(f"{len(held)} runs match HELD_OUT (e.g. {held[0]}); zoos must not contain them. "
                         "Remove them, or pass allow_held_out=True to build a held-out zoo on purpose.")
    if max_runs is not None and max_runs < 0:
        raise ValueError(f"max_runs must be None or >= 0, got {max_runs}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ZooFileError(f"{out} is a file, not a zoo directory; pass another --out")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    manifest = _resume_manifest(out)
    write_manifest(out, manifest)  # the repaired manifest, even when nothing is left to train
    done = {entry["id"] for entry in manifest["runs"]}
    todo = [spec for spec in specs if spec.run_id not in done][:max_runs]
    tasks = _load_tasks(todo, data_dir, device)  # every dataset is read before the first run trains
    with tqdm(total=len(todo), desc="zoo runs", unit="run", disable=not progress) as run_bar:
        for spec in todo:
            task = tasks[_task_key(spec)]
            with tqdm(total=spec.steps, desc=spec.run_id, unit="step", leave=False,
                      disable=not progress) as step_bar:
                result = train_run(spec, task, optimizers, step_bar.update)
            entry = run_entry(spec, task, result, f"runs/{spec.run_id}.safetensors")
            save_trajectory(out / entry["file"], result.snapshots, result.steps, entry)
            manifest["runs"].append(entry)
            write_manifest(out, manifest)
            run_bar.update()
    return manifest


def _task_key(spec: RunSpec) -> tuple[str, str]:
    return spec.task, json.dumps(spec.task_kwargs, sort_keys=True)


def _load_tasks(specs: Sequence[RunSpec], data_dir, device) -> dict[tuple[str, str], Task]:
    """The task of every spec, loaded once each; a dataset that cannot be read raises InputError."""
    tasks: dict[tuple[str, str], Task] = {}
    for spec in specs:
        key = _task_key(spec)
        if key not in tasks:
            try:
                tasks[key] = get_task(spec.task, data_dir, device, **spec.task_kwargs)
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot load the data of task {spec.task!r} (data_dir={data_dir}): {exc}") \
                    from None
    return tasks


def _resume_manifest(out: Path) -> dict:
    """The manifest to resume from, keeping only runs whose files are intact (the others are rebuilt, with a
    warning); a damaged (or foreign) manifest is moved aside to ``manifest.json.damaged-<time>`` and rebuilt from
    the entries stored in the run files."""
    try:
        manifest = read_manifest(out)
    except ZooFileError as exc:  # moved aside, never deleted: nothing is lost
        aside = out / f"{MANIFEST}.damaged-{int(time.time())}"
        os.replace(out / MANIFEST, aside)
        manifest, unusable = recover_manifest(out)
        warnings.warn(f"{exc}\nmoved it to {aside.name}; recovered {len(manifest['runs'])} intact runs from their "
                      f"files, rebuilding the others{f' (unusable: {unusable})' if unusable else ''}", stacklevel=3)
    kept = []
    for entry in manifest["runs"]:
        problem = verify_run(out, entry)
        if problem is None:
            kept.append(entry)
        else:
            warnings.warn(f"run {entry['id']} ({out / entry['file']}): {problem}; rebuilding it", stacklevel=3)
    manifest["runs"] = kept
    return manifest
