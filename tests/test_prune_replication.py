"""benchmarks/prune_replication.py: the hypernetwork's targets on models no decision about it has seen."""
import sys
from pathlib import Path

import pytest
import torch

from weightcast.data import get_task
from weightcast.prune import zoo
from weightcast.results import read_results

from helpers import SHARED_DATA, needs_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import prune_models  # noqa: E402
from common import row_config  # noqa: E402
import prune_replication as replication  # noqa: E402


NEW_SETS = {   # set -> (its specs, the specs before it, what its names say the runs are, its new MLP width)
    "replication": (zoo.replication_specs, lambda: zoo.train_specs() + zoo.held_out_specs(),
                    {"mlp-seed200": ("mnist", "mlp_nobias", [40, 20], "sgd", 200),
                     "mlp-48-24": ("mnist", "mlp_nobias", [48, 24], "adamw", 201),
                     "lenet5-seed202": ("mnist", "lenet5", None, "sgd", 202),
                     "lenet5-seed203": ("mnist", "lenet5", None, "adamw", 203),
                     "lenet5-digits-seed204": ("digits", "lenet5", None, "sgd", 204)}, (48, 24)),
    "confirmation": (zoo.confirmation_specs,
                     lambda: zoo.train_specs() + zoo.held_out_specs() + zoo.replication_specs(),
                     {"mlp-seed300": ("mnist", "mlp_nobias", [40, 20], "adamw", 300),
                      "mlp-seed301": ("mnist", "mlp_nobias", [40, 20], "sgd", 301),
                      "mlp-80-40": ("mnist", "mlp_nobias", [80, 40], "sgd", 302),
                      "lenet5-seed303": ("mnist", "lenet5", None, "adamw", 303),
                      "lenet5-digits-seed304": ("digits", "lenet5", None, "adamw", 304),
                      "mlp-digits-seed305": ("digits", "mlp_nobias", [32, 16], "sgd", 305)}, (80, 40)),
}


@pytest.mark.parametrize("folder", list(NEW_SETS))
def test_each_new_set_is_new_seeds_and_a_new_width(folder):
    make, before, expected, width = NEW_SETS[folder]
    specs, earlier, model_set = make(), before(), prune_models.SETS[folder]
    assert zoo.ZOOS[folder] is make
    assert len(specs) == len(model_set.names)
    assert not {s.seed for s in specs} & {s.seed for s in earlier}
    assert not {s.run_id for s in specs} & {s.run_id for s in earlier}
    described = {name: (s.task, s.arch, s.model_kwargs.get("widths"), s.optimizer, s.seed)
                 for name, s in zip(model_set.names, specs)}   # the names say what the runs are
    assert described == expected
    mlp_widths = lambda group: {tuple(s.model_kwargs["widths"]) for s in group if s.arch == "mlp_nobias"}  # noqa: E731
    assert mlp_widths(specs) - mlp_widths(earlier) == {width}


def test_every_model_set_has_its_report_title():
    assert set(replication.TITLES) == set(prune_models.SETS)
    assert len(set(replication.TITLES.values())) == len(replication.TITLES)


@pytest.mark.parametrize("folder", list(prune_models.SETS))
def test_committed_report_is_the_report_of_the_committed_rows(folder):
    model_set = prune_models.SETS[folder]
    stem = replication.OUT / replication.stem_of(model_set)
    rows = read_results(stem.with_suffix(".csv"))
    sparsities = {tuple(row_config(r)["sparsities"]) for r in rows}
    assert len(sparsities) == 1   # one run made every row
    text = replication.report(rows, model_set.names, list(*sparsities), replication.TITLES[folder])
    assert text == stem.with_suffix(".md").read_text()


def test_paired_counts_and_exact_mcnemar_p():
    a = torch.tensor([True] * 9 + [True, False, False])
    b = torch.tensor([False] * 9 + [True, False, True])
    # 9 examples only a gets right, 1 only b: p = 2 * P(X <= 1), X ~ Binomial(10, 1/2) = 2 * 11 / 1024
    assert replication.paired(a, b) == {"only_a": 9, "only_b": 1, "p": pytest.approx(22 / 1024)}
    assert replication.paired(b, a)["p"] == pytest.approx(22 / 1024)
    four_five = replication.paired(torch.tensor([True] * 4 + [False] * 5), torch.tensor([False] * 4 + [True] * 5))
    assert four_five == {"only_a": 4, "only_b": 5, "p": 1.0}
    assert replication.paired(a, a) == {"only_a": 0, "only_b": 0, "p": 1.0}


