"""Pruners: exact sparsity, masks through torch.nn.utils.prune, save/load, errors, OBS details, hypernetwork."""
import copy
import io

import pytest
import torch
from torch import nn

from weightcast.data import get_task
from weightcast.prune import (BiasFreeMLP, MaskHypernetwork, apply_masks, finetune, load_pruned, make_permanent,
                              prune, recalibrate_bn, sparsity_of)
from weightcast.prune import hypernet
from weightcast.prune.models import registered
from weightcast.prune.obs import LayerOBS
from weightcast import models


@pytest.fixture(scope="module")
def task():
    return get_task("digits")


@pytest.fixture(scope="module")
def trained(task):
    torch.manual_seed(0)
    model = BiasFreeMLP(task.input_shape, 10, (24, 12))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    batches = task.batches(64, 0)
    for _ in range(150):
        x, y = next(batches)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def lenet(task):
    torch.manual_seed(1)
    return models.get("lenet5", **task.model_kwargs(), width=0.5).eval()


def counts(masks):
    return {k: int((~m).sum()) for k, m in masks.items()}


@pytest.mark.parametrize("method", ["random", "magnitude", "hypernet", "obs", "woodfisher", "chita"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.77, 0.98])
def test_global_methods_hit_the_sparsity_exactly(trained, task, method, sparsity):
    model = copy.deepcopy(trained)
    n = sum(m.numel() for m in (model.layers[0].weight, model.layers[2].weight, model.layers[4].weight))
    masks = prune(model, sparsity, method, data=task.eval_tensors("train", 96), hypernet=MaskHypernetwork())
    assert sum(counts(masks).values()) == round(sparsity * n)
    assert sparsity_of(model) >= round(sparsity * n) / n  # applied (a kept weight may also be zero)
    assert all(hasattr(m, "weight_mask") for m in (model.layers[0], model.layers[2], model.layers[4]))


@pytest.mark.parametrize("method,kwargs", [("random", {"scope": "layer"}), ("magnitude", {"scope": "layer"}),
                                           ("hypernet", {"scope": "layer"}), ("obs", {"allocation": "uniform"})])
def test_layer_wise_methods_hit_the_sparsity_in_every_layer(lenet, task, method, kwargs):
    model = copy.deepcopy(lenet)
    masks = prune(model, 0.83, method, data=task.eval_tensors("train", 64), hypernet=MaskHypernetwork(), **kwargs)
    for name, mask in masks.items():
        assert int((~mask).sum()) == round(0.83 * mask.numel()), name
    assert set(masks) == {"features.0.weight", "features.3.weight", "classifier.0.weight", "classifier.2.weight",
                          "classifier.4.weight"}


def test_untrained_hypernetwork_is_global_magnitude(trained):
    a = prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=MaskHypernetwork())
    b = prune(copy.deepcopy(trained), 0.9, "magnitude")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_data_based_methods_beat_random_and_keep_zeros(trained, task):
    data = task.eval_tensors("train", 256)
    dense = task.evaluate(trained)["acc"]
    rand = task.evaluate(prune_copy(trained, 0.6, "random"))["acc"]
    for method in ("obs", "woodfisher", "chita"):
        model = prune_copy(trained, 0.6, method, data)
        acc = task.evaluate(model)["acc"]
        assert acc > rand + 0.1 and acc > dense - 0.3, (method, acc, rand, dense)
        for layer in (model.layers[0], model.layers[2], model.layers[4]):
            assert bool((layer.weight[~layer.weight_mask.bool()] == 0).all())


def prune_copy(model, s, method, data=None):
    model = copy.deepcopy(model)
    prune(model, s, method, data=data)
    return model


