"""benchmarks/prune_models.py: the committed held-out models the prune benchmarks prune."""
import dataclasses
import os
import sys
from pathlib import Path

import pytest
import torch

from weightcast.data import get_task
from weightcast.errors import InputError
from weightcast.prune import zoo
from weightcast.weights_io import WeightFileError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import prune_models  # noqa: E402

SHARED_DATA = Path(os.environ.get("WEIGHTCAST_DATA") or Path(__file__).resolve().parents[1] / "../shared/data")
MNIST_INFO = {"name": "mnist", "input_shape": [1, 28, 28], "num_classes": 10}


@pytest.mark.skipif(not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists(),
                    reason="needs ../shared/data/mnist")
def test_committed_models_are_the_held_out_runs_and_keep_their_recorded_dense_accuracy():
    loaded = prune_models.load_all()
    assert list(loaded) == list(zoo.HELD_OUT_NAMES)
    tasks = {}
    for (name, (entry, model)), spec in zip(loaded.items(), zoo.held_out_specs()):
        assert entry["id"] == spec.run_id and entry["spec"] == dataclasses.asdict(spec)
        task = tasks.setdefault(spec.task, get_task(spec.task, SHARED_DATA))
        n = len(task.eval_tensors("val", task.eval_size)[1])
        # another build of the same run differs by 0.35 to 0.64 points; two examples allow for another CPU's rounding
        assert abs(task.evaluate(model)["acc"] - entry["dense_acc"]) <= 2 / n, name


def test_a_saved_model_loads_bit_exact_and_a_file_of_another_run_is_refused(tmp_path):
    first, second = zoo.held_out_specs()[:2]
    entry = {"id": first.run_id, "spec": dataclasses.asdict(first), "task_info": MNIST_INFO}
    model = zoo.make_model(entry["spec"], MNIST_INFO)
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p)
    path = prune_models.save_model(tmp_path / "mlp.safetensors", "mlp", entry, model, 0.5)
    got_entry, got = prune_models.load_model(path, first.run_id)
    assert got_entry == {**entry, "dense_acc": 0.5} and not got.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), got.state_dict().values()))
    with pytest.raises(InputError, match=f"holds run {first.run_id}.*defines {second.run_id}.*prune_models.py"):
        prune_models.load_model(path, second.run_id)
    with pytest.raises(WeightFileError, match="missing.*prune_models.py"):
        prune_models.load_model(tmp_path / "lenet5.safetensors", first.run_id)
