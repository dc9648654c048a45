"""Model zoos: building, interruption and resume, manifest content, held-out rules and the trajectory dataset."""
import argparse
import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from weightcast import models
from weightcast.data import get_task
from weightcast.zoo import (HELD_OUT, RunSpec, TrajectoryDataset, build_zoo, default_spec, is_held_out,
                            load_trajectory, quick_spec, read_manifest, split_runs, train_run)
from weightcast.zoo.cli import add_subparser
from weightcast.zoo.store import STEPS_KEY


def tiny_specs():
    """Six fast digits runs (two widths x three seeds), 20 steps recorded every 2 (11 snapshots)."""
    return [RunSpec("digits", "mlp", {"widths": [w]}, "sgd", 0.05, {"momentum": 0.9}, batch_size=32, steps=20,
                    record_every=2, eval_every=10, seed=s) for w in (4, 6) for s in range(3)]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    build_zoo(out, tiny_specs(), progress=False)
    return out


def test_manifest_and_files(zoo):
    manifest = read_manifest(zoo)
    specs = tiny_specs()
    assert [e["id"] for e in manifest["runs"]] == [s.run_id for s in specs]
    assert manifest["held_out"] == [dict(h) for h in HELD_OUT]
    entry = manifest["runs"][0]
    assert RunSpec(**entry["spec"]) == specs[0]
    assert entry["tensors"] == [{"name": "layers.0.weight", "shape": [4, 64]}, {"name": "layers.0.bias", "shape": [4]},
                                {"name": "layers.2.weight", "shape": [10, 4]}, {"name": "layers.2.bias", "shape": [10]}]
    assert entry["num_params"] == 4 * 64 + 4 + 10 * 4 + 10 and entry["num_records"] == 11
    assert entry["curves"]["step"] == [0, 10, 20] and entry["curves"]["train_loss"][0] is None
    assert entry["final"]["val_acc"] == entry["curves"]["val_acc"][-1] and not entry["diverged"]
    raw = load_file(zoo / entry["file"])
    assert torch.equal(raw[STEPS_KEY], torch.arange(0, 21, 2))
    assert raw["layers.0.weight"].shape == (11, 4, 64) and raw["layers.0.weight"].dtype == torch.float32
    assert not list(zoo.glob("**/.*tmp*"))


def test_trajectory_is_the_training_run(zoo):
    spec = tiny_specs()[1]
    entry = next(e for e in read_manifest(zoo)["runs"] if e["id"] == spec.run_id)
    snapshots, steps = load_trajectory(zoo, entry)
    torch.manual_seed(spec.seed)
    init = models.get("mlp", in_shape=(1, 8, 8), num_classes=10, widths=[4])
    assert all(torch.equal(snapshots[name][0], p) for name, p in init.named_parameters())
    again = train_run(spec, get_task("digits"))  # deterministic: the same trajectory again
    assert all(torch.equal(again.snapshots[name], snapshots[name]) for name in snapshots)
    assert torch.equal(again.steps, steps)
    assert not all(torch.equal(s[0], s[-1]) for s in snapshots.values())  # it trained


class Interrupt(Exception):
    pass


def test_interrupt_and_resume(zoo, tmp_path):
    specs = tiny_specs()
    build_zoo(tmp_path, specs, max_runs=2, progress=False)
    assert len(read_manifest(tmp_path)["runs"]) == 2
    made = []

    def failing_sgd(params, **kwargs):  # the third optimizer it makes interrupts the build
        made.append(1)
        if len(made) == 3:
            raise Interrupt
        return torch.optim.SGD(params, **kwargs)

    with pytest.raises(Interrupt):
        build_zoo(tmp_path, specs, progress=False, optimizers={"sgd": failing_sgd})
    runs = read_manifest(tmp_path)["runs"]
    assert [e["id"] for e in runs] == [s.run_id for s in specs[:4]]
    first_file = tmp_path / runs[0]["file"]
    mtime = first_file.stat().st_mtime_ns
    (tmp_path / "runs" / ".leftover.safetensors.tmp-1").write_bytes(b"half a file")
    build_zoo(tmp_path, specs, progress=False)
    runs = read_manifest(tmp_path)["runs"]
    assert [e["id"] for e in runs] == [s.run_id for s in specs]
    assert first_file.stat().st_mtime_ns == mtime  # finished runs are not trained again
    assert not list(tmp_path.glob("**/.*tmp*"))
    for entry in runs:  # the resumed zoo equals the uninterrupted one
        a, b = load_trajectory(tmp_path, entry)[0], load_trajectory(zoo, entry)[0]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_duplicates_and_held_out_are_refused(tmp_path):
    spec = tiny_specs()[0]
    with pytest.raises(ValueError, match="same run twice"):
        build_zoo(tmp_path, [spec, spec], progress=False)
    wide = RunSpec("mnist", "lenet5", {"width": 4}, steps=10, record_every=5)
    with pytest.raises(ValueError, match="HELD_OUT"):
        build_zoo(tmp_path, [spec, wide], progress=False)
    assert not (tmp_path / "manifest.json").exists()


