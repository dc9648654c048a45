"""benchmarks/prune_models.py: the committed held-out models the prune benchmarks prune."""
import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

from weightcast.data import get_task
from weightcast.errors import InputError
from weightcast.prune import zoo
from weightcast.weights_io import WeightFileError, card_path

from helpers import SHARED_DATA, needs_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import prune_models  # noqa: E402

MNIST_INFO = {"name": "mnist", "input_shape": [1, 28, 28], "num_classes": 10}


@pytest.mark.parametrize("model_set", list(prune_models.SETS.values()), ids=lambda m: m.folder)
@needs_mnist
def test_committed_models_are_their_runs_and_keep_their_recorded_dense_accuracy(model_set):
    loaded = prune_models.load_all(model_set=model_set)
    assert list(loaded) == list(model_set.names)
    tasks = {}
    for (name, (entry, model)), spec in zip(loaded.items(), model_set.specs()):
        assert entry["id"] == spec.run_id and entry["spec"] == dataclasses.asdict(spec)
        task = tasks.setdefault(spec.task, get_task(spec.task, SHARED_DATA))
        # another build of the same run differs by 0.35 to 0.64 points; one example allows for another CPU's rounding
        assert abs(task.evaluate(model)["acc"] - entry["dense_acc"]) * task.eval_size <= 1.5, name


def test_a_saved_model_loads_bit_exact_and_bad_files_are_refused(tmp_path):
    first, second = zoo.held_out_specs()[:2]
    entry = {"id": first.run_id, "spec": dataclasses.asdict(first), "task_info": MNIST_INFO}
    model = zoo.make_model(entry["spec"], MNIST_INFO)
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p)
    path = prune_models.save_model(tmp_path / "mlp.safetensors", "mlp", entry, model, 0.5)
    got_entry, got = prune_models.load_model(path, first)
    assert got_entry == {**entry, "dense_acc": 0.5} and not got.training
    assert list(got.state_dict()) == list(model.state_dict())
    assert all(torch.equal(v, got.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(InputError, match=f"holds run {first.run_id}.*defines {second.run_id}.*prune_models.py"):
        prune_models.load_model(path, second)
    with pytest.raises(WeightFileError, match="missing.*prune_models.py"):
        prune_models.load_model(tmp_path / "lenet5.safetensors", first)
    card = card_path(path)
    card.write_text(json.dumps({"network": "mlp"}))
    with pytest.raises(WeightFileError, match="no dense_acc.*prune_models.py"):
        prune_models.load_model(path, first)
    card.unlink()
    with pytest.raises(WeightFileError, match="has no card"):
        prune_models.load_model(path, first)
    with pytest.raises(InputError, match="no held-out model named \\['mlp2'\\]"):
        prune_models.load_all(["mlp2"], tmp_path)


@pytest.mark.parametrize("model_set", list(prune_models.SETS.values()), ids=lambda m: m.folder)
def test_export_records_one_provenance_taken_before_its_first_file(tmp_path, monkeypatch, model_set):
    # the export writes its files into the checkout, so a provenance taken per file would call the later ones dirty
    specs = model_set.specs()
    info = {"mnist": MNIST_INFO, "digits": {"name": "digits", "input_shape": [1, 8, 8], "num_classes": 10}}
    pairs = []
    for spec in specs:
        entry = {"id": spec.run_id, "spec": dataclasses.asdict(spec), "task_info": info[spec.task]}
        pairs.append((entry, zoo.make_model(entry["spec"], entry["task_info"])))
    calls = []

    class Task:
        def evaluate(self, model):
            return {"acc": 0.5}

    built = []
    monkeypatch.setattr(zoo, "build", lambda root, wanted, *args, **kwargs: built.append((root, wanted)))
    monkeypatch.setattr(zoo, "load_models", lambda root, wanted: pairs)
    monkeypatch.setattr(prune_models, "get_task", lambda name, data_dir: Task())
    monkeypatch.setattr(prune_models, "provenance", lambda device: calls.append(device) or {"commit": f"c{len(calls)}"})
    paths = prune_models.export(tmp_path / "zoo", None, tmp_path / "out", model_set=model_set)
    assert built == [(tmp_path / "zoo" / model_set.folder, specs)]
    assert paths == [tmp_path / "out" / f"{n}.safetensors" for n in model_set.names]
    assert calls == ["cpu"]
    cards = [json.loads(card_path(p).read_text()) for p in paths]
    assert all(card["exported"] == {"commit": "c1"} and card["command"] == model_set.export_command for card in cards)
    assert model_set is prune_models.HELD_OUT or model_set.export_command.endswith(f"--set {model_set.folder}")
