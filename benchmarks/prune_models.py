"""The held-out models the prune benchmarks prune, committed as trained weights so that every machine prunes the
same ones.

    python benchmarks/prune_models.py --data-dir ../shared/data --zoo .cache/prune-zoo     (exports them again)

``weightcast prune zoo`` trains the held-out runs (:func:`weightcast.prune.zoo.held_out_specs`, named by
``zoo.HELD_OUT_NAMES``), but the weights a run ends with depend on the CPU that trains it (on an Intel Xeon and
an AMD EPYC the same command, torch build and thread count made other models; weightcast/prune/README.md), so
tables made from a local build could not be regenerated on another machine. ``benchmarks/models/prune/
<network>.safetensors`` holds each held-out run's trained weights (:mod:`weightcast.weights_io` format, kind
:data:`KIND`; config: the run id, its RunSpec and its task's info) and ``<network>.json`` its card: the dense
validation accuracy at export, where they were exported (CPU, torch, commit: where they were trained, unless the
zoo's runs were built elsewhere) and the training's torch version and threads. :func:`load_all` reads them and
refuses a file whose run is not the one ``held_out_specs()`` now defines. The export trains the runs first when
the zoo lacks them.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch
from torch import nn

from weightcast.data import get_task
from weightcast.errors import InputError
from weightcast.prune import zoo
from weightcast.results import provenance
from weightcast.weights_io import WeightFileError, load_weights, read_card, save_weights
from weightcast.zoo import RunSpec

MODELS = Path(__file__).resolve().parent / "models" / "prune"
KIND = "prune-held-out-model"
EXPORT = "python benchmarks/prune_models.py --data-dir DATA --zoo ZOO"
TRAIN_THREADS = 1   # torch threads of the training runs (`weightcast prune zoo`'s default): they change the weights


def save_model(path: Path, name: str, entry: dict, model: nn.Module, dense: float, command: str = EXPORT,
               exported: dict | None = None) -> Path:
    """Write ``model``'s weights and its card to ``path``: ``name`` its network (one of zoo.HELD_OUT_NAMES),
    ``entry`` its run's zoo manifest entry, ``dense`` its validation accuracy (a fraction), ``command`` what made
    the file, ``exported`` where (:func:`weightcast.results.provenance`; default: taken now)."""
    config = {"run": entry["id"], "spec": entry["spec"], "task_info": entry["task_info"]}
    card = {"network": name, "run": entry["id"], "dense_acc": dense, "command": command,
            "exported": exported or provenance("cpu"),
            "trained_with": {**entry.get("versions", {}), "threads": TRAIN_THREADS}}
    return save_weights(path, model.state_dict(), kind=KIND, config=config, card=card)


def load_model(path: Path, spec: RunSpec) -> tuple[dict, nn.Module]:
    """(entry, model in eval mode) of the run ``spec`` from a file :func:`save_model` wrote; ``entry`` holds the
    run's "id", "spec" (a dict) and "task_info" and the card's "dense_acc". Raises WeightFileError (a missing or
    broken file or card) and InputError when the file holds another run; each says how to export it again."""
    spec_dict = dataclasses.asdict(spec)
    model = None

    def shapes(config):
        nonlocal model
        model = zoo.make_model(spec_dict, config["task_info"])
        return {k: v.shape for k, v in model.state_dict().items()}

    config, tensors = load_weights(path, KIND, shapes, remake=EXPORT)
    if config["run"] != spec.run_id:
        raise InputError(f"{path} holds run {config['run']}, but weightcast.prune.zoo.held_out_specs() now defines "
                         f"{spec.run_id} there; export the held-out models again with `{EXPORT}`")
    model.load_state_dict(tensors)
    dense = read_card(path).get("dense_acc")
    if not isinstance(dense, float):
        raise WeightFileError(f"the card of {path} has no dense_acc; export the held-out models again with "
                              f"`{EXPORT}`")
    return {"id": spec.run_id, "spec": spec_dict, "task_info": config["task_info"], "dense_acc": dense}, model.eval()


def load_all(names=zoo.HELD_OUT_NAMES, models_dir: Path = MODELS) -> dict[str, tuple[dict, nn.Module]]:
    """network name -> (entry, model) of the committed held-out models ``names`` (some of zoo.HELD_OUT_NAMES)."""
    specs = dict(zip(zoo.HELD_OUT_NAMES, zoo.held_out_specs()))
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise InputError(f"no held-out model named {unknown}; choose among {list(zoo.HELD_OUT_NAMES)}")
    return {name: load_model(models_dir / f"{name}.safetensors", specs[name]) for name in names}


def export(zoo_dir: Path, data_dir, out: Path = MODELS, command: str = EXPORT) -> list[Path]:
    """Train the held-out runs missing from ``zoo_dir``/heldout (TRAIN_THREADS torch threads, as ``weightcast
    prune zoo``; runs already there are taken as they are, wherever they were built), then write each run's
    trained weights and card to ``out``/<network>.safetensors; returns the paths. Every card records the export's
    provenance as taken before the first file is written: the files it writes into a checkout would otherwise mark
    the later cards' commit "-dirty"."""
    exported = provenance("cpu")
    specs = zoo.held_out_specs()
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        zoo.build(zoo_dir / "heldout", specs, data_dir, progress=False)
    finally:
        torch.set_num_threads(threads)
    tasks, paths = {}, []
    for name, (entry, model) in zip(zoo.HELD_OUT_NAMES, zoo.load_models(zoo_dir / "heldout", specs)):
        task_name = entry["spec"]["task"]
        tasks.setdefault(task_name, get_task(task_name, data_dir))
        dense = tasks[task_name].evaluate(model)["acc"]
        paths.append(save_model(out / f"{name}.safetensors", name, entry, model, dense, command, exported))
        print(f"{name}: {entry['id']} dense {dense:.4f} -> {paths[-1]}")
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder whose heldout/ holds (or gets) the runs "
                        "(default weightcast.prune.zoo.default_dir())")
    parser.add_argument("--out", type=Path, default=MODELS)
    args = parser.parse_args()
    export(args.zoo or zoo.default_dir(), args.data_dir, args.out, " ".join(["python", *sys.argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
