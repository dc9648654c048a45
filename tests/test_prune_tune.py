"""benchmarks/prune_tune_fisher.py: the runs it tunes on, its rows (resumed from its CSV), its gain table."""
import argparse
import copy
import sys
from pathlib import Path

import pytest

from weightcast.cli_common import block_size
from weightcast.prune import Calibration, MaskHypernetwork, apply_masks, hypernet, zoo
from weightcast.prune.api import masks_and_weights
from weightcast.prune.fisher import prune_in_stages
from weightcast.results import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import prune_tune_fisher as tune  # noqa: E402
from test_prune import task, trained  # noqa: E402,F401  (the digits task and a trained bias-free MLP)


def test_tunes_on_validation_runs_only_the_mnist_mlps_by_default():
    held_out = {s.run_id for s in zoo.held_out_specs()}
    mlps, every = tune.validation_specs(), tune.validation_specs("validation")
    assert {s.run_id for s in every} == set(zoo.validation_ids()) and not held_out & set(zoo.validation_ids())
    assert {(s.task, s.arch, tuple(s.model_kwargs["widths"])) for s in mlps} == {
        ("mnist", "mlp_nobias", w) for w in ((32, 16), (64, 32), (96, 48))}
    assert len(mlps) == 3 and {s.arch for s in every} == {"mlp_nobias", "lenet5"}
    groups = tune.specs_by_task(every)   # each pruned and evaluated on its own task
    assert {t: len(g) for t, g in groups.items()} == {"mnist": 5, "digits": 1}
    assert all(s.task == t for t, g in groups.items() for s in g)
    with pytest.raises(ValueError, match="runs must be one of"):
        tune.validation_specs("held-out")


def test_rows_match_a_direct_prune_and_resume_from_the_csv(trained, task, monkeypatch, tmp_path):
    monkeypatch.setattr(tune.zoo, "load_models", lambda root, specs: [({"id": "r"}, trained)])
    args = argparse.Namespace(methods=["woodfisher"], calibration=[64], inputs=["train"], stages=[1, 2],
                              rel_damp=[1e-2], block_size=[None, 50], sparsities=[0.8])
    rows = list(tune.tune_rows([], tmp_path, task, args, {}))
    assert [(r["name"], r["config"].get("stages"), r["config"].get("block_size")) for r in rows] == [
        ("magnitude", None, None), ("woodfisher", 1, None), ("woodfisher", 1, 50), ("woodfisher", 2, None),
        ("woodfisher", 2, 50)]
    x, y = task.eval_tensors("train", 64)
    for row, block in ((rows[3], None), (rows[4], 50)):
        result = prune_in_stages(trained, 0.8, x, y, "woodfisher", stages=2, rel_damp=1e-2, block_size=block)
        pruned = apply_masks(copy.deepcopy(trained), *masks_and_weights(result))
        assert row["value"] == task.evaluate(pruned)["acc"]
    path = tmp_path / "t.csv"
    write_results(path, rows[:2], device="cpu")
    done = {tune._key(r): r["value"] for r in tune.read_rows(path)}
    assert [(r["config"].get("stages"), r["config"].get("block_size"))
            for r in tune.tune_rows([], tmp_path, task, args, done)] == [(1, 50), (2, None), (2, 50)]
    # a file made from another model under the same id (another machine's zoo build) is refused, at any sparsity
    # it has, whatever --sparsities asks for
    tune.check_same_models([], tmp_path, task, done)
    (magnitude_key,) = [k for k in done if k[1] == "magnitude"]
    other = (magnitude_key[0], "magnitude", 0.5) + magnitude_key[3:]
    with pytest.raises(tune.OtherModelsError, match="another model under that id"):
        tune.check_same_models([], tmp_path, task, {**done, other: tune.magnitude_accuracy(trained, task, 0.5) + 0.01})


def test_prior_rows_are_the_hypernetworks_calibration_with_one_draw(trained, task, monkeypatch, tmp_path):
    monkeypatch.setattr(tune.zoo, "load_models", lambda root, specs: [({"id": "r"}, trained)])
    args = argparse.Namespace(methods=["woodfisher"], calibration=[64], inputs=["prior"], stages=[8],
                              rel_damp=[1e-3], block_size=[50], sparsities=[0.9])
    net = MaskHypernetwork(token_size=16, hidden=8)
    hypernet.fit_priors(net, {"digits": task})
    net.calibrated["digits"] = [True] * len(hypernet.VAL_SPARSITIES)
    monkeypatch.setattr(tune.hypernet, "load_default", lambda: net)   # the rows read the shipped one's prior
    (row,) = [r for r in tune.tune_rows([], tmp_path, task, args, {}) if r["name"] == "woodfisher"]
    assert row["config"]["inputs"] == "prior"
    pruned = apply_masks(copy.deepcopy(trained), *net.prune(trained, 0.9, calibration=Calibration(64, 50, 1)))
    assert row["value"] == task.evaluate(pruned)["acc"]


def test_block_size_argument():
    assert block_size("full") is None and block_size("784") == 784
    for bad in ("0", "-3", "2.5", "blocks"):
        with pytest.raises(argparse.ArgumentTypeError, match="'full' or a positive integer"):
            block_size(bad)


def test_table_gains_and_means():
    def row(name, run, value, **setting):
        return dict(name=name, x_value=0.9, value=value, config={"run": run, **setting})

    setting = dict(calibration=1024, stages=8, rel_damp=1e-3)
    rows = [row("magnitude", "a", 0.90), row("magnitude", "b", 0.80),
            row("woodfisher", "a", 0.93, **setting), row("woodfisher", "b", 0.81, **setting),
            row("woodfisher", "a", 0.94, **dict(setting, calibration=8192, block_size=2048)),
            row("woodfisher", "a", 0.92, **dict(setting, calibration=8192, block_size=128, inputs="prior")),
            row("chita", "a", 0.89, **dict(setting, stages=1))]
    text = tune.table(rows)
    assert "s = 0.9 (global magnitude: 90.00%, 80.00%):" in text
    assert "| method | N | inputs | stages | rel_damp | block | a | b | runs | mean |" in text
    # rows from before blocks and before --inputs: the full Fisher on training examples
    assert "| woodfisher | 1024 | train | 8 | 0.001 | full | +3.00 | +1.00 | 2 | +2.00 |" in text
    assert "| woodfisher | 8192 | train | 8 | 0.001 | 2048 | +4.00 |  | 1 | +4.00 |" in text
    assert "| woodfisher | 8192 | prior | 8 | 0.001 | 128 | +2.00 |  | 1 | +2.00 |" in text
    assert "| chita | 1024 | train | 1 | 0.001 | full | -1.00 |  | 1 | -1.00 |" in text
