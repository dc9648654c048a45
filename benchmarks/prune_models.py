"""The held-out models the prune benchmarks prune, committed as trained weights so that every machine prunes the
same ones.

    python benchmarks/prune_models.py --data-dir ../shared/data --zoo .cache/prune-zoo     (exports them again)

``weightcast prune zoo`` trains the held-out runs (:func:`weightcast.prune.zoo.held_out_specs`, named by
``zoo.HELD_OUT_NAMES``), but the weights a run ends with depend on the CPU that trains it (on an Intel Xeon and
an AMD EPYC the same command, torch build and thread count made other models; weightcast/prune/README.md), so
tables made from a local build could not be regenerated on another machine. ``benchmarks/models/prune/
<network>.safetensors`` holds each held-out run's trained weights (:mod:`weightcast.weights_io` format, kind
:data:`KIND`; config: the run id, its RunSpec and its task's info) and ``<network>.json`` its card: the dense
validation accuracy at export and where the weights were made (CPU, torch, commit). :func:`load_all` reads them
and refuses a file whose run is not the one ``held_out_specs()`` now defines. The export trains the runs first
when the zoo lacks them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from weightcast.data import get_task
from weightcast.errors import InputError
from weightcast.prune import zoo
from weightcast.results import provenance
from weightcast.weights_io import card_path, load_weights, save_weights

MODELS = Path(__file__).resolve().parent / "models" / "prune"
KIND = "prune-held-out-model"
EXPORT = "python benchmarks/prune_models.py --data-dir DATA --zoo ZOO"


def save_model(path: Path, name: str, entry: dict, model: nn.Module, dense: float) -> Path:
    """Write ``model``'s weights (a held-out run: ``entry`` its zoo manifest entry) and its card (``dense``: its
    validation accuracy, a fraction) to ``path``."""
    config = {"run": entry["id"], "spec": entry["spec"], "task_info": entry["task_info"]}
    card = {"network": name, "run": entry["id"], "dense_acc": dense, "command": EXPORT,
            "exported": provenance("cpu"), "trained_with": entry.get("versions")}
    return save_weights(path, model.state_dict(), kind=KIND, config=config, card=card)


def load_model(path: Path, run_id: str) -> tuple[dict, nn.Module]:
    """(entry, model in eval mode) from a file :func:`save_model` wrote; ``entry`` has the manifest entry's "id",
    "spec" and "task_info" and the card's "dense_acc". Raises WeightFileError (missing or broken file) and
    InputError when the file holds another run than ``run_id``; both say how to export it again."""
    def shapes(config):
        return {k: v.shape for k, v in zoo.make_model(config["spec"], config["task_info"]).state_dict().items()}

    config, tensors = load_weights(path, KIND, shapes, remake=EXPORT)
    if config["run"] != run_id:
        raise InputError(f"{path} holds run {config['run']}, but weightcast.prune.zoo.held_out_specs() now defines "
                         f"{run_id} there; export the held-out models again with `{EXPORT}`")
    model = zoo.make_model(config["spec"], config["task_info"])
    model.load_state_dict(tensors)
    card = card_path(path)
    dense = json.loads(card.read_text())["dense_acc"] if card.exists() else None
    return {"id": config["run"], "spec": config["spec"], "task_info": config["task_info"],
            "dense_acc": dense}, model.eval()


def load_all(models_dir: Path = MODELS, names=zoo.HELD_OUT_NAMES) -> dict[str, tuple[dict, nn.Module]]:
    """network name -> (entry, model) of the committed held-out models (``names``: some of zoo.HELD_OUT_NAMES)."""
    ids = dict(zip(zoo.HELD_OUT_NAMES, (s.run_id for s in zoo.held_out_specs())))
    return {name: load_model(models_dir / f"{name}.safetensors", ids[name]) for name in names}


def export(zoo_dir: Path, data_dir, out: Path = MODELS) -> list[Path]:
    """Train the held-out runs missing from ``zoo_dir``/heldout, then write each run's trained weights and card
    to ``out``/<network>.safetensors; returns the paths."""
    specs = zoo.held_out_specs()
    zoo.build(zoo_dir / "heldout", specs, data_dir, progress=False)
    tasks, paths = {}, []
    for name, (entry, model) in zip(zoo.HELD_OUT_NAMES, zoo.load_models(zoo_dir / "heldout", specs)):
        task_name = entry["spec"]["task"]
        tasks.setdefault(task_name, get_task(task_name, data_dir))
        dense = tasks[task_name].evaluate(model)["acc"]
        paths.append(save_model(out / f"{name}.safetensors", name, entry, model, dense))
        print(f"{name}: {entry['id']} dense {dense:.4f} -> {paths[-1]}")
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder whose heldout/ holds (or gets) the runs "
                        "(default weightcast.prune.zoo.default_dir())")
    parser.add_argument("--out", type=Path, default=MODELS)
    args = parser.parse_args()
    torch.set_num_threads(1)   # as `weightcast prune zoo` trains them
    export(args.zoo or zoo.default_dir(), args.data_dir, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