def test_obs_compensation_lowers_the_layer_error(trained, task):
    x = task.eval_tensors("train", 256)[0]
    pruned = prune_copy(trained, 0.7, "obs", x)
    masked_only = copy.deepcopy(trained)
    masks = prune(masked_only, 0.7, "obs", data=x, apply=False)
    apply_masks(masked_only, masks)
    first = lambda m: m.layers[0](x.flatten(1))  # noqa: E731
    ref = first(trained)
    assert (first(pruned) - ref).square().sum() < (first(masked_only) - ref).square().sum()


def test_obs_dead_inputs_go_first():
    torch.manual_seed(0)
    x = torch.randn(50, 6)
    x[:, [1, 4]] = 0
    W = torch.randn(3, 6)
    state = LayerOBS(W, x.double(), rel_damp=0.01)
    assert set(state.order[:, :2].flatten().tolist()) == {1, 4}
    assert bool((state.losses[:, :2] == 0).all())
    mask, _ = state.prune(2 / 6)
    assert not mask[:, [1, 4]].any() and mask[:, [0, 2, 3, 5]].all()


def test_pruned_model_saves_and_loads(trained, lenet, task):
    for base in (trained, lenet):
        model = prune_copy(base, 0.8, "obs", task.eval_tensors("train", 64)[0])
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        buffer.seek(0)
        fresh = load_pruned(copy.deepcopy(base), torch.load(buffer))
        x = task.eval_tensors("val", 32)[0]
        torch.testing.assert_close(fresh(x), model(x))
        assert sparsity_of(fresh) == sparsity_of(model)
        plain = make_permanent(fresh)
        assert not any(k.endswith("_mask") for k in plain.state_dict())
        torch.testing.assert_close(plain(x), model(x))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "half", "0.5", None])
def test_bad_sparsity_is_refused(trained, bad):
    model = copy.deepcopy(trained)
    error = TypeError if bad is None or isinstance(bad, str) else ValueError
    with pytest.raises(error, match=r"sparsity must be"):
        prune(model, bad, "magnitude")
    assert not hasattr(model.layers[0], "weight_mask")


@pytest.mark.parametrize("method", ["obs", "woodfisher", "chita"])
def test_data_based_methods_need_data(trained, method):
    model = copy.deepcopy(trained)
    with pytest.raises(ValueError, match="needs calibration data"):
        prune(model, 0.5, method)
    assert not hasattr(model.layers[0], "weight_mask")


def test_other_bad_inputs(trained, task):
    x, _ = task.eval_tensors("train", 8)
    with pytest.raises(ValueError, match="needs labels"):
        prune(copy.deepcopy(trained), 0.5, "woodfisher", data=x)
    with pytest.raises(ValueError, match="unknown pruning method"):
        prune(copy.deepcopy(trained), 0.5, "l1")
    with pytest.raises(ValueError, match="scope"):
        prune(copy.deepcopy(trained), 0.5, "magnitude", scope="row")
    with pytest.raises(ValueError, match="no Linear or Conv"):
        prune(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(FileNotFoundError, match="weightcast prune train"):
        hypernet.load("/nonexistent/hypernet.safetensors")


def test_finetune_keeps_the_masks_and_bn_recalibration(trained, task):
    model = prune_copy(trained, 0.9, "magnitude")
    before = [layer.weight_mask.clone() for layer in (model.layers[0], model.layers[2], model.layers[4])]
    finetune(model, task.batches(32, 0), steps=5)
    for layer, mask in zip((model.layers[0], model.layers[2], model.layers[4]), before):
        assert torch.equal(layer.weight_mask, mask) and bool((layer.weight[~mask.bool()] == 0).all())
    assert recalibrate_bn(model, [task.eval_tensors("train", 16)]) is False
    bn = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8))
    prune(bn, 0.5)
    bn[2].running_mean.fill_(5.0)
    assert recalibrate_bn(bn, [task.eval_tensors("train", 64)]) is True
    assert bn[2].running_mean.abs().max() < 5.0