def _rows(network, dense, accs, counts, fisher):
    common = dict(benchmark="b", x_name="sparsity", unit="fraction", config={"network": network, "examples": 10_000})
    rows = [dict(common, name="dense", metric="acc", x_value=0.0, value=dense)]
    for s, (mag, hyp) in accs.items():
        rows += [dict(common, name="magnitude", metric="acc", x_value=s, value=mag),
                 dict(common, name="hypernet", metric="acc", x_value=s, value=hyp)]
        only_h, only_m, p = counts[s]
        rows += [dict(common, name="hypernet-vs-magnitude", metric=metric, x_value=s, value=v)
                 for metric, v in (("only_hypernet_right", only_h), ("only_magnitude_right", only_m),
                                   ("mcnemar_p", p))]
    return rows + [dict(common, name="woodfisher", metric="acc", x_value=0.9, value=fisher)]


def test_report_names_the_points_below_magnitude_and_far_from_woodfisher():
    rows = _rows("a", 0.97, {0.5: (0.9720, 0.9719), 0.9: (0.90, 0.95)}, {0.5: (4, 5, 1.0), 0.9: (600, 100, 1e-9)},
                 0.9612)
    rows += _rows("b", 0.96, {0.5: (0.95, 0.95), 0.9: (0.90, 0.94)}, {0.5: (0, 0, 1.0), 0.9: (500, 100, 1e-9)},
                  0.945)
    text = replication.report(rows, ("a", "b"), (0.5, 0.9), "t")
    assert "| 0.5 | 97.20 | 97.19 | -0.01 | 4 | 5 | 1 |  |" in text
    assert "at 3 of 4 points; below at a at s = 0.5 (97.19 against 97.20; only H / only M 4 / 5, p = 1)." in text
    assert "Within 1 point of WoodFisher at s = 0.9: on 1 of 2 models; further on a (95.00 against 96.12)." in text
    clean = replication.report(rows, ("b",), (0.5, 0.9), "t")
    assert "at 2 of 2 points." in clean and "on 1 of 1 models." in clean
    # exactly 1 point (100 of 10,000 examples) is within it, whatever the floats' rounding; 101 examples are not
    for fisher, hyp, within in ((0.96, 0.95, True), (0.9600001, 0.9499999, True), (0.9601, 0.95, False)):
        edge = replication.report(_rows("c", 0.97, {0.9: (0.9, hyp)}, {0.9: (500, 0, 1e-9)}, fisher), ("c",), (0.9,),
                                  "t")
        assert ("on 1 of 1 models." in edge) is within, (fisher, hyp)


@needs_mnist
def test_model_rows_pair_the_accuracies_they_report(monkeypatch):
    entry, model = prune_models.load_all(["mlp-seed200"], model_set=prune_models.REPLICATION)["mlp-seed200"]
    task = get_task("mnist", SHARED_DATA)
    rows = replication.model_rows("mlp-seed200", entry, model, task, (0.5,), replication.hypernet.load_default(), "b")
    got = {(r["name"], r["metric"]): r["value"] for r in rows}
    assert got[("dense", "acc")] == pytest.approx(task.evaluate(model)["acc"])
    assert got[("hypernet", "achieved_sparsity")] == pytest.approx(0.5, abs=1e-4)
    assert got[("magnitude", "achieved_sparsity")] == pytest.approx(0.5, abs=1e-4)
    difference = got[("hypernet-vs-magnitude", "only_hypernet_right")] - got[
        ("hypernet-vs-magnitude", "only_magnitude_right")]
    assert difference == round((got[("hypernet", "acc")] - got[("magnitude", "acc")]) * task.eval_size)
    assert ("woodfisher", "acc") not in got   # only at s = 0.9
    net = replication.hypernet.load_default()
    monkeypatch.setattr(replication, "prune_one", lambda *_: pytest.fail("pruned again"))
    assert replication.model_rows("mlp-seed200", entry, model, task, (0.5,), net, "b", rows) == rows   # reused
    partial = [r for r in rows if r["metric"] != "mcnemar_p"]
    with pytest.raises(pytest.fail.Exception, match="pruned again"):   # an s not held in full is made again
        replication.model_rows("mlp-seed200", entry, model, task, (0.5,), net, "b", partial)