def test_held_out_rules():
    assert is_held_out(RunSpec("mnist", "resnet18", {"width": 0.25}))
    assert is_held_out(RunSpec("chars", "gpt", {"n_layer": 4, "n_embd": 32}))
    assert not is_held_out(RunSpec("chars", "gpt", {"n_embd": 32}))  # default depth 2
    assert not is_held_out(RunSpec("digits", "lenet5", {"width": 4}))
    assert not is_held_out(RunSpec("mnist", "lenet5", {"width": 1}))


def test_default_and_quick_specs():
    with_mnist, without = default_spec(mnist=True), default_spec()
    for specs in (with_mnist, without, quick_spec()):
        assert len({s.run_id for s in specs}) == len(specs)
        assert not any(is_held_out(s) for s in specs)
    assert {s.task for s in without} == {"digits", "chars"}
    assert {(s.task, s.arch) for s in with_mnist} == {("digits", "mlp"), ("digits", "lenet5"), ("mnist", "mlp"),
                                                      ("mnist", "lenet5"), ("chars", "gpt")}
    assert {s.optimizer for s in without} == {"sgd", "adamw"}
    with pytest.raises(ValueError, match="multiple of record_every"):
        replace(without[0], steps=301)


def test_split_is_by_run(zoo):
    entries = read_manifest(zoo)["runs"]
    train, val = split_runs(entries, val_fraction=0.2, seed=0)
    assert len(val) == 1 and len(train) == 5 and not set(train) & set(val)
    ds_train = TrajectoryDataset(zoo, "train", window=3, horizon=2, granularity="model")
    ds_val = TrajectoryDataset(zoo, "val", window=3, horizon=2, granularity="model")
    assert [e["id"] for e in ds_train.runs] == train and [e["id"] for e in ds_val.runs] == val


@pytest.mark.parametrize("granularity", ["element", "tensor", "model"])
def test_dataset_windows_match_trajectories(zoo, granularity):
    window, horizon = 3, 2
    ds = TrajectoryDataset(zoo, "train", window, horizon, granularity, arch="mlp")
    per_run = 11 - window - horizon + 1
    units = [{"element": e["num_params"], "tensor": 4, "model": 1}[granularity] for e in ds.runs]
    assert len(ds) == per_run * sum(units)
    generator = torch.Generator().manual_seed(0)
    for i in torch.randint(0, len(ds), (25,), generator=generator).tolist() + [0, len(ds) - 1]:
        item = ds[i]
        entry = ds.runs[int(item["run"])]
        snapshots, steps = load_trajectory(zoo, entry)
        start = int(item["steps"][0]) // entry["spec"]["record_every"]
        flat = torch.cat([t.flatten(1) for t in snapshots.values()], 1)  # (T, P)
        if granularity == "element":
            expected = flat[:, int(item["unit"])]
        elif granularity == "tensor":
            expected = list(snapshots.values())[int(item["unit"])]
        else:
            expected = flat
        assert torch.equal(item["inputs"], expected[start:start + window])
        assert torch.equal(item["target"], expected[start + window - 1 + horizon])
        assert torch.equal(item["steps"], steps[start:start + window])
        assert int(item["target_step"]) == int(steps[start + window - 1 + horizon])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_dataset_batches(zoo):
    ds = TrajectoryDataset(zoo, "train", window=4, horizon=1, granularity="element")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(1))[:300]
    batch = ds.batch(idx)
    assert batch["inputs"].shape == (300, 4) and batch["target"].shape == (300,)
    items = [ds[int(i)] for i in idx[:20]]
    for key in batch:
        assert torch.equal(batch[key][:20], torch.stack([item[key] for item in items]))
    loader = torch.utils.data.DataLoader(range(len(ds)), batch_size=64, shuffle=True, collate_fn=ds.batch)
    assert next(iter(loader))["inputs"].shape == (64, 4)
    widths = TrajectoryDataset(zoo, "train", granularity="model")  # two widths: P differs between runs
    with pytest.raises(ValueError, match="different sizes"):
        widths.batch(range(len(widths)))
    with pytest.raises(ValueError, match="one at a time"):
        TrajectoryDataset(zoo, granularity="tensor").batch([0])


def test_cli_build_and_info(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_subparser(parser.add_subparsers(dest="command"))
    out = tmp_path / "quick"
    args = parser.parse_args(["zoo", "build", "--out", str(out), "--quick", "--max-runs", "2", "--no-progress",
                              "--threads", str(torch.get_num_threads())])
    assert args.func(args) == 0
    assert len(json.loads((out / "manifest.json").read_text())["runs"]) == 2
    args = parser.parse_args(["zoo", "info", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "2 runs" in printed and "digits" in printed and "held out" in printed
    from weightcast.cli import main

    assert main(["zoo", "info", str(tmp_path / "none")]) == 1
    assert "has no manifest.json" in capsys.readouterr().err