def test_hypernetwork_trains_and_round_trips(trained, task, tmp_path):
    net = MaskHypernetwork(token_size=16, hidden=8)
    rows = hypernet.train(net, [(copy.deepcopy(trained), task)], steps=6, batch_size=32, log_every=3,
                          log=lambda *_: None)
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.head[-1].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.budget[-1].parameters())
    hypernet.save(net, tmp_path / "h.safetensors", {"command": "test"})
    again = hypernet.load(tmp_path / "h.safetensors")
    a, b = net.scores(trained, 0.8), again.scores(trained, 0.8)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_hypernetwork_layer_offset_moves_the_layer_budgets(trained):
    net = MaskHypernetwork(token_size=16, hidden=8, max_offset=1.0)
    with torch.no_grad():   # offset ~ +1 on the last layer only (its flag in layer_features), 0 elsewhere
        net.budget[0].weight.zero_()
        net.budget[0].bias.zero_()
        net.budget[0].weight[0, 8 + 3] = 5.0
        net.budget[-1].weight[0, 0] = 1.0
    ours = counts(prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=net))
    magnitude = counts(prune(copy.deepcopy(trained), 0.9, "magnitude"))
    assert sum(ours.values()) == sum(magnitude.values())
    assert ours["layers.4.weight"] < magnitude["layers.4.weight"]


def test_hypernetwork_early_stopping_uses_the_change_only_where_it_beat_magnitude(trained, task):
    net = MaskHypernetwork(token_size=16, hidden=8)
    rows = hypernet.train(net, [(copy.deepcopy(trained), task)], steps=4, lr=0.05, batch_size=32, log_every=2,
                          val_zoo=[(trained, task)], val_every=2, log=lambda *_: None)
    checks = {r["step"]: r["val_acc_per_s"] for r in rows if "val_acc_per_s" in r}
    assert set(checks) == {0, 2, 4} and all(len(v) == len(hypernet.VAL_SPARSITIES) for v in checks.values())
    chosen, active = rows[-1]["selected_step"], rows[-1]["active"]
    assert net.active.tolist() == active == [a > b for a, b in zip(checks[chosen], checks[0])]   # one run
    expected = [a if on else b for a, b, on in zip(checks[chosen], checks[0], active)]
    assert hypernet.val_score(net, [(trained, task)]) == pytest.approx(expected, abs=1e-5)


def test_inactive_sparsities_fall_back_to_magnitude(trained):
    net = MaskHypernetwork(token_size=16, hidden=8)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
        net.active.copy_(torch.tensor([True, True, False, True, True, True]))   # off at s = 0.8
    assert [net.applies_at(s) for s in (0.3, 0.5, 0.6, 0.75, 0.8, 0.85, 0.9, 0.97, 0.98, 0.99)] == \
        [False, True, True, False, False, False, True, True, True, False]
    magnitude = prune(copy.deepcopy(trained), 0.8, "magnitude")
    off = prune(copy.deepcopy(trained), 0.8, "hypernet", hypernet=net)
    on = prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=net)
    assert all(torch.equal(off[k], magnitude[k]) for k in off)
    assert not all(torch.equal(on[k], prune(copy.deepcopy(trained), 0.9, "magnitude")[k]) for k in on)


def test_shipped_hypernetwork_prunes_an_unseen_width(task):
    if not hypernet.DEFAULT_FILE.exists():
        pytest.skip("no shipped hypernetwork weights")
    model = BiasFreeMLP(task.input_shape, 10, (40, 20))
    masks = prune(model, 0.9, "hypernet")
    assert sum(counts(masks).values()) == round(0.9 * (64 * 40 + 40 * 20 + 20 * 10))


def test_bias_free_mlp_is_registered_inside_the_block_only():
    with registered():
        model = models.get("mlp_nobias", in_shape=(1, 28, 28), num_classes=10)
    assert isinstance(model, BiasFreeMLP)
    assert [tuple(p.shape) for p in model.parameters()] == [(40, 784), (20, 40), (10, 20)]
    assert "mlp_nobias" not in models.names()
