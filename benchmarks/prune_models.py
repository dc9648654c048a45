"""The models the prune benchmarks prune (the held-out, the replication and the confirmation ones), committed as
trained weights so that every machine prunes the same ones.

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

``--set replication`` does the same for the replication runs (:func:`weightcast.prune.zoo.replication_specs`, the
models of benchmarks/prune_replication.py), into ``benchmarks/models/prune/replication/``; ``--set confirmation``
for the confirmation runs (:func:`weightcast.prune.zoo.confirmation_specs`, the models of
``prune_replication.py --set confirmation``), into ``benchmarks/models/prune/confirmation/``.
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
KIND = "prune-held-out-model"   # the weight files' kind, of every set (all of them are held out)
EXPORT = "python benchmarks/prune_models.py --data-dir DATA --zoo ZOO"
TRAIN_THREADS = 1   # torch threads of the training runs (`weightcast prune zoo`'s default): they change the weights


@dataclasses.dataclass(frozen=True)
class ModelSet:
    """A set of committed models: its zoo's folder under a zoo root (a key of zoo.ZOOS, also its ``--set``
    name), what its errors call it, its networks' names (in the order of its runs) and the folder of its files."""
    folder: str
    label: str
    names: tuple[str, ...]
    models: Path

    def specs(self) -> list[RunSpec]:
        """The RunSpecs of the set's runs (zoo.ZOOS), in the order of :attr:`names`."""
        return zoo.ZOOS[self.folder]()

    @property
    def export_command(self) -> str:
        return EXPORT if self is HELD_OUT else f"{EXPORT} --set {self.folder}"


HELD_OUT = ModelSet("heldout", "held-out", zoo.HELD_OUT_NAMES, MODELS)
REPLICATION = ModelSet("replication", "replication", zoo.REPLICATION_NAMES, MODELS / "replication")
CONFIRMATION = ModelSet("confirmation", "confirmation", zoo.CONFIRMATION_NAMES, MODELS / "confirmation")
SETS = {model_set.folder: model_set for model_set in (HELD_OUT, REPLICATION, CONFIRMATION)}


def save_model(path: Path, name: str, entry: dict, model: nn.Module, dense: float, command: str = EXPORT,
               exported: dict | None = None) -> Path:
    """Write ``model``'s weights and its card to ``path``: ``name`` its network (one of a ModelSet's names),
    ``entry`` its run's zoo manifest entry, ``dense`` its validation accuracy (a fraction), ``command`` what made
    the file, ``exported`` where (:func:`weightcast.results.provenance`; default: taken now)."""
    config = {"run": entry["id"], "spec": entry["spec"], "task_info": entry["task_info"]}
    card = {"network": name, "run": entry["id"], "dense_acc": dense, "command": command,
            "exported": exported or provenance("cpu"),
            "trained_with": {**entry.get("versions", {}), "threads": TRAIN_THREADS}}
    return save_weights(path, model.state_dict(), kind=KIND, config=config, card=card)


def load_model(path: Path, spec: RunSpec, remake: str = EXPORT) -> tuple[dict, nn.Module]:
    """(entry, model in eval mode) of the run ``spec`` from a file :func:`save_model` wrote; ``entry`` holds the
    run's "id", "spec" (a dict) and "task_info" and the card's "dense_acc". Raises WeightFileError (a missing or
    broken file or card) and InputError when the file holds another run; each says to export it again with
    ``remake``."""
    spec_dict = dataclasses.asdict(spec)
    model = None

    def shapes(config):
        nonlocal model
        model = zoo.make_model(spec_dict, config["task_info"])
        return {k: v.shape for k, v in model.state_dict().items()}

    config, tensors = load_weights(path, KIND, shapes, remake=remake)
    if config["run"] != spec.run_id:
        raise InputError(f"{path} holds run {config['run']}, but weightcast.prune.zoo now defines {spec.run_id} "
                         f"there; export the models again with `{remake}`")
    model.load_state_dict(tensors)
    dense = read_card(path).get("dense_acc")
    if not isinstance(dense, float):
        raise WeightFileError(f"the card of {path} has no dense_acc; export the models again with `{remake}`")
    return {"id": spec.run_id, "spec": spec_dict, "task_info": config["task_info"], "dense_acc": dense}, model.eval()


def load_all(names: tuple[str, ...] | list[str] | None = None, models_dir: Path | None = None,
             model_set: ModelSet = HELD_OUT) -> dict[str, tuple[dict, nn.Module]]:
    """network name -> (entry, model) of the committed models ``names`` of ``model_set`` (default: all of them),
    read from ``models_dir`` (default: the set's folder)."""
    specs = dict(zip(model_set.names, model_set.specs()))
    names = model_set.names if names is None else names
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise InputError(f"no {model_set.label} model named {unknown}; choose among {list(model_set.names)}")
    models_dir = model_set.models if models_dir is None else models_dir
    return {name: load_model(models_dir / f"{name}.safetensors", specs[name], model_set.export_command)
            for name in names}


def export(zoo_dir: Path, data_dir, out: Path | None = None, command: str | None = None,
           model_set: ModelSet = HELD_OUT) -> list[Path]:
    """Train the runs of ``model_set`` missing from its zoo folder under ``zoo_dir`` (TRAIN_THREADS torch threads,
    as ``weightcast prune zoo``; runs already there are taken as they are, wherever they were built), then write
    each run's trained weights and card to ``out`` (default: the set's folder)/<network>.safetensors; returns the
    paths. The cards say ``command`` made them (default: the set's export command). Every card records the
    export's provenance as taken before the first file is written: the files it writes into a checkout would
    otherwise mark the later cards' commit "-dirty"."""
    exported = provenance("cpu")
    out = model_set.models if out is None else out
    command = model_set.export_command if command is None else command
    specs = model_set.specs()
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        zoo.build(zoo_dir / model_set.folder, specs, data_dir, progress=False)
    finally:
        torch.set_num_threads(threads)
    tasks, paths = {}, []
    for name, (entry, model) in zip(model_set.names, zoo.load_models(zoo_dir / model_set.folder, specs)):
        task_name = entry["spec"]["task"]
        tasks.setdefault(task_name, get_task(task_name, data_dir))
        dense = tasks[task_name].evaluate(model)["acc"]
        paths.append(save_model(out / f"{name}.safetensors", name, entry, model, dense, command, exported))
        print(f"{name}: {entry['id']} dense {dense:.4f} -> {paths[-1]}")
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder whose heldout/ (replication/, "
                        "confirmation/) holds (or gets) the runs (default weightcast.prune.zoo.default_dir())")
    parser.add_argument("--set", choices=list(SETS), default=HELD_OUT.folder, help="which models: the held-out "
                        "ones of the prune tables, or the replication or confirmation ones "
                        "(benchmarks/prune_replication.py)")
    parser.add_argument("--out", type=Path, default=None, help="default: the set's folder in benchmarks/models/prune")
    args = parser.parse_args()
    export(args.zoo or zoo.default_dir(), args.data_dir, args.out, " ".join(["python", *sys.argv]), SETS[args.set])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
